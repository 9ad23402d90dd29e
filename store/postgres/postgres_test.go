package postgres_test

import (
	"context"
	"io/fs"
	"testing"

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
