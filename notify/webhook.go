package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Webhook POSTs each audit event as JSON, signed with HMAC-SHA256:
//
//	X-Latchkey-Event-Id:  the event id (receivers dedupe by it)
//	X-Latchkey-Timestamp: Unix seconds when sent
//	X-Latchkey-Signature: sha256=hex(HMAC(secret, timestamp + "." + body))
//
// Signing the timestamp with the body lets receivers refuse old replays.
type Webhook struct {
	URL    string
	Secret []byte
	Client *http.Client
	Now    func() time.Time
}

// Name identifies the webhook's cursor.
func (w *Webhook) Name() string { return "webhook" }

// Payload is the JSON body of a webhook call.
type Payload struct {
	ID            int64           `json:"id"`
	Time          time.Time       `json:"time"`
	Type          string          `json:"type"`
	Outcome       string          `json:"outcome"`
	ActorType     string          `json:"actor_type"`
	ActorID       string          `json:"actor_id"`
	SubjectID     string          `json:"subject_id,omitempty"`
	ClientID      string          `json:"client_id,omitempty"`
	PolicyID      string          `json:"policy_id,omitempty"`
	PolicyVersion int             `json:"policy_version,omitempty"`
	Details       json.RawMessage `json:"details"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
}

// Sign returns the signature header value for timestamp and body.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Deliver posts e; any 2xx answer accepts it.
func (w *Webhook) Deliver(ctx context.Context, e store.AuditEvent) error {
	body, err := json.Marshal(Payload{ID: e.ID, Time: e.Time, Type: e.Type, Outcome: e.Outcome, ActorType: e.ActorType, ActorID: e.ActorID,
		SubjectID: e.SubjectID, ClientID: e.ClientID, PolicyID: e.PolicyID, PolicyVersion: e.PolicyVersion, Details: json.RawMessage(e.Details),
		PrevHash: e.PrevHash, Hash: e.Hash})
	if err != nil {
		return err
	}
	return w.post(ctx, body, map[string]string{"X-Latchkey-Event-Id": strconv.FormatInt(e.ID, 10)})
}

// post sends one signed delivery; any 2xx answer accepts it.
func (w *Webhook) post(ctx context.Context, body []byte, headers map[string]string) error {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Latchkey-Webhook/1")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Latchkey-Timestamp", ts)
	req.Header.Set("X-Latchkey-Signature", Sign(w.Secret, ts, body))
	c := http.Client{Timeout: 10 * time.Second}
	if w.Client != nil {
		c = *w.Client
	}
	// A redirect could send the event (and its signature) anywhere,
	// including addresses the configuration would refuse: a 3xx is a
	// failed delivery, retried to the configured URL.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}
