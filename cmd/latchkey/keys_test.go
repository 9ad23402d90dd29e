package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/provider"
)

// TestRotationPublishedBeforeUse: two replicas on one PostgreSQL. After a
// rotation on one, every ID token either replica issues verifies against
// the other's JWKS, fetched at that moment — before, during and after the
// new key takes over.
func TestRotationPublishedBeforeUse(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.PostgresDSN(t)
	fast := func(c *config.Config) { c.Keys.RefreshInterval = config.Duration(time.Second) }
	a := startServer(t, openPool(t, dsn), fast)
	b := startServer(t, openPool(t, dsn), fast)
	alice := a.createUser(t, "alice", false)
	app := a.createClient(t, "app", false, true)
	type replica struct {
		srv *testServer
		rp  *rp
		br  *browser
	}
	reps := []replica{{srv: a}, {srv: b}}
	for i := range reps {
		reps[i].rp = newRP(t, reps[i].srv, app)
		reps[i].br = newBrowser(t, reps[i].srv.URL)
		authURL, res := reps[i].rp.authURL()
		reps[i].rp.exchange(login(t, reps[i].br, reps[i].rp, authURL, res, alice))
	}
	idToken := func(r replica) string {
		authURL, res := r.rp.authURL()
		tok, _ := r.rp.exchange(r.rp.callback(r.br.get(authURL), res))
		raw, _ := tok.Extra("id_token").(string)
		return raw
	}
	jwks := func(r replica) jose.JSONWebKeySet {
		resp, err := http.Get(r.srv.URL + provider.PathJWKS)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		return set
	}
	kids := map[string]bool{}
	check := func(when string) {
		for i, from := range reps {
			other := reps[1-i]
			raw := idToken(from)
			jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			kid := jws.Signatures[0].Header.KeyID
			kids[kid] = true
			set := jwks(other)
			keys := set.Key(kid)
			if len(keys) != 1 {
				t.Fatalf("%s: a token replica %d signed with %s does not verify with replica %d's JWKS", when, i, kid, 1-i)
			}
			if _, err := jws.Verify(keys[0].Key); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
	}
	check("before rotation")
	if _, err := a.app.keys.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 3500*time.Millisecond; {
		check("after rotation")
	}
	if len(kids) != 2 {
		t.Fatalf("the new key never took over within two refresh periods: kids %v", kids)
	}
}
