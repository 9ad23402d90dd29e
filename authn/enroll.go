package authn

import (
	"context"
	"slices"
	"time"

	"github.com/latchkey/latchkey/store"
)

// The primitives of an authenticator's life: secrets sealed at rest,
// codes matched, recovery codes digested. Package mfa composes them into
// the 2SV lifecycle (with its checks, transactions and audit events) and
// is their only caller outside tests.

// pendingLifetime is how long a shown-but-unverified secret stays usable.
const pendingLifetime = 15 * time.Minute

// NewPendingTOTP returns a new secret and its sealed pending record,
// bound to the caller it will be shown to.
func (s *Service) NewPendingTOTP(userID, binding string) (string, store.PendingTOTP) {
	secret := NewTOTPSecret()
	id := NewID("totp")
	now := s.o.Now().UTC()
	return secret, store.PendingTOTP{UserID: userID, ID: id, Secret: s.o.Keyring.Seal([]byte(secret), []byte(id)), Binding: binding,
		CreatedAt: now, ExpiresAt: now.Add(pendingLifetime)}
}

// OpenPendingTOTP returns a pending record's secret.
func (s *Service) OpenPendingTOTP(p store.PendingTOTP) (string, error) {
	secret, err := s.o.Keyring.Open(p.Secret, []byte(p.ID))
	return string(secret), err
}

// MatchTOTP returns the time step at which code matches secret now (±1).
func (s *Service) MatchTOTP(secret, code string) (int64, bool) {
	return matchTOTP(secret, code, s.o.Now())
}

// NewRecoveryCodeSet returns fresh recovery codes and their stored digests.
func (s *Service) NewRecoveryCodeSet() (codes, digests []string) { return s.newRecoveryCodes() }

// HasSecondFactor reports whether an amr claim (RFC 8176) shows a second
// factor.
func HasSecondFactor(amr []string) bool {
	return slices.Contains(amr, "otp") || slices.Contains(amr, "mfa") || slices.Contains(amr, "hwk") || slices.Contains(amr, "swk")
}

// EnrollTOTP stores secret (already verified by the caller) as the user's
// authenticator, with fresh recovery codes, on q. usedStep is the time
// step of the verifying code, which is spent so it cannot also sign in (0
// when none was used). It returns the recovery codes, to show once.
func (s *Service) EnrollTOTP(ctx context.Context, q store.Queries, userID, secret string, usedStep int64) ([]string, error) {
	now := s.o.Now().UTC()
	id := NewID("totp")
	last := now.Unix()/totpPeriod - totpSkew - 1
	last = max(last, usedStep)
	cred := store.TOTPCredential{ID: id, UserID: userID, Secret: s.o.Keyring.Seal([]byte(secret), []byte(id)),
		CreatedAt: now, VerifiedAt: now, LastStep: last}
	if err := q.CreateTOTP(ctx, cred); err != nil {
		return nil, err
	}
	codes, digests := s.newRecoveryCodes()
	if err := q.ReplaceRecoveryCodes(ctx, userID, digests, now); err != nil {
		return nil, err
	}
	return codes, nil
}
