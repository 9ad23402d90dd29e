package admin

import (
	"net/http"

	"github.com/latchkey/latchkey/internal/apidoc"
)

// Routes documents the admin API: each operation with the Go types of its
// bodies, from which the OpenAPI document's schemas are generated. A test
// checks the table against the mounted router in both directions.
var Routes = []apidoc.Route{
	{Method: "GET", Path: "/admin/users", Summary: "Search users (q, after cursor, limit)", Tag: "users", Response: UserPage{}, Query: []string{"q: username, email or name contains", "after: cursor from next", "limit: at most 200"}},
	{Method: "POST", Path: "/admin/users", Summary: "Create a user", Tag: "users", Request: UserInput{}, Response: User{}, Status: 201},
	{Method: "GET", Path: "/admin/users/{id}", Summary: "A user with groups, 2SV and effective policy", Tag: "users", Response: UserDetail{}},
	{Method: "PATCH", Path: "/admin/users/{id}", Summary: "Update email, display name, disabled", Tag: "users", Request: UserUpdate{}, Response: User{}},
	{Method: "GET", Path: "/admin/users/{id}/mfa", Summary: "A user's 2SV state", Tag: "users", Response: MFA{}},
	{Method: "POST", Path: "/admin/users/{id}/reset-link", Summary: `A single-use password reset link, shown once: {"url", "expires_in"}`, Tag: "users", Response: ResetLink{}, Status: 201},
	{Method: "DELETE", Path: "/admin/users/{id}/mfa", Summary: "Remove a user's 2SV (audited, admin as Actor)", Tag: "users"},
	{Method: "DELETE", Path: "/admin/users/{id}/mfa/methods/{method}", Summary: "Remove one of a user's methods (\"totp\" or a passkey id); the last one removes their 2SV", Tag: "users"},
	{Method: "GET", Path: "/admin/groups", Summary: "List groups", Tag: "groups", Response: GroupList{}},
	{Method: "POST", Path: "/admin/groups", Summary: "Create a group", Tag: "groups", Request: GroupInput{}, Response: Group{}, Status: 201},
	{Method: "GET", Path: "/admin/groups/{id}", Summary: "A group with members and admin contacts", Tag: "groups", Response: Group{}},
	{Method: "POST", Path: "/admin/groups/{id}/members", Summary: "Add a member", Tag: "groups", Request: UserRef{}},
	{Method: "DELETE", Path: "/admin/groups/{id}/members/{userID}", Summary: "Remove a member", Tag: "groups"},
	{Method: "POST", Path: "/admin/groups/{id}/admins", Summary: "Add an admin contact", Tag: "groups", Request: UserRef{}},
	{Method: "DELETE", Path: "/admin/groups/{id}/admins/{userID}", Summary: "Remove an admin contact", Tag: "groups"},
	{Method: "PUT", Path: "/admin/groups/{id}/policy", Summary: "Assign a policy to the group", Tag: "groups", Request: PolicyRef{}},
	{Method: "DELETE", Path: "/admin/groups/{id}/policy", Summary: "Unassign the group's policy", Tag: "groups"},
	{Method: "GET", Path: "/admin/policies", Summary: "List policies with their groups", Tag: "policies", Response: PolicyList{}},
	{Method: "POST", Path: "/admin/policies", Summary: "Create a policy (self-service removal off by default)", Tag: "policies", Request: PolicyInput{}, Response: Policy{}, Status: 201},
	{Method: "GET", Path: "/admin/policies/{id}", Summary: "A policy", Tag: "policies", Response: Policy{}},
	{Method: "PUT", Path: "/admin/policies/{id}", Summary: "Change a policy (send the version you read)", Tag: "policies", Request: PolicyInput{}, Response: Policy{}},
	{Method: "DELETE", Path: "/admin/policies/{id}", Summary: "Delete an unassigned, non-default policy", Tag: "policies"},
	{Method: "POST", Path: "/admin/policies/{id}/preview", Summary: "Preview how a change would alter members' effective policies (nothing is saved)", Tag: "policies", Request: PolicyInput{}, Response: PreviewResult{}},
	{Method: "GET", Path: "/admin/reset-requests", Summary: "List reset requests (status=open|approved|denied)", Tag: "reset requests", Response: ResetRequestList{}, Query: []string{"status: open, approved or denied"}},
	{Method: "POST", Path: "/admin/reset-requests/{id}/approve", Summary: `Approve: removes the user's 2SV (optional body {"reason"}, emailed to the user)`, Tag: "reset requests", Request: DecisionInput{}},
	{Method: "POST", Path: "/admin/reset-requests/{id}/deny", Summary: `Deny (optional body {"reason"}, emailed to the user)`, Tag: "reset requests", Request: DecisionInput{}},
	{Method: "GET", Path: "/admin/clients", Summary: "List OAuth clients", Tag: "clients", Response: ClientList{}},
	{Method: "POST", Path: "/admin/clients", Summary: "Create a client (secret shown once)", Tag: "clients", Request: ClientInput{}, Response: Client{}, Status: 201},
	{Method: "PATCH", Path: "/admin/clients/{id}", Summary: "Update redirect URIs", Tag: "clients", Request: ClientRedirects{}, Response: Client{}},
	{Method: "DELETE", Path: "/admin/clients/{id}", Summary: "Delete a client", Tag: "clients"},
	{Method: "GET", Path: "/admin/audit", Summary: "Query the audit log (Actor, subject, type prefix, outcome, since, until; cursor after)", Tag: "audit", Response: EventPage{}, Query: []string{"actor: actor id", "subject: subject id", "type: event type prefix", "outcome: success, failure or denied", "since: RFC 3339", "until: RFC 3339", "after: cursor from next"}},
	{Method: "GET", Path: "/admin/audit/export", Summary: "Export the audit log as JSON Lines (same filters)", Tag: "audit", Raw: &apidoc.Raw{ContentType: "application/jsonl", Description: "One audit event per line (JSON Lines)."}, Query: []string{"actor: actor id", "subject: subject id", "type: event type prefix", "outcome: success, failure or denied", "since: RFC 3339", "until: RFC 3339"}},
	{Method: "GET", Path: "/admin/audit/verify", Summary: "Verify the hash chain and the Merkle tree against the newest signed checkpoint; names the first bad position", Tag: "audit", Response: Verification{}},
	{Method: "GET", Path: "/admin/audit/checkpoint", Summary: "The newest signed checkpoint (C2SP tlog-checkpoint) and the verifier key, to keep outside the database", Tag: "audit", Response: CheckpointView{}},
	{Method: "GET", Path: "/admin/audit/events/{id}/proof", Summary: "An event's RFC 6962 inclusion proof in the newest checkpoint, with the bytes its leaf covers", Tag: "audit", Response: InclusionProofView{}},
	{Method: "GET", Path: "/admin/token-events", Summary: "Query the token log (client, subject, type, since; cursor after)", Tag: "audit", Response: TokenEventPage{}, Query: []string{"client: client id", "subject: subject", "type: event type", "since: RFC 3339", "after: cursor from next"}},
	{Method: "GET", Path: "/admin/notifications", Summary: "2SV removals and reset requests of users in the groups the caller administers", Tag: "audit", Response: Notifications{}},
	{Method: "GET", Path: "/admin/keys", Summary: "List signing keys", Tag: "keys", Response: KeyList{}},
	{Method: "POST", Path: "/admin/keys/rotate", Summary: "Rotate signing keys", Tag: "keys", Response: RotatedKey{}},
	{Method: "GET", Path: "/admin/openapi.json", Summary: "This document", Tag: "meta", Raw: &apidoc.Raw{ContentType: "application/json", Description: "This OpenAPI 3.1 document."}},
}

// StepUps names the routes that need a step-up, "METHOD path" → what
// kind: "admin" (a sign-in with the second factor within 5 minutes, or a
// client registered for admin:sensitive) or the account action an
// interactive re-authentication must name (RFC 9396 authorization_details
// of type latchkey_mfa). Without it they answer RFC 9470's 401
// insufficient_user_authentication.
var StepUps = map[string]string{
	"DELETE /admin/users/{id}/mfa":                  "admin",
	"DELETE /admin/users/{id}/mfa/methods/{method}": "admin",
	"PATCH /admin/users/{id}":                       "admin", // when disabling
	"POST /admin/users/{id}/reset-link":             "admin",
	"POST /admin/groups/{id}/admins":                "admin",
	"PUT /admin/groups/{id}/policy":                 "admin",
	"DELETE /admin/groups/{id}/policy":              "admin",
	"POST /admin/policies":                          "admin",
	"PUT /admin/policies/{id}":                      "admin",
	"DELETE /admin/policies/{id}":                   "admin",
	"POST /admin/reset-requests/{id}/approve":       "admin",
	"POST /admin/clients":                           "admin",
	"PATCH /admin/clients/{id}":                     "admin",
	"DELETE /admin/clients/{id}":                    "admin",
	"POST /admin/keys/rotate":                       "admin",
}

// OpenAPISpec is the part of the OpenAPI document the admin API decides:
// its security schemes, its step-ups and its error body. cmd adds the
// account API's routes and error body and builds the document.
func OpenAPISpec() apidoc.Spec {
	return apidoc.Spec{
		Title:   "Latchkey admin and account API",
		Version: "1",
		Description: "JSON APIs of the Latchkey identity provider. Refusals carry a stable machine-readable code " +
			"(error on /admin, state on /account); x-step-up names the fresh sign-in an operation needs (RFC 9470).",
		Schemes: map[string]any{
			"bearer":        map[string]any{"type": "http", "scheme": "bearer", "description": "An access token (scope admin or account)."},
			"portalSession": map[string]any{"type": "apiKey", "in": "cookie", "name": "latchkey_account", "description": "The account portal's session, plus the X-CSRF-Token header on changes."},
		},
		Security: []apidoc.Security{
			{PathPrefix: "/admin/", Requirements: []map[string][]string{{"bearer": {"admin"}}}, Except: []string{"/admin/openapi.json"}},
			{PathPrefix: "/account/", Requirements: []map[string][]string{{"bearer": {"account"}}, {"portalSession": {}}}},
		},
		StepUps: StepUps,
		Errors:  map[string]any{"/admin/": Error{}},
	}
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	if h.o.OpenAPI == nil {
		h.fail(w, r, notFound("document"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(h.o.OpenAPI) //nolint:errcheck // the client left
}
