package authn

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/latchkey/latchkey/store"
)

// Passkeys runs WebAuthn ceremonies (passkeys and security keys as second
// factors) for Latchkey's one relying party: the issuer's host is the RP id
// and the issuer's origin the only origin accepted. What the library leaves
// to its caller is done here, in one place: every challenge is stored
// server-side, bound to what started it (a portal session, a sign-in flow)
// and to the user, answers once, and expires; the user handle must be the
// signed-in user's; a signature counter that does not move forward (a
// cloned authenticator) is refused.
type Passkeys struct {
	wa  *webauthn.WebAuthn
	now func() time.Time
	ttl time.Duration
}

// ErrPasskey is returned for every ceremony that does not verify: unknown,
// used, expired or foreign challenge, wrong origin or RP id, bad signature,
// another user's credential, a counter going backwards. Callers answer it
// one way; the detail is for logs (errors.Unwrap).
var ErrPasskey = errors.New("authn: the security key or passkey could not be verified")

// ErrPasskeysNeedDomain: WebAuthn relying parties are named by a domain;
// an issuer on an IP address cannot offer passkeys.
var ErrPasskeysNeedDomain = errors.New("authn: passkeys need an issuer with a domain name (WebAuthn RP ids are domains, not IP addresses)")

// NewPasskeys returns the ceremonies for issuer (an http(s) URL). The RP
// name is what authenticators show.
func NewPasskeys(issuer, rpName string, now func() time.Time) (*Passkeys, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("authn: passkeys need an issuer URL, got %q", issuer)
	}
	if net.ParseIP(u.Hostname()) != nil {
		return nil, ErrPasskeysNeedDomain
	}
	if now == nil {
		now = time.Now
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: rpName,
		RPOrigins:     []string{u.Scheme + "://" + u.Host},
		// Attestation "none" by default: Latchkey does not vet makes and
		// models, and asking for attestation only adds a privacy prompt.
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationPreferred,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("authn: passkeys: %w", err)
	}
	return &Passkeys{wa: wa, now: now, ttl: 5 * time.Minute}, nil
}

// passkeyUser is a Latchkey user as the library sees it. The user handle
// is the user id: random, stable, and no personal data.
type passkeyUser struct {
	u     store.User
	creds []webauthn.Credential
}

func (p passkeyUser) WebAuthnID() []byte                         { return []byte(p.u.ID) }
func (p passkeyUser) WebAuthnName() string                       { return p.u.Username }
func (p passkeyUser) WebAuthnDisplayName() string                { return cmp.Or(p.u.DisplayName, p.u.Username) }
func (p passkeyUser) WebAuthnCredentials() []webauthn.Credential { return p.creds }

func toLibrary(u store.User, stored []store.WebAuthnCredential) (passkeyUser, error) {
	pu := passkeyUser{u: u}
	for _, c := range stored {
		var lc webauthn.Credential
		if err := json.Unmarshal(c.Data, &lc); err != nil {
			return pu, fmt.Errorf("authn: stored passkey %s: %w", c.ID, err)
		}
		lc.Authenticator.SignCount = c.SignCount // the column is the truth
		pu.creds = append(pu.creds, lc)
	}
	return pu, nil
}

// PasskeyAnswerFits reports whether a posted ceremony id and authenticator
// answer (the PublicKeyCredential JSON) are present and of a plausible
// size, for handlers to refuse the rest before anything is counted.
func PasskeyAnswerFits(ceremonyID, answer string) bool {
	return ceremonyID != "" && answer != "" && len(ceremonyID) <= 128 && len(answer) <= 16<<10
}

// Ceremony kinds.
const (
	ceremonyRegister = "register"
	ceremonyLogin    = "login"
)

// BeginRegistration starts adding a passkey to u, bound to binding. It
// returns the ceremony id to answer with and the options for
// navigator.credentials.create (JSON). The user's existing credentials are
// excluded, so one authenticator is not registered twice.
func (p *Passkeys) BeginRegistration(ctx context.Context, q store.Queries, u store.User, binding string) (string, []byte, error) {
	stored, err := q.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return "", nil, err
	}
	pu, err := toLibrary(u, stored)
	if err != nil {
		return "", nil, err
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range pu.creds {
		exclude = append(exclude, c.Descriptor())
	}
	opts, session, err := p.wa.BeginRegistration(pu, webauthn.WithExclusions(exclude))
	if err != nil {
		return "", nil, fmt.Errorf("authn: begin passkey registration: %w", err)
	}
	return p.begin(ctx, q, ceremonyRegister, u.ID, binding, session, opts)
}

// FinishRegistration verifies the authenticator's answer (the JSON of the
// PublicKeyCredential) to ceremony id and returns the credential to store,
// named name. It stores nothing: enrolling is the lifecycle service's.
func (p *Passkeys) FinishRegistration(ctx context.Context, q store.Queries, u store.User, id, binding, name string, response []byte) (store.WebAuthnCredential, error) {
	session, err := p.take(ctx, q, ceremonyRegister, id, u.ID, binding)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return store.WebAuthnCredential{}, fmt.Errorf("%w: %w", ErrPasskey, err)
	}
	stored, err := q.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	pu, err := toLibrary(u, stored)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	cred, err := p.wa.CreateCredential(pu, session, parsed)
	if err != nil {
		return store.WebAuthnCredential{}, fmt.Errorf("%w: %w", ErrPasskey, err)
	}
	data, err := json.Marshal(cred)
	if err != nil {
		return store.WebAuthnCredential{}, err
	}
	return store.WebAuthnCredential{ID: NewID("passkey"), UserID: u.ID, Name: name, CredentialID: cred.ID, Data: data,
		SignCount: cred.Authenticator.SignCount, CreatedAt: p.now().UTC()}, nil
}

// BeginLogin starts a second-factor check of u with any of their passkeys,
// bound to binding (the sign-in flow or the step-up). It returns the
// ceremony id and the options for navigator.credentials.get (JSON).
func (p *Passkeys) BeginLogin(ctx context.Context, q store.Queries, u store.User, binding string) (string, []byte, error) {
	stored, err := q.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return "", nil, err
	}
	if len(stored) == 0 {
		return "", nil, fmt.Errorf("%w: no passkey registered", ErrPasskey)
	}
	pu, err := toLibrary(u, stored)
	if err != nil {
		return "", nil, err
	}
	opts, session, err := p.wa.BeginLogin(pu)
	if err != nil {
		return "", nil, fmt.Errorf("authn: begin passkey sign-in: %w", err)
	}
	return p.begin(ctx, q, ceremonyLogin, u.ID, binding, session, opts)
}

// PasskeyUse is a verified passkey sign-in.
type PasskeyUse struct {
	Credential   store.WebAuthnCredential
	UserVerified bool // the authenticator verified the person (PIN, biometrics)
	Hardware     bool // not a synced passkey (backup-ineligible): RFC 8176 "hwk"
}

// FinishLogin verifies the answer to ceremony id and records the use (the
// counter moves forward, or the sign-in is refused as a clone).
func (p *Passkeys) FinishLogin(ctx context.Context, q store.Queries, u store.User, id, binding string, response []byte) (PasskeyUse, error) {
	session, err := p.take(ctx, q, ceremonyLogin, id, u.ID, binding)
	if err != nil {
		return PasskeyUse{}, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return PasskeyUse{}, fmt.Errorf("%w: %w", ErrPasskey, err)
	}
	// The library checks the handle only when the authenticator sends
	// one; the credential must be this user's in any case (below).
	if h := parsed.Response.UserHandle; len(h) > 0 && !bytes.Equal(h, []byte(u.ID)) {
		return PasskeyUse{}, fmt.Errorf("%w: user handle of another account", ErrPasskey)
	}
	stored, err := q.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return PasskeyUse{}, err
	}
	pu, err := toLibrary(u, stored)
	if err != nil {
		return PasskeyUse{}, err
	}
	cred, err := p.wa.ValidateLogin(pu, session, parsed)
	if err != nil {
		return PasskeyUse{}, fmt.Errorf("%w: %w", ErrPasskey, err)
	}
	var used store.WebAuthnCredential
	for _, c := range stored {
		if bytes.Equal(c.CredentialID, cred.ID) {
			used = c
		}
	}
	if used.ID == "" {
		return PasskeyUse{}, fmt.Errorf("%w: not this user's credential", ErrPasskey)
	}
	if cred.Authenticator.CloneWarning {
		return PasskeyUse{}, fmt.Errorf("%w: signature counter went backwards (cloned authenticator?)", ErrPasskey)
	}
	ok, err := q.UseWebAuthnCredential(ctx, used.ID, cred.Authenticator.SignCount, p.now())
	if err != nil {
		return PasskeyUse{}, err
	}
	if !ok { // a concurrent use moved the counter past this one
		return PasskeyUse{}, fmt.Errorf("%w: signature counter did not move forward", ErrPasskey)
	}
	used.SignCount, used.LastUsedAt = cred.Authenticator.SignCount, p.now().UTC()
	flags := parsed.Response.AuthenticatorData.Flags
	return PasskeyUse{Credential: used, UserVerified: flags.HasUserVerified(), Hardware: !flags.HasBackupEligible()}, nil
}

func (p *Passkeys) begin(ctx context.Context, q store.Queries, kind, userID, binding string, session *webauthn.SessionData, opts any) (string, []byte, error) {
	data, err := json.Marshal(session)
	if err != nil {
		return "", nil, err
	}
	options, err := json.Marshal(opts)
	if err != nil {
		return "", nil, err
	}
	id := NewID("wac")
	if err := q.PutWebAuthnCeremony(ctx, store.WebAuthnCeremony{ID: id, Kind: kind, UserID: userID, Binding: binding, Data: data,
		ExpiresAt: p.now().Add(p.ttl).UTC()}); err != nil {
		return "", nil, err
	}
	return id, options, nil
}

// take spends ceremony id: it is deleted whatever follows, and must be of
// kind, for userID, bound to binding and not expired.
func (p *Passkeys) take(ctx context.Context, q store.Queries, kind, id, userID, binding string) (webauthn.SessionData, error) {
	var session webauthn.SessionData
	c, err := q.TakeWebAuthnCeremony(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return session, fmt.Errorf("%w: unknown or used challenge", ErrPasskey)
	}
	if err != nil {
		return session, err
	}
	switch {
	case c.Kind != kind:
		return session, fmt.Errorf("%w: challenge for another ceremony", ErrPasskey)
	case c.UserID != userID || c.Binding != binding:
		return session, fmt.Errorf("%w: challenge issued to another session", ErrPasskey)
	case !p.now().Before(c.ExpiresAt):
		return session, fmt.Errorf("%w: challenge expired", ErrPasskey)
	}
	if err := json.Unmarshal(c.Data, &session); err != nil {
		return session, fmt.Errorf("authn: stored ceremony %s: %w", id, err)
	}
	return session, nil
}
