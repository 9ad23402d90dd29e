package store

import (
	"context"
	"time"
)

// Policy is a stored authentication policy (see package policy for the
// meaning of each setting).
type Policy struct {
	ID                      string
	Name                    string
	Description             string
	RequireMFA              bool
	AllowSelfServiceRemoval bool
	StepUpMaxAge            time.Duration
	Reenroll                string
	GracePeriod             time.Duration
	SetupWindow             time.Duration
	AllowedMethods          []string // kinds of second factor; empty means all
	Version                 int
	IsDefault               bool
	UpdatedAt               time.Time
}

// GroupPolicy is a group with the policy assigned to it.
type GroupPolicy struct {
	GroupID   string
	GroupName string
	Policy    Policy
}

// ResetRequest asks a user's admins to remove their 2SV.
type ResetRequest struct {
	ID        string
	UserID    string
	Status    string // open, approved, denied
	Message   string
	CreatedAt time.Time
	DecidedAt time.Time
	DecidedBy string
}

// MaxStepUpAge bounds how long any step-up can count (policy.MaxStepUpMaxAge);
// spent step-ups older than this are forgotten.
const MaxStepUpAge = 24 * time.Hour

// Reset request states.
const (
	ResetOpen     = "open"
	ResetApproved = "approved"
	ResetDenied   = "denied"
)

// PendingTOTP is a new authenticator secret (sealed) not yet verified.
type PendingTOTP struct {
	UserID string
	ID     string
	Secret []byte
	// Binding names the session, token or sign-in the secret was shown
	// to; only that caller may see it again or complete the setup.
	Binding   string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// PendingAction is a console change kept while its admin steps up.
type PendingAction struct {
	ID        string
	UserID    string
	Method    string
	Path      string
	Form      string // URL-encoded
	CreatedAt time.Time
	ExpiresAt time.Time
}

// UnlinkIntent is a started, unconfirmed 2SV removal.
type UnlinkIntent struct {
	ID        string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// PortalSession is a signed-in account-portal browser. StepUp holds the
// action a fresh step-up was made for ("" when none).
type PortalSession struct {
	IDHash    string
	UserID    string
	SID       string
	AuthTime  time.Time
	AMR       []string
	ACR       string
	IDToken   string
	StepUp    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// AuditEvent is one entry of the hash-chained audit log.
type AuditEvent struct {
	ID            int64
	Time          time.Time
	Type          string
	Outcome       string
	ActorType     string
	ActorID       string
	SubjectID     string
	ClientID      string
	PolicyID      string
	PolicyVersion int
	IP            string
	UserAgent     string
	RequestID     string
	Details       string // JSON object
	PrevHash      string
	Hash          string
}

// AuditNode is the hash of one complete subtree of the audit Merkle tree
// (level 0: leaves).
type AuditNode struct {
	Level uint
	Index uint64
	Hash  []byte
}

// AuditHead is a signed checkpoint of the audit tree.
type AuditHead struct {
	Size      uint64
	Root      []byte
	Note      string // C2SP signed note
	CreatedAt time.Time
}

// SealedEvent is an event with its position in the tree.
type SealedEvent struct {
	AuditEvent
	LeafIndex uint64
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	ActorID    string
	SubjectID  string
	TypePrefix string
	Outcome    string
	Since      time.Time
	Until      time.Time
	AfterID    int64
	Limit      int
}

// Policies stores policies, their versions and group assignments.
type Policies interface {
	CreatePolicy(ctx context.Context, p Policy) error
	// UpdatePolicy writes p if the stored version is p.Version-1.
	UpdatePolicy(ctx context.Context, p Policy) error
	GetPolicy(ctx context.Context, id string) (Policy, error)
	GetPolicyVersion(ctx context.Context, id string, version int) (Policy, error)
	ListPolicies(ctx context.Context) ([]Policy, error)
	DefaultPolicy(ctx context.Context) (Policy, error)
	AssignPolicy(ctx context.Context, groupID, policyID string) error
	UnassignPolicy(ctx context.Context, groupID string) error
	// UserGroupPolicies returns the user's groups that carry a policy.
	UserGroupPolicies(ctx context.Context, userID string) ([]GroupPolicy, error)
	AddGroupAdmin(ctx context.Context, groupID, userID string) error
	// UserAdminContacts returns the admins of the user's groups.
	UserAdminContacts(ctx context.Context, userID string) ([]User, error)
}

// Account stores the state of self-service flows.
type Account interface {
	CreateResetRequest(ctx context.Context, r ResetRequest) error
	OpenResetRequest(ctx context.Context, userID string) (ResetRequest, error)
	ListResetRequests(ctx context.Context, status string) ([]ResetRequest, error)
	DecideResetRequest(ctx context.Context, id, status, by string, at time.Time) error

	// SetMFARemoved records a removal; a password alone reaches setup
	// until setupUntil.
	SetMFARemoved(ctx context.Context, userID string, at, setupUntil time.Time) error
	// MFASetupUntil returns the end of the setup window of the last
	// removal (zero if none; far in the future for removals recorded
	// before windows existed).
	MFASetupUntil(ctx context.Context, userID string) (time.Time, error)
	// MFARemovedAt returns when 2SV was last removed (zero if never or
	// since re-enrolled).
	MFARemovedAt(ctx context.Context, userID string) (time.Time, error)
	ClearMFARemoved(ctx context.Context, userID string) error

	PutPendingTOTP(ctx context.Context, p PendingTOTP) error
	GetPendingTOTP(ctx context.Context, userID string) (PendingTOTP, error)
	DeletePendingTOTP(ctx context.Context, userID string) error

	CreateUnlinkIntent(ctx context.Context, u UnlinkIntent) error
	// ConsumeUnlinkIntent deletes and returns the intent; ErrNotFound if it
	// was already consumed (so one intent removes 2SV at most once).
	ConsumeUnlinkIntent(ctx context.Context, id string) (UnlinkIntent, error)
	GetUnlinkIntent(ctx context.Context, id string) (UnlinkIntent, error)

	CreatePortalSession(ctx context.Context, s PortalSession) error
	GetPortalSession(ctx context.Context, idHash string) (PortalSession, error)
	SetPortalStepUp(ctx context.Context, idHash, action string) error
	DeletePortalSession(ctx context.Context, idHash string) error
	DeleteUserPortalSessions(ctx context.Context, userID string) error

	// DeactivateUserTokens deactivates every active token row of the user,
	// except the access token of the grant keepRequestID ("" keeps none),
	// and returns how many.
	DeactivateUserTokens(ctx context.Context, userID, keepRequestID string) (int, error)

	// SpendStepUp records a step-up proof as used; ErrAlreadyExists if it
	// was used before.
	SpendStepUp(ctx context.Context, id, userID, action string, at time.Time) error
	// StepUpSpent reports whether a step-up proof was used.
	StepUpSpent(ctx context.Context, id string) (bool, error)

	CreatePendingAction(ctx context.Context, a PendingAction) error
	// ConsumePendingAction deletes and returns the action (ErrNotFound if
	// it was already taken).
	ConsumePendingAction(ctx context.Context, id string) (PendingAction, error)
}

// Audit stores the audit log.
type Audit interface {
	// LastAuditHash returns the newest event's hash ("" for an empty log).
	LastAuditHash(ctx context.Context) (string, error)
	// LastAuditID returns the newest event's id (0 for an empty log).
	LastAuditID(ctx context.Context) (int64, error)
	InsertAuditEvent(ctx context.Context, e AuditEvent) (int64, error)
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// PruneAuditEvents deletes the events at tree positions below below
	// and records a checkpoint: the newest deleted event's id and hash (for
	// the chain of events written before the tree) and note, the signed
	// retention record.
	PruneAuditEvents(ctx context.Context, below uint64, throughID int64, hash, note string, at time.Time) (int, error)
	// LastAuditPruneNote returns the newest signed retention record ("" if
	// none).
	LastAuditPruneNote(ctx context.Context) (string, error)
	// LastAuditCheckpoint returns the newest checkpoint (zero if none).
	LastAuditCheckpoint(ctx context.Context) (throughID int64, hash string, err error)

	// UnsealedAuditEvents returns up to limit events without a tree
	// position, in id order.
	UnsealedAuditEvents(ctx context.Context, limit int) ([]AuditEvent, error)
	// SealAuditEvent gives an event its tree position.
	SealAuditEvent(ctx context.Context, id int64, leafIndex uint64) error
	// SealedAuditEvents returns up to limit sealed events from leaf index
	// from on, in tree order.
	SealedAuditEvents(ctx context.Context, from uint64, limit int) ([]SealedEvent, error)
	// AuditLeafIndex returns an event's tree position (ErrNotFound while
	// unsealed).
	AuditLeafIndex(ctx context.Context, id int64) (uint64, error)
	PutAuditNodes(ctx context.Context, nodes []AuditNode) error
	// AuditNodes returns the stored hashes of the given nodes, in order
	// (ErrNotFound if one is missing).
	AuditNodes(ctx context.Context, ids []AuditNode) ([][]byte, error)
	PutAuditHead(ctx context.Context, h AuditHead) error
	// LatestAuditHead returns the largest checkpoint (ErrNotFound if none).
	LatestAuditHead(ctx context.Context) (AuditHead, error)
	// CountUnsealedAuditEvents counts events waiting for the sealer.
	CountUnsealedAuditEvents(ctx context.Context) (int, error)
	// AuditPositionAfter returns the tree position after every event with
	// an id up to id, and how many of those are not sealed yet.
	AuditPositionAfter(ctx context.Context, id int64) (next uint64, unsealed int, err error)
}
