package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
)

// TestBrowserPasskeys drives issue 14's story in Chromium with a virtual
// authenticator (Chrome DevTools Protocol WebAuthn domain): add a security
// key at the portal after a step-up, sign in with it, step up with it to
// remove the TOTP app (allowed: a change of method), see the last key
// refused as a method removal, turn 2SV off through the removal flow, and
// find a cloned key (its counter behind) refused at sign-in.
func TestBrowserPasskeys(t *testing.T) {
	ctx := chromium(t)
	srv := startServer(t, testdb.SQLite(t), onLocalhost)
	kim := srv.createUser(t, "kim", true)
	srv.policyGroup(t, "Staff", true, kim)

	var authID webauthn.AuthenticatorID
	if err := chromedp.Run(ctx, webauthn.Enable(), chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		authID, err = webauthn.AddVirtualAuthenticator(&webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2,
			Transport: webauthn.AuthenticatorTransportUsb, HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
			AutomaticPresenceSimulation: true}).Do(ctx)
		return err
	})); err != nil {
		t.Fatalf("virtual authenticator: %v", err)
	}
	code := func() string {
		srv.nextTOTPStep()
		c, _ := authn.TOTPCode(kim.Secret, srv.totpNow())
		return c
	}
	password := chromedp.Tasks{
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, kim.Username, chromedp.ByID),
		chromedp.SendKeys(`#password`, kim.Password, chromedp.ByID),
		chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
	}
	withCode := chromedp.Tasks{password,
		chromedp.WaitVisible(`#code`, chromedp.ByID),
		chromedp.ActionFunc(func(ctx context.Context) error { return chromedp.SendKeys(`#code`, code(), chromedp.ByID).Do(ctx) }),
		chromedp.Click(`//form[@action="/login/2sv"]//button[@type="submit"]`),
	}
	withKey := func(name string) chromedp.Tasks {
		return chromedp.Tasks{password,
			chromedp.WaitVisible(`#passkey-button`, chromedp.ByID),
			shot(t, name),
			chromedp.Click(`#passkey-button`, chromedp.ByID),
		}
	}
	var added, removed, last, gone string
	err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/account/security"),
		withCode,
		chromedp.WaitVisible(`//button[contains(., "Add a security key or passkey")]`),
		chromedp.Click(`//button[contains(., "Add a security key or passkey")]`),
		withCode, // the step-up made for adding a method
		chromedp.WaitVisible(`#passkey-name`, chromedp.ByID),
		chromedp.SendKeys(`#passkey-name`, "Virtual key", chromedp.ByID),
		shot(t, "30-add-passkey"),
		chromedp.Click(`#passkey-button`, chromedp.ByID),
		chromedp.WaitVisible(`//p[contains(., "was added")]`),
		chromedp.Text(`main`, &added, chromedp.ByQuery),
		shot(t, "31-passkey-added"),
		// Remove the TOTP app: the step-up is made with the key.
		chromedp.Click(`//tr[contains(., "Authenticator app")]//button[contains(., "Remove")]`),
		withKey("32-step-up-with-passkey"),
		chromedp.WaitVisible(`//button[contains(., "Continue: remove Authenticator app")]`),
		chromedp.Click(`//button[contains(., "Continue: remove Authenticator app")]`),
		chromedp.WaitVisible(`//p[contains(., "It was removed")]`),
		chromedp.Text(`main`, &removed, chromedp.ByQuery),
		// The last method is not removable as a change of method: its row
		// has no Remove button (TestPortalPasskeys checks the refusal).
		chromedp.Text(`table.methods`, &last, chromedp.ByQuery),
		shot(t, "33-last-method"),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(added, "was added") || !strings.Contains(added, "Authenticator app") {
		t.Errorf("after adding: %q", added)
	}
	if cs, _ := srv.app.store.ListWebAuthnCredentials(context.Background(), kim.ID); len(cs) != 1 || cs[0].Name != "Virtual key" {
		t.Fatalf("stored keys: %+v", cs)
	}
	if strings.Contains(removed, "Authenticator app") || hasTOTP(t, srv, kim) {
		t.Errorf("the TOTP app was not removed: %q", removed)
	}
	if !strings.Contains(last, "Rename") || strings.Contains(last, "Remove") {
		t.Errorf("the last key's row: %q", last)
	}
	if n := auditCount(t, srv, "mfa.webauthn.registered", kim.ID); n != 1 {
		t.Errorf("registered events: %d", n)
	}

	// A clone: the same key with its counter set back. Sign-in refuses it.
	var refused string
	err = chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			creds, err := webauthn.GetCredentials(authID).Do(ctx)
			if err != nil || len(creds) != 1 || creds[0].SignCount < 1 {
				t.Fatalf("virtual credentials: %v %+v", err, creds)
			}
			c := *creds[0]
			c.SignCount = 0
			if err := webauthn.RemoveCredential(authID, c.CredentialID).Do(ctx); err != nil {
				return err
			}
			return webauthn.AddCredential(authID, &c).Do(ctx)
		}),
		network.ClearBrowserCookies(), // a new browser, as far as Latchkey can tell
		chromedp.Navigate(srv.URL+"/account"),
		withKey("34-cloned-key"),
		chromedp.WaitVisible(`//p[contains(., "could not be verified")]`),
		chromedp.Text(`main`, &refused, chromedp.ByQuery),
		shot(t, "35-cloned-key-refused"),
	)
	if err != nil {
		t.Fatalf("browser (clone): %v", err)
	}

	// The real key's counter moves on again past the stored one: bring the
	// virtual credential ahead, sign in, and turn 2SV off through the
	// removal flow (policy allows it; the confirmation applies).
	err = chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			creds, err := webauthn.GetCredentials(authID).Do(ctx)
			if err != nil {
				return err
			}
			c := *creds[0]
			c.SignCount = 100
			if err := webauthn.RemoveCredential(authID, c.CredentialID).Do(ctx); err != nil {
				return err
			}
			return webauthn.AddCredential(authID, &c).Do(ctx)
		}),
		chromedp.Navigate(srv.URL+"/account"),
		withKey("36-sign-in-with-passkey"),
		chromedp.WaitVisible(`//h1[text()="Edit account"]`),
		chromedp.Navigate(srv.URL+"/account/security"),
		chromedp.Click(`//button[contains(., "Turn off 2-step verification")]`),
		withKey("37-step-up-for-removal"),
		chromedp.WaitVisible(`//button[contains(., "Continue: turn off 2-step verification")]`),
		chromedp.Click(`//button[contains(., "Continue: turn off 2-step verification")]`),
		chromedp.WaitVisible(`//h1[contains(., "2-step verification will be disabled")]`),
		chromedp.Click(`//button[text()="Yes"]`),
		chromedp.WaitVisible(`img.qr`, chromedp.ByQuery),
		chromedp.Text(`main`, &gone, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("browser (removal): %v", err)
	}
	if ms, _ := srv.app.mfa.Methods(context.Background(), kim.ID); len(ms) != 0 {
		t.Fatalf("after turning 2SV off: %+v", ms)
	}
	if !strings.Contains(gone, "Two-step verification was disabled") {
		t.Errorf("setup page: %q", gone)
	}
}

// TestBrowserPolicyMovesToAKey: a policy now allows only passkeys and
// security keys; Ivy has only an authenticator app. In Chromium, after her
// password the second step says what her organisation requires, her app's
// code takes her to the setup screen, which offers a key and no app; the
// virtual authenticator registers one, the sign-in lands in the portal,
// and the app is gone.
func TestBrowserPolicyMovesToAKey(t *testing.T) {
	ctx := chromium(t)
	srv := startServer(t, testdb.SQLite(t), onLocalhost)
	ivy := srv.createUser(t, "ivy", true)
	srv.keysOnly(t, ivy)
	if err := chromedp.Run(ctx, webauthn.Enable(), chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := webauthn.AddVirtualAuthenticator(&webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2,
			Transport: webauthn.AuthenticatorTransportUsb, HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
			AutomaticPresenceSimulation: true}).Do(ctx)
		return err
	})); err != nil {
		t.Fatalf("virtual authenticator: %v", err)
	}
	var notice, setup, portal string
	err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/account/security"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, ivy.Username, chromedp.ByID),
		chromedp.SendKeys(`#password`, ivy.Password, chromedp.ByID),
		chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#code`, chromedp.ByID),
		chromedp.Text(`main`, &notice, chromedp.ByQuery),
		shot(t, "38-policy-requires-a-key"),
		chromedp.ActionFunc(func(ctx context.Context) error {
			srv.nextTOTPStep()
			c, _ := authn.TOTPCode(ivy.Secret, srv.totpNow())
			return chromedp.SendKeys(`#code`, c, chromedp.ByID).Do(ctx)
		}),
		chromedp.Click(`//form[@action="/login/2sv"]//button[@type="submit"]`),
		chromedp.WaitVisible(`#passkey-button`, chromedp.ByID),
		chromedp.Text(`main`, &setup, chromedp.ByQuery),
		chromedp.SendKeys(`#passkey-name`, "Laptop", chromedp.ByID),
		shot(t, "39-setup-offers-a-key"),
		chromedp.Click(`#passkey-button`, chromedp.ByID),
		chromedp.WaitVisible(`table.methods`, chromedp.ByQuery),
		chromedp.Text(`main`, &portal, chromedp.ByQuery),
		shot(t, "40-moved-to-a-key"),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(notice, "Only passkeys and security keys may be used") {
		t.Errorf("the second step does not say what is required: %q", notice)
	}
	if !strings.Contains(setup, "Add one now") || strings.Contains(setup, "Scan this code") {
		t.Errorf("the setup screen: %q", setup)
	}
	if strings.Contains(portal, "Authenticator app") || !strings.Contains(portal, "2-step verification is active") || hasTOTP(t, srv, ivy) {
		t.Errorf("after moving to a key: %q", portal)
	}
	if cs, _ := srv.app.store.ListWebAuthnCredentials(context.Background(), ivy.ID); len(cs) != 1 || cs[0].Name != "Laptop" {
		t.Errorf("stored keys: %+v", cs)
	}
}
