// Package sqlstore implements the store contract once, in SQL that both
// PostgreSQL and SQLite accept, over a small connection interface that each
// backend adapts to its own driver (pgx natively; database/sql for SQLite).
//
// Backends own the differences that SQL text cannot hide: placeholders,
// time encoding, error mapping, locking and retries. This package sees only
// store sentinels. It must not import a driver.
package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchkey/latchkey/store"
)

// Row is one result row.
type Row interface{ Scan(dest ...any) error }

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Conn runs statements. Implementations return store.ErrNotFound from
// Row.Scan when there is no row and store.ErrAlreadyExists on a unique
// violation.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
}

// TxConn is an open transaction.
type TxConn interface {
	Conn
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Stmt is one statement with its arguments.
type Stmt struct {
	SQL  string
	Args []any
}

// ExecAller is implemented by a backend that can run several statements
// atomically without a client-side transaction (the embedded store runs
// them on its writer in one step, rather than lending its connection out).
type ExecAller interface {
	ExecAll(ctx context.Context, stmts ...Stmt) error
}

// DB is a backend's connection pool.
type DB interface {
	Conn
	Begin(ctx context.Context) (TxConn, error)
	Ping(ctx context.Context) error
	Close()
}

// Dialect holds what differs between backends beyond the driver.
type Dialect struct {
	Name string
	// ForUpdate is appended to reads that precede a write in a transaction.
	ForUpdate string
	// LockSQL takes a transaction-scoped named lock; empty when every write
	// transaction is already serialized (SQLite's BEGIN IMMEDIATE).
	LockSQL string
	// DataModifyingCTE: the backend runs INSERTs inside WITH, so two
	// inserts can be one atomic statement.
	DataModifyingCTE bool
	// Retryable reports a serialization failure or deadlock worth retrying.
	Retryable func(error) bool
}

// ErrTxDone is returned when a transaction is used after it ended.
var ErrTxDone = errors.New("sqlstore: transaction already finished")

// Store implements store.Store over a DB.
type Store struct {
	queries
	db DB
}

var _ store.Store = (*Store)(nil)

// New wraps db.
func New(db DB, d Dialect) *Store {
	q := queries{c: textGuard{db}, d: d}
	if d.DataModifyingCTE {
		q.tokens = &tokenBatcher{c: db}
	}
	return &Store{queries: q, db: db}
}

// textGuard refuses text arguments PostgreSQL cannot store (NUL bytes,
// invalid UTF-8) before they reach either backend, so both stores answer
// store.ErrInvalidInput alike instead of one failing and one storing them.
type textGuard struct{ c Conn }

func badText(args []any) bool {
	for _, a := range args {
		if s, ok := a.(string); ok && (strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s)) {
			return true
		}
	}
	return false
}

func (g textGuard) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	if badText(args) {
		return 0, store.ErrInvalidInput
	}
	return g.c.Exec(ctx, sql, args...)
}

// execAll runs stmts atomically when the backend can (done false: it
// cannot, and nothing ran).
func (g textGuard) execAll(ctx context.Context, stmts ...Stmt) (done bool, err error) {
	a, ok := g.c.(ExecAller)
	if !ok {
		return false, nil
	}
	for _, s := range stmts {
		if badText(s.Args) {
			return true, store.ErrInvalidInput
		}
	}
	return true, a.ExecAll(ctx, stmts...)
}

func (g textGuard) QueryRow(ctx context.Context, sql string, args ...any) Row {
	if badText(args) {
		return errRow{store.ErrInvalidInput}
	}
	return g.c.QueryRow(ctx, sql, args...)
}

func (g textGuard) Query(ctx context.Context, sql string, args ...any) (Rows, error) {
	if badText(args) {
		return nil, store.ErrInvalidInput
	}
	return g.c.Query(ctx, sql, args...)
}

// Begin starts a transaction on the guarded pool (the token writes that
// open their own transaction go through it).
func (g textGuard) Begin(ctx context.Context) (TxConn, error) {
	b, ok := g.c.(interface {
		Begin(context.Context) (TxConn, error)
	})
	if !ok {
		return nil, errors.New("sqlstore: nested transaction")
	}
	return b.Begin(ctx)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Backend names the backend.
func (s *Store) Backend() string { return s.d.Name }

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() { s.db.Close() }

// Begin starts a transaction.
func (s *Store) Begin(ctx context.Context) (store.Tx, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &txQueries{queries: queries{c: textGuard{tx}, d: s.d, inTx: true}, tx: tx}, nil
}

const maxAttempts = 5

// InTx runs fn in a transaction, retrying serialization failures, and once
// a transaction the database lost before its COMMIT was sent (a failover:
// the backend has dropped the dead connections, so the second run gets a
// new one, on the new primary if there is one yet).
func (s *Store) InTx(ctx context.Context, fn func(store.Queries) error) error {
	var err error
	lost := false
	for attempt := 0; attempt < maxAttempts; attempt++ {
		err = s.inTxOnce(ctx, fn)
		switch {
		case err == nil || ctx.Err() != nil:
			return err
		case store.Retryable(err) && !lost:
			lost = true
		case s.d.Retryable != nil && s.d.Retryable(err):
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
		default:
			return err
		}
	}
	return err
}

func (s *Store) inTxOnce(ctx context.Context, fn func(store.Queries) error) (err error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
	}()
	if err := fn(queries{c: textGuard{tx}, d: s.d, inTx: true}); err != nil {
		if rbErr := tx.Rollback(context.WithoutCancel(ctx)); rbErr != nil && !errors.Is(rbErr, ErrTxDone) {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

type txQueries struct {
	queries
	tx TxConn
}

func (t *txQueries) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t *txQueries) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// queries implements store.Queries on one Conn (pool or transaction).
type queries struct {
	c    Conn
	d    Dialect
	inTx bool
	// tokens groups concurrent token inserts (nil: one at a time).
	tokens *tokenBatcher
}

func (q queries) Lock(ctx context.Context, name string) error {
	if !q.inTx || q.d.LockSQL == "" {
		return nil
	}
	_, err := q.c.Exec(ctx, q.d.LockSQL, name)
	return err
}

// list encodes a string slice as JSON text; both backends store it as text.
func list(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// listDest decodes a JSON text column into a string slice.
type listDest struct{ p *[]string }

func (l listDest) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	case nil:
		*l.p = nil
		return nil
	default:
		return fmt.Errorf("sqlstore: list column has type %T", src)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("sqlstore: list column: %w", err)
	}
	if len(out) == 0 {
		out = nil
	}
	*l.p = out
	return nil
}

// nullTime maps the zero time to SQL NULL and back.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// fromNull turns a scanned nullable time into the zero time or UTC.
func fromNull(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}

func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}
