package store

import (
	"context"
	"time"
)

// DispatchCursor is a background dispatcher's position in the audit log.
type DispatchCursor struct {
	Name      string
	LastID    int64
	Attempts  int
	NextAt    time.Time // zero: now
	LastError string
}

// Dispatch stores dispatcher cursors and answers admin notification reads.
type Dispatch interface {
	// GetDispatchCursor returns the cursor, creating it at startID if new.
	GetDispatchCursor(ctx context.Context, name string, startID int64) (DispatchCursor, error)
	SaveDispatchCursor(ctx context.Context, c DispatchCursor) error
	// LeaseDispatch takes the named dispatcher's lease until until, if it
	// is free or expired at now; false means another replica holds it.
	LeaseDispatch(ctx context.Context, name string, now, until time.Time) (bool, error)
	// AdvanceDispatch saves c only if the lease still ends at held (the
	// value this replica set: the fence), and extends it to until (zero
	// releases it). false means the lease was lost to another replica and
	// nothing was saved, so a slow pass never moves a cursor backwards.
	AdvanceDispatch(ctx context.Context, c DispatchCursor, held, until time.Time) (bool, error)
	// GroupAdminEvents returns events of the given types whose subject is a
	// member of a group that adminID administers, newest first.
	GroupAdminEvents(ctx context.Context, adminID string, types []string, limit int) ([]AuditEvent, error)
}
