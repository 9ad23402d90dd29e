package admin

import (
	"time"
)

// Request and response bodies of the admin API that are not views of one
// record. The OpenAPI document is generated from these types (Routes), so
// a handler's body and its documentation are the same Go type.

// GroupInput is POST /admin/groups.
type GroupInput struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// PolicyRef is PUT /admin/groups/{id}/policy.
type PolicyRef struct {
	PolicyID string `json:"policy_id"`
}

// DecisionInput is the optional body of approving or denying a reset request.
type DecisionInput struct {
	Reason string `json:"reason"` // sent to the user
}

// UserPage is GET /admin/users.
type UserPage struct {
	Users []User `json:"users"`
	Next  string `json:"next,omitempty"` // pass as ?after= for the next page
}

// EventPage is GET /admin/audit.
type EventPage struct {
	Events []Event `json:"events"`
	Next   string  `json:"next,omitempty"`
}

// TokenEvent is one entry of the token log.
type TokenEvent struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	TokenType string    `json:"token_type"`
	RequestID string    `json:"request_id"`
	ClientID  string    `json:"client_id"`
	Subject   string    `json:"subject"`
	GrantType string    `json:"grant_type"`
}

// TokenEventPage is GET /admin/token-events.
type TokenEventPage struct {
	Events []TokenEvent `json:"events"`
	Next   string       `json:"next,omitempty"`
}

// Notifications is GET /admin/notifications.
type Notifications struct {
	Notifications []Event `json:"notifications"`
}

// ChainBreak names where the hash chain breaks.
type ChainBreak struct {
	EventID int64  `json:"event_id"`
	Reason  string `json:"reason"`
}

// TreeProblem names where the log departs from a checkpoint.
type TreeProblem struct {
	Position uint64 `json:"position"`
	EventID  int64  `json:"event_id"`
	Reason   string `json:"reason"`
}

// TreeReport is the Merkle tree part of a verification.
type TreeReport struct {
	OK             bool         `json:"ok"`
	Sealed         uint64       `json:"sealed"`
	Pending        int          `json:"pending"`
	CheckpointSize uint64       `json:"checkpoint_size"`
	Problem        *TreeProblem `json:"problem,omitempty"`
}

// Verification is GET /admin/audit/verify.
type Verification struct {
	OK      bool        `json:"ok"`
	Checked int         `json:"checked"`
	Broken  *ChainBreak `json:"broken,omitempty"`
	Tree    TreeReport  `json:"tree"`
}

// CheckpointView is GET /admin/audit/checkpoint.
type CheckpointView struct {
	Checkpoint  string `json:"checkpoint"` // C2SP signed note
	Size        uint64 `json:"size"`
	Root        []byte `json:"root"`
	VerifierKey string `json:"verifier_key"`
}

// InclusionProofView is GET /admin/audit/events/{id}/proof.
type InclusionProofView struct {
	EventID       int64    `json:"event_id"`
	LeafIndex     uint64   `json:"leaf_index"`
	TreeSize      uint64   `json:"tree_size"`
	Root          []byte   `json:"root"`
	LeafData      string   `json:"leaf_data"`
	InclusionPath [][]byte `json:"inclusion_path"`
	Checkpoint    string   `json:"checkpoint"`
	Hash          string   `json:"hash"`
}

// ClientList is GET /admin/clients.
type ClientList struct {
	Clients []Client `json:"clients"`
}

// KeyList is GET /admin/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// RotatedKey is POST /admin/keys/rotate.
type RotatedKey struct {
	Kid string `json:"kid"`
}

// GroupList is GET /admin/groups.
type GroupList struct {
	Groups []Group `json:"groups"`
}

// ResetRequestList is GET /admin/reset-requests.
type ResetRequestList struct {
	ResetRequests []ResetRequest `json:"reset_requests"`
}

// PolicyList is GET /admin/policies.
type PolicyList struct {
	Policies []Policy `json:"policies"`
}

// ResetLink is POST /admin/users/{id}/reset-link: shown once.
type ResetLink struct {
	URL       string `json:"url"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// Error is every admin API refusal: a stable code, a message, and the
// invalid fields when there are any.
type Error struct {
	Error   string            `json:"error"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}
