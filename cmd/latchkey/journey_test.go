package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/testdb"
)

// mailbox is a minimal in-process SMTP server that keeps what it receives.
type mailbox struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mailbox{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return m
}

func (m *mailbox) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "220 test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "DATA"):
			io.WriteString(c, "354 go ahead\r\n")
			var sb strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				sb.WriteString(l)
			}
			m.mu.Lock()
			m.msgs = append(m.msgs, sb.String())
			m.mu.Unlock()
			io.WriteString(c, "250 queued\r\n")
		case strings.HasPrefix(cmd, "QUIT"):
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

// to returns the messages sent to addr.
func (m *mailbox) to(addr string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, msg := range m.msgs {
		if strings.Contains(msg, "To: "+addr+"\r\n") {
			out = append(out, msg)
		}
	}
	return out
}

// TestBrowserLostAuthenticatorJourney is issue 11's story for its three
// people, in two real browsers: Lea lost her phone and has no recovery
// code; from the sign-in page she finds her group's admin and asks for a
// reset; Gina, Finance's admin (not a global admin), gets the email, signs
// in to the console and approves after a step-up; Lea is told, signs in
// with her password, sets up a new authenticator and signs in with it.
func TestBrowserLostAuthenticatorJourney(t *testing.T) {
	userCtx := chromium(t)
	adminCtx := chromium(t)
	mail := newMailbox(t)
	srv := startServer(t, testdb.SQLite(t), func(c *config.Config) {
		c.Notifications.SMTPAddr, c.Notifications.SMTPFrom = mail.ln.Addr().String(), "latchkey@example.com"
	})
	ctx := context.Background()
	lea := srv.createUser(t, "lea", true)
	gina := srv.createUser(t, "gina", true)
	fin, _ := srv.policyGroup(t, "Finance", false, lea)
	if err := srv.app.store.AddGroupAdmin(ctx, fin.ID, gina.ID); err != nil {
		t.Fatal(err)
	}
	dispatchers := srv.app.dispatchers()
	for _, d := range dispatchers {
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deliver := func() {
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
	got := mail.to("gina@example.com")
	if len(got) != 1 || !strings.Contains(got[0], "Lea asked for a reset") || !strings.Contains(got[0], srv.URL+"/console/resets") {
		t.Fatalf("Gina's mail: %q", got)
	}

	// Gina: console (a group admin lands on the reset queue); approving
	// after her sign-in grew old needs a step-up, then applies.
	var queue, approved string
	ageConsole := chromedp.ActionFunc(func(ctx context.Context) error {
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
	})
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
	if got := mail.to("lea@example.com"); len(got) == 0 || !strings.Contains(strings.Join(got, ""), "reset was approved") ||
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
