// Package sqlite is the embedded backend of the store: a single SQLite file
// through the pure-Go modernc.org/sqlite driver, so `latchkey serve` needs no
// database server and no cgo.
//
// It adapts database/sql to sqlstore's connection interface: $n placeholders
// become ?n, times are stored as Unix microseconds in UTC, and write
// transactions begin IMMEDIATE so SQLite serializes writers up front instead
// of failing them at commit.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/latchkey/latchkey/migrations"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/sqlstore"
)

// Options configures the embedded store.
type Options struct {
	Path string // file path; created if missing
}

// Open opens (creating if needed) and migrates the database file.
func Open(ctx context.Context, o Options) (*sqlstore.Store, error) {
	d, err := open(ctx, o)
	if err != nil {
		return nil, err
	}
	return sqlstore.New(d, sqlstore.Dialect{Name: "sqlite", Retryable: retryable}), nil
}

func open(ctx context.Context, o Options) (*db, error) {
	wdb, err := sql.Open("sqlite", dsn(o.Path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	// One connection writes (writer.go); it migrates first.
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	if _, err := migrations.Up(ctx, "sqlite", wdb); err != nil {
		wdb.Close()
		return nil, err
	}
	// WAL lets readers run beside the writer on their own snapshots.
	rdb, err := sql.Open("sqlite", readerDSN(o.Path))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxIdleTime(0)
	w, err := newWriter(ctx, wdb)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	return &db{rdb: rdb, wdb: wdb, w: w}, nil
}

// dsn sets the pragmas on every pooled connection. synchronous=FULL makes
// each commit an fsync of the WAL: a removal and its audit event, once
// acknowledged, survive an OS crash or power cut, at about twice the commit
// latency of NORMAL (BENCHMARKS.md, "Embedded store durability").
func dsn(path string) string {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// readerDSN is dsn for the read-only pool: a statement routed there by
// mistake fails instead of writing beside the writer.
func readerDSN(path string) string {
	return dsn(path) + "&_pragma=query_only%281%29"
}

func retryable(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if errors.Is(err, sql.ErrTxDone) {
		return sqlstore.ErrTxDone
	}
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("%w: %s", store.ErrAlreadyExists, se.Error())
	}
	return err
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

// statements caches the ?n form of each statement. The set of statements
// is fixed by the code, so the cache stays small.
type statements struct{ m sync.Map }

func (s *statements) rewrite(q string) string {
	if v, ok := s.m.Load(q); ok {
		return v.(string)
	}
	r := placeholder.ReplaceAllString(q, "?$1")
	s.m.Store(q, r)
	return r
}

func args(in []any) []any {
	out := make([]any, len(in))
	for i, a := range in {
		if t, ok := a.(time.Time); ok {
			out[i] = t.UnixMicro()
			continue
		}
		out[i] = a
	}
	return out
}

// timeDest scans a Unix-microsecond integer (or NULL) into a time.
type timeDest struct {
	p  *time.Time
	pp **time.Time
}

func (d timeDest) Scan(src any) error {
	var t *time.Time
	switch v := src.(type) {
	case nil:
	case int64:
		tt := time.UnixMicro(v).UTC()
		t = &tt
	default:
		return fmt.Errorf("sqlite: time column has type %T", src)
	}
	if d.pp != nil {
		*d.pp = t
		return nil
	}
	if t == nil {
		*d.p = time.Time{}
		return nil
	}
	*d.p = *t
	return nil
}

func dests(in []any) []any {
	out := make([]any, len(in))
	for i, d := range in {
		switch p := d.(type) {
		case *time.Time:
			out[i] = timeDest{p: p}
		case **time.Time:
			out[i] = timeDest{pp: p}
		default:
			out[i] = d
		}
	}
	return out
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type conn struct {
	q  querier
	st *statements
}

func (c conn) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	res, err := c.q.ExecContext(ctx, c.st.rewrite(q), args(a)...)
	if err != nil {
		return 0, mapErr(err)
	}
	return res.RowsAffected()
}

func (c conn) QueryRow(ctx context.Context, q string, a ...any) sqlstore.Row {
	return row{c.q.QueryRowContext(ctx, c.st.rewrite(q), args(a)...)}
}

func (c conn) Query(ctx context.Context, q string, a ...any) (sqlstore.Rows, error) {
	r, err := c.q.QueryContext(ctx, c.st.rewrite(q), args(a)...)
	if err != nil {
		return nil, mapErr(err)
	}
	return rows{r}, nil
}

type row struct{ r *sql.Row }

func (r row) Scan(d ...any) error { return mapErr(r.r.Scan(dests(d)...)) }

type rows struct{ r *sql.Rows }

func (r rows) Next() bool          { return r.r.Next() }
func (r rows) Scan(d ...any) error { return mapErr(r.r.Scan(dests(d)...)) }
func (r rows) Err() error          { return mapErr(r.r.Err()) }
func (r rows) Close()              { _ = r.r.Close() }

// db sends plain SELECTs to a pool of read-only connections and every
// other statement, and every transaction, to the one writer (writer.go).
type db struct {
	rdb, wdb *sql.DB
	w        *writer
	st       statements
}

func (d *db) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	var n int64
	err := d.w.submit(&job{ctx: ctx, run: func(ctx context.Context, c *sql.Conn) error {
		res, err := c.ExecContext(ctx, d.st.rewrite(q), args(a)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}})
	return n, err
}

// ExecAll runs stmts on the writer as one job, inside a SAVEPOINT so a
// failure undoes them all and nothing else in the batch.
func (d *db) ExecAll(ctx context.Context, stmts ...sqlstore.Stmt) error {
	return d.w.submit(&job{ctx: ctx, run: func(ctx context.Context, c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, "SAVEPOINT a"); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := c.ExecContext(ctx, d.st.rewrite(s.SQL), args(s.Args)...); err != nil {
				if _, rbErr := c.ExecContext(ctx, "ROLLBACK TO a"); rbErr != nil {
					return rbErr // the batch ends (not statement-scoped)
				}
				if _, rbErr := c.ExecContext(ctx, "RELEASE a"); rbErr != nil {
					return rbErr
				}
				return err
			}
		}
		_, err := c.ExecContext(ctx, "RELEASE a")
		return err
	}})
}

func (d *db) QueryRow(ctx context.Context, q string, a ...any) sqlstore.Row {
	if isWrite(q) {
		return writeRow{d: d, ctx: ctx, q: q, a: a}
	}
	return conn{d.rdb, &d.st}.QueryRow(ctx, q, a...)
}

func (d *db) Query(ctx context.Context, q string, a ...any) (sqlstore.Rows, error) {
	if isWrite(q) {
		return nil, fmt.Errorf("sqlite: a statement that writes must use Exec or QueryRow: %.40q", q)
	}
	return conn{d.rdb, &d.st}.Query(ctx, q, a...)
}

func (d *db) Ping(ctx context.Context) error { return d.rdb.PingContext(ctx) }

func (d *db) Close() {
	d.w.close()
	_ = d.wdb.Close()
	_ = d.rdb.Close()
}

func (d *db) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	t, err := beginWrite(ctx, d.w)
	if err != nil {
		return nil, mapErr(err)
	}
	return txConn{t: t, st: &d.st}, nil
}

// writeRow runs a statement with RETURNING on the writer when scanned
// (sqlstore scans every row it asks for at once).
type writeRow struct {
	d   *db
	ctx context.Context
	q   string
	a   []any
}

func (r writeRow) Scan(dest ...any) error {
	return r.d.w.submit(&job{ctx: r.ctx, run: func(ctx context.Context, c *sql.Conn) error {
		return c.QueryRowContext(ctx, r.d.st.rewrite(r.q), args(r.a)...).Scan(dests(dest)...)
	}})
}

// txConn runs a transaction's statements on the writer's connection.
// They are never interrupted: an interrupted write rolls back the whole
// SQLite transaction, which holds other callers' writes too. Once the
// transaction ends the connection is someone else's, so every use after
// that fails.
type txConn struct {
	t  *writeTx
	st *statements
}

func (t txConn) live(ctx context.Context) (conn, context.Context, error) {
	if t.t.ended.Load() {
		return conn{}, nil, sqlstore.ErrTxDone
	}
	return conn{t.t.c, t.st}, context.WithoutCancel(ctx), nil
}

func (t txConn) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	c, ctx, err := t.live(ctx)
	if err != nil {
		return 0, err
	}
	return c.Exec(ctx, q, a...)
}

func (t txConn) QueryRow(ctx context.Context, q string, a ...any) sqlstore.Row {
	c, ctx, err := t.live(ctx)
	if err != nil {
		return errRow{err}
	}
	return c.QueryRow(ctx, q, a...)
}

func (t txConn) Query(ctx context.Context, q string, a ...any) (sqlstore.Rows, error) {
	c, ctx, err := t.live(ctx)
	if err != nil {
		return nil, err
	}
	return c.Query(ctx, q, a...)
}

func (t txConn) Commit(context.Context) error   { return mapErr(t.t.finish(true)) }
func (t txConn) Rollback(context.Context) error { return mapErr(t.t.finish(false)) }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// runner applies migrations; BEGIN IMMEDIATE already excludes other writers,
// and each migration runs in its own transaction with its bookkeeping row.
