// Package audit is Latchkey's audit log: the event vocabulary, constructors
// and Append, which writes an event inside the caller's transaction so the
// change and its record commit together or not at all.
//
// Events form a hash chain: each stores the previous event's hash and its
// own SHA-256 over a canonical encoding, so deleting or editing an event
// breaks the chain at that point (Verify finds it). Appends take a
// transaction-scoped lock on the chain head; keep them the last write of a
// transaction so the lock is held briefly.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Type names what happened, past tense, dotted.
type Type string

// The event vocabulary.
const (
	LoginSucceeded    Type = "auth.login.succeeded"
	LoginFailed       Type = "auth.login.failed"
	StepUpSucceeded   Type = "auth.step_up.succeeded"
	StepUpRefused     Type = "auth.step_up.refused"
	AdminActionDenied Type = "admin.action.denied"
	MFAEnrolled       Type = "mfa.totp.enrolled"
	MFARemoved        Type = "mfa.totp.removed"
	MFAReplaced       Type = "mfa.totp.replaced"
	PasskeyRegistered Type = "mfa.webauthn.registered"
	PasskeyRemoved    Type = "mfa.webauthn.removed"
	// TOTPMethodRemoved: the TOTP app removed as one of several methods;
	// 2SV stays on (mfa.totp.removed is turning 2SV off).
	TOTPMethodRemoved Type = "mfa.totp.method_removed"
	PasskeyRenamed    Type = "mfa.webauthn.renamed"
	MFARemovalDenied  Type = "mfa.removal.denied"
	// MFAMethodDenied: a kind of second factor the user's policy does not
	// allow was refused (added, or used at sign-in).
	MFAMethodDenied      Type = "mfa.method.denied"
	MFAResetRequested    Type = "mfa.reset.requested"
	MFAResetApproved     Type = "mfa.reset.approved"
	MFAResetDenied       Type = "mfa.reset.denied"
	RecoveryCodeUsed     Type = "mfa.recovery_code.used"
	RecoveryCodesRenewed Type = "mfa.recovery_codes.regenerated"
	PolicyCreated        Type = "policy.created"
	PolicyUpdated        Type = "policy.updated"
	PolicyAssigned       Type = "policy.assigned"
	PolicyUnassigned     Type = "policy.unassigned"
	GroupCreated         Type = "group.created"
	GroupMemberAdded     Type = "group.member.added"
	GroupMemberRemoved   Type = "group.member.removed"
	GroupAdminAdded      Type = "group.admin.added"
	GroupAdminRemoved    Type = "group.admin.removed"
	PolicyDeleted        Type = "policy.deleted"
	UserCreated          Type = "user.created"
	UserUpdated          Type = "user.updated"
	PasswordChanged      Type = "user.password.changed"
	ResetLinkCreated     Type = "user.password_reset_link.created"
	AdminAdded           Type = "admin.added"
	AdminRemoved         Type = "admin.removed"
	ClientUpdated        Type = "client.updated"
	ClientCreated        Type = "client.created"
	ClientDeleted        Type = "client.deleted"
	KeyRotated           Type = "key.rotated"
	AuditPruned          Type = "audit.pruned"
)

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
	Denied  = "denied"
)

// Actor kinds.
const (
	ActorUser   = "user"
	ActorAdmin  = "admin"
	ActorClient = "client"
	ActorSystem = "system"
)

// Request carries the request facts every event records.
type Request struct {
	IP        string
	UserAgent string
	RequestID string
}

// Event is one audit record before it is chained.
type Event struct {
	Type          Type
	Outcome       string
	ActorType     string
	ActorID       string
	SubjectID     string
	ClientID      string
	PolicyID      string
	PolicyVersion int
	Request       Request
	Details       map[string]any
	Time          time.Time
}

// Append writes e to the log inside q's transaction, with its content
// hash. It fails, and so fails the caller's transaction, if the event
// cannot be written. It takes no lock: concurrent writers commit in any
// order, and the sealer (Seal) orders committed events into the Merkle
// tree, off the writers' hot path.
func Append(ctx context.Context, q store.Queries, e Event) (store.AuditEvent, error) {
	rec, err := e.record("")
	if err != nil {
		return store.AuditEvent{}, err
	}
	id, err := q.InsertAuditEvent(ctx, rec)
	if err != nil {
		return store.AuditEvent{}, fmt.Errorf("audit: append %s: %w", e.Type, err)
	}
	rec.ID = id
	return rec, nil
}

func (e Event) record(prev string) (store.AuditEvent, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Outcome == "" {
		e.Outcome = Success
	}
	details := "{}"
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details) // map keys are sorted: canonical
		if err != nil {
			return store.AuditEvent{}, fmt.Errorf("audit: details: %w", err)
		}
		details = string(b)
	}
	rec := store.AuditEvent{Time: e.Time.UTC().Truncate(time.Microsecond), Type: string(e.Type), Outcome: e.Outcome, ActorType: e.ActorType,
		ActorID: e.ActorID, SubjectID: e.SubjectID, ClientID: e.ClientID, PolicyID: e.PolicyID, PolicyVersion: e.PolicyVersion,
		IP: e.Request.IP, UserAgent: truncate(e.Request.UserAgent, 512), RequestID: e.Request.RequestID, Details: details, PrevHash: prev}
	rec.Hash = Hash(rec)
	return rec, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Hash is SHA-256 over the canonical encoding of an event: every field but
// ID and Hash, in a fixed order, with the time in RFC 3339 at microsecond
// precision (what both backends keep).
func Hash(e store.AuditEvent) string {
	sum := sha256.Sum256(Canonical(e))
	return hex.EncodeToString(sum[:])
}

// Canonical is the event's encoding that its chain hash and its tree leaf
// are computed over: with it, one exported event can be checked against a
// checkpoint and an inclusion proof, without the rest of the log.
func Canonical(e store.AuditEvent) []byte {
	canon, _ := json.Marshal([]any{e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), e.Type, e.Outcome, e.ActorType, e.ActorID, e.SubjectID,
		e.ClientID, e.PolicyID, e.PolicyVersion, e.IP, e.UserAgent, e.RequestID, e.Details, e.PrevHash})
	return canon
}

// BrokenLink describes where the chain fails.
type BrokenLink struct {
	EventID int64
	Reason  string
}

// Verify walks the whole log in id order and returns the first event
// whose content does not match its hash, or the first broken link of the
// hash chain that events carried before the Merkle tree ordered them
// (events written since have no link: VerifyTree proves their order). It
// returns how many events it checked.
func Verify(ctx context.Context, q store.Queries) (int, *BrokenLink, error) {
	// After pruning, the chain starts at the last checkpoint.
	after, prev, err := q.LastAuditCheckpoint(ctx)
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for {
		evs, err := q.ListAuditEvents(ctx, store.AuditFilter{AfterID: after, Limit: 1000})
		if err != nil {
			return n, nil, err
		}
		for _, e := range evs {
			n++
			if Hash(e) != e.Hash {
				return n, &BrokenLink{EventID: e.ID, Reason: "content does not match its hash (the event was altered)"}, nil
			}
			after = e.ID
			// An empty link: the chain's first event, or one written since
			// the tree orders events.
			if e.PrevHash != "" && e.PrevHash != prev {
				return n, &BrokenLink{EventID: e.ID, Reason: "previous-hash link does not match the preceding event (an event was removed or reordered)"}, nil
			}
			prev = e.Hash
		}
		if len(evs) < 1000 {
			return n, nil, nil
		}
	}
}

// Prune deletes events older than before, as a prefix of the tree: only
// sealed events, in tree order, up to the first one that is not old
// enough. It leaves a signed retention record of the positions it pruned
// (so deleting the oldest events is told apart from pruning) and, for the
// chain of events written before the tree, the newest deleted event's
// hash. The tree's stored subtrees still pin the pruned prefix down, so
// verification (with an anchor from before, too) still passes. It returns
// how many events were deleted.
//
// Pruning also stops at the slowest of the named delivery cursors (tree
// positions of the notification dispatchers), so an event that has not
// been delivered yet is never deleted, whatever its age.
func Prune(ctx context.Context, s store.Store, c *Checkpointer, before time.Time, cursors ...string) (int, error) {
	var n int
	err := s.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "audit-sealer"); err != nil {
			return err
		}
		first, err := q.SealedAuditEvents(ctx, 0, 1)
		if err != nil || len(first) == 0 {
			return err
		}
		below := first[0].LeafIndex
		limit := uint64(math.MaxUint64)
		for _, name := range cursors {
			cur, err := q.GetDispatchCursor(ctx, name, -1)
			if err != nil {
				return err
			}
			if cur.LastID >= 0 { // -1: not placed yet; it will start at the end
				limit = min(limit, uint64(cur.LastID))
			}
		}
		var newest store.AuditEvent
	pages:
		for {
			evs, err := q.SealedAuditEvents(ctx, below, 1000)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if e.LeafIndex != below || !e.Time.Before(before) || e.LeafIndex >= limit {
					break pages
				}
				below++
				if e.ID > newest.ID {
					newest = e.AuditEvent
				}
			}
			if len(evs) < 1000 {
				break
			}
		}
		if below == first[0].LeafIndex {
			return nil
		}
		note, err := c.signRetention(below)
		if err != nil {
			return err
		}
		if n, err = q.PruneAuditEvents(ctx, below, newest.ID, newest.Hash, note, time.Now()); err != nil {
			return err
		}
		// The prune is itself on the record, in the same transaction.
		_, err = Append(ctx, q, Event{Type: AuditPruned, ActorType: ActorSystem, ActorID: "retention",
			Details: map[string]any{"events": n, "below_position": below, "through_event": newest.ID, "older_than": before.UTC().Format(time.RFC3339)}})
		return err
	})
	return n, err
}
