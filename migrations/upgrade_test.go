package migrations_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/migrations"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
	"github.com/latchkey/latchkey/store/sqlite"
)

// previousRelease is the schema version of the last release before goose.
const previousRelease = 14

// legacyApply builds a database the way releases before goose did: each
// file's SQL (without goose's annotations) in order up to version upto,
// recorded with its checksum in schema_migrations.
func legacyApply(t *testing.T, dialect string, db *sql.DB, upto int) {
	t.Helper()
	fsys, err := migrations.Files(dialect)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(fsys, "*.sql")
	slices.Sort(names)
	ts := "timestamptz NOT NULL DEFAULT now()"
	if dialect == "sqlite" {
		ts = "INTEGER NOT NULL DEFAULT 0"
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at ` + ts + `)`); err != nil {
		t.Fatal(err)
	}
	for i, name := range names[:upto] {
		body, _ := fs.ReadFile(fsys, name)
		s := strings.TrimSuffix(strings.TrimPrefix(string(body), "-- +goose Up\n-- +goose StatementBegin\n"), "-- +goose StatementEnd\n")
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sum := sha256.Sum256([]byte(s))
		if _, err := db.Exec(rebind(dialect, `INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)`), i+1, name, hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
	}
}

func rebind(dialect, q string) string {
	if dialect == "sqlite" {
		return q
	}
	for n := 1; strings.Contains(q, "?"); n++ {
		q = strings.Replace(q, "?", "$"+strconv.Itoa(n), 1)
	}
	return q
}

// populate writes what a deployment of the previous release holds: a
// user in a group whose policy allows self-service removal.
func populate(t *testing.T, dialect string, db *sql.DB) {
	t.Helper()
	now := any(time.Now().UTC())
	if dialect == "sqlite" {
		now = time.Now().UnixMicro()
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, username, username_norm, email, display_name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{"user_1", "Ana", "ana", "ana@example.com", "Ana", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", now, now}},
		{`INSERT INTO user_groups (id, name, description, created_at) VALUES (?, ?, ?, ?)`, []any{"group_1", "Staff", "everyone", now}},
		{`INSERT INTO group_members (group_id, user_id) VALUES (?, ?)`, []any{"group_1", "user_1"}},
		{`INSERT INTO policies (id, name, description, require_mfa, allow_self_removal, step_up_max_age_ms, reenroll, grace_period_ms, version, is_default, updated_at, setup_window_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, []any{"policy_1", "Low risk", "", true, true, 600000, "grace", 3600000, 3, false, now, 7200000}},
		{`INSERT INTO group_policies (group_id, policy_id) VALUES (?, ?)`, []any{"group_1", "policy_1"}},
	} {
		if _, err := db.Exec(rebind(dialect, q.sql), q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
}

// TestUpgradeFromPreviousRelease: a database made and filled by the
// release before goose opens with this one on both stores: goose adopts
// the versions it finds (checksums checked), applies the rest, and the
// data reads back, new settings at their defaults. A second open changes
// nothing; a database whose recorded migration was altered is refused.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	ctx := context.Background()
	backends := []struct {
		dialect string
		db      func(t *testing.T) (*sql.DB, func() (store.Store, error))
	}{
		{"sqlite", func(t *testing.T) (*sql.DB, func() (store.Store, error)) {
			path := filepath.Join(t.TempDir(), "old.db")
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			return db, func() (store.Store, error) { return sqlite.Open(ctx, sqlite.Options{Path: path}) }
		}},
		{"postgres", func(t *testing.T) (*sql.DB, func() (store.Store, error)) {
			dsn := testdb.PostgresDSN(t)
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			return db, func() (store.Store, error) { return postgres.Open(ctx, postgres.Options{DSN: dsn}) }
		}},
	}
	for _, b := range backends {
		t.Run(b.dialect, func(t *testing.T) {
			db, open := b.db(t)
			defer db.Close()
			legacyApply(t, b.dialect, db, previousRelease)
			populate(t, b.dialect, db)

			for i := range 2 {
				st, err := open()
				if err != nil {
					t.Fatalf("open %d after the upgrade: %v", i+1, err)
				}
				u, err := st.GetUserByUsername(ctx, "ana")
				if err != nil || u.ID != "user_1" || u.Email != "ana@example.com" {
					t.Fatalf("user after the upgrade: %+v %v", u, err)
				}
				gps, err := st.UserGroupPolicies(ctx, "user_1")
				if err != nil || len(gps) != 1 {
					t.Fatalf("policies after the upgrade: %+v %v", gps, err)
				}
				p := gps[0].Policy
				if p.Name != "Low risk" || !p.AllowSelfServiceRemoval || p.StepUpMaxAge != 10*time.Minute || p.GracePeriod != time.Hour ||
					p.SetupWindow != 2*time.Hour || p.Version != 3 || !slices.Equal(p.AllowedMethods, []string{"totp", "passkey"}) {
					t.Fatalf("policy after the upgrade: %+v", p)
				}
				st.Close()
			}
			var n, top int
			if err := db.QueryRow(`SELECT count(*), max(version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&n, &top); err != nil {
				t.Fatal(err)
			}
			fsys, _ := migrations.Files(b.dialect)
			all, _ := fs.Glob(fsys, "*.sql")
			if n != len(all) || top != len(all) {
				t.Fatalf("goose versions: %d rows, newest %d; want %d", n, top, len(all))
			}
		})
	}

	t.Run("altered migration", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tampered.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		legacyApply(t, "sqlite", db, previousRelease)
		if _, err := db.Exec(`UPDATE schema_migrations SET checksum = 'x' WHERE version = 3`); err != nil {
			t.Fatal(err)
		}
		if _, err := sqlite.Open(ctx, sqlite.Options{Path: path}); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("an altered migration must be refused: %v", err)
		}
	})
}
