package selfservice

import (
	"encoding/json"

	"github.com/latchkey/latchkey/mfa"
)

// Bodies of the account JSON API besides MFAState, Intent and Removed.
// The OpenAPI document is generated from these types (Routes).

// CodeInput is PUT /account/mfa/setup.
type CodeInput struct {
	Code *string `json:"code"` // 6 digits from the new authenticator
}

// ResetRequestInput is the optional body of POST /account/mfa/reset-request.
type ResetRequestInput struct {
	Message string `json:"message"`
}

// PasskeyAnswer is PUT /account/mfa/passkeys/{ceremony}.
type PasskeyAnswer struct {
	Credential json.RawMessage `json:"credential"` // the PublicKeyCredential as JSON
	Name       string          `json:"name"`
}

// RenameInput is PATCH /account/mfa/methods/{id}.
type RenameInput struct {
	Name *string `json:"name"`
}

// StateOnly is an answer that only names the new state.
type StateOnly struct {
	State string `json:"state"`
}

// SessionView says which authentication a call used.
type SessionView struct {
	UserID   string   `json:"user_id"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
}

// Cancelled answers "no" to an unlink.
type Cancelled struct {
	State   string      `json:"state"`
	MFA     MFAState    `json:"mfa"`
	Session SessionView `json:"session"`
}

// Disabled is PUT /account/mfa/disable/successful.
type Disabled struct {
	State  string   `json:"state"`
	MFA    MFAState `json:"mfa"`
	Banner string   `json:"banner"`
}

// SetupPending is POST /account/mfa/setup.
type SetupPending struct {
	State        string       `json:"state"`
	Registration Registration `json:"registration"`
}

// WithCodes is an answer carrying new recovery codes, shown once.
type WithCodes struct {
	State         string   `json:"state"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// PasskeyChallenge is POST /account/mfa/passkeys.
type PasskeyChallenge struct {
	State    string          `json:"state"`
	Ceremony string          `json:"ceremony"`
	Options  json.RawMessage `json:"options"` // for navigator.credentials.create
}

// PasskeyAdded is PUT /account/mfa/passkeys/{ceremony}; a first method
// brings recovery codes.
type PasskeyAdded struct {
	State         string     `json:"state"`
	Method        mfa.Method `json:"method"`
	RecoveryCodes []string   `json:"recovery_codes,omitempty"`
}

// ProblemBody is every account API refusal: a stable state code and a
// message; some states add fields (step_up_url, action, max_age,
// acr_values, authorization_details; admin_contacts; fields; allowed_methods).
type ProblemBody struct {
	State   string `json:"state"`
	Message string `json:"message"`
}
