package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/store"
)

// TestRefreshGrace: a client whose rotation response was lost retries with
// the old refresh token. Within the grace period that retry is served once
// and the user stays signed in; a further presentation, one after the
// grace, or one after the grant was revoked is reuse and revokes the family.
func TestRefreshGrace(t *testing.T) {
	const grace = 2 * time.Second
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		srv := startServer(t, st, func(c *config.Config) { c.Tokens.RefreshTokenGracePeriod = config.Duration(grace) })
		alice := srv.createUser(t, "alice", true)
		app := srv.createClient(t, "webapp", false, true)
		r := newRP(t, srv, app)
		b := newBrowser(t, srv.URL)
		refresh := func(rt string) (*oauth2.Token, error) {
			return r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
		}
		grant := func() *oauth2.Token {
			authURL, res := r.authURL()
			res = r.callback(b.get(authURL), res)
			tok, _ := r.exchange(res)
			return tok
		}
		authURL, res := r.authURL()
		tok, _ := r.exchange(login(t, b, r, authURL, res, alice))

		// The rotation commits, but its response never reaches the client.
		lost, err := refresh(tok.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		// The client retries with the token it still has: served once.
		retry, err := refresh(tok.RefreshToken)
		if err != nil {
			t.Fatalf("retry within the grace period was refused: %v", err)
		}
		if retry.RefreshToken == lost.RefreshToken || retry.AccessToken == lost.AccessToken {
			t.Fatal("the retry must get a new pair")
		}
		if got := srv.introspect(t, app, retry.AccessToken); got["active"] != true || got["sub"] != alice.ID {
			t.Fatalf("retry's access token: %v", got)
		}
		if got := srv.introspect(t, app, lost.AccessToken); got["active"] != false {
			t.Errorf("the lost response's access token must be retired like any rotated grant's: %v", got)
		}
		next, err := refresh(retry.RefreshToken)
		if err != nil {
			t.Fatalf("the user must stay signed in after the retry: %v", err)
		}
		if evs, _ := st.ListTokenEvents(ctx, store.TokenEventFilter{Type: store.TokenRefreshedInGrace}); len(evs) != 1 {
			t.Errorf("want one refreshed_in_grace event, got %d", len(evs))
		}
		// Once only: a third presentation is reuse and revokes the family.
		if _, err := refresh(tok.RefreshToken); err == nil {
			t.Fatal("a rotated refresh token was served twice within the grace period")
		}
		if _, err := refresh(next.RefreshToken); err == nil {
			t.Fatal("reuse after the grace was spent must revoke the family")
		}
		if got := srv.introspect(t, app, next.AccessToken); got["active"] != false {
			t.Errorf("family revoked, access token still active: %v", got)
		}

		// After the grace period, a replay is reuse at once.
		old := grant()
		succ, err := refresh(old.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(grace + 200*time.Millisecond)
		if _, err := refresh(old.RefreshToken); err == nil {
			t.Fatal("replay after the grace period was served")
		}
		if _, err := refresh(succ.RefreshToken); err == nil {
			t.Fatal("replay after the grace period must revoke the family")
		}

		// A revoked grant has no grace.
		old = grant()
		succ, err = refresh(old.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {succ.RefreshToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(app.ID, app.Secret)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %v %v", err, resp.Status)
		}
		if _, err := refresh(old.RefreshToken); err == nil {
			t.Fatal("a retry within the grace period revived a revoked grant")
		}

		// Two retries racing for one grace: exactly one wins.
		old = grant()
		if _, err := refresh(old.RefreshToken); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := refresh(old.RefreshToken); err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Errorf("%d concurrent retries were served; want exactly 1", won)
		}
	})
}
