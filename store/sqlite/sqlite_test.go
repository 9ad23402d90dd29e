package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/sqlite"
	"github.com/latchkey/latchkey/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return testdb.SQLite(t) })
}

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	for i := 0; i < 2; i++ {
		s, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
}
