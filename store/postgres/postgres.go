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
	"syscall"

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
	return sqlstore.New(db{pool}, dialect), nil
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

type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), mapErr(err)
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return row{c.q.QueryRow(ctx, sql, args...)}
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	r, err := c.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	return rows{r}, nil
}

type row struct{ r pgx.Row }

func (r row) Scan(dest ...any) error { return mapErr(r.r.Scan(dest...)) }

type rows struct{ pgx.Rows }

func (r rows) Scan(dest ...any) error { return mapErr(r.Rows.Scan(dest...)) }
func (r rows) Err() error             { return mapErr(r.Rows.Err()) }

type db struct{ pool *pgxpool.Pool }

func (d db) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	return conn{d.pool}.Exec(ctx, sql, args...)
}
func (d db) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return conn{d.pool}.QueryRow(ctx, sql, args...)
}
func (d db) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	return conn{d.pool}.Query(ctx, sql, args...)
}
func (d db) Ping(ctx context.Context) error { return mapErr(d.pool.Ping(ctx)) }
func (d db) Close()                         { d.pool.Close() }

func (d db) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	return txConn{conn: conn{tx}, tx: tx}, nil
}

type txConn struct {
	conn
	tx pgx.Tx
}

func (t txConn) Commit(ctx context.Context) error { return mapErr(t.tx.Commit(ctx)) }
func (t txConn) Rollback(ctx context.Context) error {
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return sqlstore.ErrTxDone
	}
	return err
}
