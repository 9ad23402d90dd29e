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
	sdb, err := sql.Open("sqlite", dsn(o.Path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	// WAL lets readers run beside the one writer; a small pool is plenty.
	sdb.SetMaxOpenConns(8)
	sdb.SetMaxIdleConns(8)
	sdb.SetConnMaxIdleTime(0)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", o.Path, err)
	}
	d := &db{sdb: sdb}
	if _, err := migrations.Up(ctx, "sqlite", sdb); err != nil {
		sdb.Close()
		return nil, err
	}
	return sqlstore.New(d, sqlstore.Dialect{Name: "sqlite", Retryable: retryable}), nil
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

type db struct {
	sdb *sql.DB
	st  statements
}

func (d *db) Exec(ctx context.Context, q string, a ...any) (int64, error) {
	return conn{d.sdb, &d.st}.Exec(ctx, q, a...)
}
func (d *db) QueryRow(ctx context.Context, q string, a ...any) sqlstore.Row {
	return conn{d.sdb, &d.st}.QueryRow(ctx, q, a...)
}
func (d *db) Query(ctx context.Context, q string, a ...any) (sqlstore.Rows, error) {
	return conn{d.sdb, &d.st}.Query(ctx, q, a...)
}
func (d *db) Ping(ctx context.Context) error { return d.sdb.PingContext(ctx) }
func (d *db) Close()                         { _ = d.sdb.Close() }

func (d *db) Begin(ctx context.Context) (sqlstore.TxConn, error) {
	tx, err := d.sdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, mapErr(err)
	}
	return txConn{conn: conn{tx, &d.st}, tx: tx}, nil
}

type txConn struct {
	conn
	tx *sql.Tx
}

func (t txConn) Commit(context.Context) error   { return mapErr(t.tx.Commit()) }
func (t txConn) Rollback(context.Context) error { return mapErr(t.tx.Rollback()) }

// runner applies migrations; BEGIN IMMEDIATE already excludes other writers,
// and each migration runs in its own transaction with its bookkeeping row.
