// Package notify tells the outside world what the audit log records: a
// signed webhook receives every event, and users get an email when their
// two-step verification changes or a reset is requested or decided.
//
// The audit log is the durable outbox. Each dispatcher keeps a cursor in
// the database, reads the events after it in order, and advances it only
// once the receiver accepted them, retrying with backoff: a receiver that
// is down loses nothing, and gets each event id once in order (at least
// once across a crash, so receivers dedupe by id). A lease keeps replicas
// from delivering the same events at the same time.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/latchkey/latchkey/store"
)

// Sink delivers one event; an error means "try again later".
type Sink interface {
	Name() string
	Deliver(ctx context.Context, e store.AuditEvent) error
}

// Dispatcher feeds a Sink from the audit log.
type Dispatcher struct {
	Store  store.Store
	Sink   Sink
	Batch  int           // events per pass (default 100)
	Lease  time.Duration // how long a pass may hold the lease (default 1m)
	MinGap time.Duration // first retry delay (default 1s), doubling
	MaxGap time.Duration // longest retry delay (default 5m)
	Logger *slog.Logger
	Now    func() time.Time
}

func (d *Dispatcher) defaults() {
	if d.Batch == 0 {
		d.Batch = 100
	}
	if d.Lease == 0 {
		d.Lease = time.Minute
	}
	if d.MinGap == 0 {
		d.MinGap = time.Second
	}
	if d.MaxGap == 0 {
		d.MaxGap = 5 * time.Minute
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
}

// Start creates the cursor at the current end of the log if it does not
// exist, so a newly configured receiver starts with new events.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.defaults()
	head, err := d.Store.LastAuditID(ctx)
	if err != nil {
		return err
	}
	_, err = d.Store.GetDispatchCursor(ctx, d.Sink.Name(), head)
	return err
}

// ErrBusy means another replica holds the lease.
var ErrBusy = errors.New("notify: another replica is delivering")

// RunOnce delivers what is due and returns how many events it delivered.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	d.defaults()
	name := d.Sink.Name()
	cur, err := d.Store.GetDispatchCursor(ctx, name, 0)
	if err != nil {
		return 0, err
	}
	now := d.Now()
	if now.Before(cur.NextAt) {
		return 0, nil // backing off after a failure
	}
	ok, err := d.Store.LeaseDispatch(ctx, name, now, now.Add(d.Lease))
	if err != nil || !ok {
		if err == nil {
			err = ErrBusy
		}
		return 0, err
	}
	evs, err := d.Store.ListAuditEvents(ctx, store.AuditFilter{AfterID: cur.LastID, Limit: d.Batch})
	if err != nil {
		_ = d.Store.SaveDispatchCursor(ctx, cur)
		return 0, err
	}
	n := 0
	for _, e := range evs {
		if err := d.Sink.Deliver(ctx, e); err != nil {
			cur.Attempts++
			gap := d.MinGap << min(cur.Attempts-1, 20)
			if gap > d.MaxGap || gap <= 0 {
				gap = d.MaxGap
			}
			cur.NextAt, cur.LastError = d.Now().Add(gap), err.Error()
			d.Logger.WarnContext(ctx, "delivery failed; will retry", "sink", name, "event_id", e.ID, "attempt", cur.Attempts, "retry_in", gap, "err", err)
			if serr := d.Store.SaveDispatchCursor(ctx, cur); serr != nil {
				return n, serr
			}
			return n, fmt.Errorf("notify: %s: event %d: %w", name, e.ID, err)
		}
		cur.LastID, cur.Attempts, cur.NextAt, cur.LastError = e.ID, 0, time.Time{}, ""
		n++
	}
	return n, d.Store.SaveDispatchCursor(ctx, cur)
}

// Run delivers every interval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration) {
	d.defaults()
	if err := d.Start(ctx); err != nil {
		d.Logger.ErrorContext(ctx, "dispatcher did not start", "sink", d.Sink.Name(), "err", err)
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := d.RunOnce(ctx); err != nil && !errors.Is(err, ErrBusy) {
			d.Logger.DebugContext(ctx, "dispatch pass ended early", "sink", d.Sink.Name(), "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
