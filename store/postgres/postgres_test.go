package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/migrations"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
	"github.com/latchkey/latchkey/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return testdb.Postgres(t) })
}

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		s, err := postgres.Open(ctx, postgres.Options{DSN: dsn})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
	fsys, _ := migrations.Files("postgres")
	if all, _ := fs.Glob(fsys, "*.sql"); len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
}

// openThrough opens a store on a fresh database through a proxy, with
// statements sent as text so the proxy can tell a COMMIT or an INSERT from
// the bytes (pgx's cached statements send only their names).
func openThrough(t *testing.T) (*testdb.Proxy, store.Store) {
	return testdb.PostgresBehindProxy(t, 4, url.Values{"default_query_exec_mode": {"simple_protocol"}})
}

// fill opens every pooled connection, so all of them go stale together.
func fill(t *testing.T, s store.Store) {
	t.Helper()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.InTx(context.Background(), func(q store.Queries) error {
				_, err := q.ListGroups(context.Background())
				time.Sleep(50 * time.Millisecond)
				return err
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestFailoverRetriesWhatDidNotHappen: after the server behind every
// pooled connection went away and another answers at the address (a
// failover), reads and transactions that had not reached COMMIT run once
// more on new connections and succeed; a transaction whose COMMIT was
// sent and whose answer was lost is not run again (it did commit: running
// it again would store it twice) and says its outcome is unknown.
func TestFailoverRetriesWhatDidNotHappen(t *testing.T) {
	ctx := context.Background()
	p, s := openThrough(t)

	fill(t, s)
	p.Drop()
	if _, err := s.ListGroups(ctx); err != nil {
		t.Fatalf("a read on a stale pool: %v", err)
	}
	for range 4 { // every stale connection was dropped, not only the one that failed
		if _, err := s.GetGroupByName(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("read after the pool was dropped: %v", err)
		}
	}

	fill(t, s)
	runs := 0
	err := s.InTx(ctx, func(q store.Queries) error {
		runs++
		if err := q.CreateGroup(ctx, store.Group{ID: "group_a", Name: "a", CreatedAt: time.Now()}); err != nil {
			return err
		}
		if runs == 1 {
			p.Drop() // the primary goes away mid-transaction
		}
		_, err := q.ListGroups(ctx)
		return err
	})
	if err != nil || runs != 2 {
		t.Fatalf("a transaction lost before COMMIT: %v after %d runs, want success after 2", err, runs)
	}

	runs = 0
	err = s.InTx(ctx, func(q store.Queries) error {
		runs++
		p.LoseAnswerTo("commit")
		return q.CreateGroup(ctx, store.Group{ID: fmt.Sprintf("group_b%d", runs), Name: fmt.Sprintf("b%d", runs), CreatedAt: time.Now()})
	})
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrCommitUnknown) || store.Retryable(err) || runs != 1 {
		t.Fatalf("COMMIT sent, answer lost: %v after %d runs, want ErrUnavailable with ErrCommitUnknown after 1", err, runs)
	}
	gs, err := s.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range gs {
		names = append(names, g.Name)
	}
	if want := []string{"a", "b1"}; !slices.Equal(names, want) {
		t.Fatalf("groups stored: %v, want %v (each transaction once; b1 committed though unanswered)", names, want)
	}

	// A single write whose answer is lost is not repeated either.
	p.LoseAnswerTo("group_c")
	err = s.CreateGroup(ctx, store.Group{ID: "group_c", Name: "c", CreatedAt: time.Now()})
	if !errors.Is(err, store.ErrCommitUnknown) {
		t.Fatalf("an autocommit write whose answer was lost: %v, want ErrCommitUnknown", err)
	}
	if _, err := s.GetGroupByName(ctx, "c"); err != nil {
		t.Fatalf("it committed: %v", err)
	}
}

// TestCallerCancelNotRetried: a caller giving up is not a failover: the
// statement is not run again and the error is not ErrUnavailable's retry.
func TestCallerCancelNotRetried(t *testing.T) {
	_, s := openThrough(t)
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	err := s.InTx(ctx, func(q store.Queries) error {
		runs++
		cancel()
		_, err := q.ListGroups(ctx)
		return err
	})
	if err == nil || runs != 1 {
		t.Fatalf("cancelled transaction: %v after %d runs", err, runs)
	}
}
