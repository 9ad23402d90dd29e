package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestEveryConnectionCommitsDurably checks the pragma on several pooled
// connections at once, since SQLite settings are per connection and a pool
// that opened one without it would quietly lose acknowledged writes.
func TestEveryConnectionCommitsDurably(t *testing.T) {
	ctx := context.Background()
	sdb, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "d.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var conns []*sql.Conn
	for i := 0; i < 4; i++ {
		c, err := sdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var sync int
		var mode string
		if err := c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if sync != 2 || mode != "wal" { // 2 is FULL
			t.Fatalf("connection %d: synchronous=%d journal_mode=%s, want 2 (FULL) and wal", i, sync, mode)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}
