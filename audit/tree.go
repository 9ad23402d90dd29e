package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/latchkey/latchkey/store"
)

// The audit log is also a verifiable log in the sense of Certificate
// Transparency (RFC 6962) and the Go checksum database: a sealer gives each
// committed event a position in a Merkle tree, keeps the hash of every
// complete subtree, and signs a checkpoint (C2SP tlog-checkpoint in a
// signed note) for each batch. Anyone holding an earlier checkpoint can
// check that the log still extends it: deleting the newest events,
// rewriting events (and recomputing their hashes), moving them, or deleting
// the oldest ones all change the tree, and the checkpoint's signature
// cannot be forged without the audit key, which is not in the database.

var hasher = rfc6962.DefaultHasher

// LeafHash is an event's leaf in the tree: RFC 6962's leaf hash of the
// event's canonical encoding.
func LeafHash(e store.AuditEvent) []byte { return hasher.HashLeaf(Canonical(e)) }

// Checkpointer signs and verifies the log's checkpoints.
type Checkpointer struct {
	Origin   string // the log's name, first line of every checkpoint
	Signer   note.Signer
	Verifier note.Verifier
	older    []note.Verifier // rotated-out keys: verify, never sign
}

// NewCheckpointer derives the Ed25519 audit key from seed (32 bytes, from
// the configured secrets: kept like the other secrets, never in the
// database) and returns the checkpointer and the verifier key to publish.
// Earlier keys (older seeds) still verify what they signed, so the key can
// rotate without losing the anchors kept so far.
func NewCheckpointer(origin string, seed []byte, older ...[]byte) (*Checkpointer, string, error) {
	s, vkey, err := keyFromSeed(origin, seed)
	if err != nil {
		return nil, "", err
	}
	verifiers := []note.Verifier{}
	for _, seed := range append([][]byte{seed}, older...) {
		_, vk, err := keyFromSeed(origin, seed)
		if err != nil {
			return nil, "", err
		}
		v, err := note.NewVerifier(vk)
		if err != nil {
			return nil, "", err
		}
		verifiers = append(verifiers, v)
	}
	return &Checkpointer{Origin: origin, Signer: s, Verifier: verifiers[0], older: verifiers[1:]}, vkey, nil
}

func keyFromSeed(origin string, seed []byte) (note.Signer, string, error) {
	if len(seed) < 32 {
		return nil, "", errors.New("audit: the checkpoint key needs a 32-byte seed")
	}
	skey, vkey, err := note.GenerateKey(bytes.NewReader(seed[:32]), origin)
	if err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(skey)
	return s, vkey, err
}

// verifiers are the current key and the rotated-out ones.
func (c *Checkpointer) verifiers() note.Verifiers {
	return note.VerifierList(append([]note.Verifier{c.Verifier}, c.older...)...)
}

// sign returns the signed checkpoint of a tree of size with root.
func (c *Checkpointer) sign(size uint64, root []byte) (string, error) {
	text := fmt.Sprintf("%s\n%d\n%s\n", c.Origin, size, base64.StdEncoding.EncodeToString(root))
	msg, err := note.Sign(&note.Note{Text: text}, c.Signer)
	return string(msg), err
}

// signRetention returns the signed record that positions below were
// pruned by retention.
func (c *Checkpointer) signRetention(below uint64) (string, error) {
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\nretention\n%d\n", c.Origin, below)}, c.Signer)
	return string(msg), err
}

// openRetention verifies a retention record and returns the first
// position it kept.
func (c *Checkpointer) openRetention(signed string) (uint64, error) {
	n, err := note.Open([]byte(signed), c.verifiers())
	if err != nil {
		return 0, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 3 || lines[0] != c.Origin || lines[1] != "retention" {
		return 0, errors.New("audit: not a retention record of this log")
	}
	return strconv.ParseUint(lines[2], 10, 64)
}

// Checkpoint is a verified checkpoint.
type Checkpoint struct {
	Size uint64
	Root []byte
}

// Open verifies a signed checkpoint and returns what it commits to.
func (c *Checkpointer) Open(signed []byte) (Checkpoint, error) {
	n, err := note.Open(signed, c.verifiers())
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint signature does not verify with the audit key: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != c.Origin {
		return Checkpoint{}, errors.New("audit: not a checkpoint of this log")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return Checkpoint{}, errors.New("audit: checkpoint size is not a number")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return Checkpoint{}, errors.New("audit: checkpoint root is not a SHA-256 hash")
	}
	return Checkpoint{Size: size, Root: root}, nil
}

func nodeIDs(ids []compact.NodeID) []store.AuditNode {
	out := make([]store.AuditNode, len(ids))
	for i, id := range ids {
		out[i] = store.AuditNode{Level: id.Level, Index: id.Index}
	}
	return out
}

var factory = &compact.RangeFactory{Hash: hasher.HashChildren}

// rangeTo rebuilds the compact range [0, size) from the stored subtree
// hashes.
func rangeTo(ctx context.Context, q store.Queries, size uint64) (*compact.Range, error) {
	if size == 0 {
		return factory.NewEmptyRange(0), nil
	}
	hashes, err := q.AuditNodes(ctx, nodeIDs(compact.RangeNodes(0, size, nil)))
	if err != nil {
		return nil, fmt.Errorf("audit: tree nodes of [0, %d): %w", size, err)
	}
	return factory.NewRange(0, size, hashes)
}

// Seal gives up to batch committed, unsealed events their positions in the
// tree (in commit order, which the chain lock makes id order), stores the
// new complete subtrees and a signed checkpoint, in one transaction under
// the sealer lock: replicas may all run it, one seals at a time. It
// returns the checkpoint and how many events it sealed (0: nothing new).
func Seal(ctx context.Context, s store.Store, c *Checkpointer, batch int, now time.Time) (store.AuditHead, int, error) {
	var head store.AuditHead
	var n int
	err := s.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "audit-sealer"); err != nil {
			return err
		}
		evs, err := q.UnsealedAuditEvents(ctx, batch)
		if err != nil || len(evs) == 0 {
			return err
		}
		size := uint64(0)
		if h, err := q.LatestAuditHead(ctx); err == nil {
			size = h.Size
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		r, err := rangeTo(ctx, q, size)
		if err != nil {
			return err
		}
		var nodes []store.AuditNode
		visit := func(id compact.NodeID, hash []byte) {
			nodes = append(nodes, store.AuditNode{Level: id.Level, Index: id.Index, Hash: hash})
		}
		for _, e := range evs {
			if err := q.SealAuditEvent(ctx, e.ID, r.End()); err != nil {
				return err
			}
			if err := r.Append(LeafHash(e), visit); err != nil {
				return err
			}
		}
		if err := q.PutAuditNodes(ctx, nodes); err != nil {
			return err
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			return err
		}
		signed, err := c.sign(r.End(), root)
		if err != nil {
			return err
		}
		head = store.AuditHead{Size: r.End(), Root: root, Note: signed, CreatedAt: now.UTC()}
		n = len(evs)
		return q.PutAuditHead(ctx, head)
	})
	return head, n, err
}

// RunSealer seals every interval until ctx ends. onSeal (optional) hears
// of each batch: how many events, and how long the oldest waited.
func RunSealer(ctx context.Context, s store.Store, c *Checkpointer, interval time.Duration, onSeal func(n int, lag time.Duration), onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			// Idle passes cost one read, not a sealing transaction.
			oldest, err := s.UnsealedAuditEvents(ctx, 1)
			if err != nil {
				if ctx.Err() == nil { // shutting down is not an error
					onErr(err)
				}
				break
			}
			if len(oldest) == 0 {
				break
			}
			_, n, err := Seal(ctx, s, c, 1000, time.Now())
			if err != nil && ctx.Err() == nil {
				onErr(err)
			}
			if err == nil && n > 0 && onSeal != nil {
				onSeal(n, time.Since(oldest[0].Time))
			}
			if err != nil || n < 1000 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Problem is where a verification found the log not to be what a
// checkpoint commits to: the first bad tree position, and why.
type Problem struct {
	Position uint64
	EventID  int64 // 0 when the position holds no event
	Reason   string
}

// Report is the result of a tree verification.
type Report struct {
	Head    Checkpoint // the newest signed checkpoint in the database
	Sealed  uint64     // events checked against it
	Pending int        // committed events not yet sealed: not verified
	Pruned  uint64     // positions below this were pruned under a signed retention record
	Problem *Problem
}

// VerifyTree checks the log against its newest signed checkpoint and, when
// anchor is given (a checkpoint kept outside the database), that the log
// is an append-only extension of it. Each retained event is hashed again
// from its content; the first position where the log departs from what a
// checkpoint commits to is named.
func VerifyTree(ctx context.Context, q store.Queries, c *Checkpointer, anchor []byte) (Report, error) {
	var rep Report
	var err error
	if rep.Pending, err = q.CountUnsealedAuditEvents(ctx); err != nil {
		return rep, err
	}
	h, err := q.LatestAuditHead(ctx)
	if errors.Is(err, store.ErrNotFound) {
		h = store.AuditHead{}
	} else if err != nil {
		return rep, err
	} else if rep.Head, err = c.Open([]byte(h.Note)); err != nil {
		rep.Problem = &Problem{Reason: "the newest checkpoint in the database is forged or altered: " + err.Error()}
		return rep, nil
	} else if rep.Head.Size != h.Size || !bytes.Equal(rep.Head.Root, h.Root) {
		rep.Problem = &Problem{Reason: "the newest checkpoint's columns do not match its signed note"}
		return rep, nil
	}
	var want *Checkpoint
	limit := rep.Head.Size
	if anchor != nil {
		a, err := c.Open(anchor)
		if err != nil {
			rep.Problem = &Problem{Reason: "the anchor: " + err.Error()}
			return rep, nil
		}
		want = &a
		limit = max(limit, a.Size)
	}
	// Rebuild the tree from the events' content, position by position,
	// checking the root wherever a checkpoint ends.
	r := factory.NewEmptyRange(0)
	next := uint64(0)
	rootIs := func(root []byte) bool {
		got, err := r.GetRootHash(nil)
		return err == nil && bytes.Equal(got, root)
	}
	for next < limit {
		evs, err := q.SealedAuditEvents(ctx, next, 1000)
		if err != nil {
			return rep, err
		}
		first := limit // every position up to the checkpoint pruned
		if len(evs) > 0 {
			first = evs[0].LeafIndex
		}
		if next == 0 && first > 0 && first <= limit {
			// Leading events pruned by retention: a signed record must
			// say so, then the stored subtrees (which the checkpoints'
			// roots pin down) stand for them.
			signed, err := q.LastAuditPruneNote(ctx)
			if err != nil {
				return rep, err
			}
			if kept, err := c.openRetention(signed); err != nil || kept < first {
				rep.Problem = &Problem{Reason: fmt.Sprintf("the oldest events (positions 0 to %d) are gone without a signed retention record", first-1)}
				return rep, nil
			}
			if r, err = rangeTo(ctx, q, first); err != nil {
				rep.Problem = &Problem{Reason: "the oldest events and their tree nodes are gone: " + err.Error()}
				return rep, nil
			}
			next, rep.Pruned = first, first
			if next == limit {
				// Retention took everything the checkpoints cover (a quiet
				// log): the stored subtrees must still give the signed root.
				if next == rep.Head.Size && !rootIs(rep.Head.Root) {
					rep.Problem = &Problem{Position: next - 1, Reason: "the tree does not match the newest checkpoint (its nodes were altered)"}
					return rep, nil
				}
				break // on to the anchor's consistency proof
			}
		}
		progressed := false
		for _, e := range evs {
			if e.LeafIndex >= limit {
				break
			}
			if e.LeafIndex != next {
				rep.Problem = &Problem{Position: next, Reason: "no event at this position (it was deleted or moved)"}
				return rep, nil
			}
			leaf := LeafHash(e.AuditEvent)
			if stored, err := q.AuditNodes(ctx, []store.AuditNode{{Level: 0, Index: next}}); err != nil || !bytes.Equal(stored[0], leaf) {
				rep.Problem = &Problem{Position: next, EventID: e.ID, Reason: "the event's content does not match its leaf in the tree (it was altered or moved)"}
				return rep, nil
			}
			if err := r.Append(leaf, nil); err != nil {
				return rep, err
			}
			next++
			rep.Sealed++
			progressed = true
			if want != nil && next == want.Size && !rootIs(want.Root) {
				rep.Problem = &Problem{Position: next - 1, Reason: "the log up to the anchor does not match it (events were removed, altered or moved)"}
				return rep, nil
			}
			if next == rep.Head.Size && !rootIs(rep.Head.Root) {
				rep.Problem = &Problem{Position: next - 1, Reason: "the tree does not match the newest checkpoint (its nodes were altered)"}
				return rep, nil
			}
		}
		if !progressed {
			rep.Problem = &Problem{Position: next, Reason: fmt.Sprintf("the log was truncated: a checkpoint covers %d events, the log has %d", limit, next)}
			return rep, nil
		}
	}
	// An anchor older than the retained events is checked by a consistency
	// proof from the stored subtrees against the newest checkpoint.
	if want != nil && want.Size > 0 && want.Size < rep.Head.Size {
		p, err := ConsistencyProof(ctx, q, want.Size, rep.Head.Size)
		if err == nil {
			err = proof.VerifyConsistency(hasher, want.Size, rep.Head.Size, p, want.Root, rep.Head.Root)
		}
		if err != nil {
			rep.Problem = &Problem{Position: want.Size - 1, Reason: "the log is not an append-only extension of the anchor: " + err.Error()}
		}
	}
	return rep, nil
}

// InclusionProof proves that event id is in the tree of the newest
// checkpoint: its position, the checkpoint, and the RFC 6962 audit path.
func InclusionProof(ctx context.Context, q store.Queries, id int64) (index uint64, head store.AuditHead, path [][]byte, err error) {
	if index, err = q.AuditLeafIndex(ctx, id); err != nil {
		return 0, head, nil, err
	}
	if head, err = q.LatestAuditHead(ctx); err != nil {
		return 0, head, nil, err
	}
	if index >= head.Size {
		return 0, head, nil, store.ErrNotFound
	}
	nodes, err := proof.Inclusion(index, head.Size)
	if err != nil {
		return 0, head, nil, err
	}
	hashes, err := q.AuditNodes(ctx, nodeIDs(nodes.IDs))
	if err != nil {
		return 0, head, nil, err
	}
	path, err = nodes.Rehash(hashes, hasher.HashChildren)
	return index, head, path, err
}

// ConsistencyProof proves that the tree of size1 is a prefix of the tree
// of size2 (both at most the newest checkpoint).
func ConsistencyProof(ctx context.Context, q store.Queries, size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	hashes, err := q.AuditNodes(ctx, nodeIDs(nodes.IDs))
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}
