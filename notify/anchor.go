package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Anchors hand each new signed checkpoint of the audit log to somewhere
// outside the database, so an intruder who rewrites the database cannot
// also rewrite what the checkpoints committed to. Each anchor keeps its
// own durable cursor (the checkpoint size it delivered last) and retries
// with backoff; only the newest checkpoint is sent, as it commits to all
// earlier ones.

// AnchorSink receives a signed checkpoint (C2SP tlog-checkpoint note).
type AnchorSink interface {
	Name() string
	Anchor(ctx context.Context, h store.AuditHead) error
}

// AnchorDispatcher feeds a sink with new checkpoints.
type AnchorDispatcher struct {
	Store  store.Store
	Sink   AnchorSink
	MinGap time.Duration // first retry delay (default 1s), doubling
	MaxGap time.Duration // longest (default 5m)
	Logger *slog.Logger
	Now    func() time.Time
}

// RunOnce delivers the newest checkpoint if it is newer than the last one
// delivered, and reports whether it did.
func (d *AnchorDispatcher) RunOnce(ctx context.Context) (bool, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MinGap == 0 {
		d.MinGap, d.MaxGap = time.Second, 5*time.Minute
	}
	name := "anchor-" + d.Sink.Name()
	cur, err := d.Store.GetDispatchCursor(ctx, name, 0)
	if err != nil {
		return false, err
	}
	now := d.Now()
	if now.Before(cur.NextAt) {
		return false, nil
	}
	h, err := d.Store.LatestAuditHead(ctx)
	if errors.Is(err, store.ErrNotFound) || (err == nil && int64(h.Size) <= cur.LastID) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ok, err := d.Store.LeaseDispatch(ctx, name, now, now.Add(time.Minute)); err != nil || !ok {
		return false, err
	}
	if err := d.Sink.Anchor(ctx, h); err != nil {
		cur.Attempts++
		gap := min(d.MinGap<<min(cur.Attempts-1, 20), d.MaxGap)
		cur.NextAt, cur.LastError = now.Add(gap), err.Error()
		if d.Logger != nil {
			d.Logger.WarnContext(ctx, "anchoring a checkpoint failed; will retry", "sink", name, "size", h.Size, "retry_in", gap, "err", err)
		}
		return false, errors.Join(err, d.Store.SaveDispatchCursor(ctx, cur))
	}
	cur.LastID, cur.Attempts, cur.NextAt, cur.LastError = int64(h.Size), 0, time.Time{}, ""
	return true, d.Store.SaveDispatchCursor(ctx, cur)
}

// Run anchors every interval until ctx ends.
func (d *AnchorDispatcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := d.RunOnce(ctx); err != nil && d.Logger != nil {
			d.Logger.DebugContext(ctx, "anchor pass ended early", "sink", d.Sink.Name(), "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WebhookAnchor posts checkpoints to the audit webhook as events of type
// "audit.checkpoint", signed like every delivery.
type WebhookAnchor struct{ Webhook *Webhook }

// Name identifies the anchor's cursor.
func (a *WebhookAnchor) Name() string { return "webhook" }

// Anchor posts h; any 2xx answer accepts it.
func (a *WebhookAnchor) Anchor(ctx context.Context, h store.AuditHead) error {
	body, err := json.Marshal(map[string]any{"type": "audit.checkpoint", "size": h.Size, "checkpoint": h.Note, "time": h.CreatedAt})
	if err != nil {
		return err
	}
	return a.Webhook.post(ctx, body, map[string]string{"X-Latchkey-Event-Type": "audit.checkpoint"})
}

// FileAnchor keeps the newest checkpoint in a file (replaced atomically),
// for log shippers and backups to pick up.
type FileAnchor struct{ Path string }

// Name identifies the anchor's cursor.
func (a *FileAnchor) Name() string { return "file" }

// Anchor writes h's signed note to the file.
func (a *FileAnchor) Anchor(_ context.Context, h store.AuditHead) error {
	tmp, err := os.CreateTemp(filepath.Dir(a.Path), ".checkpoint-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(h.Note); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), a.Path)
}
