// Package storetest is the store conformance suite. Every backend runs it
// through Run, so PostgreSQL and the embedded store are held to one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Run runs the suite against fresh stores made by open.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"Groups", testGroups},
		{"Clients", testClients},
		{"TOTPCounterOneWinner", testTOTPCounter},
		{"RecoveryCodes", testRecoveryCodes},
		{"SessionsAndFlows", testSessionsAndFlows},
		{"Keys", testKeys},
		{"TokensAndEvents", testTokens},
		{"ConcurrentTokenWrites", testConcurrentTokenWrites},
		{"DeactivateOneWinner", testDeactivateRace},
		{"RefreshGraceOnce", testRefreshGrace},
		{"Attempts", testAttempts},
		{"TxCommitRollback", testTx},
		{"RemovalRollsBackTogether", testRemovalAtomic},
		{"PoliciesAndAssignments", testPolicies},
		{"AccountState", testAccountState},
		{"AuditEvents", testAuditEvents},
		{"AdminQueries", testAdminQueries},
		{"StepUpsSpentOnce", testStepUps},
		{"PendingActions", testPendingActions},
		{"AuditTreePositions", testAuditPositions},
		{"BadTextRefusedAlike", testBadText},
		{"WebAuthnCredentials", testWebAuthn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// base is a fixed instant with sub-second precision dropped to microseconds,
// the finest both backends keep.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func mustUser(t *testing.T, s store.Store, name string) store.User {
	t.Helper()
	u := store.User{ID: "u-" + name, Username: name, Email: name + "@example.com", DisplayName: "User " + name,
		PasswordHash: "$argon2id$dummy", CreatedAt: base, UpdatedAt: base}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "Alice")
	got, err := s.GetUserByUsername(ctx, "aLiCe")
	if err != nil {
		t.Fatalf("lookup is case-insensitive: %v", err)
	}
	if got != u {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, u)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("times must come back in UTC, got %v", got.CreatedAt.Location())
	}
	dup := u
	dup.ID = "other"
	dup.Username = "ALICE"
	if err := s.CreateUser(ctx, dup); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate username (other case): want ErrAlreadyExists, got %v", err)
	}
	if _, err := s.GetUser(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: want ErrNotFound, got %v", err)
	}
	if err := s.SetPassword(ctx, u.ID, "$argon2id$new", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "missing", "x", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("set password of missing user: want ErrNotFound, got %v", err)
	}
	got, _ = s.GetUser(ctx, u.ID)
	if got.PasswordHash != "$argon2id$new" || !got.UpdatedAt.Equal(base.Add(time.Hour)) {
		t.Fatalf("password not updated: %+v", got)
	}
	mustUser(t, s, "bob")
	mustUser(t, s, "carol")
	page, err := s.ListUsers(ctx, "", 2)
	if err != nil || len(page) != 2 || page[0].Username != "Alice" || page[1].Username != "bob" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	page, err = s.ListUsers(ctx, "bob", 2)
	if err != nil || len(page) != 1 || page[0].Username != "carol" {
		t.Fatalf("second page: %v %+v", err, page)
	}
}

func testGroups(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "dave")
	for _, name := range []string{"staff", "finance"} {
		if err := s.CreateGroup(ctx, store.Group{ID: "g-" + name, Name: name, CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateGroup(ctx, store.Group{ID: "g-x", Name: "staff", CreatedAt: base}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate group name: want ErrAlreadyExists, got %v", err)
	}
	if err := s.AddMember(ctx, "g-staff", u.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "g-staff", u.ID); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate membership: want ErrAlreadyExists, got %v", err)
	}
	gs, err := s.UserGroups(ctx, u.ID)
	if err != nil || len(gs) != 1 || gs[0].Name != "staff" {
		t.Fatalf("user groups: %v %+v", err, gs)
	}
	all, err := s.ListGroups(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "finance" {
		t.Fatalf("list groups: %v %+v", err, all)
	}
	if g, err := s.GetGroupByName(ctx, "finance"); err != nil || g.ID != "g-finance" {
		t.Fatalf("group by name: %v %+v", err, g)
	}
}

func testClients(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := store.Client{ID: "app", Name: "App", SecretHash: []byte{1, 2, 3}, FirstParty: true,
		RedirectURIs: []string{"https://app.example.com/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, Scopes: []string{"openid", "profile"}, AccessTokenFormat: store.AccessTokensJWT, CreatedAt: base}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	// No aliasing: changing what was returned must not change the store.
	got.RedirectURIs[0] = "https://evil.example.com/cb"
	got.SecretHash[0] = 9
	again, _ := s.GetClient(ctx, "app")
	if again.RedirectURIs[0] != "https://app.example.com/cb" || again.SecretHash[0] != 1 {
		t.Fatalf("returned client aliases the store: %+v", again)
	}
	pub := store.Client{ID: "spa", Public: true, RedirectURIs: []string{"http://127.0.0.1/cb"}, CreatedAt: base}
	if err := s.CreateClient(ctx, pub); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, "spa"); got.SecretHash != nil || !got.Public || got.AccessTokenFormat != store.AccessTokensOpaque {
		t.Fatalf("public client: %+v", got)
	}
	if err := s.CreateClient(ctx, pub); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate client: %v", err)
	}
	if cs, err := s.ListClients(ctx); err != nil || len(cs) != 2 {
		t.Fatalf("list: %v %d", err, len(cs))
	}
	if err := s.DeleteClient(ctx, "spa"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteClient(ctx, "spa"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: want ErrNotFound, got %v", err)
	}
	// The admin scopes are for first-party clients, whichever path registers.
	for _, scopes := range [][]string{{"admin"}, {"openid", "admin:sensitive"}} {
		bad := store.Client{ID: "third", Scopes: scopes, CreatedAt: base}
		if err := s.CreateClient(ctx, bad); !errors.Is(err, store.ErrInvalidClient) {
			t.Fatalf("third-party client with %v: %v", scopes, err)
		}
	}
	if err := s.CreateClient(ctx, store.Client{ID: "robot", FirstParty: true, Scopes: []string{"admin:sensitive"}, CreatedAt: base}); !errors.Is(err, store.ErrInvalidClient) {
		t.Fatalf("admin:sensitive without admin: %v", err)
	}
	if err := s.CreateClient(ctx, store.Client{ID: "third", AccessTokenFormat: "JWT", CreatedAt: base}); !errors.Is(err, store.ErrInvalidClient) {
		t.Fatalf("an unknown access token format: %v", err)
	}
	if _, err := s.GetClient(ctx, "third"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a refused client was stored")
	}

	// The deny list of stateless JWT access tokens: recorded once (twice
	// is fine), and gone with the cleanup after the token expired.
	for range 2 {
		if err := s.RevokeJWT(ctx, "jti-1", base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.JWTRevoked(ctx, "jti-1"); err != nil || !ok {
		t.Fatalf("revoked jti: %v %v", ok, err)
	}
	if ok, _ := s.JWTRevoked(ctx, "jti-2"); ok {
		t.Fatal("an unknown jti is revoked")
	}
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.JWTRevoked(ctx, "jti-1"); ok {
		t.Fatal("an expired deny-list entry survived the cleanup")
	}
}

// testStepUps: a step-up proof is spent once, also under concurrent use,
// and a spend rolled back with its transaction is not spent.
func testStepUps(t *testing.T, s store.Store) {
	ctx := context.Background()
	if spent, err := s.StepUpSpent(ctx, "bearer:g1"); err != nil || spent {
		t.Fatalf("fresh proof: %v %v", spent, err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.InTx(ctx, func(q store.Queries) error { return q.SpendStepUp(ctx, "bearer:g1", "u1", "remove", base) })
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, store.ErrAlreadyExists):
				t.Errorf("spend: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("a step-up must be spent exactly once, got %d", wins.Load())
	}
	if spent, _ := s.StepUpSpent(ctx, "bearer:g1"); !spent {
		t.Fatal("spent proof not recorded")
	}
	errBoom := errors.New("boom")
	if err := s.InTx(ctx, func(q store.Queries) error {
		if err := q.SpendStepUp(ctx, "session:s2", "u1", "remove", base); err != nil {
			return err
		}
		return errBoom
	}); !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	if spent, _ := s.StepUpSpent(ctx, "session:s2"); spent {
		t.Fatal("a rolled-back spend counts")
	}
	// Spent proofs are forgotten only after any step-up could have expired.
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if spent, _ := s.StepUpSpent(ctx, "bearer:g1"); !spent {
		t.Fatal("cleanup forgot a proof that could still be fresh")
	}
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(store.MaxStepUpAge+2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if spent, _ := s.StepUpSpent(ctx, "bearer:g1"); spent {
		t.Fatal("cleanup kept a proof older than any step-up")
	}
}

// testPendingActions: a console change kept across a step-up is taken
// once, and cleanup removes expired ones.
// testBadText: NUL bytes and invalid UTF-8 are refused with
// ErrInvalidInput by every backend, in and out of transactions, and
// nothing is stored.
func testBadText(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"a\x00b", "a\xffb"} {
		if err := s.CreateUser(ctx, store.User{ID: "u-bad", Username: name, CreatedAt: base, UpdatedAt: base}); !errors.Is(err, store.ErrInvalidInput) {
			t.Errorf("user %q: %v", name, err)
		}
		err := s.InTx(ctx, func(q store.Queries) error {
			return q.CreateGroup(ctx, store.Group{ID: "g-bad", Name: name, CreatedAt: base})
		})
		if !errors.Is(err, store.ErrInvalidInput) {
			t.Errorf("group %q: %v", name, err)
		}
	}
	if _, err := s.GetUser(ctx, "u-bad"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused user was stored: %v", err)
	}
}

// testAuditPositions: the tree position after an id, and the unsealed
// count below it.
func testAuditPositions(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []int64
	for i := 0; i < 3; i++ {
		id, err := s.InsertAuditEvent(ctx, store.AuditEvent{Time: base, Type: "t", Outcome: "success", Details: "{}", Hash: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if next, unsealed, err := s.AuditPositionAfter(ctx, ids[1]); err != nil || next != 0 || unsealed != 2 {
		t.Fatalf("nothing sealed: %d %d %v", next, unsealed, err)
	}
	for i, id := range ids[:2] {
		if err := s.SealAuditEvent(ctx, id, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SealAuditEvent(ctx, ids[0], 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an event is sealed once: %v", err)
	}
	if next, unsealed, err := s.AuditPositionAfter(ctx, ids[1]); err != nil || next != 2 || unsealed != 0 {
		t.Fatalf("two sealed: %d %d %v", next, unsealed, err)
	}
	if n, _ := s.CountUnsealedAuditEvents(ctx); n != 1 {
		t.Fatalf("unsealed: %d", n)
	}
	if evs, err := s.SealedAuditEvents(ctx, 1, 10); err != nil || len(evs) != 1 || evs[0].ID != ids[1] || evs[0].LeafIndex != 1 {
		t.Fatalf("sealed from 1: %+v %v", evs, err)
	}
}

func testPendingActions(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := store.PendingAction{ID: "pa1", UserID: "u1", Method: "POST", Path: "/console/policies/p1", Form: "a=b&c=%00",
		CreatedAt: base, ExpiresAt: base.Add(5 * time.Minute)}
	if err := s.CreatePendingAction(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumePendingAction(ctx, "pa1")
	if err != nil || got != a {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, a)
	}
	if _, err := s.ConsumePendingAction(ctx, "pa1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("taken twice: %v", err)
	}
	a.ID = "pa2"
	if err := s.CreatePendingAction(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePendingAction(ctx, "pa2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired action kept: %v", err)
	}
}

func testTOTPCounter(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "erin")
	c := store.TOTPCredential{ID: "cred-1", UserID: u.ID, Secret: []byte("sealed"), CreatedAt: base, VerifiedAt: base, LastStep: 100}
	if err := s.CreateTOTP(ctx, c); err != nil {
		t.Fatal(err)
	}
	c2 := c
	c2.ID = "cred-2"
	if err := s.CreateTOTP(ctx, c2); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second credential: want ErrAlreadyExists, got %v", err)
	}
	if ok, err := s.AdvanceTOTPStep(ctx, c.ID, 100); err != nil || ok {
		t.Fatalf("same step must not advance: %v %v", ok, err)
	}
	// Twenty requests present the same code at once: exactly one may pass.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.AdvanceTOTPStep(ctx, c.ID, 101)
			if err != nil {
				t.Errorf("advance: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("want exactly one winner, got %d", wins.Load())
	}
	got, err := s.GetTOTP(ctx, u.ID)
	if err != nil || got.LastStep != 101 || string(got.Secret) != "sealed" {
		t.Fatalf("after advance: %v %+v", err, got)
	}
	if ok, err := s.DeleteTOTP(ctx, u.ID); err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, err := s.DeleteTOTP(ctx, u.ID); err != nil || ok {
		t.Fatalf("delete twice must report nothing removed: %v %v", ok, err)
	}
	if _, err := s.GetTOTP(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: want ErrNotFound, got %v", err)
	}
}

func testRecoveryCodes(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "frank")
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, []string{"d1", "d2", "d3"}, base); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.UseRecoveryCode(ctx, u.ID, "d2", base); err != nil || !ok {
		t.Fatalf("first use: %v %v", ok, err)
	}
	if ok, err := s.UseRecoveryCode(ctx, u.ID, "d2", base); err != nil || ok {
		t.Fatalf("second use must fail: %v %v", ok, err)
	}
	if ok, _ := s.UseRecoveryCode(ctx, "u-other", "d1", base); ok {
		t.Fatal("another user's code must not work")
	}
	if n, err := s.CountRecoveryCodes(ctx, u.ID); err != nil || n != 2 {
		t.Fatalf("count: %v %d", err, n)
	}
	if err := s.ReplaceRecoveryCodes(ctx, u.ID, []string{"e1"}, base); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.UseRecoveryCode(ctx, u.ID, "d1", base); ok {
		t.Fatal("replaced codes must stop working")
	}
}

func testSessionsAndFlows(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "grace")
	bs := store.BrowserSession{IDHash: "h1", SID: "sid1", UserID: u.ID, AuthTime: base, AMR: []string{"pwd", "otp", "mfa"},
		ACR: "aal2", CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(12 * time.Hour)}
	if err := s.CreateSession(ctx, bs); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(ctx, "h1")
	if err != nil || fmt.Sprint(got) != fmt.Sprint(bs) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, bs)
	}
	if err := s.TouchSession(ctx, "h1", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, "h1"); !got.LastSeenAt.Equal(base.Add(time.Minute)) {
		t.Fatalf("touch: %+v", got)
	}
	if err := s.DeleteUserSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}

	f := store.LoginFlow{ID: "f1", Binding: "b", AuthorizeQuery: "client_id=x", CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := s.CreateFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetFlow(ctx, "f1"); err != nil || !got.PasswordAt.IsZero() || got.UserID != "" {
		t.Fatalf("new flow: %v %+v", err, got)
	}
	if err := s.SetFlowUser(ctx, "f1", u.ID, base.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetFlow(ctx, "f1"); got.UserID != u.ID || !got.PasswordAt.Equal(base.Add(time.Second)) || got.SecondFactor != "" || !got.SecondFactorAt.IsZero() {
		t.Fatalf("flow user: %+v", got)
	}
	if err := s.SetFlowSecondFactor(ctx, "f1", "otp", base.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetFlow(ctx, "f1"); got.SecondFactor != "otp" || !got.SecondFactorAt.Equal(base.Add(2*time.Second)) {
		t.Fatalf("flow second factor: %+v", got)
	}
	if err := s.SetFlowSecondFactor(ctx, "nope", "otp", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second factor on a missing flow: %v", err)
	}
	if ok, err := s.ConsumeFlow(ctx, "f1"); err != nil || !ok {
		t.Fatalf("consume: %v %v", ok, err)
	}
	if ok, _ := s.ConsumeFlow(ctx, "f1"); ok {
		t.Fatal("a flow must complete at most once")
	}

	if err := s.CreateClient(ctx, store.Client{ID: "third", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	c := store.Consent{UserID: u.ID, ClientID: "third", Scopes: []string{"openid"}, GrantedAt: base}
	if err := s.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.Scopes = []string{"openid", "email"}
	if err := s.SaveConsent(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetConsent(ctx, u.ID, "third"); err != nil || len(got.Scopes) != 2 {
		t.Fatalf("consent upsert: %v %+v", err, got)
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	k1 := store.SigningKey{ID: "k1", Algorithm: "RS256", Private: []byte("p1"), Public: []byte("{}"), CreatedAt: base}
	k2 := store.SigningKey{ID: "k2", Algorithm: "ES256", Private: []byte("p2"), Public: []byte("{}"), CreatedAt: base.Add(time.Hour)}
	for _, k := range []store.SigningKey{k1, k2} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetKeyNotAfter(ctx, "k1", base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ks, err := s.ListKeys(ctx)
	if err != nil || len(ks) != 2 || ks[0].ID != "k2" || !ks[0].NotAfter.IsZero() || !ks[1].NotAfter.Equal(base.Add(2*time.Hour)) {
		t.Fatalf("keys newest first with not_after: %v %+v", err, ks)
	}
}

// testConcurrentTokenWrites: grants written at once (which the stores
// group into shared statements and commits) each get exactly their row
// and their event, every field intact, and one that repeats a stored
// signature fails alone without taking its neighbours with it.
func testConcurrentTokenWrites(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.CreateToken(ctx, token(store.KindAccessToken, "taken", "req-taken")); err != nil {
		t.Fatal(err)
	}
	t.Run("AllNew", func(t *testing.T) { concurrentTokenWrites(t, s, "new", 0) })
	t.Run("SomeRepeat", func(t *testing.T) { concurrentTokenWrites(t, s, "dup", 12) })
}

// concurrentTokenWrites writes 96 grants at once; with every > 0, each
// every-th repeats the stored signature "taken" and another of each every
// carries a NUL byte: each fails alone with its own error.
func concurrentTokenWrites(t *testing.T, s store.Store, prefix string, every int) {
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	repeats := func(i int) bool { return every > 0 && i%every == 0 }
	bad := func(i int) bool { return every > 0 && i%every == 5 }
	const n = 96
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			sig := fmt.Sprintf("%s-%d", prefix, i)
			if repeats(i) {
				sig = "taken"
			}
			r := token(store.KindAccessToken, sig, fmt.Sprintf("%s-req-%d", prefix, i))
			r.Session = []byte(fmt.Sprintf(`{"i":%d}`, i))
			if bad(i) {
				r.Form = "scope=a\x00b" // text PostgreSQL cannot store
			}
			errs[i] = s.CreateTokenWithEvent(ctx, r, store.TokenEvent{Time: at, Type: store.TokenIssued, TokenType: store.KindAccessToken,
				RequestID: r.RequestID, ClientID: prefix, Subject: fmt.Sprintf("u%d", i), GrantType: "client_credentials"})
		})
	}
	wg.Wait()
	stored := 0
	for i, err := range errs {
		if repeats(i) {
			if !errors.Is(err, store.ErrAlreadyExists) {
				t.Errorf("grant %d repeats a signature: %v, want ErrAlreadyExists", i, err)
			}
			continue
		}
		if bad(i) {
			if !errors.Is(err, store.ErrInvalidInput) {
				t.Errorf("grant %d carries a NUL: %v, want ErrInvalidInput", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("grant %d: %v", i, err)
			continue
		}
		stored++
		got, err := s.GetToken(ctx, store.KindAccessToken, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil || got.RequestID != fmt.Sprintf("%s-req-%d", prefix, i) || string(got.Session) != fmt.Sprintf(`{"i":%d}`, i) ||
			!got.Active || got.Subject != "u" || !got.ExpiresAt.Equal(base.Add(time.Hour)) || strings.Join(got.GrantedScopes, " ") != "openid" {
			t.Errorf("grant %d read back as %+v, %v", i, got, err)
		}
	}
	evs, err := s.ListTokenEvents(ctx, store.TokenEventFilter{ClientID: prefix, Limit: 500})
	if err != nil || len(evs) != stored {
		t.Fatalf("%d events for %d stored grants (%v)", len(evs), stored, err)
	}
	for _, e := range evs {
		var i int
		if _, err := fmt.Sscanf(e.RequestID, prefix+"-req-%d", &i); err != nil || e.Subject != fmt.Sprintf("u%d", i) || repeats(i) || bad(i) ||
			!e.Time.Equal(at) || e.GrantType != "client_credentials" || e.Type != store.TokenIssued {
			t.Errorf("event %+v does not belong to a stored grant", e)
		}
	}
}

func token(kind store.TokenKind, sig, req string) store.TokenRecord {
	return store.TokenRecord{Kind: kind, Signature: sig, RequestID: req, ClientID: "c", Subject: "u", SessionID: "sid", Active: true,
		RequestedAt: base, ExpiresAt: base.Add(time.Hour), Scopes: []string{"openid"}, GrantedScopes: []string{"openid"},
		Form: "a=b", Session: []byte(`{"x":1}`)}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := token(store.KindAccessToken, "sig-a", "req-1")
	if err := s.CreateToken(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetToken(ctx, store.KindAccessToken, "sig-a")
	if err != nil || fmt.Sprint(got) != fmt.Sprint(r) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, r)
	}
	if _, err := s.GetToken(ctx, store.KindRefreshToken, "sig-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("kinds are separate: %v", err)
	}
	for _, sig := range []string{"r1", "r2"} {
		if err := s.CreateToken(ctx, token(store.KindRefreshToken, sig, "req-1")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeactivateRequest(ctx, store.KindRefreshToken, "req-1"); err != nil || n != 2 {
		t.Fatalf("deactivate family: %v %d", err, n)
	}
	if got, _ := s.GetToken(ctx, store.KindRefreshToken, "r2"); got.Active {
		t.Fatal("family member still active")
	}
	if err := s.DeleteToken(ctx, store.KindAccessToken, "sig-a"); err != nil {
		t.Fatal(err)
	}
	old := token(store.KindAccessToken, "old", "req-2")
	old.ExpiresAt = base.Add(-time.Hour)
	if err := s.CreateToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpiredTokens(ctx, base); err != nil || n != 1 {
		t.Fatalf("expired cleanup: %v %d", err, n)
	}

	// A token and its log event are written together, or neither is.
	ev := store.TokenEvent{Time: base, Type: store.TokenIssued, TokenType: store.KindAccessToken, RequestID: "req-3", ClientID: "c3", GrantType: "client_credentials"}
	if err := s.CreateTokenWithEvent(ctx, token(store.KindAccessToken, "sig-c", "req-3"), ev); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTokenWithEvent(ctx, token(store.KindAccessToken, "sig-c", "req-3"), ev); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate signature: want ErrAlreadyExists, got %v", err)
	}
	if evs, err := s.ListTokenEvents(ctx, store.TokenEventFilter{ClientID: "c3"}); err != nil || len(evs) != 1 {
		t.Fatalf("want exactly the one event of the stored token: %v %+v", err, evs)
	}
	if _, err := s.GetToken(ctx, store.KindAccessToken, "sig-c"); err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(q store.Queries) error {
		return q.CreateTokenWithEvent(ctx, token(store.KindAccessToken, "sig-d", "req-4"), store.TokenEvent{Time: base, Type: store.TokenIssued, ClientID: "c4"})
	}); err != nil {
		t.Fatal(err)
	}

	for i, typ := range []store.TokenEventType{store.TokenIssued, store.TokenRefreshed, store.TokenRevoked} {
		e := store.TokenEvent{Time: base.Add(time.Duration(i) * time.Minute), Type: typ, TokenType: store.KindAccessToken, RequestID: "req-1",
			ClientID: "c", Subject: "u", GrantType: "authorization_code"}
		if err := s.AppendTokenEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.ListTokenEvents(ctx, store.TokenEventFilter{ClientID: "c", Since: base.Add(time.Minute)})
	if err != nil || len(evs) != 2 || evs[0].Type != store.TokenRefreshed || evs[0].ID >= evs[1].ID {
		t.Fatalf("filter: %v %+v", err, evs)
	}
	page, _ := s.ListTokenEvents(ctx, store.TokenEventFilter{AfterID: evs[0].ID, Limit: 1})
	if len(page) != 1 || page[0].ID != evs[1].ID {
		t.Fatalf("cursor: %+v", page)
	}
	// A batch: one statement, in order, every field kept.
	if err := s.AppendTokenEvents(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var batch []store.TokenEvent
	for i := range 300 {
		batch = append(batch, store.TokenEvent{Time: base.Add(time.Hour + time.Duration(i)*time.Second), Type: store.TokenIssued, TokenType: store.KindAccessToken,
			RequestID: fmt.Sprint("jti-", i), ClientID: "batch", GrantType: "client_credentials"})
	}
	if err := s.AppendTokenEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	batched, err := s.ListTokenEvents(ctx, store.TokenEventFilter{ClientID: "batch", Limit: 500})
	if err != nil || len(batched) != 300 || batched[299].RequestID != "jti-299" || batched[0].GrantType != "client_credentials" || !batched[5].Time.Equal(base.Add(time.Hour+5*time.Second)) {
		t.Fatalf("batch: %v %d", err, len(batched))
	}
	if n, err := s.DeleteTokenEvents(ctx, base.Add(time.Minute)); err != nil || n != 3 {
		t.Fatalf("event retention: %v %d", err, n)
	}
}

func testDeactivateRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.CreateToken(ctx, token(store.KindAuthorizeCode, "code-1", "req-9")); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := s.DeactivateToken(ctx, store.KindAuthorizeCode, "code-1"); err != nil {
				t.Errorf("deactivate: %v", err)
			} else if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("one code, %d redemptions", wins.Load())
	}
}

// testRefreshGrace: a retired refresh token keeps its grace until the
// deadline, spends it once (one winner among concurrent claims), and has
// none once its grant holds no active refresh token.
func testRefreshGrace(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, r := range []store.TokenRecord{token(store.KindRefreshToken, "r0", "g1"), token(store.KindRefreshToken, "x0", "g2")} {
		if err := s.CreateToken(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	until := base.Add(30 * time.Second)
	if ok, err := s.RetireRefreshToken(ctx, "r0", until); err != nil || !ok {
		t.Fatalf("retire: %v %v", ok, err)
	}
	if ok, _ := s.RetireRefreshToken(ctx, "r0", until); ok {
		t.Fatal("a token was retired twice")
	}
	got, err := s.GetToken(ctx, store.KindRefreshToken, "r0")
	if err != nil || got.Active || !got.GraceUntil.Equal(until) {
		t.Fatalf("retired token: %v %+v", err, got)
	}
	// No successor yet: the grant holds no active refresh token.
	if live, err := s.GrantActive(ctx, store.KindRefreshToken, "g1"); err != nil || live {
		t.Fatalf("grant active without an active token: %v %v", live, err)
	}
	if ok, _ := s.ClaimRefreshGrace(ctx, "r0", base); ok {
		t.Fatal("grace claimed on a grant without an active refresh token")
	}
	if err := s.CreateToken(ctx, token(store.KindRefreshToken, "r1", "g1")); err != nil {
		t.Fatal(err)
	}
	if live, err := s.GrantActive(ctx, store.KindRefreshToken, "g1"); err != nil || !live {
		t.Fatalf("grant with its successor: %v %v", live, err)
	}
	if ok, _ := s.ClaimRefreshGrace(ctx, "r0", until.Add(time.Second)); ok {
		t.Fatal("grace claimed after its deadline")
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := s.ClaimRefreshGrace(ctx, "r0", base); err != nil {
				t.Errorf("claim: %v", err)
			} else if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("grace spent %d times", wins.Load())
	}
	if got, _ := s.GetToken(ctx, store.KindRefreshToken, "r0"); !got.GraceUntil.IsZero() {
		t.Errorf("spent grace still recorded: %+v", got.GraceUntil)
	}
	// Retiring without grace leaves none.
	if ok, _ := s.RetireRefreshToken(ctx, "x0", time.Time{}); !ok {
		t.Fatal("retire without grace")
	}
	if ok, _ := s.ClaimRefreshGrace(ctx, "x0", base); ok {
		t.Fatal("grace claimed on a token retired without one")
	}
}

func testAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		n, err := s.RecordFailure(ctx, "user:x", base)
		if err != nil || n != want {
			t.Fatalf("failure %d: %v %d", want, err, n)
		}
	}
	if err := s.SetLockedUntil(ctx, "user:x", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	a, err := s.GetAttempt(ctx, "user:x")
	if err != nil || a.Failures != 3 || !a.LockedUntil.Equal(base.Add(time.Minute)) {
		t.Fatalf("attempt: %v %+v", err, a)
	}
	if _, err := s.RecordFailure(ctx, "ip:y", base); err != nil {
		t.Fatal(err)
	}
	if as, err := s.GetAttempts(ctx, "user:x", "ip:y", "ip:none"); err != nil || len(as) != 2 {
		t.Fatalf("get attempts: %v %+v", err, as)
	}
	if err := s.ResetAttempts(ctx, "user:x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAttempt(ctx, "user:x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after reset: %v", err)
	}

	// Claims: 20 concurrent attempts against a threshold of 5 are judged
	// one at a time; exactly 5 are counted and the fifth holds the lock.
	hold := base.Add(time.Hour)
	var mu sync.Mutex
	var counted []int
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.ClaimAttempt(ctx, "mfa:c", 5, base, base.Add(-time.Minute), hold)
			if err != nil {
				t.Error(err)
			}
			if n > 0 {
				mu.Lock()
				counted = append(counted, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if slices.Sort(counted); !slices.Equal(counted, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("claims counted under a threshold of 5: %v", counted)
	}
	if a, err := s.GetAttempt(ctx, "mfa:c"); err != nil || !a.LockedUntil.Equal(hold) {
		t.Fatalf("after the threshold: %v %+v", err, a)
	}
	// Once the lock has passed, one more attempt is let through and locks
	// again; a stale count (not locked) starts over.
	if n, err := s.ClaimAttempt(ctx, "mfa:c", 5, hold, base, hold.Add(time.Hour)); err != nil || n != 6 {
		t.Fatalf("claim after the lock: %d %v", n, err)
	}
	if n, err := s.ClaimAttempt(ctx, "mfa:c", 5, hold.Add(time.Minute), base, hold.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("claim while locked again: %d %v", n, err)
	}
	if n, err := s.ClaimAttempt(ctx, "mfa:d", 1, base, base, hold); err != nil || n != 1 {
		t.Fatalf("first claim under a threshold of 1: %d %v", n, err)
	} else if a, _ := s.GetAttempt(ctx, "mfa:d"); !a.LockedUntil.Equal(hold) {
		t.Fatalf("a threshold of 1 holds on the first claim: %+v", a)
	}
	if err := s.SetLockedUntil(ctx, "mfa:d", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ClaimAttempt(ctx, "mfa:d", 5, base.Add(2*time.Hour), base.Add(time.Hour), hold); err != nil || n != 1 {
		t.Fatalf("a stale count starts over: %d %v", n, err)
	}
}

func testTx(t *testing.T, s store.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "test"); err != nil {
			return err
		}
		if err := q.CreateGroup(ctx, store.Group{ID: "g-rb", Name: "rolled back", CreatedAt: base}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx must return fn's error, got %v", err)
	}
	if _, err := s.GetGroupByName(ctx, "rolled back"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled back write is visible: %v", err)
	}
	if err := s.InTx(ctx, func(q store.Queries) error {
		return q.CreateGroup(ctx, store.Group{ID: "g-c", Name: "committed", CreatedAt: base})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGroupByName(ctx, "committed"); err != nil {
		t.Fatalf("committed write missing: %v", err)
	}
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.CreateGroup(ctx, store.Group{ID: "g-b", Name: "begun", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGroupByName(ctx, "begun"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Begin/Rollback left a write: %v", err)
	}
}

// testRemovalAtomic: when a later write in the removal's transaction fails
// (here a duplicate row stands in for a failed audit append), the credential
// stays.
func testRemovalAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "heidi")
	if err := s.CreateTOTP(ctx, store.TOTPCredential{ID: "cred-h", UserID: u.ID, Secret: []byte("x"), CreatedAt: base, VerifiedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(ctx, store.Group{ID: "g-dup", Name: "dup", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	err := s.InTx(ctx, func(q store.Queries) error {
		if _, err := q.DeleteTOTP(ctx, u.ID); err != nil {
			return err
		}
		return q.CreateGroup(ctx, store.Group{ID: "g-dup", Name: "dup", CreatedAt: base})
	})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("want the failing write's error, got %v", err)
	}
	if _, err := s.GetTOTP(ctx, u.ID); err != nil {
		t.Fatalf("credential removed although the transaction failed: %v", err)
	}
}

func testPolicies(t *testing.T, s store.Store) {
	ctx := context.Background()
	d, err := s.DefaultPolicy(ctx)
	if err != nil || !d.IsDefault || !d.RequireMFA || d.AllowSelfServiceRemoval || d.StepUpMaxAge != 5*time.Minute || d.SetupWindow != 24*time.Hour ||
		!slices.Equal(d.AllowedMethods, []string{"totp", "passkey"}) {
		t.Fatalf("a fresh store has the default policy at SPEC defaults: %v %+v", err, d)
	}
	p := store.Policy{ID: "p-low", Name: "Low risk", RequireMFA: true, AllowSelfServiceRemoval: true, StepUpMaxAge: 10 * time.Minute,
		Reenroll: "grace", GracePeriod: 24 * time.Hour, SetupWindow: 6 * time.Hour, AllowedMethods: []string{"passkey"}, Version: 1, UpdatedAt: base}
	if err := s.CreatePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePolicy(ctx, store.Policy{ID: "p-dup", Name: "Low risk", Version: 1, UpdatedAt: base}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if got, err := s.GetPolicy(ctx, "p-low"); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, p)
	}
	p2 := p
	p2.AllowSelfServiceRemoval, p2.Version, p2.UpdatedAt, p2.AllowedMethods = false, 2, base.Add(time.Hour), []string{"totp", "passkey"}
	if err := s.UpdatePolicy(ctx, p2); err != nil {
		t.Fatal(err)
	}
	stale := p2
	stale.Version = 2 // built on version 1 again: lost update
	if err := s.UpdatePolicy(ctx, stale); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update on a stale version must fail: %v", err)
	}
	if v1, err := s.GetPolicyVersion(ctx, "p-low", 1); err != nil || !v1.AllowSelfServiceRemoval || v1.Version != 1 || !slices.Equal(v1.AllowedMethods, []string{"passkey"}) {
		t.Fatalf("old version readable: %v %+v", err, v1)
	}
	u := mustUser(t, s, "policy-user")
	admin := mustUser(t, s, "policy-admin")
	for _, g := range []string{"staff", "finance"} {
		if err := s.CreateGroup(ctx, store.Group{ID: "g-" + g, Name: g, CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddMember(ctx, "g-"+g, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AssignPolicy(ctx, "g-staff", "p-low"); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignPolicy(ctx, "g-staff", "policy_default"); err != nil { // reassign: one policy per group
		t.Fatal(err)
	}
	if err := s.AssignPolicy(ctx, "g-finance", "p-low"); err != nil {
		t.Fatal(err)
	}
	gps, err := s.UserGroupPolicies(ctx, u.ID)
	if err != nil || len(gps) != 2 || gps[0].GroupName != "finance" || gps[0].Policy.ID != "p-low" || gps[0].Policy.Version != 2 || gps[1].Policy.ID != "policy_default" ||
		len(gps[0].Policy.AllowedMethods) != 2 {
		t.Fatalf("user group policies: %v %+v", err, gps)
	}
	if err := s.UnassignPolicy(ctx, "g-finance"); err != nil {
		t.Fatal(err)
	}
	if err := s.UnassignPolicy(ctx, "g-finance"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unassign twice: %v", err)
	}
	if err := s.AddGroupAdmin(ctx, "g-staff", admin.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroupAdmin(ctx, "g-finance", admin.ID); err != nil {
		t.Fatal(err)
	}
	cs, err := s.UserAdminContacts(ctx, u.ID)
	if err != nil || len(cs) != 1 || cs[0].ID != admin.ID {
		t.Fatalf("admin contacts (distinct): %v %+v", err, cs)
	}
	if cs, _ := s.UserAdminContacts(ctx, admin.ID); len(cs) != 0 {
		t.Fatalf("an admin is not their own contact: %+v", cs)
	}
}

func testAccountState(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := mustUser(t, s, "acct")
	rr := store.ResetRequest{ID: "rr1", UserID: u.ID, Status: store.ResetOpen, Message: "new phone", CreatedAt: base}
	if err := s.CreateResetRequest(ctx, rr); err != nil {
		t.Fatal(err)
	}
	dup := rr
	dup.ID = "rr2"
	if err := s.CreateResetRequest(ctx, dup); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("one open request per user: %v", err)
	}
	if got, err := s.OpenResetRequest(ctx, u.ID); err != nil || got != rr {
		t.Fatalf("open request: %v %+v", err, got)
	}
	if err := s.DecideResetRequest(ctx, "rr1", store.ResetApproved, "admin", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideResetRequest(ctx, "rr1", store.ResetDenied, "admin", base.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a decided request cannot be decided again: %v", err)
	}
	if err := s.CreateResetRequest(ctx, dup); err != nil {
		t.Fatalf("after a decision a new request may open: %v", err)
	}
	if rs, _ := s.ListResetRequests(ctx, store.ResetApproved); len(rs) != 1 || rs[0].DecidedBy != "admin" || !rs[0].DecidedAt.Equal(base.Add(time.Hour)) {
		t.Fatalf("decided list: %+v", rs)
	}

	if at, err := s.MFARemovedAt(ctx, u.ID); err != nil || !at.IsZero() {
		t.Fatalf("never removed: %v %v", at, err)
	}
	if until, err := s.MFASetupUntil(ctx, u.ID); err != nil || !until.IsZero() {
		t.Fatalf("no removal, no window: %v %v", until, err)
	}
	if err := s.SetMFARemoved(ctx, u.ID, base, base.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if until, err := s.MFASetupUntil(ctx, u.ID); err != nil || !until.Equal(base.Add(24*time.Hour)) {
		t.Fatalf("setup window: %v %v", until, err)
	}
	if at, _ := s.MFARemovedAt(ctx, u.ID); !at.Equal(base) {
		t.Fatalf("removed at: %v", at)
	}
	if err := s.ClearMFARemoved(ctx, u.ID); err != nil {
		t.Fatal(err)
	}

	p := store.PendingTOTP{UserID: u.ID, ID: "pt1", Secret: []byte("sealed"), Binding: "session:a", CreatedAt: base, ExpiresAt: base.Add(time.Minute)}
	if err := s.PutPendingTOTP(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.ID, p.Binding = "pt2", "bearer:g"
	if err := s.PutPendingTOTP(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetPendingTOTP(ctx, u.ID); err != nil || got.ID != "pt2" || got.Binding != "bearer:g" {
		t.Fatalf("pending replaces, with its binding: %v %+v", err, got)
	}

	// Cleanup takes expired pending secrets and confirmations with the tokens.
	if err := s.CreateUnlinkIntent(ctx, store.UnlinkIntent{ID: "ul-old", UserID: u.ID, CreatedAt: base, ExpiresAt: base.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUnlinkIntent(ctx, "ul-old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired confirmation kept: %v", err)
	}
	if _, err := s.GetPendingTOTP(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired pending secret kept: %v", err)
	}
	in := store.UnlinkIntent{ID: "ul1", UserID: u.ID, CreatedAt: base, ExpiresAt: base.Add(5 * time.Minute)}
	if err := s.CreateUnlinkIntent(ctx, in); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := s.ConsumeUnlinkIntent(ctx, "ul1"); err == nil && got == in {
				wins.Add(1)
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("consume: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("an unlink confirmation must be consumed exactly once, got %d", wins.Load())
	}

	ps := store.PortalSession{IDHash: "ph", UserID: u.ID, SID: "sid", AuthTime: base, AMR: []string{"pwd", "otp"}, ACR: "aal2", IDToken: "tok",
		CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := s.CreatePortalSession(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPortalStepUp(ctx, "ph", "unlink"); err != nil {
		t.Fatal(err)
	}
	ps.StepUp = "unlink"
	if got, err := s.GetPortalSession(ctx, "ph"); err != nil || fmt.Sprint(got) != fmt.Sprint(ps) {
		t.Fatalf("portal session: %v\n got %+v\nwant %+v", err, got, ps)
	}
	if err := s.DeleteUserPortalSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPortalSession(ctx, "ph"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}

	// The caller's own access token can be kept; its refresh token and
	// everything else of the user goes.
	for _, tk := range []store.TokenRecord{token(store.KindRefreshToken, "user-rt", "req-u"), token(store.KindAccessToken, "user-at", "req-u"),
		token(store.KindAccessToken, "other-at", "req-v")} {
		tk.Subject = u.ID
		if err := s.CreateToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeactivateUserTokens(ctx, u.ID, "req-u"); err != nil || n != 2 {
		t.Fatalf("deactivate user tokens keeping one: %v %d", err, n)
	}
	if kept, _ := s.GetToken(ctx, store.KindAccessToken, "user-at"); !kept.Active {
		t.Fatal("the caller's access token was deactivated")
	}
	if n, err := s.DeactivateUserTokens(ctx, u.ID, ""); err != nil || n != 1 {
		t.Fatalf("deactivate the rest: %v %d", err, n)
	}
}

func testAuditEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	if h, err := s.LastAuditHash(ctx); err != nil || h != "" {
		t.Fatalf("empty log: %q %v", h, err)
	}
	types := []string{"mfa.totp.removed", "mfa.removal.denied", "auth.login.succeeded", "mfa.totp.enrolled"}
	for i, typ := range types {
		e := store.AuditEvent{Time: base.Add(time.Duration(i) * time.Minute), Type: typ, Outcome: "success", ActorType: "user", ActorID: "a",
			SubjectID: fmt.Sprintf("s%d", i%2), PolicyID: "p", PolicyVersion: 2, Details: "{}", PrevHash: fmt.Sprint(i), Hash: fmt.Sprint(i + 1)}
		if _, err := s.InsertAuditEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if h, _ := s.LastAuditHash(ctx); h != "4" {
		t.Fatalf("head: %q", h)
	}
	for _, tc := range []struct {
		f    store.AuditFilter
		want int
	}{
		{store.AuditFilter{TypePrefix: "mfa."}, 3},
		{store.AuditFilter{TypePrefix: "mfa.totp"}, 2},
		{store.AuditFilter{TypePrefix: "mfa%"}, 0}, // no wildcards from input
		{store.AuditFilter{SubjectID: "s1"}, 2},
		{store.AuditFilter{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, 2},
		{store.AuditFilter{ActorID: "nobody"}, 0},
		{store.AuditFilter{Limit: 1}, 1},
	} {
		evs, err := s.ListAuditEvents(ctx, tc.f)
		if err != nil || len(evs) != tc.want {
			t.Errorf("filter %+v: want %d, got %d (%v)", tc.f, tc.want, len(evs), err)
		}
	}
	all, _ := s.ListAuditEvents(ctx, store.AuditFilter{})
	page, _ := s.ListAuditEvents(ctx, store.AuditFilter{AfterID: all[1].ID})
	if len(page) != 2 || page[0].ID != all[2].ID || !all[0].Time.Equal(base) {
		t.Fatalf("cursor: %+v", page)
	}
}

func testAdminQueries(t *testing.T, s store.Store) {
	ctx := context.Background()
	ann := mustUser(t, s, "ann_smith")
	mustUser(t, s, "bert")
	percent := store.User{ID: "u-pct", Username: "pct", Email: "100%@example.com", CreatedAt: base, UpdatedAt: base}
	if err := s.CreateUser(ctx, percent); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    string
		want int
	}{{"ANN", 1}, {"example.com", 3}, {"user b", 1}, {"%", 1}, {"_", 1}, {"nobody", 0}} {
		us, err := s.SearchUsers(ctx, tc.q, "", 10)
		if err != nil || len(us) != tc.want {
			t.Errorf("search %q: want %d, got %d (%v)", tc.q, tc.want, len(us), err)
		}
	}
	if us, _ := s.SearchUsers(ctx, "", "ann_smith", 10); len(us) != 2 {
		t.Errorf("search cursor: %+v", us)
	}
	ann.Email, ann.Disabled, ann.UpdatedAt = "new@example.com", true, base.Add(time.Hour)
	if err := s.UpdateUser(ctx, ann); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUser(ctx, ann.ID); got.Email != "new@example.com" || !got.Disabled {
		t.Fatalf("update user: %+v", got)
	}
	if err := s.AddAdmin(ctx, ann.ID, base); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.IsAdmin(ctx, ann.ID); ok {
		t.Fatal("a disabled user is not an admin")
	}
	if err := s.CreateGroup(ctx, store.Group{ID: "g1", Name: "g1", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "g1", "u-bert"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroupAdmin(ctx, "g1", "u-pct"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.GroupMembers(ctx, "g1"); len(ms) != 1 || ms[0].ID != "u-bert" {
		t.Fatalf("members: %+v", ms)
	}
	if as, _ := s.GroupAdmins(ctx, "g1"); len(as) != 1 || as[0].ID != "u-pct" {
		t.Fatalf("admins: %+v", as)
	}
	if gs, err := s.AdministeredGroups(ctx, "u-pct"); err != nil || len(gs) != 1 || gs[0].ID != "g1" || gs[0].Name != "g1" {
		t.Fatalf("administered groups: %+v %v", gs, err)
	}
	if gs, _ := s.AdministeredGroups(ctx, "u-bert"); len(gs) != 0 {
		t.Fatalf("a member administers nothing: %+v", gs)
	}
	if err := s.RemoveAdmin(ctx, ann.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAdmin(ctx, ann.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove admin twice: %v", err)
	}
	if err := s.RemoveMember(ctx, "g1", "u-bert"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(ctx, "g1", "u-bert"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
	if pid, err := s.GroupPolicyID(ctx, "g1"); err != nil || pid != "" {
		t.Fatalf("no policy: %q %v", pid, err)
	}
	if err := s.DeletePolicy(ctx, "policy_default"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the default policy cannot be deleted: %v", err)
	}
	if err := s.CreateClient(ctx, store.Client{ID: "c1", RedirectURIs: []string{"https://a/cb"}, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateClientRedirects(ctx, "c1", []string{"https://b/cb"}, []string{"https://b/bye"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetClient(ctx, "c1"); c.RedirectURIs[0] != "https://b/cb" || c.PostLogoutRedirectURIs[0] != "https://b/bye" {
		t.Fatalf("client redirects: %+v", c)
	}
}

// testWebAuthn: credential ids are unique across users, a counter only
// moves forward (zero stays allowed for authenticators without one), one
// user cannot rename or delete another's credential, and a ceremony is
// taken once.
func testWebAuthn(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, v := mustUser(t, s, "wanda"), mustUser(t, s, "victor")
	c := store.WebAuthnCredential{ID: "wa1", UserID: u.ID, Name: "YubiKey", CredentialID: []byte{1, 2, 3}, Data: []byte(`{"x":1}`), SignCount: 5, CreatedAt: base}
	if err := s.CreateWebAuthnCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	dup := c
	dup.ID, dup.UserID = "wa2", v.ID
	if err := s.CreateWebAuthnCredential(ctx, dup); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("a credential id registered twice: %v", err)
	}
	zero := store.WebAuthnCredential{ID: "wa3", UserID: u.ID, Name: "Phone", CredentialID: []byte{9}, Data: []byte(`{}`), CreatedAt: base.Add(time.Second)}
	if err := s.CreateWebAuthnCredential(ctx, zero); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id    string
		count uint32
		want  bool
	}{{"wa1", 6, true}, {"wa1", 6, false}, {"wa1", 3, false}, {"wa1", 0, false}, {"wa3", 0, true}, {"wa3", 0, true}, {"wa3", 1, true}, {"wa3", 0, false}} {
		if ok, err := s.UseWebAuthnCredential(ctx, tc.id, tc.count, base.Add(time.Minute)); err != nil || ok != tc.want {
			t.Fatalf("use %s with counter %d: %v %v, want %v", tc.id, tc.count, ok, err, tc.want)
		}
	}
	if err := s.RenameWebAuthnCredential(ctx, v.ID, "wa1", "mine now"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("renamed another user's credential: %v", err)
	}
	if ok, _ := s.DeleteWebAuthnCredential(ctx, v.ID, "wa1"); ok {
		t.Fatal("deleted another user's credential")
	}
	if err := s.RenameWebAuthnCredential(ctx, u.ID, "wa1", "Desk key"); err != nil {
		t.Fatal(err)
	}
	cs, err := s.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil || len(cs) != 2 || cs[0].Name != "Desk key" || cs[0].SignCount != 6 || !cs[0].LastUsedAt.Equal(base.Add(time.Minute)) ||
		string(cs[0].CredentialID) != string([]byte{1, 2, 3}) || cs[1].ID != "wa3" {
		t.Fatalf("list: %v %+v", err, cs)
	}
	if ok, _ := s.DeleteWebAuthnCredential(ctx, u.ID, "wa1"); !ok {
		t.Fatal("delete")
	}

	cer := store.WebAuthnCeremony{ID: "cer1", Kind: "login", UserID: u.ID, Binding: "flow_1", Data: []byte(`{"challenge":"c"}`), ExpiresAt: base}
	if err := s.PutWebAuthnCeremony(ctx, cer); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeWebAuthnCeremony(ctx, "cer1")
	if err != nil || got.Binding != "flow_1" || got.Kind != "login" || string(got.Data) != string(cer.Data) || !got.ExpiresAt.Equal(base) {
		t.Fatalf("take: %v %+v", err, got)
	}
	if _, err := s.TakeWebAuthnCeremony(ctx, "cer1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a ceremony taken twice: %v", err)
	}
	// Abandoned ceremonies go with the expired-row cleanup.
	cer.ID = "cer2"
	if err := s.PutWebAuthnCeremony(ctx, cer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteExpiredTokens(ctx, base.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeWebAuthnCeremony(ctx, "cer2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired ceremony survived cleanup: %v", err)
	}
}
