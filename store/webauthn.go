package store

import (
	"context"
	"time"
)

// WebAuthnCredential is a registered passkey or security key. CredentialID
// is the authenticator's credential id (unique across users); Data is the
// WebAuthn library's credential record as JSON (public key, flags,
// transports, attestation: nothing secret). SignCount is kept in its own
// column so a cloned authenticator's counter going backwards is caught by
// one conditional update.
type WebAuthnCredential struct {
	ID           string
	UserID       string
	Name         string
	CredentialID []byte
	Data         []byte
	SignCount    uint32
	CreatedAt    time.Time
	LastUsedAt   time.Time // zero: never used to sign in
}

// WebAuthnCeremony is a registration or authentication in progress: the
// library's session data (its challenge), bound to what started it (a
// portal session, a sign-in flow) and usable once, until ExpiresAt.
type WebAuthnCeremony struct {
	ID        string
	Kind      string // "register" or "login"
	UserID    string
	Binding   string
	Data      []byte
	ExpiresAt time.Time
}

// WebAuthn stores passkeys and the ceremonies that create and use them.
type WebAuthn interface {
	// CreateWebAuthnCredential stores c; ErrAlreadyExists if its
	// credential id is registered already (to anyone).
	CreateWebAuthnCredential(ctx context.Context, c WebAuthnCredential) error
	ListWebAuthnCredentials(ctx context.Context, userID string) ([]WebAuthnCredential, error)
	// UseWebAuthnCredential records a sign-in with the credential: the
	// counter moves to signCount only if it is larger than the stored one,
	// or both are zero (authenticators without a counter); false means it
	// went backwards or stood still — a cloned authenticator.
	UseWebAuthnCredential(ctx context.Context, id string, signCount uint32, at time.Time) (bool, error)
	RenameWebAuthnCredential(ctx context.Context, userID, id, name string) error
	// DeleteWebAuthnCredential removes one of userID's credentials; false
	// if it had no such credential.
	DeleteWebAuthnCredential(ctx context.Context, userID, id string) (bool, error)

	PutWebAuthnCeremony(ctx context.Context, c WebAuthnCeremony) error
	// TakeWebAuthnCeremony deletes and returns the ceremony: a challenge
	// answers once. ErrNotFound if it is gone.
	TakeWebAuthnCeremony(ctx context.Context, id string) (WebAuthnCeremony, error)
}
