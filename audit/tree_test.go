package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
)

func checkpointer(t testing.TB) *audit.Checkpointer {
	t.Helper()
	c, vkey, err := audit.NewCheckpointer("latchkey.test/audit", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vkey, "latchkey.test/audit+") {
		t.Fatalf("verifier key: %q", vkey)
	}
	return c
}

func seal(t testing.TB, s store.Store, c *audit.Checkpointer) store.AuditHead {
	t.Helper()
	h, _, err := audit.Seal(context.Background(), s, c, 1000, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sealedLog appends and seals 10 events (keeping that checkpoint as the
// anchor), then 5 more, sealed too.
func sealedLog(t *testing.T, s store.Store, c *audit.Checkpointer) (anchor []byte, ids []int64) {
	for i := 0; i < 10; i++ {
		ids = append(ids, appendOne(t, s, fmt.Sprint("u", i)).ID)
	}
	anchor = []byte(seal(t, s, c).Note)
	for i := 10; i < 15; i++ {
		ids = append(ids, appendOne(t, s, fmt.Sprint("u", i)).ID)
	}
	if h := seal(t, s, c); h.Size != 15 {
		t.Fatalf("head size %d", h.Size)
	}
	return anchor, ids
}

func verify(t *testing.T, s store.Store, c *audit.Checkpointer, anchor []byte) audit.Report {
	t.Helper()
	rep, err := audit.VerifyTree(context.Background(), s, c, anchor)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestTreeProofsVerifyIndependently: inclusion and consistency proofs from
// the stored tree verify with the library's own verifier; unsealed events
// are pending, not verified.
func TestTreeProofsVerifyIndependently(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s, c, ctx := b.Open(t), checkpointer(t), context.Background()
			anchor, ids := sealedLog(t, s, c)
			if rep := verify(t, s, c, anchor); rep.Problem != nil || rep.Sealed != 15 || rep.Pending != 0 {
				t.Fatalf("intact log: %+v %+v", rep, rep.Problem)
			}
			evs, _ := s.ListAuditEvents(ctx, store.AuditFilter{Limit: 100})
			for i, e := range evs {
				index, head, path, err := audit.InclusionProof(ctx, s, e.ID)
				if err != nil || index != uint64(i) {
					t.Fatalf("proof of %d: %d %v", e.ID, index, err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, head.Size, rfc6962.DefaultHasher.HashLeaf(canonicalOf(e)), path, head.Root); err != nil {
					t.Fatalf("inclusion of event %d: %v", e.ID, err)
				}
			}
			a, err := c.Open(anchor)
			if err != nil {
				t.Fatal(err)
			}
			head, _ := s.LatestAuditHead(ctx)
			p, err := audit.ConsistencyProof(ctx, s, a.Size, head.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, head.Size, p, a.Root, head.Root); err != nil {
				t.Fatalf("consistency 10 → 15: %v", err)
			}
			appendOne(t, s, "late")
			if rep := verify(t, s, c, anchor); rep.Problem != nil || rep.Pending != 1 || rep.Sealed != 15 {
				t.Fatalf("an unsealed event is pending, never verified: %+v", rep)
			}
			if _, _, _, err := audit.InclusionProof(ctx, s, ids[len(ids)-1]+1); err == nil {
				t.Fatal("an unsealed event has no proof")
			}
		})
	}
}

// canonicalOf rebuilds the leaf data the way an outside verifier would,
// from the exported fields (the same encoding as the chain hash).
func canonicalOf(e store.AuditEvent) []byte { return audit.Canonical(e) }

func openPG(t *testing.T, dsn string) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestTreeDetectsTampering: each way an intruder with write access to the
// database could hide an event is found by `verify --anchor`, at the
// first bad position, on both stores.
func TestTreeDetectsTampering(t *testing.T) {
	attacks := []struct {
		name    string
		do      func(t *testing.T, sql testdb.Intruder, ids []int64)
		pos     uint64
		keyword string
	}{
		{"tail truncated with its checkpoints", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("DELETE FROM audit_events WHERE id >= %d", ids[8]))
			sql(t, "DELETE FROM audit_heads WHERE size > 8")
			sql(t, "DELETE FROM audit_tree_nodes WHERE idx >= 8 AND level = 0")
		}, 8, "truncated"},
		{"tail truncated, checkpoints kept", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("DELETE FROM audit_events WHERE id >= %d", ids[12]))
		}, 12, "truncated"},
		{"rewritten and re-chained", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("UPDATE audit_events SET type = 'auth.login.succeeded' WHERE id = %d", ids[4]))
		}, 4, "altered"},
		{"event moved", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("UPDATE audit_events SET leaf_index = 100 WHERE id = %d", ids[3]))
			sql(t, fmt.Sprintf("UPDATE audit_events SET leaf_index = 3 WHERE id = %d", ids[6]))
			sql(t, fmt.Sprintf("UPDATE audit_events SET leaf_index = 6 WHERE id = %d", ids[3]))
		}, 3, "altered"},
		{"first range deleted with the tree", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("DELETE FROM audit_events WHERE id <= %d", ids[2]))
			sql(t, "DELETE FROM audit_tree_nodes WHERE idx = 0")
		}, 0, "gone"},
		{"first range deleted behind a forged retention checkpoint", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, fmt.Sprintf("DELETE FROM audit_events WHERE id <= %d", ids[2]))
			sql(t, fmt.Sprintf("INSERT INTO audit_checkpoints (through_id, hash, note, created_at) VALUES (%d, 'x', 'latchkey.test/audit\nretention\n3\n', CURRENT_TIMESTAMP)", ids[2]))
		}, 0, "without a signed retention record"},
		{"every event deleted", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, "DELETE FROM audit_events")
		}, 0, "without a signed retention record"},
		{"checkpoint forged", func(t *testing.T, sql testdb.Intruder, ids []int64) {
			sql(t, "UPDATE audit_heads SET note = replace(note, '15', '16') WHERE size = 15")
		}, 0, "forged"},
	}
	for _, b := range testdb.WithIntruder {
		for _, at := range attacks {
			t.Run(b.Name+"/"+at.name, func(t *testing.T) {
				s, sql := b.Open(t)
				c := checkpointer(t)
				anchor, ids := sealedLog(t, s, c)
				if rep := verify(t, s, c, anchor); rep.Problem != nil {
					t.Fatalf("before: %+v", rep.Problem)
				}
				at.do(t, sql, ids)
				rep := verify(t, s, c, anchor)
				if rep.Problem == nil || rep.Problem.Position != at.pos || !strings.Contains(rep.Problem.Reason, at.keyword) {
					t.Fatalf("want a problem at position %d (%s), got %+v", at.pos, at.keyword, rep.Problem)
				}
			})
		}
	}
}

// TestAnchorForgedOrForeign: an anchor that does not verify with the audit
// key is refused, not trusted.
func TestAnchorForgedOrForeign(t *testing.T) {
	s, c := testdb.SQLite(t), checkpointer(t)
	anchor, _ := sealedLog(t, s, c)
	other, _, _ := audit.NewCheckpointer("latchkey.test/audit", bytes.Repeat([]byte{8}, 32))
	for name, a := range map[string][]byte{
		"edited":       bytes.Replace(anchor, []byte("\n10\n"), []byte("\n9\n"), 1),
		"foreign key":  []byte(mustSign(t, other)),
		"not a note":   []byte("hello"),
		"empty":        {},
		"NUL and bidi": []byte("latchkey.test/audit\n10\n\x00\u202e\n"),
	} {
		if rep := verify(t, s, c, a); rep.Problem == nil || !strings.Contains(rep.Problem.Reason, "anchor") {
			t.Errorf("%s anchor: %+v", name, rep.Problem)
		}
	}
}

func mustSign(t *testing.T, c *audit.Checkpointer) string {
	s := testdb.SQLite(t)
	appendOne(t, s, "x")
	return seal(t, s, c).Note
}

// TestTwoSealersOneTree: sealers on two replicas (two pools on one
// PostgreSQL) with writers appending meanwhile build one tree: every event
// sealed exactly once, and the log verifies.
func TestTwoSealersOneTree(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	a, b := openPG(t, dsn), openPG(t, dsn)
	c := checkpointer(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, st := range []store.Store{a, b} {
		wg.Add(1)
		go func(st store.Store) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := audit.Seal(ctx, st, c, 7, time.Now()); err != nil {
					t.Error(err)
					return
				}
			}
		}(st)
	}
	var writers sync.WaitGroup
	for w := 0; w < 4; w++ {
		writers.Add(1)
		go func(w int) {
			defer writers.Done()
			for i := 0; i < 25; i++ {
				appendOne(t, []store.Store{a, b}[i%2], fmt.Sprint("w", w))
			}
		}(w)
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	seal(t, a, c)
	rep := verify(t, a, c, nil)
	if rep.Problem != nil || rep.Sealed != 100 || rep.Pending != 0 {
		t.Fatalf("two sealers: %+v %+v", rep, rep.Problem)
	}
}

// BenchmarkSeal is the sealer's cost on PostgreSQL: events sealed per
// second in batches of 1,000 (tree positions, subtree hashes, one signed
// checkpoint and one commit per batch).
func BenchmarkSeal(b *testing.B) {
	s, c, ctx := testdb.Postgres(b), checkpointer(b), context.Background()
	for i := 0; i < b.N; i++ {
		appendOne(b, s, "u")
	}
	b.ResetTimer()
	for {
		_, n, err := audit.Seal(ctx, s, c, 1000, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestPruneStaysBehindTheTree: retention deletes only sealed events; the
// chain and the tree still verify afterwards, against an anchor taken
// before pruning too.
func TestPruneStaysBehindTheTree(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s, c, ctx := b.Open(t), checkpointer(t), context.Background()
			anchor, _ := sealedLog(t, s, c)
			late := appendOne(t, s, "late") // not sealed yet
			n, err := audit.Prune(ctx, s, c, time.Now().Add(time.Hour))
			if err != nil || n != 15 {
				t.Fatalf("pruned %d (want the 15 sealed events): %v", n, err)
			}
			// The unsealed event stays, and the prune is on the record.
			evs, _ := s.ListAuditEvents(ctx, store.AuditFilter{Limit: 10})
			if len(evs) != 2 || evs[0].ID != late.ID && evs[1].ID != late.ID {
				t.Fatalf("after pruning: %+v", evs)
			}
			pruned := evs[0]
			if pruned.ID == late.ID {
				pruned = evs[1]
			}
			if pruned.Type != string(audit.AuditPruned) || !strings.Contains(pruned.Details, `"events":15`) {
				t.Fatalf("the prune's own event: %+v", pruned)
			}
			seal(t, s, c)
			if _, broken, err := audit.Verify(ctx, s); err != nil || broken != nil {
				t.Fatalf("chain after pruning: %v %+v", err, broken)
			}
			if rep := verify(t, s, c, anchor); rep.Problem != nil || rep.Sealed != 2 || rep.Head.Size != 17 || rep.Pruned != 15 {
				t.Fatalf("tree after pruning: %+v %+v", rep, rep.Problem)
			}
		})
	}
}

// TestPruneWaitsForDelivery: events a notification receiver has not been
// sent yet are kept however old; the cursor that has not been placed does
// not hold anything back.
func TestPruneWaitsForDelivery(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s, c, ctx := b.Open(t), checkpointer(t), context.Background()
			anchor, _ := sealedLog(t, s, c)
			cur, err := s.GetDispatchCursor(ctx, "webhook@tree", -1)
			if err != nil {
				t.Fatal(err)
			}
			cur.LastID = 4 // delivered positions 0–3
			if err := s.SaveDispatchCursor(ctx, cur); err != nil {
				t.Fatal(err)
			}
			n, err := audit.Prune(ctx, s, c, time.Now().Add(time.Hour), "webhook@tree", "email@tree")
			if err != nil || n != 4 {
				t.Fatalf("pruned %d with the receiver at position 4: %v", n, err)
			}
			cur.LastID = 15
			if err := s.SaveDispatchCursor(ctx, cur); err != nil {
				t.Fatal(err)
			}
			if n, err := audit.Prune(ctx, s, c, time.Now().Add(time.Hour), "webhook@tree", "email@tree"); err != nil || n != 11 {
				t.Fatalf("pruned %d once everything was delivered: %v", n, err)
			}
			// Everything the checkpoints cover is gone (a quiet log): still
			// verified, against the anchor from before too.
			if rep := verify(t, s, c, anchor); rep.Problem != nil || rep.Head.Size != 15 {
				t.Fatalf("tree after two prunes: %+v %+v", rep, rep.Problem)
			}
		})
	}
}

// BenchmarkSealLatency reports how long committed events wait to be
// sealed with the production cadence (a pass every second) while 8
// writers append on PostgreSQL: p50 and p99 of seal time − event time.
func BenchmarkSealLatency(b *testing.B) {
	s, c, ctx := testdb.Postgres(b), checkpointer(b), context.Background()
	type sealed struct {
		at   time.Time
		size uint64
	}
	var mu sync.Mutex
	var seals []sealed
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			h, n, err := audit.Seal(ctx, s, c, 100000, time.Now())
			if err != nil {
				b.Error(err)
				return
			}
			if n > 0 {
				mu.Lock()
				seals = append(seals, sealed{time.Now(), h.Size})
				mu.Unlock()
			}
		}
	}()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < b.N/8+1; i++ {
				appendOne(b, s, "u")
			}
		}()
	}
	wg.Wait()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	<-done
	b.StopTimer()
	evs, err := s.SealedAuditEvents(ctx, 0, 1000000)
	if err != nil {
		b.Fatal(err)
	}
	var lags []time.Duration
	for _, e := range evs {
		for _, x := range seals {
			if x.size > e.LeafIndex {
				lags = append(lags, x.at.Sub(e.Time))
				break
			}
		}
	}
	if len(lags) == 0 {
		b.Fatal("nothing sealed")
	}
	slices.Sort(lags)
	b.ReportMetric(lags[len(lags)/2].Seconds()*1000, "p50-ms")
	b.ReportMetric(lags[len(lags)*99/100].Seconds()*1000, "p99-ms")
}

// TestRunSealer: the background sealer seals what writers commit and
// reports each batch with the oldest event's wait.
func TestRunSealer(t *testing.T) {
	s, c := testdb.SQLite(t), checkpointer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type batch struct {
		n   int
		lag time.Duration
	}
	got := make(chan batch, 10)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		audit.RunSealer(ctx, s, c, 20*time.Millisecond, func(n int, lag time.Duration) { got <- batch{n, lag} }, func(err error) { t.Error(err) })
	}()
	// The sealer reports through t, so it must be gone before the test is.
	defer func() { cancel(); <-stopped }()
	for i := 0; i < 3; i++ {
		appendOne(t, s, "u")
	}
	total := 0
	for total < 3 {
		select {
		case b := <-got:
			if b.lag <= 0 || b.lag > 10*time.Second {
				t.Fatalf("lag %v", b.lag)
			}
			total += b.n
		case <-time.After(5 * time.Second):
			t.Fatalf("sealed %d of 3", total)
		}
	}
	if rep := verify(t, s, c, nil); rep.Problem != nil || rep.Sealed != 3 {
		t.Fatalf("%+v", rep)
	}
}

// TestAuditKeyRotation: after the audit key rotates, checkpoints and
// anchors signed by the old key still verify; new ones are signed by the
// new key, which the old key alone does not accept.
func TestAuditKeyRotation(t *testing.T) {
	s, ctx := testdb.SQLite(t), context.Background()
	seedA, seedB := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	old, _, _ := audit.NewCheckpointer("latchkey.test/audit", seedA)
	anchor, _ := sealedLog(t, s, old)
	rotated, vkey, err := audit.NewCheckpointer("latchkey.test/audit", seedB, seedA)
	if err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, "after")
	head := seal(t, s, rotated)
	if rep := verify(t, s, rotated, anchor); rep.Problem != nil || rep.Sealed != 16 {
		t.Fatalf("after rotation, the old anchor still verifies: %+v", rep.Problem)
	}
	if _, err := old.Open([]byte(head.Note)); err == nil {
		t.Fatal("the new checkpoint must be signed by the new key")
	}
	if !strings.HasPrefix(vkey, "latchkey.test/audit+") {
		t.Fatalf("verifier key: %q", vkey)
	}
	_ = ctx
}
