// Package postgres is the PostgreSQL backend of the store, on pgxpool and
// pgx's native API. It adapts pgx to sqlstore's connection interface, maps
// PostgreSQL errors to store sentinels, and applies the embedded migrations
// under an advisory lock.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/latchkey/latchkey/migrations"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/sqlstore"
)

// Options configures the pool.
type Options struct {
	DSN      string
	MaxConns int32
}

// Open connects, migrates, and returns the store.
func Open(ctx context.Context, o Options) (*sqlstore.Store, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	d := &db{}
	cfg.ShouldPing = d.shouldPing
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping: %w", err)
	}
	sdb := stdlib.OpenDBFromPool(pool) // goose speaks database/sql; closing it leaves the pool open
	_, err = migrations.Up(ctx, "postgres", sdb)
	sdb.Close()
	if err != nil {
		pool.Close()
		return nil, err
	}
	d.pool = pool
	return sqlstore.New(d, dialect), nil
}

var dialect = sqlstore.Dialect{
	Name:      "postgres",
	ForUpdate: " FOR UPDATE",
	// Transaction-scoped advisory lock: released at commit or rollback, so a
	// crashed request never leaves it held.
	LockSQL:          `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
	Retryable:        retryable,
	DataModifyingCTE: true,
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %s", store.ErrAlreadyExists, pe.ConstraintName)
	}
	// A backstop behind the text guard: character not in repertoire
	// (NUL) and invalid byte sequences are the caller's input, not a bug.
	if errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05") {
		return fmt.Errorf("%w: %s", store.ErrInvalidInput, pe.Code)
	}
	return err
}

// unavailable reports errors that mean the server cannot be reached or is
// going away (connection refused or lost, shutting down, starting up, no
// primary), as opposed to errors in the statement.
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 57P01-03: admin shutdown, crash
		// shutdown, cannot connect now; 25006: read-only transaction (a
		// standby after failover).
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "25006"
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// conn runs statements on a transaction; nothing is retried there (the
// transaction died with its connection), but a lost server still drops
// the pool's connections.
type conn struct {
	q querier
	d *db
}

func (c conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), c.d.failed(ctx, err)
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return row{c.q.QueryRow(ctx, sql, args...), ctx, c.d}
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	r, err := c.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, c.d.failed(ctx, err)
	}
	return &rows{Rows: r, ctx: ctx, d: c.d}, nil
}

type row struct {
	r   pgx.Row
	ctx context.Context
	d   *db
}

func (r row) Scan(dest ...any) error { return r.d.failed(r.ctx, r.r.Scan(dest...)) }

type rows struct {
	pgx.Rows
	ctx context.Context
	d   *db
	// peeked: the first Next already ran (its result is first), so a
	// read that fails before its first row can be retried.
	peeked, first bool
}

func (r *rows) Next() bool {
	if r.peeked {
		r.peeked = false
		return r.first
	}
	return r.Rows.Next()
}

func (r *rows) Scan(dest ...any) error { return r.d.failed(r.ctx, r.Rows.Scan(dest...)) }
func (r *rows) Err() error             { return r.d.failed(r.ctx, r.Rows.Err()) }

// db is the pool. After a failover its connections lead to a server that
// is gone or no longer primary (a demoted primary that kept running would
// answer every write with "read-only transaction"): the first statement
// that finds out drops them all, so the next ones connect afresh through
// the multi-host DSN, whose target_session_attrs=read-write finds the new
// primary. Work that provably did not happen is then tried once more on a
// new connection: a read, a statement pgx never sent, a BEGIN.
type db struct {
	pool      *pgxpool.Pool
	lastReset atomic.Int64 // unix nanoseconds
	suspect   atomic.Int64 // until then (unix nanoseconds), connections are pinged before use
}

// resetEvery bounds how often the pool is dropped: each reset also closes
// connections others may just have opened to the new primary. Between
// resets, and for suspectFor after the last lost server, every pooled
// connection is pinged before use, so a stale one is replaced before a
// statement runs on it.
const (
	resetEvery = time.Second
	suspectFor = 5 * time.Second
)

// failed maps err to the store's sentinels and drops the pool's
// connections when err says their server went away. The request behind
// ctx hears of an ErrUnavailable (store.NoteUnavailable).
func (d *db) failed(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	d.lost(ctx, err)
	mapped := mapErr(err)
	if errors.Is(mapped, store.ErrUnavailable) {
		store.NoteUnavailable(ctx)
	}
	return mapped
}

// lost drops the pool's connections if err says their server went away.
func (d *db) lost(ctx context.Context, err error) {
	if !lostServer(ctx, err) {
		return
	}
	now := time.Now().UnixNano()
	d.suspect.Store(now + int64(suspectFor))
	if last := d.lastReset.Load(); now-last >= int64(resetEvery) && d.lastReset.CompareAndSwap(last, now) {
		d.pool.Reset()
	}
}

// shouldPing is pgxpool's check before handing out a connection: pgx's
// default (idle over a second), and every connection while the server is
// suspect.
func (d *db) shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return p.IdleDuration > time.Second || time.Now().UnixNano() < d.suspect.Load()
}

// lostServer: err came from a connection whose server crashed, shut down,
// or is a standby now — not from the statement, not from the caller
// giving up, and not from a connection attempt (there is nothing pooled
// to drop then).
func lostServer(ctx context.Context, err error) bool {
	var ce *pgconn.ConnectError
	return ctx.Err() == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.As(err, &ce) && unavailable(err)
}

// retry runs op once more when its first error says the server went away
// (failed has dropped the pool by then, so op gets a new connection) and
// safe says running it again cannot do anything twice. A write that
// reached the server before it went may have committed on its own
// (autocommit): its error carries store.ErrCommitUnknown.
func (d *db) retry(ctx context.Context, safe func(error) bool, op func() error) error {
	err := op()
	if err != nil && lostServer(ctx, err) && safe(err) {
		d.lost(ctx, err)
		err = op()
	}
	mapped := d.failed(ctx, err)
	if err != nil && !safe(err) && errors.Is(mapped, store.ErrUnavailable) {
		return fmt.Errorf("%w: %w", store.ErrCommitUnknown, mapped)
	}
	return mapped
}

// safeFor says when sql may run again after a lost connection: a read
// (it changes nothing) always, anything else only if it was never sent.
func safeFor(sql string) func(error) bool {
	s := strings.TrimLeft(sql, " \t\r\n")
	if len(s) >= 6 && strings.EqualFold(s[:6], "SELECT") {
		return always
	}
	return unsent
}

// unsent: the statement never reached the server. pgx's SafeToRetry,
// except its "conn closed": pgx also answers that after sending a
// statement whose answer was lost (a simple-protocol read that failed
// closes the connection, and the next read reports it closed;
// jackc/pgx#2428 is the same flaw for "conn busy").
// A connection that could not be made sent nothing either.
func unsent(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || (pgconn.SafeToRetry(err) && !errors.Is(err, pgconn.ErrConnClosed))
}

func always(error) bool { return true }

func (d *db) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	var n int64
	err := d.retry(ctx, safeFor(sql), func() error {
		tag, err := d.pool.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

func (d *db) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return poolRow{d: d, ctx: ctx, sql: sql, args: args}
}

// poolRow defers the query to Scan, where pgx reports its errors, so a
// lost connection can be retried there.
type poolRow struct {
	d    *db
	ctx  context.Context
	sql  string
	args []any
}

func (r poolRow) Scan(dest ...any) error {
	return r.d.retry(r.ctx, safeFor(r.sql), func() error { return r.d.pool.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...) })
}

func (d *db) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	var r *rows
	err := d.retry(ctx, safeFor(sql), func() error {
		pr, err := d.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		// pgx reports a lost connection from the first Next, not from
		// Query: read up to the first row here, where it can be retried.
		r = &rows{Rows: pr, ctx: ctx, d: d, peeked: true, first: pr.Next()}
		if !r.first {
			if err := pr.Err(); err != nil {
				pr.Close()
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (d *db) Ping(ctx context.Context) error { return d.failed(ctx, d.pool.Ping(ctx)) }
func (d *db) Close()                         { d.pool.Close() }

// Begin is retried once: a BEGIN that failed left nothing behind.
func (d *db) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	var tx pgx.Tx
	err := d.retry(ctx, always, func() error {
		var err error
		tx, err = d.pool.Begin(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return txConn{conn: conn{tx, d}, tx: tx}, nil
}

type txConn struct {
	conn
	tx pgx.Tx
}

// Commit marks a lost connection with store.ErrCommitUnknown: the server
// may have committed before it went. (Commit runs only after every
// statement of the transaction succeeded, so the connection was alive
// when COMMIT was sent.)
func (t txConn) Commit(ctx context.Context) error {
	err := t.tx.Commit(ctx)
	if err == nil {
		return nil
	}
	mapped := t.d.failed(ctx, err)
	if errors.Is(mapped, store.ErrUnavailable) {
		return fmt.Errorf("%w: %w", store.ErrCommitUnknown, mapped)
	}
	return mapped
}

func (t txConn) Rollback(ctx context.Context) error {
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return sqlstore.ErrTxDone
	}
	// A rollback on a lost connection is ErrUnavailable: the server
	// rolled the transaction back when the connection went.
	return t.d.failed(ctx, err)
}
