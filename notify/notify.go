// Package notify tells the outside world what the audit log records: a
// signed webhook receives every event, and users get an email when their
// two-step verification changes or a reset is requested or decided.
//
// The audit log is the durable outbox. Each dispatcher keeps a cursor in
// the database, a position in the audit log's Merkle tree, reads the
// sealed events after it in tree order, and advances it only once the
// receiver accepted them, retrying with backoff: a receiver that is down
// loses nothing, and gets each event once in order (at least once across a
// crash, so receivers dedupe by id). Events are delivered once sealed
// (about a second after they commit): writers commit in any order, and
// only the tree's order is final. A lease keeps replicas from delivering
// the same events at the same time.
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

// cursorName is the dispatcher's cursor over tree positions; cursors
// named by the sink alone counted event ids (before the tree).
func (d *Dispatcher) cursorName() string { return d.Sink.Name() + "@tree" }

// CursorName names the cursor in the store; audit pruning waits for it.
func (d *Dispatcher) CursorName() string { return d.cursorName() }

// ErrNotReady means the dispatcher's cursor cannot be placed yet: events
// its id-based predecessor had not delivered are still being sealed.
var ErrNotReady = errors.New("notify: waiting for the sealer")

// Start places the cursor if it does not exist: where an id-based cursor
// from before the tree stopped, once those events are sealed, or at the
// current end of the log for a newly configured receiver, so it starts
// with new events.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.defaults()
	cur, err := d.Store.GetDispatchCursor(ctx, d.cursorName(), -1)
	if err != nil || cur.LastID >= 0 {
		return err
	}
	legacy, err := d.Store.GetDispatchCursor(ctx, d.Sink.Name(), -1)
	if err != nil {
		return err
	}
	start := uint64(0)
	if legacy.LastID >= 0 {
		next, unsealed, err := d.Store.AuditPositionAfter(ctx, legacy.LastID)
		if err != nil {
			return err
		}
		if unsealed > 0 {
			return ErrNotReady
		}
		start = next
	} else if h, err := d.Store.LatestAuditHead(ctx); err == nil {
		start = h.Size
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	} else if n, err := d.Store.CountUnsealedAuditEvents(ctx); err != nil || n > 0 {
		// Events exist but none is sealed: wait, so the end is known.
		return errors.Join(ErrNotReady, err)
	}
	cur.LastID = int64(start)
	return d.Store.SaveDispatchCursor(ctx, cur)
}

// ErrBusy means another replica holds the lease.
var ErrBusy = errors.New("notify: another replica is delivering")

// ErrLeaseLost means a pass outlived its lease and another replica took
// over; the pass stopped without moving the cursor.
var ErrLeaseLost = errors.New("notify: lease lost to another replica")

// RunOnce delivers what is due and returns how many events it delivered.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	d.defaults()
	name := d.cursorName()
	cur, err := d.Store.GetDispatchCursor(ctx, name, -1)
	if err != nil {
		return 0, err
	}
	if cur.LastID < 0 {
		if err := d.Start(ctx); err != nil {
			return 0, err
		}
		if cur, err = d.Store.GetDispatchCursor(ctx, name, -1); err != nil {
			return 0, err
		}
	}
	now := d.Now()
	if now.Before(cur.NextAt) {
		return 0, nil // backing off after a failure
	}
	// The lease's end doubles as this pass's fence token, so it is kept
	// at the stores' resolution (microseconds) to compare equal.
	lease := now.Add(d.Lease).UTC().Truncate(time.Microsecond)
	ok, err := d.Store.LeaseDispatch(ctx, name, now, lease)
	if err != nil || !ok {
		if err == nil {
			err = ErrBusy
		}
		return 0, err
	}
	// advance moves the cursor under the fence: after every delivered
	// event, extending the lease, and once more at the end, releasing it.
	advance := func(release bool) error {
		var until time.Time
		if !release {
			until = d.Now().Add(d.Lease).UTC().Truncate(time.Microsecond)
		}
		held, err := d.Store.AdvanceDispatch(ctx, cur, lease, until)
		if err != nil {
			return err
		}
		if !held {
			d.Logger.WarnContext(ctx, "delivery lease lost to another replica; stopping this pass", "sink", name, "position", cur.LastID)
			return ErrLeaseLost
		}
		lease = until
		return nil
	}
	evs, err := d.Store.SealedAuditEvents(ctx, uint64(cur.LastID), d.Batch)
	if err != nil {
		return 0, errors.Join(err, advance(true))
	}
	n := 0
	for _, e := range evs {
		if err := d.Sink.Deliver(ctx, e.AuditEvent); err != nil {
			cur.Attempts++
			gap := d.MinGap << min(cur.Attempts-1, 20)
			if gap > d.MaxGap || gap <= 0 {
				gap = d.MaxGap
			}
			cur.NextAt, cur.LastError = d.Now().Add(gap), err.Error()
			d.Logger.WarnContext(ctx, "delivery failed; will retry", "sink", name, "event_id", e.ID, "attempt", cur.Attempts, "retry_in", gap, "err", err)
			if serr := advance(true); serr != nil {
				return n, serr
			}
			return n, fmt.Errorf("notify: %s: event %d: %w", name, e.ID, err)
		}
		cur.LastID, cur.Attempts, cur.NextAt, cur.LastError = int64(e.LeafIndex)+1, 0, time.Time{}, ""
		n++
		if err := advance(false); err != nil {
			return n, err
		}
	}
	return n, advance(true)
}

// Run delivers every interval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration) {
	d.defaults()
	for {
		err := d.Start(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotReady) {
			d.Logger.ErrorContext(ctx, "dispatcher did not start", "sink", d.Sink.Name(), "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
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
