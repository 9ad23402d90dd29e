package notify

import (
	"context"
	"encoding/json"
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
	"mfa.totp.enrolled": "Two-step verification was turned on",
	"mfa.totp.replaced": "Your authenticator app was replaced",
	"mfa.totp.removed":  "Two-step verification was removed from your account",
	// One of several methods added or removed: 2SV stays on.
	"mfa.webauthn.registered": "A security key or passkey was added to your account",
	"mfa.webauthn.removed":    "A security key or passkey was removed from your account",
	"mfa.totp.method_removed": "Your authenticator app was removed from your account",
	"mfa.reset.requested":     "You asked your admins to reset two-step verification",
	"mfa.reset.approved":      "Your two-step verification reset was approved",
	"mfa.reset.denied":        "Your two-step verification reset was denied",
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
	switch e.ActorType {
	case "admin":
		by = "an administrator"
	case "system":
		by = "an administrator, from the command line"
	}
	note := ""
	if r := detail(e, "reason"); r != "" && (e.Type == "mfa.reset.approved" || e.Type == "mfa.reset.denied") {
		note = "\r\nYour administrator wrote: " + strings.ReplaceAll(r, "\n", "\r\n  ") + "\r\n"
	}
	if e.Type == "mfa.reset.approved" {
		note += "\r\nSign in with your password to set up a new authenticator app.\r\n"
	}
	body := fmt.Sprintf("Hello %s,\r\n\r\n%s (%s UTC, by %s).\r\n%s\r\nIf this was not you, contact your administrator now and review your account at %s/account/security.\r\n\r\n-- Latchkey\r\n",
		firstNonEmpty(u.DisplayName, u.Username), subject, e.Time.UTC().Format("2 Jan 2006 15:04"), by, note, m.Issuer)
	return m.send(u.Email, subject, fmt.Sprintf("audit-%d", e.ID), e.Time, body)
}

// send mails one plain-text message.
func (m *Email) send(to, subject, id string, at time.Time, body string) error {
	if strings.ContainsAny(to+m.From+subject, "\r\n") {
		return nil // never let a stored value inject headers
	}
	msg := "From: " + m.From + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nDate: " + at.UTC().Format(time.RFC1123Z) +
		"\r\nMessage-ID: <" + id + "@latchkey>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
	var auth smtp.Auth
	if m.Username != "" {
		host, _, _ := net.SplitHostPort(m.Addr)
		auth = smtp.PlainAuth("", m.Username, m.Password, host)
	}
	send := m.Send
	if send == nil {
		send = smtp.SendMail
	}
	return send(m.Addr, auth, m.From, []string{to}, []byte(msg))
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// AdminEmail tells a user's group admins when the user asks for a reset or
// removes their own 2SV, with a link to the console (which needs a
// sign-in: the mail unlocks nothing). It has its own cursor, so a
// failing admin mailbox does not hold back the users' mail.
type AdminEmail struct {
	Mail   *Email
	Admins interface {
		GetUser(ctx context.Context, id string) (store.User, error)
		UserAdminContacts(ctx context.Context, userID string) ([]store.User, error)
	}
}

// Name identifies the admin email cursor.
func (m *AdminEmail) Name() string { return "admin-email" }

// Deliver mails each group admin of the event's subject about a reset
// request or a self-service removal; other events pass through. A failed
// send is retried for the whole event (at least once per admin).
func (m *AdminEmail) Deliver(ctx context.Context, e store.AuditEvent) error {
	var what, link string
	switch {
	case e.Type == "mfa.reset.requested":
		what, link = "asked for a reset of their two-step verification", m.Mail.Issuer+"/console/resets"
	case e.Type == "mfa.totp.removed" && detail(e, "by") == "self":
		what, link = "removed their own two-step verification (allowed by their policy)", m.Mail.Issuer+"/console/users/"+e.SubjectID
	default:
		return nil
	}
	member, err := m.Admins.GetUser(ctx, e.SubjectID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	admins, err := m.Admins.UserAdminContacts(ctx, e.SubjectID)
	if err != nil {
		return err
	}
	name := firstNonEmpty(member.DisplayName, member.Username)
	for _, a := range admins {
		if a.Email == "" {
			continue
		}
		body := fmt.Sprintf("Hello %s,\r\n\r\n%s (%s), a member of a group you administer, %s on %s UTC.\r\n\r\nReview it in the admin console (sign-in required): %s\r\n\r\n-- Latchkey\r\n",
			firstNonEmpty(a.DisplayName, a.Username), name, member.Username, what, e.Time.UTC().Format("2 Jan 2006 15:04"), link)
		subject := name + " " + strings.SplitN(what, " (", 2)[0]
		if err := m.Mail.send(a.Email, subject, fmt.Sprintf("audit-%d-%s", e.ID, a.ID), e.Time, body); err != nil {
			return err
		}
	}
	return nil
}

// detail reads one string field of an event's details.
func detail(e store.AuditEvent, key string) string {
	var d map[string]any
	if json.Unmarshal([]byte(e.Details), &d) != nil {
		return ""
	}
	v, _ := d[key].(string)
	return v
}
