// Package testdb opens real, empty stores for tests: a fresh PostgreSQL
// database per call (dropped afterwards) and a fresh SQLite file.
//
// PostgreSQL is found through LATCHKEY_TEST_POSTGRES (default: the local
// server, database test). When it cannot be reached the test is skipped,
// except under CI=true, where it fails: CI must never pass on a skipped
// backend.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
	"github.com/latchkey/latchkey/store/sqlite"
)

// DefaultDSN is the local test server.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// AdminDSN returns the DSN of the server's maintenance database.
func AdminDSN() string {
	if v := os.Getenv("LATCHKEY_TEST_POSTGRES"); v != "" {
		return v
	}
	return DefaultDSN
}

// PostgresDSN creates an empty database and returns its DSN; it is dropped
// when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true but unreachable at %s: %v", AdminDSN(), err)
		}
		t.Skipf("PostgreSQL unreachable (%v); set LATCHKEY_TEST_POSTGRES or start it", err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "latchkey_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminDSN())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(AdminDSN())
	if err != nil || u.Scheme == "" {
		t.Fatalf("LATCHKEY_TEST_POSTGRES must be a postgres:// URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Postgres opens a migrated store on a fresh database.
func Postgres(t testing.TB) store.Store {
	t.Helper()
	dsn := PostgresDSN(t)
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 16})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// PostgresBehindProxy opens a migrated store on a fresh database reached
// through a Proxy, so the test can cut, drop or lose its connections.
// query adds DSN parameters (pgx's, such as default_query_exec_mode).
func PostgresBehindProxy(t testing.TB, maxConns int32, query url.Values) (*Proxy, store.Store) {
	t.Helper()
	u, err := url.Parse(PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(t, u.Host)
	u.Host = p.Addr()
	q := u.Query()
	for k, v := range query {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: u.String(), MaxConns: maxConns})
	if err != nil {
		t.Fatalf("open postgres behind a proxy: %v", err)
	}
	t.Cleanup(s.Close)
	return p, s
}

// SQLite opens a migrated store in a fresh file.
func SQLite(t testing.TB) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "latchkey.db")})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Backends lists both stores by name, for tests that run on each.
var Backends = []struct {
	Name string
	Open func(testing.TB) store.Store
}{
	{"postgres", Postgres},
	{"sqlite", SQLite},
}

// Intruder runs SQL against a store's database behind its back, as an
// attacker with write access to the database would.
type Intruder func(t testing.TB, sql string)

// WithIntruder lists both stores with a raw SQL connection to each.
var WithIntruder = []struct {
	Name string
	Open func(testing.TB) (store.Store, Intruder)
}{
	{"postgres", func(t testing.TB) (store.Store, Intruder) {
		t.Helper()
		dsn := PostgresDSN(t)
		s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 16})
		if err != nil {
			t.Fatalf("open postgres: %v", err)
		}
		t.Cleanup(s.Close)
		return s, func(t testing.TB, q string) {
			t.Helper()
			c, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(context.Background(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}},
	{"sqlite", func(t testing.TB) (store.Store, Intruder) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "latchkey.db")
		s, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(s.Close)
		return s, func(t testing.TB, q string) {
			t.Helper()
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}},
}
