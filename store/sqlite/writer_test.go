package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/sqlstore"
)

func openTestDB(t *testing.T) *db {
	t.Helper()
	d, err := open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "w.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if _, err := d.Exec(context.Background(), `CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return d
}

func count(t *testing.T, d *db, where string) int {
	t.Helper()
	var n int
	if err := d.QueryRow(context.Background(), `SELECT count(*) FROM kv WHERE `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriterGroupsCommits mixes plain writes, transactions that commit,
// transactions that roll back and writes that break a constraint, from
// many goroutines: every acknowledged write is there, nothing that failed
// or rolled back is, and the commits were grouped (fewer COMMITs than
// acknowledged writes).
func TestWriterGroupsCommits(t *testing.T) {
	d := openTestDB(t)
	ctx := context.Background()
	before := d.w.commits.Load()
	const workers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("%d-%d", g, i)
				var err error
				switch i % 4 {
				case 0: // plain write
					_, err = d.Exec(ctx, `INSERT INTO kv (k, v) VALUES ($1, 0)`, k)
				case 1: // transaction that commits two rows
					err = inTx(ctx, d, true, k)
				case 2: // transaction that rolls back
					err = inTx(ctx, d, false, k)
				case 3: // a duplicate: fails alone, with the store's error
					_, err = d.Exec(ctx, `INSERT INTO kv (k, v) VALUES ($1, 3)`, fmt.Sprintf("%d-%d", g, i-3))
					if errors.Is(err, store.ErrAlreadyExists) {
						err = nil
					} else {
						err = fmt.Errorf("duplicate %s: got %v, want ErrAlreadyExists", k, err)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	acked := workers * 7 // per worker: 7 plain writes (i%4==0) and 6 committed transactions
	committedTx := workers * 6
	if got := count(t, d, "v = 0"); got != acked {
		t.Errorf("plain writes: %d rows, want %d", got, acked)
	}
	if got := count(t, d, "v = 1"); got != 2*committedTx {
		t.Errorf("committed transactions: %d rows, want %d", got, 2*committedTx)
	}
	if got := count(t, d, "v IN (2, 3)"); got != 0 {
		t.Errorf("%d rows from rolled-back transactions or duplicates", got)
	}
	commits := d.w.commits.Load() - before
	if commits >= int64(acked+committedTx) {
		t.Errorf("%d COMMITs for %d acknowledged writes: nothing was grouped", commits, acked+committedTx)
	}
	t.Logf("%d acknowledged writes in %d commits", acked+committedTx, commits)
}

func inTx(ctx context.Context, d *db, commit bool, k string) error {
	tx, err := d.Begin(ctx)
	if err != nil {
		return err
	}
	v := 1
	if !commit {
		v = 2
	}
	for _, suffix := range []string{"a", "b"} {
		if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ($1, $2)`, k+suffix, v); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
	}
	// A read inside the transaction sees its own writes.
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM kv WHERE k IN ($1, $2)`, k+"a", k+"b").Scan(&n); err != nil || n != 2 {
		_ = tx.Rollback(ctx)
		return fmt.Errorf("read in transaction: %d rows, %v", n, err)
	}
	if !commit {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// TestWriterSkipsAbandonedWrites: a write whose caller gave up while it
// waited for the writer never runs later.
func TestWriterSkipsAbandonedWrites(t *testing.T) {
	d := openTestDB(t)
	ctx := context.Background()
	tx, err := d.Begin(ctx) // holds the writer
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := d.Exec(short, `INSERT INTO kv (k, v) VALUES ('abandoned', 0)`); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write while the writer is held: %v, want DeadlineExceeded", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('after', 0)`); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d, "k = 'abandoned'"); n != 0 {
		t.Fatal("the abandoned write ran after its caller returned")
	}
}

// TestWriterTxEnds: a transaction's handle is dead once it ends (the
// connection belongs to other callers by then), and a second end is a
// no-op.
func TestWriterTxEnds(t *testing.T) {
	d := openTestDB(t)
	ctx := context.Background()
	tx, err := d.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('x', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('y', 1)`); !errors.Is(err, sqlstore.ErrTxDone) {
		t.Fatalf("Exec after Commit: %v, want ErrTxDone", err)
	}
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(new(int)); !errors.Is(err, sqlstore.ErrTxDone) {
		t.Fatalf("QueryRow after Commit: %v, want ErrTxDone", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback after Commit: %v", err)
	}
	if n := count(t, d, "k = 'x'"); n != 1 {
		t.Fatal("the committed row is gone")
	}
}

// TestReadersCannotWrite: the read pool is query_only, so a write routed
// there by mistake fails rather than contending with the writer.
func TestReadersCannotWrite(t *testing.T) {
	d := openTestDB(t)
	if _, err := d.rdb.ExecContext(context.Background(), `INSERT INTO kv (k, v) VALUES ('r', 0)`); err == nil {
		t.Fatal("a reader connection wrote")
	}
	for q, want := range map[string]bool{
		"SELECT 1": false, "  select k FROM kv": false, "(SELECT 1)": false,
		"INSERT INTO kv VALUES (1, 1)": true, "WITH x AS (SELECT 1) DELETE FROM kv": true, "DELETE FROM kv RETURNING k": true, "": true,
	} {
		if got := isWrite(q); got != want {
			t.Errorf("isWrite(%q) = %v, want %v", q, got, want)
		}
	}
}

// TestExecAllIsAtomic: when a later statement fails, the earlier ones of
// the same ExecAll are undone, and other writes of the batch are not.
func TestExecAllIsAtomic(t *testing.T) {
	d := openTestDB(t)
	ctx := context.Background()
	if _, err := d.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('taken', 0)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := fmt.Sprintf("ok%d", i)
			if err := d.ExecAll(ctx, sqlstore.Stmt{SQL: `INSERT INTO kv (k, v) VALUES ($1, 1)`, Args: []any{k}},
				sqlstore.Stmt{SQL: `INSERT INTO kv (k, v) VALUES ($1, 1)`, Args: []any{k + "b"}}); err != nil {
				t.Error(err)
			}
		})
	}
	err := d.ExecAll(ctx, sqlstore.Stmt{SQL: `INSERT INTO kv (k, v) VALUES ('half', 2)`},
		sqlstore.Stmt{SQL: `INSERT INTO kv (k, v) VALUES ('taken', 2)`})
	wg.Wait()
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("ExecAll with a duplicate: %v, want ErrAlreadyExists", err)
	}
	if n := count(t, d, "v = 2"); n != 0 {
		t.Fatalf("%d rows of the failed ExecAll remain", n)
	}
	if n := count(t, d, "v = 1"); n != 16 {
		t.Fatalf("%d rows from the others, want 16", n)
	}
}
