package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// screenshotDir is where the browser tests leave PNGs of the main pages
// for reviewers (see README, "Screenshots").
const screenshotDir = "../../artifacts/screenshots"

// chromium starts headless Debian Chromium (never a downloaded browser).
// Without it the test is skipped, except under CI=true, where it fails.
func chromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI=true: %v", err)
		}
		t.Skip("chromium not installed (apt-get install -y chromium)")
	}
	// Not t.TempDir: Chromium may still be writing its profile while the
	// test's cleanup runs, and a failed removal must not fail the test.
	profile, err := os.MkdirTemp("", "latchkey-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile), chromedp.WindowSize(1100, 1000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA(); _ = os.RemoveAll(profile) })
	return ctx
}

func shot(t *testing.T, name string) chromedp.ActionFunc {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var png []byte
		if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
			return err
		}
		if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644)
	})
}

// TestBrowserUnlinkStory walks the seed-003 story in a real browser: sign
// in to the portal with password and code, open Security, unlink (which
// demands a fresh sign-in), confirm with Yes, and set up a new
// authenticator from the QR screen.
func TestBrowserUnlinkStory(t *testing.T) {
	ctx := chromium(t)
	srv := startServer(t, testdb.SQLite(t))
	wendy := srv.createUser(t, "wendy", true)
	srv.policyGroup(t, "Staff", true, wendy)

	code := func() string {
		srv.nextTOTPStep()
		c, _ := authn.TOTPCode(wendy.Secret, srv.totpNow())
		return c
	}
	signIn := func(name string) chromedp.Tasks {
		return chromedp.Tasks{
			chromedp.WaitVisible(`#username`, chromedp.ByID),
			shot(t, name+"-password"),
			chromedp.SendKeys(`#username`, wendy.Username, chromedp.ByID),
			chromedp.SendKeys(`#password`, wendy.Password, chromedp.ByID),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#code`, chromedp.ByID),
			shot(t, name+"-code"),
			chromedp.ActionFunc(func(ctx context.Context) error { return chromedp.SendKeys(`#code`, code(), chromedp.ByID).Do(ctx) }),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
		}
	}
	var security, dialog, setup, secret string
	err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/account"),
		signIn("01-login"),
		chromedp.WaitVisible(`//h1[text()="Edit account"]`),
		shot(t, "02-edit-account"),
		chromedp.Click(`//a[contains(., "Manage 2-step verification")]`),
		chromedp.WaitVisible(`//h1[contains(., "Security: 2-Step Verification")]`),
		chromedp.Text(`main`, &security, chromedp.ByQuery),
		shot(t, "03-security"),
		chromedp.Click(`//button[contains(., "Unlink authenticator app")]`),
		signIn("04-step-up"),
		chromedp.WaitVisible(`//button[contains(., "Continue: unlink authenticator app")]`),
		chromedp.Click(`//button[contains(., "Continue: unlink authenticator app")]`),
		chromedp.WaitVisible(`//h1[contains(., "2-step verification will be disabled")]`),
		chromedp.Text(`main`, &dialog, chromedp.ByQuery),
		shot(t, "05-confirm-dialog"),
		chromedp.Click(`//button[text()="Yes"]`),
		chromedp.WaitVisible(`img.qr`, chromedp.ByQuery),
		chromedp.Text(`main`, &setup, chromedp.ByQuery),
		chromedp.Text(`code.secret`, &secret, chromedp.ByQuery),
		shot(t, "06-setup-after-unlink"),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(security, "2-step verification is active") || !strings.Contains(security, "allowed by policy Staff") {
		t.Errorf("security page text: %q", security)
	}
	if !strings.Contains(dialog, "Yes") || !strings.Contains(dialog, "No") {
		t.Errorf("dialog: %q", dialog)
	}
	if !strings.Contains(setup, "Two-step verification was disabled") {
		t.Errorf("setup page lacks the banner: %q", setup)
	}
	if hasTOTP(t, srv, wendy) || auditCount(t, srv, "mfa.totp.removed", wendy.ID) != 1 {
		t.Fatal("the browser flow did not remove the authenticator with one audit event")
	}
	newSecret := strings.ReplaceAll(strings.TrimSpace(secret), " ", "")
	var codes string
	err = chromedp.Run(ctx,
		chromedp.ActionFunc(func(ctx context.Context) error {
			c, _ := authn.TOTPCode(newSecret, srv.totpNow())
			return chromedp.SendKeys(`#code`, c, chromedp.ByID).Do(ctx)
		}),
		chromedp.Click(`//button[contains(., "Turn on 2-step verification")]`),
		chromedp.WaitVisible(`ul.codes`, chromedp.ByQuery),
		chromedp.Text(`ul.codes`, &codes, chromedp.ByQuery),
		shot(t, "07-recovery-codes"),
	)
	if err != nil {
		t.Fatalf("browser re-enrollment: %v", err)
	}
	if len(strings.Fields(codes)) != authn.RecoveryCodeCount || !hasTOTP(t, srv, wendy) {
		t.Fatalf("re-enrollment: codes %q", codes)
	}
}

// TestBrowserConsoleStory walks issue 7's story in two real browsers: an
// admin signs in to the console, creates "Low risk" with self-removal on
// and assigns it to Staff (after a step-up); a Staff member then unlinks
// their authenticator at the portal; the admin sees the removal in the
// audit log.
func TestBrowserConsoleStory(t *testing.T) {
	adminCtx := chromium(t)
	userCtx := chromium(t)
	srv := startServer(t, testdb.SQLite(t))
	ada := srv.createUser(t, "ada", true)
	if err := srv.app.store.AddAdmin(context.Background(), ada.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	sam := srv.createUser(t, "sam", true)
	if err := srv.app.store.CreateGroup(context.Background(), store.Group{ID: "group_staff", Name: "Staff", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := srv.app.store.AddMember(context.Background(), "group_staff", sam.ID); err != nil {
		t.Fatal(err)
	}
	signIn := func(u user) chromedp.Tasks {
		return chromedp.Tasks{
			chromedp.WaitVisible(`#username`, chromedp.ByID),
			chromedp.SendKeys(`#username`, u.Username, chromedp.ByID),
			chromedp.SendKeys(`#password`, u.Password, chromedp.ByID),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#code`, chromedp.ByID),
			chromedp.ActionFunc(func(ctx context.Context) error {
				srv.nextTOTPStep()
				return chromedp.SendKeys(`#code`, mustCode(u.Secret, srv), chromedp.ByID).Do(ctx)
			}),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
		}
	}
	ageConsole := ageConsoleSignIn(t, srv)
	var saved, assigned string
	err := chromedp.Run(adminCtx,
		chromedp.Navigate(srv.URL+"/console"),
		signIn(ada),
		chromedp.WaitVisible(`//h1[text()="Authentication policies"]`),
		chromedp.SendKeys(`#name`, "Low risk", chromedp.ByID),
		shot(t, "10-console-new-policy"),
		chromedp.Click(`//button[text()="Create policy"]`), // a fresh console sign-in counts as the step-up
		chromedp.WaitVisible(`//h1[text()="Policy: Low risk"]`),
		ageConsole,
		// Save: the step-up comes in between, and the change is kept.
		chromedp.Click(`input[name=allow_self_service_mfa_removal]`, chromedp.ByQuery),
		chromedp.Click(`//button[contains(., "Save (version 1)")]`),
		signIn(ada),
		chromedp.WaitVisible(`//p[contains(., "Policy saved.")]`),
		chromedp.Text(`main`, &saved, chromedp.ByQuery),
		ageConsole,
		// Assign: the same.
		chromedp.Click(`//button[text()="Assign"]`),
		signIn(ada),
		chromedp.WaitVisible(`//p[contains(., "Assigned to: Staff")]`),
		chromedp.Text(`main`, &assigned, chromedp.ByQuery),
		shot(t, "11-console-policy-assigned"),
	)
	if err != nil {
		t.Fatalf("admin browser: %v", err)
	}
	if !strings.Contains(saved, "Save (version 2)") || !strings.Contains(assigned, "Policy assigned") {
		t.Fatalf("policy page after save %q, after assign %q", saved, assigned)
	}
	for _, typ := range []string{"policy.updated", "policy.assigned"} {
		if n := auditCount(t, srv, typ, ""); n != 1 {
			t.Fatalf("want one %s event after the step-up, got %d", typ, n)
		}
	}
	err = chromedp.Run(userCtx,
		chromedp.Navigate(srv.URL+"/account/security"),
		signIn(sam),
		chromedp.WaitVisible(`//button[contains(., "Unlink authenticator app")]`),
		chromedp.Click(`//button[contains(., "Unlink authenticator app")]`),
		signIn(sam), // the step-up
		chromedp.Click(`//button[contains(., "Continue: unlink authenticator app")]`),
		chromedp.WaitVisible(`//button[text()="Yes"]`),
		chromedp.Click(`//button[text()="Yes"]`),
		chromedp.WaitVisible(`img.qr`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("staff browser: %v", err)
	}
	var log string
	err = chromedp.Run(adminCtx,
		chromedp.Navigate(srv.URL+"/console/audit?type=mfa.totp.removed"),
		chromedp.WaitVisible(`//h1[text()="Audit log"]`),
		chromedp.Text(`main`, &log, chromedp.ByQuery),
		shot(t, "12-console-audit"),
		chromedp.Navigate(srv.URL+"/console/users/"+sam.ID),
		chromedp.WaitVisible(`//h1[text()="sam"]`),
		shot(t, "13-console-user"),
	)
	if err != nil {
		t.Fatalf("admin audit: %v", err)
	}
	if !strings.Contains(log, "mfa.totp.removed") || !strings.Contains(log, sam.ID) || !strings.Contains(log, "Hash chain intact") {
		t.Fatalf("the admin must see the removal: %q", log)
	}
}

// ageConsoleSignIn makes the browser's console sign-in six minutes old, so
// the next sensitive change needs a step-up.
func ageConsoleSignIn(t *testing.T, srv *testServer) chromedp.ActionFunc {
	return func(ctx context.Context) error {
		cs, err := network.GetCookies().WithURLs([]string{srv.URL + "/console"}).Do(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == "latchkey_console" {
				srv.ageSessionValue(t, c.Value, 6*time.Minute)
				return nil
			}
		}
		return errors.New("no console cookie")
	}
}
