package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/testmail"
)

// TestBrowserLostAuthenticatorJourney is issue 11's story for its three
// people, in two real browsers: Lea lost her phone and has no recovery
// code; from the sign-in page she finds her group's admin and asks for a
// reset; Gina, Finance's admin (not a global admin), gets the email, signs
// in to the console and approves after a step-up; Lea is told, signs in
// with her password, sets up a new authenticator and signs in with it.
func TestBrowserLostAuthenticatorJourney(t *testing.T) {
	userCtx := chromium(t)
	adminCtx := chromium(t)
	mail := testmail.New(t)
	srv := startServer(t, testdb.SQLite(t), func(c *config.Config) {
		c.Notifications.SMTPAddr, c.Notifications.SMTPFrom = mail.Addr(), "latchkey@example.com"
	})
	ctx := context.Background()
	lea := srv.createUser(t, "lea", true)
	gina := srv.createUser(t, "gina", true)
	fin, _ := srv.policyGroup(t, "Finance", false, lea)
	if err := srv.app.store.AddGroupAdmin(ctx, fin.ID, gina.ID); err != nil {
		t.Fatal(err)
	}
	seal := func() {
		if _, _, err := audit.Seal(ctx, srv.app.store, srv.app.ledger, 10000, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	seal() // what happened before the mail was configured is not sent
	dispatchers := srv.app.dispatchers()
	for _, d := range dispatchers {
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deliver := func() {
		seal() // the server's sealer would, within a second
		for _, d := range dispatchers {
			if _, err := d.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	password := func(u user) chromedp.Tasks {
		return chromedp.Tasks{
			chromedp.WaitVisible(`#username`, chromedp.ByID),
			chromedp.SendKeys(`#username`, u.Username, chromedp.ByID),
			chromedp.SendKeys(`#password`, u.Password, chromedp.ByID),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
		}
	}
	code := func(secret *string) chromedp.Tasks {
		return chromedp.Tasks{
			chromedp.WaitVisible(`#code`, chromedp.ByID),
			chromedp.ActionFunc(func(ctx context.Context) error {
				srv.nextTOTPStep()
				c, _ := authn.TOTPCode(*secret, srv.totpNow())
				return chromedp.SendKeys(`#code`, c, chromedp.ByID).Do(ctx)
			}),
			chromedp.Click(`button[type=submit]`, chromedp.ByQuery),
		}
	}

	// Lea: password, then "Lost your authenticator?".
	var lost, sent string
	err := chromedp.Run(userCtx,
		chromedp.Navigate(srv.URL+"/account"),
		password(lea),
		chromedp.WaitVisible(`#code`, chromedp.ByID),
		shot(t, "20-lost-second-factor"),
		chromedp.Click(`//a[text()="Lost your authenticator?"]`),
		chromedp.WaitVisible(`//h1[text()="Lost your authenticator?"]`),
		chromedp.Text(`main`, &lost, chromedp.ByQuery),
		shot(t, "21-lost-page"),
		chromedp.SendKeys(`#message`, "New phone; the app did not move over.", chromedp.ByID),
		chromedp.Click(`//button[text()="Ask for a reset"]`),
		chromedp.WaitVisible(`//h2[text()="What happens next"]`),
		chromedp.Text(`main`, &sent, chromedp.ByQuery),
		shot(t, "22-lost-request-sent"),
	)
	if err != nil {
		t.Fatalf("Lea's browser: %v", err)
	}
	if !strings.Contains(lost, "Gina") || !strings.Contains(lost, "gina@example.com") || !strings.Contains(sent, "Your request was sent to Gina") {
		t.Fatalf("the lost page must name Lea's admin: %q / %q", lost, sent)
	}

	// Gina is told by email, with a link to the console.
	deliver()
	got := mail.To("gina@example.com")
	if len(got) != 1 || !strings.Contains(got[0], "Lea asked for a reset") || !strings.Contains(got[0], srv.URL+"/console/resets") {
		t.Fatalf("Gina's mail: %q", got)
	}

	// Gina: console (a group admin lands on the reset queue); approving
	// after her sign-in grew old needs a step-up, then applies.
	var queue, approved string
	ageConsole := ageConsoleSignIn(t, srv)
	err = chromedp.Run(adminCtx,
		chromedp.Navigate(srv.URL+"/console"),
		password(gina), code(&gina.Secret),
		chromedp.WaitVisible(`//h1[text()="Reset requests"]`),
		chromedp.Text(`main`, &queue, chromedp.ByQuery),
		shot(t, "23-console-reset-queue"),
		ageConsole,
		chromedp.SendKeys(`//form[contains(@action, "/approve")]//input[@name="reason"]`, "Set up the app on your new phone today."),
		chromedp.Click(`//button[contains(., "Approve")]`),
		password(gina), code(&gina.Secret), // the step-up
		chromedp.WaitVisible(`//p[contains(., "Approved")]`),
		chromedp.Text(`main`, &approved, chromedp.ByQuery),
		shot(t, "24-console-approved"),
	)
	if err != nil {
		t.Fatalf("Gina's browser: %v", err)
	}
	if !strings.Contains(queue, "lea") || !strings.Contains(queue, "New phone") {
		t.Fatalf("the queue: %q", queue)
	}
	if hasTOTP(t, srv, lea) {
		t.Fatal("approval did not remove Lea's 2SV")
	}
	if d := lastEvent(t, srv.app.store, "mfa.reset.approved", lea.ID); d["basis"] != "admin of Finance" || d["via"] != "session" {
		t.Fatalf("the approval names Gina's basis: %v", d)
	}
	deliver()
	if got := mail.To("lea@example.com"); len(got) == 0 || !strings.Contains(strings.Join(got, ""), "reset was approved") ||
		!strings.Contains(strings.Join(got, ""), "Your administrator wrote: Set up the app on your new phone today.") {
		t.Fatalf("Lea is told of the approval: %q", got)
	}

	// Lea: password, then the setup screen; a new authenticator; then a
	// sign-in with it.
	var secret, portal string
	err = chromedp.Run(userCtx,
		chromedp.Navigate(srv.URL+"/account/login"),
		password(lea),
		chromedp.WaitVisible(`code.secret`, chromedp.ByQuery),
		chromedp.Text(`code.secret`, &secret, chromedp.ByQuery),
		shot(t, "25-lost-setup-new-authenticator"),
	)
	if err != nil {
		t.Fatalf("Lea's setup: %v", err)
	}
	newSecret := strings.ReplaceAll(strings.TrimSpace(secret), " ", "")
	err = chromedp.Run(userCtx,
		code(&newSecret),
		chromedp.WaitVisible(`ul.codes`, chromedp.ByQuery),
		chromedp.Click(`//button[contains(., "continue")]`),
		chromedp.WaitVisible(`//form[@action="/account/logout"]`),
		network.ClearBrowserCookies(), // a new browser, as far as Latchkey can tell
		chromedp.Navigate(srv.URL+"/account"),
		password(lea), code(&newSecret),
		chromedp.WaitVisible(`//form[@action="/account/logout"]`),
		chromedp.Text(`main`, &portal, chromedp.ByQuery),
		shot(t, "26-lost-signed-in-again"),
	)
	if err != nil {
		t.Fatalf("Lea's new authenticator: %v", err)
	}
	if !hasTOTP(t, srv, lea) || auditCount(t, srv, "mfa.totp.enrolled", lea.ID) != 1 {
		t.Fatal("Lea's new authenticator is not enrolled")
	}
}
