package selfservice

import "github.com/latchkey/latchkey/internal/apidoc"

// Routes documents the account JSON API with the Go types of its bodies;
// the OpenAPI document is generated from them. A test checks the table
// against the mounted router in both directions.
var Routes = []apidoc.Route{
	{Method: "GET", Path: "/account/mfa", Summary: "The caller's 2SV state, methods and effective policy", Tag: "account", Response: MFAState{}},
	{Method: "POST", Path: "/account/mfa/disable", Summary: "Start unlinking (returns choice_required and an unlink_id)", Tag: "account", Response: Intent{}},
	{Method: "PUT", Path: "/account/mfa/disable", Summary: `Answer the unlink: "yes" removes 2SV (a new secret follows), "no" cancels`, Tag: "account",
		Request: DecideInput{}, Response: apidoc.OneOf{Removed{}, Cancelled{}}},
	{Method: "PUT", Path: "/account/mfa/disable/successful", Summary: "Confirm 2SV is disabled (409 while active)", Tag: "account", Response: Disabled{}},
	{Method: "POST", Path: "/account/mfa/setup", Summary: "Start setting up an authenticator app (a new secret)", Tag: "account", Response: SetupPending{}},
	{Method: "PUT", Path: "/account/mfa/setup", Summary: "Activate it with a code from the app", Tag: "account", Request: CodeInput{}, Response: WithCodes{}},
	{Method: "POST", Path: "/account/mfa/reset-request", Summary: "Ask the caller's admins for a reset", Tag: "account", Request: ResetRequestInput{}, Response: StateOnly{}, Status: 201},
	{Method: "POST", Path: "/account/mfa/recovery-codes", Summary: "Replace the recovery codes", Tag: "account", Response: WithCodes{}},
	{Method: "POST", Path: "/account/mfa/passkeys", Summary: "Begin adding a passkey or security key: WebAuthn creation options", Tag: "account", Response: PasskeyChallenge{}},
	{Method: "PUT", Path: "/account/mfa/passkeys/{ceremony}", Summary: "Finish adding it; a first method returns recovery codes", Tag: "account",
		Request: PasskeyAnswer{}, Response: PasskeyAdded{}, Status: 201},
	{Method: "PATCH", Path: "/account/mfa/methods/{id}", Summary: "Rename a passkey", Tag: "account", Request: RenameInput{}, Response: StateOnly{}},
	{Method: "DELETE", Path: "/account/mfa/methods/{id}", Summary: "Remove one of several methods (the last one is turning 2SV off)", Tag: "account", Response: StateOnly{}},
}

// StepUps names the account routes that need a step-up made for an
// action (RFC 9396 authorization_details of type latchkey_mfa); without
// it they answer RFC 9470's 401 insufficient_user_authentication.
var StepUps = map[string]string{
	"POST /account/mfa/disable":            "remove",
	"PUT /account/mfa/disable":             "remove",
	"POST /account/mfa/setup":              "replace", // when an authenticator is active
	"PUT /account/mfa/setup":               "replace", // when an authenticator is active
	"POST /account/mfa/recovery-codes":     "recovery_codes",
	"POST /account/mfa/passkeys":           "add_method", // beside other methods
	"PUT /account/mfa/passkeys/{ceremony}": "add_method", // beside other methods
	"DELETE /account/mfa/methods/{id}":     "remove_method",
}
