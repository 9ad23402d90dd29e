// Package migrations embeds Latchkey's SQL schema, one numbered file per
// change and one folder per backend (postgres/, sqlite/), and applies them.
//
// Apply runs pending migrations in order, each in its own transaction,
// under a backend lock so replicas starting together migrate once, and
// refuses to start when an applied migration's checksum no longer matches
// the file (a changed migration is a bug, not something to re-run).
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Migration is one schema change.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

// Load returns the migrations for dialect ("postgres" or "sqlite") in order.
func Load(dialect string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations: unknown dialect %q: %w", dialect, err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".up.sql") {
			return nil, fmt.Errorf("migrations: bad file name %s/%s", dialect, name)
		}
		body, err := files.ReadFile(path.Join(dialect, name))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: v, Name: name, SQL: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("migrations: %s: versions must be 1..n without gaps", dialect)
		}
	}
	return out, nil
}

// Runner is what a backend provides to apply migrations.
type Runner interface {
	// Locked runs fn while holding a lock that excludes other migrators.
	Locked(ctx context.Context, fn func(ctx context.Context) error) error
	// Applied returns version → checksum of applied migrations, creating
	// the bookkeeping table when needed.
	Applied(ctx context.Context) (map[int]string, error)
	// Apply runs one migration and records it, in one transaction.
	Apply(ctx context.Context, m Migration) error
}

// Apply brings the schema up to date and returns how many migrations ran.
func Apply(ctx context.Context, dialect string, r Runner) (int, error) {
	all, err := Load(dialect)
	if err != nil {
		return 0, err
	}
	ran := 0
	err = r.Locked(ctx, func(ctx context.Context) error {
		applied, err := r.Applied(ctx)
		if err != nil {
			return fmt.Errorf("migrations: read applied: %w", err)
		}
		for _, m := range all {
			sum, done := applied[m.Version]
			if done {
				if sum != m.Checksum {
					return fmt.Errorf("migrations: %s was changed after it was applied (checksum mismatch)", m.Name)
				}
				continue
			}
			if err := r.Apply(ctx, m); err != nil {
				return fmt.Errorf("migrations: apply %s: %w", m.Name, err)
			}
			ran++
		}
		for v := range applied {
			if v > len(all) {
				return fmt.Errorf("migrations: database has version %d, newer than this binary knows", v)
			}
		}
		return nil
	})
	return ran, err
}
