// Package migrations embeds Latchkey's SQL schema, one numbered file per
// change and one folder per backend (postgres/, sqlite/), and applies them
// with pressly/goose.
//
// Up runs pending migrations in order, each in its own transaction; on
// PostgreSQL under goose's session advisory lock so replicas starting
// together migrate once (SQLite has one writer at a time anyway). Goose
// records versions in goose_db_version. Databases made by releases before
// goose (their own schema_migrations table) are adopted first: each
// recorded version's checksum must match the file it came from, and
// goose's table starts from them.
package migrations

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Files returns dialect's migration files ("postgres" or "sqlite").
func Files(dialect string) (fs.FS, error) {
	if dialect != "postgres" && dialect != "sqlite" {
		return nil, fmt.Errorf("migrations: unknown dialect %q", dialect)
	}
	return fs.Sub(files, dialect)
}

// Each file is goose-annotated around the SQL earlier releases applied
// as is; legacyChecksum strips the annotations to compare with what they
// recorded.
const (
	gooseHead = "-- +goose Up\n-- +goose StatementBegin\n"
	gooseTail = "-- +goose StatementEnd\n"
)

// legacyChecksum is the checksum releases before goose recorded for a file.
func legacyChecksum(body []byte) string {
	s := strings.TrimSuffix(strings.TrimPrefix(string(body), gooseHead), gooseTail)
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Up brings the schema of db up to date and returns how many migrations
// ran. db is the backend's database/sql handle (PostgreSQL through pgx's
// stdlib adapter).
func Up(ctx context.Context, dialect string, db *sql.DB) (int, error) {
	fsys, err := Files(dialect)
	if err != nil {
		return 0, err
	}
	gd, opts := goose.DialectSQLite3, []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if dialect == "postgres" {
		gd = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return 0, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	if err := adopt(ctx, dialect, db, fsys, database.Dialect(gd)); err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(gd, db, fsys, opts...)
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrations: %w", err)
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrations: %w", err)
	}
	if srcs := p.ListSources(); len(srcs) > 0 && have > srcs[len(srcs)-1].Version {
		return len(res), fmt.Errorf("migrations: database has version %d, newer than this binary knows (%d)", have, srcs[len(srcs)-1].Version)
	}
	return len(res), nil
}

// adopt records in goose's table the versions an earlier release applied
// (schema_migrations), after checking each against its file. It does
// nothing once goose's table exists, or on a new database.
func adopt(ctx context.Context, dialect string, db *sql.DB, fsys fs.FS, gd database.Dialect) error {
	st, err := database.NewStore(gd, goose.DefaultTablename)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dialect == "postgres" {
		// The lock earlier releases took: a replica of that release cannot
		// migrate while this one adopts, and two of this one adopt once.
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(730194601)`); err != nil {
			return err
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(730194601)`) //nolint:errcheck // the session ends on failure anyway
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if done, err := tableExists(ctx, dialect, tx, goose.DefaultTablename); err != nil || done {
		return err
	}
	legacy, err := legacyVersions(ctx, dialect, tx)
	if err != nil || len(legacy) == 0 {
		return err
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return err
	}
	byVersion := map[int]string{}
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		body, err := fs.ReadFile(fsys, path.Clean(e.Name()))
		if err != nil {
			return err
		}
		byVersion[v] = legacyChecksum(body)
	}
	if err := st.CreateVersionTable(ctx, tx); err != nil {
		return fmt.Errorf("migrations: adopt: %w", err)
	}
	// Goose reads version 0 as "the table exists"; it inserts it itself
	// when it creates the table.
	if err := st.Insert(ctx, tx, database.InsertRequest{Version: 0}); err != nil {
		return err
	}
	for v := 1; v <= len(legacy); v++ {
		sum, ok := legacy[v]
		if !ok {
			return fmt.Errorf("migrations: adopt: version %d missing from schema_migrations", v)
		}
		if want, known := byVersion[v]; !known || want != sum {
			return fmt.Errorf("migrations: adopt: version %d was changed after it was applied (checksum mismatch)", v)
		}
		if err := st.Insert(ctx, tx, database.InsertRequest{Version: int64(v)}); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func tableExists(ctx context.Context, dialect string, tx *sql.Tx, name string) (bool, error) {
	q := `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	if dialect == "sqlite" {
		q = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	}
	var n int
	err := tx.QueryRowContext(ctx, q, name).Scan(&n)
	return n > 0, err
}

// legacyVersions reads version → checksum from schema_migrations, or
// nothing when that table does not exist.
func legacyVersions(ctx context.Context, dialect string, tx *sql.Tx) (map[int]string, error) {
	if ok, err := tableExists(ctx, dialect, tx, "schema_migrations"); err != nil || !ok {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		out[v] = sum
	}
	return out, errors.Join(rows.Err(), rows.Close())
}
