package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite lets one connection write at a time. With a pool of writers the
// others wait in SQLite's busy handler, which sleeps 1, 2, 5… 100 ms
// between tries: throughput held up, but one grant in a hundred waited
// most of a second (p99 800 ms at 16 concurrent). So every write goes
// through one connection owned by one goroutine, and waiting happens in
// a Go queue instead.
//
// That goroutine also commits in groups. It opens a transaction (BEGIN
// IMMEDIATE) for the first waiting job, runs every job that is waiting by
// then (up to maxBatch), and commits once: one fsync for the batch, under
// synchronous=FULL as before. No caller is answered before the COMMIT
// that holds its write returns, so an acknowledged write is as durable as
// with one transaction per write; a failed COMMIT fails every job in it.
// A job that fails alone leaves the others untouched: a statement undoes
// itself on a constraint error, a transaction (Begin) runs inside a
// SAVEPOINT that is rolled back, and any other error ends the whole batch
// with a ROLLBACK, failing every job in it.
const maxBatch = 128

type writer struct {
	commits atomic.Int64 // batches committed, for tests
	conn    *sql.Conn
	jobs    chan *job
	quit    chan struct{}
	done    chan struct{}
}

// A job is either one statement (run) or a caller's transaction (tx).
type job struct {
	ctx context.Context
	run func(ctx context.Context, c *sql.Conn) error
	tx  *writeTx
	// result receives the job's outcome once it is committed or failed.
	result chan error
	// state moves from queued to running (the writer took it) or to
	// abandoned (its caller left first); whoever moves it first decides.
	state atomic.Int32
}

const (
	queued int32 = iota
	running
	abandoned
)

// wait returns the job's outcome, or the context's error if the caller
// leaves before the writer took the job (it will then never run).
func (j *job) wait() error {
	select {
	case err := <-j.result:
		return err
	case <-j.ctx.Done():
		if j.state.CompareAndSwap(queued, abandoned) {
			return j.ctx.Err()
		}
		return <-j.result
	}
}

func newWriter(ctx context.Context, wdb *sql.DB) (*writer, error) {
	c, err := wdb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &writer{conn: c, jobs: make(chan *job, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w, nil
}

var errClosed = errors.New("sqlite: store closed")

// submit queues j and waits for its outcome. A job whose caller has gone
// by the time its turn comes is skipped, so a cancelled write never runs
// after its caller returned.
func (w *writer) submit(j *job) error {
	j.result = make(chan error, 1)
	select {
	case w.jobs <- j:
	case <-w.quit:
		return errClosed
	case <-j.ctx.Done():
		return j.ctx.Err()
	}
	return j.wait()
}

func (w *writer) close() {
	close(w.quit)
	<-w.done
	_ = w.conn.Close()
}

func (w *writer) loop() {
	defer close(w.done)
	for {
		var first *job
		select {
		case first = <-w.jobs:
		case <-w.quit:
			w.drainClosed()
			return
		}
		w.batch(first)
	}
}

func (w *writer) drainClosed() {
	for {
		select {
		case j := <-w.jobs:
			j.result <- errClosed
		default:
			return
		}
	}
}

// batch runs first and whatever else is waiting in one transaction.
func (w *writer) batch(first *job) {
	bg := context.Background()
	if _, err := w.conn.ExecContext(bg, "BEGIN IMMEDIATE"); err != nil {
		first.result <- mapErr(err)
		return
	}
	var pending []*job // succeeded, answered at COMMIT
	abort := func(err error) {
		_, _ = w.conn.ExecContext(bg, "ROLLBACK")
		for _, j := range pending {
			j.result <- err
		}
	}
	next := first
	for n := 0; next != nil; n++ {
		j := next
		next = nil
		if n+1 < maxBatch {
			select {
			case next = <-w.jobs:
			default:
			}
		}
		if !j.state.CompareAndSwap(queued, running) {
			continue // abandoned: its caller has returned
		}
		err, fatal := w.runJob(j)
		switch {
		case fatal != nil:
			j.result <- fatal
			abort(fatal)
			if next != nil {
				w.requeue(next)
			}
			return
		case err != nil:
			j.result <- err
		default:
			pending = append(pending, j)
		}
	}
	if _, err := w.conn.ExecContext(bg, "COMMIT"); err != nil {
		abort(mapErr(err))
		return
	}
	w.commits.Add(1)
	for _, j := range pending {
		j.result <- nil
	}
}

// requeue puts back a job taken for a batch that failed before its turn.
func (w *writer) requeue(j *job) {
	go func() { // the queue may be full; never block the writer on itself
		select {
		case w.jobs <- j:
		case <-w.quit:
			j.result <- errClosed
		}
	}()
}

// runJob returns the job's own error (the batch goes on) or a fatal one
// (the batch's transaction can no longer be trusted).
func (w *writer) runJob(j *job) (err, fatal error) {
	if j.tx == nil {
		// Never interrupted (see txConn): the caller waits for the result.
		err := j.run(context.Background(), w.conn)
		if err != nil && !statementScoped(err) {
			return nil, mapErr(err)
		}
		return mapErr(err), nil
	}
	if _, err := w.conn.ExecContext(context.Background(), "SAVEPOINT w"); err != nil {
		return nil, mapErr(err)
	}
	j.tx.start <- w.conn
	commit := <-j.tx.end
	if commit {
		if _, err := w.conn.ExecContext(context.Background(), "RELEASE w"); err != nil {
			return nil, mapErr(err)
		}
		return nil, nil
	}
	if _, err := w.conn.ExecContext(context.Background(), "ROLLBACK TO w"); err != nil {
		return nil, mapErr(err)
	}
	if _, err := w.conn.ExecContext(context.Background(), "RELEASE w"); err != nil {
		return nil, mapErr(err)
	}
	return errRolledBack, nil
}

var errRolledBack = errors.New("sqlite: transaction rolled back")

// statementScoped reports an error after which the transaction is
// intact. SQLite may roll back the whole transaction on FULL, IOERR, BUSY,
// NOMEM and INTERRUPT (https://sqlite.org/lang_transaction.html); on any
// other error (a constraint, a bad statement) it undoes the statement
// alone. Errors from Go around a statement (no rows, a bad scan) leave
// the transaction as it was.
func statementScoped(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_INTERRUPT,
			sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_LOCKED:
			return false
		}
	}
	return true
}

// writeTx is a caller's transaction on the writer's connection. Begin
// waits for the writer to reach it; Commit and Rollback hand the
// connection back and wait for the batch's COMMIT.
type writeTx struct {
	start chan *sql.Conn
	end   chan bool // true: commit
	c     *sql.Conn
	ended atomic.Bool
	once  sync.Once
	res   error
	wait  func() error
}

// isWrite reports whether q must run on the writer: anything that is not
// a plain SELECT. Readers are opened query_only, so a misrouted write
// fails loudly instead of contending for the lock.
func isWrite(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n(")
	return len(q) < 6 || !strings.EqualFold(q[:6], "select")
}

func (t *writeTx) finish(commit bool) error {
	t.once.Do(func() {
		t.ended.Store(true)
		t.end <- commit
		t.res = t.wait()
		if !commit && errors.Is(t.res, errRolledBack) {
			t.res = nil
		}
	})
	if commit {
		return t.res
	}
	return nil
}

func beginWrite(ctx context.Context, w *writer) (*writeTx, error) {
	t := &writeTx{start: make(chan *sql.Conn, 1), end: make(chan bool, 1)}
	j := &job{ctx: ctx, tx: t, result: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-w.quit:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case t.c = <-t.start:
	case err := <-j.result: // the batch failed to begin
		return nil, err
	case <-ctx.Done():
		if j.state.CompareAndSwap(queued, abandoned) {
			return nil, ctx.Err()
		}
		select { // the writer took it just now
		case t.c = <-t.start:
		case err := <-j.result:
			return nil, err
		}
	}
	t.wait = func() error { return <-j.result }
	return t, nil
}
