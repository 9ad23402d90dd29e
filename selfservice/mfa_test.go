package selfservice

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	mfa := []string{"pwd", "otp", "mfa"}
	tests := []struct {
		name string
		c    caller
		want bool
	}{
		{"step-up for unlink, 1 min ago", caller{AuthTime: now.Add(-time.Minute), AMR: mfa, StepUp: ActionUnlink}, true},
		{"older than max age", caller{AuthTime: now.Add(-6 * time.Minute), AMR: mfa, StepUp: ActionUnlink}, false},
		{"password only", caller{AuthTime: now.Add(-time.Minute), AMR: []string{"pwd"}, StepUp: ActionUnlink}, false},
		{"step-up for another action", caller{AuthTime: now.Add(-time.Minute), AMR: mfa, StepUp: ActionReplace}, false},
		{"plain sign-in, no step-up", caller{AuthTime: now.Add(-time.Minute), AMR: mfa}, false},
		{"bearer token, fresh, with otp", caller{AuthTime: now.Add(-time.Minute), AMR: mfa, Bearer: true}, true},
		{"bearer token, stale", caller{AuthTime: now.Add(-time.Hour), AMR: mfa, Bearer: true}, false},
	}
	for _, tc := range tests {
		if got := tc.c.fresh(ActionUnlink, 5*time.Minute, now); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

// failingAudit is the real store, except that writing an audit event fails,
// as when the audit table is unavailable.
type failingAudit struct{ store.Store }

func (f failingAudit) InTx(ctx context.Context, fn func(store.Queries) error) error {
	return f.Store.InTx(ctx, func(q store.Queries) error { return fn(failingQueries{q}) })
}

type failingQueries struct{ store.Queries }

func (failingQueries) InsertAuditEvent(context.Context, store.AuditEvent) (int64, error) {
	return 0, errors.New("forced: audit log unavailable")
}

// TestRemovalWithoutAuditChangesNothing: if the audit event cannot be
// written, the credential, its recovery codes and the confirmation step
// all stay.
func TestRemovalWithoutAuditChangesNothing(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			real := b.Open(t)
			st := failingAudit{real}
			ctx := context.Background()
			now := time.Now().UTC()
			ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{3}, 32)})
			an := authn.NewService(authn.Options{Store: st, Keyring: ring, Pepper: []byte("p")})
			h, err := New(Options{Issuer: "http://127.0.0.1:1", ClientID: "portal", Store: st, Authn: an, CSRF: &httpx.CSRF{Key: []byte("k")}, Keyring: ring})
			if err != nil {
				t.Fatal(err)
			}
			u := store.User{ID: "u1", Username: "vera", CreatedAt: now, UpdatedAt: now}
			p := store.Policy{ID: "p1", Name: "Staff", RequireMFA: true, AllowSelfServiceRemoval: true, StepUpMaxAge: 5 * time.Minute, Reenroll: "immediate", Version: 1, UpdatedAt: now}
			err = real.InTx(ctx, func(q store.Queries) error {
				if err := q.CreateUser(ctx, u); err != nil {
					return err
				}
				if _, err := an.EnrollTOTP(ctx, q, u.ID, authn.NewTOTPSecret()); err != nil {
					return err
				}
				if err := q.CreatePolicy(ctx, p); err != nil {
					return err
				}
				if err := q.CreateGroup(ctx, store.Group{ID: "g1", Name: "staff", CreatedAt: now}); err != nil {
					return err
				}
				if err := q.AddMember(ctx, "g1", u.ID); err != nil {
					return err
				}
				return q.AssignPolicy(ctx, "g1", p.ID)
			})
			if err != nil {
				t.Fatal(err)
			}
			c := caller{UserID: u.ID, AuthTime: now, AMR: []string{"pwd", "otp", "mfa"}, StepUp: ActionUnlink}
			in, prob, err := h.initiate(ctx, c)
			if err != nil || prob != nil {
				t.Fatalf("initiate: %v %v", err, prob)
			}
			before, _ := real.CountRecoveryCodes(ctx, u.ID)
			if _, prob, err := h.remove(ctx, c, in.UnlinkID); err == nil || prob != nil {
				t.Fatalf("removal must fail when the audit event cannot be written: %v %v", err, prob)
			}
			if _, err := real.GetTOTP(ctx, u.ID); err != nil {
				t.Fatalf("credential removed without its audit event: %v", err)
			}
			if after, _ := real.CountRecoveryCodes(ctx, u.ID); after != before || before != authn.RecoveryCodeCount {
				t.Fatalf("recovery codes changed: %d -> %d", before, after)
			}
			if _, err := real.GetUnlinkIntent(ctx, in.UnlinkID); err != nil {
				t.Fatalf("the confirmation step must survive the failed attempt: %v", err)
			}
			if at, _ := real.MFARemovedAt(ctx, u.ID); !at.IsZero() {
				t.Fatal("re-enrollment requirement recorded for a removal that did not happen")
			}
			// With the audit log back, the same confirmation completes.
			h.o.Store = real
			if _, prob, err := h.remove(ctx, c, in.UnlinkID); err != nil || prob != nil {
				t.Fatalf("retry: %v %v", err, prob)
			}
			if _, err := real.GetTOTP(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatal("retry did not remove the credential")
			}
		})
	}
}
