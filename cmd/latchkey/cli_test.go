package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/sqlite"
	"github.com/spf13/cobra"
)

// TestCLIBootstrap: a deployment can be set up from the command line
// before any admin can sign in.
func TestCLIBootstrap(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "cli.db")
	t.Setenv("LATCHKEY_DATABASE_PATH", db)
	t.Setenv("LATCHKEY_SECRETS_FILE", filepath.Join(dir, "secrets"))
	cli := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("latchkey %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	cli("", "migrate")
	cli("a-good-password\n", "users", "create", "--username", "yuki", "--email", "yuki@example.com")
	cli("", "groups", "create", "Staff")
	cli("", "users", "add-to-group", "yuki", "Staff")
	cli("", "policies", "create", "--allow-self-removal", "--step-up-max-age", "2m", "Low risk")
	cli("", "policies", "assign", "Low risk", "Staff")
	cli("", "admins", "add", "yuki")
	if out := cli("", "policies", "list"); !strings.Contains(out, "Low risk") || !strings.Contains(out, "Staff") || !strings.Contains(out, "2m0s") {
		t.Fatalf("policies list:\n%s", out)
	}
	out := cli("", "clients", "create", "--name", "Wiki", "--redirect-uri", "https://wiki.example.com/cb")
	secret := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "client_secret:", 2)[1], "\n", 2)[0])
	if len(secret) != 64 || strings.Contains(cli("", "clients", "list"), secret) {
		t.Fatalf("secret printed once: %q", out)
	}
	var errOut bytes.Buffer
	if err := run(context.Background(), []string{"clients", "create", "--name", "Bad", "--redirect-uri", "https://wiki.example.com/cb#fragment"}, nil, &bytes.Buffer{}, &errOut); err == nil {
		t.Fatal("a redirect URI with a fragment must be refused")
	}
	if err := run(context.Background(), []string{"users", "create", "--username", "zed"}, strings.NewReader("short\n"), &bytes.Buffer{}, &errOut); err == nil {
		t.Fatal("a short password must be refused")
	}

	if out := cli("", "audit", "verify"); !strings.Contains(out, "ok: 7 events, chain intact") {
		t.Fatalf("audit verify: %q", out)
	}
	if out := cli("", "audit", "export", "--type", "policy."); strings.Count(out, "\n") != 2 || !strings.Contains(out, `"Type":"policy.assigned"`) {
		t.Fatalf("audit export: %q", out)
	}

	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	u, _ := st.GetUserByUsername(ctx, "yuki")
	if ok, _ := st.IsAdmin(ctx, u.ID); !ok {
		t.Fatal("admins add did not grant admin")
	}
	gps, _ := st.UserGroupPolicies(ctx, u.ID)
	if len(gps) != 1 || !gps[0].Policy.AllowSelfServiceRemoval {
		t.Fatalf("policy assignment: %+v", gps)
	}
	evs, _ := st.ListAuditEvents(ctx, storeFilter("policy."))
	if len(evs) != 2 || evs[0].ActorType != "system" {
		t.Fatalf("CLI changes are audited: %+v", evs)
	}
}

func storeFilter(prefix string) store.AuditFilter { return store.AuditFilter{TypePrefix: prefix} }

// cliHarness points the CLI at a fresh SQLite file and returns a runner
// (every password prompt reads "a-good-password").
func cliHarness(t *testing.T) (dir, db string, cli func(args ...string) (string, error)) {
	dir = t.TempDir()
	db = filepath.Join(dir, "cli.db")
	t.Setenv("LATCHKEY_DATABASE_PATH", db)
	t.Setenv("LATCHKEY_SECRETS_FILE", filepath.Join(dir, "secrets"))
	return dir, db, func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, strings.NewReader("a-good-password\n"), &out, &errOut)
		return out.String(), err
	}
}

// TestCLIAdmins: global and group admins are granted and taken away from
// the command line (audited), and the admin scope is refused to a
// third-party client there too.
func TestCLIAdmins(t *testing.T) {
	_, db, cli := cliHarness(t)
	for _, args := range [][]string{{"migrate"}, {"users", "create", "--username", "gus"}, {"users", "create", "--username", "ida"},
		{"groups", "create", "Ops"}, {"groups", "admins", "add", "Ops", "gus"}, {"admins", "add", "ida"}, {"admins", "remove", "ida"}} {
		if out, err := cli(args...); err != nil {
			t.Fatalf("latchkey %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := cli("admins", "remove", "ida"); err == nil {
		t.Fatal("removing a non-admin must fail")
	}
	if _, err := cli("groups", "admins", "promote", "Ops", "gus"); err == nil {
		t.Fatal("unknown sub-command accepted")
	}
	if _, err := cli("clients", "create", "--name", "Robot", "--grant-type", "client_credentials", "--scope", "admin"); err == nil {
		t.Fatal("a third-party client with the admin scope must be refused")
	}
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	gus, _ := st.GetUserByUsername(ctx, "gus")
	ida, _ := st.GetUserByUsername(ctx, "ida")
	if gs, _ := st.AdministeredGroups(ctx, gus.ID); len(gs) != 1 || gs[0].Name != "Ops" {
		t.Fatalf("groups admins add: %+v", gs)
	}
	if ok, _ := st.IsAdmin(ctx, ida.ID); ok {
		t.Fatal("admins remove did not take the role away")
	}
	for _, typ := range []string{"group.admin.added", "admin.added", "admin.removed"} {
		if evs, _ := st.ListAuditEvents(ctx, storeFilter(typ)); len(evs) != 1 {
			t.Errorf("%s audited %d times", typ, len(evs))
		}
	}
	if _, err := cli("groups", "admins", "remove", "Ops", "gus"); err != nil {
		t.Fatal(err)
	}
	if gs, _ := st.AdministeredGroups(ctx, gus.ID); len(gs) != 0 {
		t.Fatalf("groups admins remove: %+v", gs)
	}
}

// TestCLIAuditAnchor: an operator keeps `audit checkpoint` outside the
// database; `audit verify -anchor` proves the log still extends it, and
// names the position when the newest events were deleted.
func TestCLIAuditAnchor(t *testing.T) {
	dir, db, cli := cliHarness(t)
	for _, args := range [][]string{{"migrate"}, {"users", "create", "--username", "ana"}, {"groups", "create", "Ops"}} {
		if out, err := cli(args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	anchor, err := cli("audit", "checkpoint")
	if err != nil || !strings.Contains(anchor, "\n2\n") || !strings.Contains(anchor, "— ") {
		t.Fatalf("checkpoint: %v %q", err, anchor)
	}
	file := filepath.Join(dir, "anchor.txt")
	if err := os.WriteFile(file, []byte(anchor), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"groups", "create", "Finance"}, {"users", "create", "--username", "bo"}, {"audit", "checkpoint"}} {
		if out, err := cli(args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	if out, err := cli("audit", "verify", "--anchor", file); err != nil || !strings.Contains(out, "4 sealed") || !strings.Contains(out, "extends the anchor") {
		t.Fatalf("verify: %v %q", err, out)
	}
	if key, err := cli("audit", "key"); err != nil || !strings.HasPrefix(key, "127.0.0.1:8080/audit+") {
		t.Fatalf("key: %v %q", err, key)
	}
	// An intruder deletes the newest events and checkpoints.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{"DELETE FROM audit_events WHERE leaf_index >= 1", "DELETE FROM audit_heads WHERE size > 1", "DELETE FROM audit_tree_nodes WHERE idx >= 1 AND level = 0"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cli("audit", "verify", "--anchor", file)
	if err == nil || !strings.Contains(out, "BROKEN at tree position 1") || !strings.Contains(out, "truncated") {
		t.Fatalf("a truncated log must fail against the anchor: %v %q", err, out)
	}
}

// TestCLIHelpDoesNothing: -h and --help on every command of the tree
// print help and act on nothing. Opening the store creates its file, so
// the file not existing afterwards proves no command got as far as the
// database; a command that started (serve) would not return.
func TestCLIHelpDoesNothing(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "help.db")
	t.Setenv("LATCHKEY_DATABASE_PATH", db)
	t.Setenv("LATCHKEY_SECRETS_FILE", filepath.Join(dir, "secrets"))
	var lines [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, h := range []string{"-h", "--help"} {
			lines = append(lines, append(slices.Clone(path), h))
		}
		lines = append(lines, append([]string{"help"}, path...))
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	root := newRoot(&env{stdin: strings.NewReader(""), out: io.Discard, errOut: io.Discard})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walk(root, nil)
	if len(lines) < 3*30 {
		t.Fatalf("the tree has too few commands: %d lines", len(lines))
	}
	// Flags anywhere, even ones that would act, still only print help.
	lines = append(lines, []string{"keys", "rotate", "--output", "json", "-h"}, []string{"users", "remove-2sv", "bob", "--reason", "x", "--help"})
	for _, args := range lines {
		done := make(chan error, 1)
		var out, errOut bytes.Buffer
		go func() { done <- run(context.Background(), args, strings.NewReader(""), &out, &errOut) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("latchkey %s: %v", strings.Join(args, " "), err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("latchkey %s is still running: -h started the command", strings.Join(args, " "))
		}
		if !strings.Contains(out.String()+errOut.String(), "Usage:") {
			t.Errorf("latchkey %s printed no usage:\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
		}
		if _, err := os.Stat(db); err == nil {
			t.Fatalf("latchkey %s opened the store", strings.Join(args, " "))
		}
	}
}

// TestCLIVersionCompletionConfigCheck: version, shell completion and
// config check work without a store; config check lists every problem of
// a bad file and exits non-zero; --output json lists are JSON.
func TestCLIVersionCompletionConfigCheck(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LATCHKEY_DATABASE_PATH", filepath.Join(dir, "v.db"))
	t.Setenv("LATCHKEY_SECRETS_FILE", filepath.Join(dir, "secrets"))
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := cli("version"); err != nil || !strings.HasPrefix(out, "latchkey ") || !strings.Contains(out, "commit ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	if out, err := cli("completion", "bash"); err != nil || !strings.Contains(out, "__start_latchkey") {
		t.Fatalf("bash completion: %v %.200q", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "v.db")); err == nil {
		t.Fatal("version or completion opened the store")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: production\nissuer: ftp://x\ndatabase:\n  driver: oracle\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli("config", "check", bad)
	if err == nil || !strings.Contains(out, "issuer") || !strings.Contains(out, "driver") || strings.Count(out, "\n  - ") < 2 {
		t.Fatalf("config check of a bad file: %v\n%s", err, out)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("mode: dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("config", "check", good); err != nil || !strings.HasPrefix(out, "ok: dev mode") {
		t.Fatalf("config check of a good file: %v %q", err, out)
	}
	if _, err := cli("migrate"); err != nil {
		t.Fatal(err)
	}
	// Flags after the positional argument, as the README shows them.
	if out, err := cli("groups", "create", "Ops", "--description", "Operations"); err != nil || !strings.Contains(out, "group Ops created") {
		t.Fatalf("flags after arguments: %v %q", err, out)
	}
	out, err = cli("groups", "list", "--output", "json")
	var rows []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0]["name"] != "Ops" || rows[0]["description"] != "Operations" {
		t.Fatalf("groups list --output json: %v %q", err, out)
	}
	if _, err := cli("groups", "list", "--output", "yaml"); err == nil {
		t.Fatal("an unknown --output must be refused")
	}
	// Passwords never come from a flag: from standard input or a file.
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("a-long-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("users", "create", "--username", "uma", "--password-file", pw); err != nil || !strings.Contains(out, "user uma created") {
		t.Fatalf("password from a file: %v %q", err, out)
	}
	if _, err := cli("users", "create", "--username", "ulf", "--password", "a-long-password"); err == nil {
		t.Fatal("a password flag must not exist")
	}
}
