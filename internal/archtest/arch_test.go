// Package archtest keeps the dependency rules of STYLE.md true: imports
// point one way, only the provider touches fosite, and the account portal
// never imports the provider.
package archtest

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/latchkey/latchkey/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestDependencyRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	// forbidden[a] lists what package a (and everything under it) must
	// not depend on, directly or indirectly.
	forbidden := map[string][]string{
		"store":       {mod + "provider", mod + "selfservice", mod + "authn", mod + "policy", mod + "config", "github.com/ory/fosite"},
		"policy":      {mod + "store", mod + "provider", mod + "selfservice", "net/http", "github.com/ory/fosite"},
		"authn":       {mod + "provider", mod + "selfservice", mod + "admin", mod + "config", "github.com/ory/fosite", "github.com/go-chi/chi/v5"},
		"provider":    {mod + "selfservice", mod + "admin", mod + "config"},
		"selfservice": {mod + "provider", mod + "admin", mod + "config", "github.com/ory/fosite"},
		"admin":       {mod + "provider", mod + "selfservice", mod + "config", "github.com/ory/fosite"},
		"audit":       {mod + "provider", mod + "selfservice", mod + "admin", mod + "authn", mod + "config", "net/http"},
		"internal":    {mod + "provider", mod + "selfservice", mod + "config", "github.com/ory/fosite"},
		"migrations":  {mod + "store", mod + "provider"},
		"notify":      {mod + "provider", mod + "selfservice", mod + "admin", mod + "authn", mod + "config", "github.com/ory/fosite"},
		"config":      {mod + "store", mod + "provider", mod + "authn"},
		"mfa":         {mod + "provider", mod + "selfservice", mod + "admin", mod + "config", "github.com/ory/fosite", "github.com/go-chi/chi/v5"},
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		if strings.HasPrefix(rel, "internal/archtest") || strings.HasPrefix(rel, "internal/testdb") {
			continue
		}
		for prefix, bans := range forbidden {
			if rel != prefix && !strings.HasPrefix(rel, prefix+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, ban := range bans {
					if d == ban || strings.HasPrefix(d, ban+"/") {
						t.Errorf("%s must not depend on %s", p.ImportPath, d)
					}
				}
			}
		}
		// The 2SV lifecycle is HTTP-free: its callers speak HTTP.
		if rel == "mfa" && slices.Contains(p.Imports, "net/http") {
			t.Errorf("%s imports net/http; it must stay HTTP-free", p.ImportPath)
		}
		// Only the provider and the composition root may use fosite.
		if !strings.HasPrefix(rel, "provider") && !strings.HasPrefix(rel, "cmd/") {
			for _, d := range p.Deps {
				if strings.HasPrefix(d, "github.com/ory/fosite") {
					t.Errorf("%s imports fosite; only provider may", p.ImportPath)
				}
			}
		}
	}
}
