package mfa_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// BenchmarkRemoveOwn is the audited self-service removal through the
// lifecycle service on PostgreSQL ("yes" of seed 003: lock, policy re-read,
// step-up check and spend, removal, revocation, new secret, audit event in
// one transaction), one user per operation, at concurrency 1 and 32.
// Compare with audit's BenchmarkAuditedRemoval (the bare delete + event).
func BenchmarkRemoveOwn(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) { benchRemoveOwn(b, conc) })
	}
}

func benchRemoveOwn(b *testing.B, conc int) {
	st := testdb.Postgres(b)
	ctx := context.Background()
	now := time.Now().UTC()
	ring, _ := seal.New(seal.Key{ID: "k", Secret: bytes.Repeat([]byte{3}, 32)})
	an := authn.NewService(authn.Options{Store: st, Keyring: ring, Pepper: []byte("p")})
	svc := mfa.New(mfa.Options{Store: st, Authn: an})
	p := store.Policy{ID: "p1", Name: "Staff", RequireMFA: true, AllowSelfServiceRemoval: true, StepUpMaxAge: time.Hour, Reenroll: "immediate", Version: 1, UpdatedAt: now}
	if err := st.CreatePolicy(ctx, p); err != nil {
		b.Fatal(err)
	}
	if err := st.CreateGroup(ctx, store.Group{ID: "g1", Name: "staff", CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	if err := st.AssignPolicy(ctx, "g1", p.ID); err != nil {
		b.Fatal(err)
	}
	type job struct {
		user, unlink string
	}
	jobs := make([]job, b.N)
	for i := range jobs {
		u := fmt.Sprintf("bench-user-%d", i)
		err := st.InTx(ctx, func(q store.Queries) error {
			if err := q.CreateUser(ctx, store.User{ID: u, Username: u, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			if _, err := an.EnrollTOTP(ctx, q, u, authn.NewTOTPSecret(), 0); err != nil {
				return err
			}
			if err := q.AddMember(ctx, "g1", u); err != nil {
				return err
			}
			return q.CreateUnlinkIntent(ctx, store.UnlinkIntent{ID: "unlink-" + u, UserID: u, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		})
		if err != nil {
			b.Fatal(err)
		}
		jobs[i] = job{u, "unlink-" + u}
	}
	next := make(chan job, len(jobs))
	for _, j := range jobs {
		next <- j
	}
	close(next)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				a := mfa.Actor{Type: audit.ActorUser, UserID: j.user}
				pr := mfa.Proof{Via: mfa.ViaBearer, ID: "grant-" + j.user, AuthTime: time.Now(), AMR: []string{"pwd", "otp", "mfa"}, Actions: []string{mfa.ActionRemove}}
				if _, err := svc.RemoveOwn(ctx, a, pr, j.unlink); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "removals/s")
}
