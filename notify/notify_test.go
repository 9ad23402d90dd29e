package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/internal/testmail"
	"github.com/latchkey/latchkey/notify"
	"github.com/latchkey/latchkey/store"
)

// appendEvent appends an event and seals it into the tree, as the
// sealer would a second later (dispatchers deliver sealed events).
func appendEvent(t *testing.T, s store.Store, typ audit.Type, subject string) int64 {
	t.Helper()
	var id int64
	err := s.InTx(context.Background(), func(q store.Queries) error {
		e, err := audit.Append(context.Background(), q, audit.Event{Type: typ, ActorType: audit.ActorUser, ActorID: subject, SubjectID: subject})
		id = e.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sealAll(t, s)
	return id
}

var ledger, _, _ = audit.NewCheckpointer("test/audit", bytes.Repeat([]byte{1}, 32))

func sealAll(t *testing.T, s store.Store) {
	t.Helper()
	if _, _, err := audit.Seal(context.Background(), s, ledger, 10000, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// receiver is a webhook endpoint that can be down, and dedupes by id.
type receiver struct {
	mu     sync.Mutex
	down   atomic.Bool
	ids    []int64
	byID   map[int64]int
	secret []byte
	badSig int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if notify.Sign(rc.secret, r.Header.Get("X-Latchkey-Timestamp"), body) != r.Header.Get("X-Latchkey-Signature") {
		rc.mu.Lock()
		rc.badSig++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p notify.Payload
	if err := json.Unmarshal(body, &p); err != nil || strconv.FormatInt(p.ID, 10) != r.Header.Get("X-Latchkey-Event-Id") {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.byID[p.ID]++
	if rc.byID[p.ID] == 1 {
		rc.ids = append(rc.ids, p.ID)
	}
}

// TestWebhookDownThenUp: while the receiver is down nothing is lost; once
// it is up every event arrives, each id once, in chain order.
func TestWebhookDownThenUp(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s := b.Open(t)
			ctx := context.Background()
			appendEvent(t, s, audit.LoginSucceeded, "before") // before configuration: not sent
			rc := &receiver{byID: map[int64]int{}, secret: []byte("shh")}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			now := time.Now()
			d := &notify.Dispatcher{Store: s, Sink: &notify.Webhook{URL: srv.URL, Secret: rc.secret}, Batch: 3, Now: func() time.Time { return now }}
			if err := d.Start(ctx); err != nil {
				t.Fatal(err)
			}
			var want []int64
			for i := 0; i < 7; i++ {
				want = append(want, appendEvent(t, s, audit.MFARemoved, "u"+strconv.Itoa(i)))
			}
			rc.down.Store(true)
			for i := 0; i < 3; i++ {
				if n, err := d.RunOnce(ctx); err == nil || n != 0 {
					t.Fatalf("receiver down: %d %v", n, err)
				}
				now = now.Add(10 * time.Minute) // past the backoff
			}
			if len(rc.ids) != 0 {
				t.Fatalf("nothing is accepted while down: %v", rc.ids)
			}
			rc.down.Store(false)
			want = append(want, appendEvent(t, s, audit.MFAEnrolled, "late"))
			for i := 0; i < 10; i++ {
				_, _ = d.RunOnce(ctx)
				now = now.Add(10 * time.Minute)
			}
			if len(rc.ids) != len(want) || rc.badSig != 0 {
				t.Fatalf("delivered %v, want %v (bad signatures %d)", rc.ids, want, rc.badSig)
			}
			for i := range want {
				if rc.ids[i] != want[i] || rc.byID[want[i]] != 1 {
					t.Fatalf("order or duplicates: got %v want %v (counts %v)", rc.ids, want, rc.byID)
				}
			}
		})
	}
}

// TestLeaseKeepsReplicasApart: while one replica holds the lease, another
// delivers nothing.
func TestLeaseKeepsReplicasApart(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	now := time.Now()
	if _, err := s.GetDispatchCursor(ctx, "webhook@tree", 0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.LeaseDispatch(ctx, "webhook@tree", now, now.Add(time.Minute)); !ok {
		t.Fatal("first lease")
	}
	d := &notify.Dispatcher{Store: s, Sink: &notify.Webhook{URL: "http://127.0.0.1:1"}, Now: func() time.Time { return now }}
	if _, err := d.RunOnce(ctx); err != notify.ErrBusy {
		t.Fatalf("second replica: %v", err)
	}
	now = now.Add(2 * time.Minute) // an expired lease (crashed replica) is taken over
	appendEvent(t, s, audit.MFARemoved, "x")
	if _, err := d.RunOnce(ctx); err == notify.ErrBusy {
		t.Fatal("expired lease must be taken over")
	}
}

// TestEmailOn2SVChanges: the user gets one mail per 2SV change or reset
// event, none for other events.
func TestEmailOn2SVChanges(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := s.CreateUser(ctx, store.User{ID: "u1", Username: "una", Email: "una@example.com", DisplayName: "Una", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	mail := testmail.New(t)
	d := &notify.Dispatcher{Store: s, Sink: &notify.Email{Addr: mail.Addr(), From: "latchkey@example.com", Issuer: "https://id.example.com", Users: s}}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	appendEvent(t, s, audit.LoginSucceeded, "u1")
	appendEvent(t, s, audit.MFARemoved, "u1")
	appendEvent(t, s, audit.MFAResetRequested, "u1")
	appendEvent(t, s, audit.PasskeyRegistered, "u1")
	appendEvent(t, s, audit.TOTPMethodRemoved, "u1")
	appendEvent(t, s, audit.PasskeyRemoved, "u1")
	if n, err := d.RunOnce(ctx); err != nil || n != 6 {
		t.Fatalf("pass: %d %v", n, err)
	}
	ms := mail.Messages()
	if len(ms) != 5 || !strings.Contains(ms[0], "To: una@example.com") ||
		!strings.Contains(ms[0], "Subject: Two-step verification was removed from your account") || !strings.Contains(ms[1], "reset") ||
		!strings.Contains(ms[2], "Subject: A security key or passkey was added") || !strings.Contains(ms[3], "Subject: Your authenticator app was removed") ||
		!strings.Contains(ms[4], "Subject: A security key or passkey was removed") {
		t.Fatalf("mails: %q", ms)
	}
}

// TestAdminEmail: a member's group admins are mailed when the member asks
// for a reset or removes their own 2SV, with a console link and nothing
// that works without signing in; other events mail nobody.
func TestAdminEmail(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for _, u := range []store.User{{ID: "u1", Username: "una", Email: "una@example.com", DisplayName: "Una"},
		{ID: "a1", Username: "ada", Email: "ada@example.com", DisplayName: "Ada"}, {ID: "a2", Username: "bo", Email: "bo@example.com"}} {
		u.CreatedAt, u.UpdatedAt = now, now
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateGroup(ctx, store.Group{ID: "g1", Name: "Staff", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "g1", "u1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a1", "a2"} {
		if err := s.AddGroupAdmin(ctx, "g1", a); err != nil {
			t.Fatal(err)
		}
	}
	mail := testmail.New(t)
	d := &notify.Dispatcher{Store: s, Sink: &notify.AdminEmail{Admins: s,
		Mail: &notify.Email{Addr: mail.Addr(), From: "latchkey@example.com", Issuer: "https://id.example.com", Users: s}}}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	add := func(typ audit.Type, by string) {
		err := s.InTx(ctx, func(q store.Queries) error {
			_, err := audit.Append(ctx, q, audit.Event{Type: typ, ActorType: audit.ActorUser, ActorID: "u1", SubjectID: "u1", Details: map[string]any{"by": by}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add(audit.LoginSucceeded, "")
	add(audit.MFAResetRequested, "")
	add(audit.MFARemoved, "admin")
	add(audit.MFARemoved, "self")
	add(audit.TOTPMethodRemoved, "self") // a change of method: 2SV stays on, admins are not told
	sealAll(t, s)
	if n, err := d.RunOnce(ctx); err != nil || n != 5 {
		t.Fatalf("pass: %d %v", n, err)
	}
	if len(mail.Messages()) != 4 {
		t.Fatalf("want 2 admins × 2 events, got %d: %q", len(mail.Messages()), mail.Messages())
	}
	joined := strings.Join(mail.Messages(), "\n---\n")
	for _, want := range []string{"To: ada@example.com", "To: bo@example.com", "Subject: Una asked for a reset of their two-step verification",
		"https://id.example.com/console/resets", "Subject: Una removed their own two-step verification", "sign-in required"} {
		if !strings.Contains(joined, want) {
			t.Errorf("mails lack %q", want)
		}
	}
	if strings.Contains(joined, "una@example.com") || strings.Contains(joined, "token") {
		t.Errorf("admin mails must carry nothing to act on without signing in:\n%s", joined)
	}
}

// TestAnchors: each new signed checkpoint reaches the file and the webhook
// once; a receiver that is down gets it later; nothing new, nothing sent.
func TestAnchors(t *testing.T) {
	s := testdb.SQLite(t)
	ctx := context.Background()
	c, _, err := audit.NewCheckpointer("test/audit", bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	appendEvent(t, s, audit.LoginSucceeded, "u1")
	if _, _, err := audit.Seal(ctx, s, c, 100, time.Now()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "checkpoint.txt")
	fd := &notify.AnchorDispatcher{Store: s, Sink: &notify.FileAnchor{Path: file}}
	if ok, err := fd.RunOnce(ctx); !ok || err != nil {
		t.Fatalf("file anchor: %v %v", ok, err)
	}
	got, _ := os.ReadFile(file)
	if cp, err := c.Open(got); err != nil || cp.Size != 1 {
		t.Fatalf("the file holds the signed checkpoint: %v %+v", err, cp)
	}
	if ok, _ := fd.RunOnce(ctx); ok {
		t.Fatal("nothing new must send nothing")
	}
	var mu sync.Mutex
	var bodies []string
	up := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if !up || notify.Sign([]byte("s3cret-s3cret-s3cret"), r.Header.Get("X-Latchkey-Timestamp"), body) != r.Header.Get("X-Latchkey-Signature") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		bodies = append(bodies, string(body))
	}))
	defer srv.Close()
	wd := &notify.AnchorDispatcher{Store: s, MinGap: time.Millisecond, MaxGap: time.Millisecond,
		Sink: &notify.WebhookAnchor{Webhook: &notify.Webhook{URL: srv.URL, Secret: []byte("s3cret-s3cret-s3cret")}}}
	if ok, err := wd.RunOnce(ctx); ok || err == nil {
		t.Fatal("a receiver that is down must be retried")
	}
	mu.Lock()
	up = true
	mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	if ok, err := wd.RunOnce(ctx); !ok || err != nil {
		t.Fatalf("retry: %v %v", ok, err)
	}
	if len(bodies) != 1 || !strings.Contains(bodies[0], `"type":"audit.checkpoint"`) || !strings.Contains(bodies[0], "test/audit") {
		t.Fatalf("webhook anchor: %q", bodies)
	}
}

// TestWebhookDoesNotFollowRedirects: a receiver answering 307 to another
// address gets a failed delivery (retried to the configured URL), and the
// other address never sees the event or its signature.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	for _, client := range []*http.Client{nil, {Timeout: time.Second}} {
		wh := &notify.Webhook{URL: redirector.URL, Secret: []byte("shh"), Client: client}
		err := wh.Deliver(context.Background(), store.AuditEvent{ID: 1, Type: string(audit.MFARemoved), Time: time.Now(), Details: "{}"})
		if err == nil || !strings.Contains(err.Error(), "307") {
			t.Fatalf("a redirect must fail the delivery: %v", err)
		}
	}
	if elsewhere.Load() != 0 {
		t.Fatalf("the redirect target received %d deliveries", elsewhere.Load())
	}
}

// slowSink records deliveries; while delivering the event with id stallOn
// it lets the lease run out and another replica's pass run, as a delivery
// that outlives its lease would.
type slowSink struct {
	got     *[]int64
	stallOn int64
	stall   func()
}

func (s *slowSink) Name() string { return "slow" }
func (s *slowSink) Deliver(_ context.Context, e store.AuditEvent) error {
	*s.got = append(*s.got, e.ID)
	if e.ID == s.stallOn && s.stall != nil {
		stall := s.stall
		s.stall = nil
		stall()
	}
	return nil
}

// TestLeaseIsFenced: two replicas on one store. A pass whose lease ran
// out mid-batch stops at its next step instead of delivering the rest
// again and moving the cursor back; only the event in flight when the
// lease ran out arrives twice, and the cursor ends at the end.
func TestLeaseIsFenced(t *testing.T) {
	for _, b := range testdb.Backends {
		t.Run(b.Name, func(t *testing.T) {
			s, ctx := b.Open(t), context.Background()
			now := time.Now()
			clock := func() time.Time { return now }
			var got []int64
			slowA := &slowSink{got: &got}
			a := &notify.Dispatcher{Store: s, Sink: slowA, Now: clock}
			replicaB := &notify.Dispatcher{Store: s, Sink: &slowSink{got: &got}, Now: clock}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			var want []int64
			for i := 0; i < 6; i++ {
				want = append(want, appendEvent(t, s, audit.MFARemoved, "u"+strconv.Itoa(i)))
			}
			slowA.stallOn = want[1]
			slowA.stall = func() {
				now = now.Add(2 * time.Minute) // past A's lease
				if n, err := replicaB.RunOnce(ctx); err != nil || n != 5 {
					t.Errorf("replica B took over: %d %v", n, err)
				}
			}
			if n, err := a.RunOnce(ctx); !errors.Is(err, notify.ErrLeaseLost) || n != 2 {
				t.Fatalf("replica A after losing its lease: %d %v", n, err)
			}
			wantGot := []int64{want[0], want[1], want[1], want[2], want[3], want[4], want[5]}
			if !slices.Equal(got, wantGot) {
				t.Fatalf("deliveries %v, want %v (only the event in flight twice)", got, wantGot)
			}
			if n, err := a.RunOnce(ctx); err != nil || n != 0 {
				t.Fatalf("nothing left to deliver: %d %v", n, err)
			}
		})
	}
}
