package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Email tells users about changes to their two-step verification.
type Email struct {
	Addr     string // SMTP host:port
	From     string
	Username string // optional; PLAIN auth (over TLS, or to localhost)
	Password string
	Issuer   string // for links in the message
	Users    store.Users
	// Send defaults to smtp.SendMail.
	Send func(addr string, a smtp.Auth, from string, to []string, msg []byte) error
}

// Name identifies the email cursor.
func (m *Email) Name() string { return "email" }

var subjects = map[string]string{
	"mfa.totp.enrolled":   "Two-step verification was turned on",
	"mfa.totp.replaced":   "Your authenticator app was replaced",
	"mfa.totp.removed":    "Two-step verification was removed from your account",
	"mfa.reset.requested": "You asked your admins to reset two-step verification",
	"mfa.reset.approved":  "Your two-step verification reset was approved",
	"mfa.reset.denied":    "Your two-step verification reset was denied",
}

// Deliver mails the subject user about e, if e is a 2SV change; other
// events pass through.
func (m *Email) Deliver(ctx context.Context, e store.AuditEvent) error {
	subject, ok := subjects[e.Type]
	if !ok || e.SubjectID == "" {
		return nil
	}
	u, err := m.Users.GetUser(ctx, e.SubjectID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Email == "") {
		return nil // nobody to tell
	}
	if err != nil {
		return err
	}
	by := "you"
	if e.ActorType == "admin" {
		by = "an administrator"
	}
	body := fmt.Sprintf("Hello %s,\r\n\r\n%s on %s UTC, by %s.\r\n\r\nIf this was not you, contact your administrator now and review your account at %s/account/security.\r\n\r\n-- Latchkey\r\n",
		firstNonEmpty(u.DisplayName, u.Username), subject, e.Time.UTC().Format("2 Jan 2006 15:04"), by, m.Issuer)
	msg := "From: " + m.From + "\r\nTo: " + u.Email + "\r\nSubject: " + subject + "\r\nDate: " + e.Time.UTC().Format(time.RFC1123Z) +
		"\r\nMessage-ID: <audit-" + fmt.Sprint(e.ID) + "@latchkey>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
	if strings.ContainsAny(u.Email+m.From, "\r\n") {
		return nil // never let a stored address inject headers
	}
	var auth smtp.Auth
	if m.Username != "" {
		host, _, _ := net.SplitHostPort(m.Addr)
		auth = smtp.PlainAuth("", m.Username, m.Password, host)
	}
	send := m.Send
	if send == nil {
		send = smtp.SendMail
	}
	return send(m.Addr, auth, m.From, []string{u.Email}, []byte(msg))
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
