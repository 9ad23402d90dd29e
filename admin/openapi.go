package admin

import (
	"net/http"
	"strings"
)

// Route is one documented operation.
type Route struct {
	Method, Path, Summary, Tag string
}

// Routes documents the admin API and the account JSON API. The OpenAPI
// test checks it against the mounted router in both directions.
var Routes = []Route{
	{"GET", "/admin/users", "Search users (q, after cursor, limit)", "users"},
	{"POST", "/admin/users", "Create a user", "users"},
	{"GET", "/admin/users/{id}", "A user with groups, 2SV and effective policy", "users"},
	{"PATCH", "/admin/users/{id}", "Update email, display name, disabled", "users"},
	{"GET", "/admin/users/{id}/mfa", "A user's 2SV state", "users"},
	{"POST", "/admin/users/{id}/reset-link", `A single-use password reset link, shown once: {"url", "expires_in"}`, "users"},
	{"DELETE", "/admin/users/{id}/mfa", "Remove a user's 2SV (audited, admin as Actor)", "users"},
	{"DELETE", "/admin/users/{id}/mfa/methods/{method}", "Remove one of a user's methods (\"totp\" or a passkey id); the last one removes their 2SV", "users"},
	{"GET", "/admin/groups", "List groups", "groups"},
	{"POST", "/admin/groups", "Create a group", "groups"},
	{"GET", "/admin/groups/{id}", "A group with members and admin contacts", "groups"},
	{"POST", "/admin/groups/{id}/members", "Add a member", "groups"},
	{"DELETE", "/admin/groups/{id}/members/{userID}", "Remove a member", "groups"},
	{"POST", "/admin/groups/{id}/admins", "Add an admin contact", "groups"},
	{"DELETE", "/admin/groups/{id}/admins/{userID}", "Remove an admin contact", "groups"},
	{"PUT", "/admin/groups/{id}/policy", "Assign a policy to the group", "groups"},
	{"DELETE", "/admin/groups/{id}/policy", "Unassign the group's policy", "groups"},
	{"GET", "/admin/policies", "List policies with their groups", "policies"},
	{"POST", "/admin/policies", "Create a policy (self-service removal off by default)", "policies"},
	{"GET", "/admin/policies/{id}", "A policy", "policies"},
	{"PUT", "/admin/policies/{id}", "Change a policy (send the version you read)", "policies"},
	{"DELETE", "/admin/policies/{id}", "Delete an unassigned, non-default policy", "policies"},
	{"POST", "/admin/policies/{id}/preview", "Preview how a change would alter members' effective policies (nothing is saved)", "policies"},
	{"GET", "/admin/reset-requests", "List reset requests (status=open|approved|denied)", "reset requests"},
	{"POST", "/admin/reset-requests/{id}/approve", `Approve: removes the user's 2SV (optional body {"reason"}, emailed to the user)`, "reset requests"},
	{"POST", "/admin/reset-requests/{id}/deny", `Deny (optional body {"reason"}, emailed to the user)`, "reset requests"},
	{"GET", "/admin/clients", "List OAuth clients", "clients"},
	{"POST", "/admin/clients", "Create a client (secret shown once)", "clients"},
	{"PATCH", "/admin/clients/{id}", "Update redirect URIs", "clients"},
	{"DELETE", "/admin/clients/{id}", "Delete a client", "clients"},
	{"GET", "/admin/audit", "Query the audit log (Actor, subject, type prefix, outcome, since, until; cursor after)", "audit"},
	{"GET", "/admin/audit/export", "Export the audit log as JSON Lines (same filters)", "audit"},
	{"GET", "/admin/audit/verify", "Verify the hash chain and the Merkle tree against the newest signed checkpoint; names the first bad position", "audit"},
	{"GET", "/admin/audit/checkpoint", "The newest signed checkpoint (C2SP tlog-checkpoint) and the verifier key, to keep outside the database", "audit"},
	{"GET", "/admin/audit/events/{id}/proof", "An event's RFC 6962 inclusion proof in the newest checkpoint, with the bytes its leaf covers", "audit"},
	{"GET", "/admin/token-events", "Query the token log (client, subject, type, since; cursor after)", "audit"},
	{"GET", "/admin/notifications", "2SV removals and reset requests of users in the groups the caller administers", "audit"},
	{"GET", "/admin/keys", "List signing keys", "keys"},
	{"POST", "/admin/keys/rotate", "Rotate signing keys", "keys"},
	{"GET", "/admin/openapi.json", "This document", "meta"},
	{"GET", "/account/mfa", "The caller's 2SV state and effective policy", "account"},
	{"POST", "/account/mfa/disable", "Start unlinking (returns choice_required and an unlink_id)", "account"},
	{"PUT", "/account/mfa/disable", `Answer the unlink: {"unlink_id", "choice": "yes"|"no"}`, "account"},
	{"PUT", "/account/mfa/disable/successful", "Confirm 2SV is disabled (409 while active)", "account"},
	{"POST", "/account/mfa/setup", "Start enrolling an authenticator", "account"},
	{"PUT", "/account/mfa/setup", `Activate it: {"code"}`, "account"},
	{"POST", "/account/mfa/reset-request", "Ask the caller's admins for a reset", "account"},
	{"POST", "/account/mfa/recovery-codes", "Replace the recovery codes (step-up for this action)", "account"},
	{"POST", "/account/mfa/passkeys", "Begin adding a passkey or security key: WebAuthn creation options (step-up add_method; none for a first method)", "account"},
	{"PUT", "/account/mfa/passkeys/{ceremony}", `Finish adding it: {"credential": PublicKeyCredential JSON, "name"}; a first method returns recovery codes`, "account"},
	{"PATCH", "/account/mfa/methods/{id}", `Rename a passkey: {"name"}`, "account"},
	{"DELETE", "/account/mfa/methods/{id}", "Remove one of several methods (step-up remove_method; the last one is turning 2SV off)", "account"},
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
	"POST /account/mfa/disable":                     "remove",
	"PUT /account/mfa/disable":                      "remove",
	"POST /account/mfa/setup":                       "replace", // when an authenticator is active
	"PUT /account/mfa/setup":                        "replace", // when an authenticator is active
	"POST /account/mfa/recovery-codes":              "recovery_codes",
	"POST /account/mfa/passkeys":                    "add_method", // beside other methods
	"PUT /account/mfa/passkeys/{ceremony}":          "add_method", // beside other methods
	"DELETE /account/mfa/methods/{id}":              "remove_method",
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	paths := map[string]map[string]any{}
	for _, rt := range Routes {
		op := map[string]any{"summary": rt.Summary, "tags": []string{rt.Tag},
			"responses": map[string]any{"default": map[string]any{"description": "JSON; errors carry a stable error/state code"}}}
		if strings.HasPrefix(rt.Path, "/admin/") && rt.Path != "/admin/openapi.json" {
			op["security"] = []map[string][]string{{"bearer": {"admin"}}}
		}
		if strings.HasPrefix(rt.Path, "/account/") {
			op["security"] = []map[string][]string{{"bearer": {"account"}}, {"portalSession": {}}}
		}
		if kind, ok := StepUps[rt.Method+" "+rt.Path]; ok {
			op["x-step-up"] = kind
			desc := "insufficient_user_authentication (RFC 9470): sign in again with the second factor within max_age (WWW-Authenticate names acr_values and max_age)"
			if kind != "admin" {
				desc += `, with authorization_details [{"type":"latchkey_mfa","actions":["` + kind + `"]}] and prompt=login; the step-up is spent by the call`
			}
			op["responses"].(map[string]any)["401"] = map[string]any{"description": desc}
		}
		var params []map[string]any
		for _, seg := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "Latchkey admin and account API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{"securitySchemes": map[string]any{
			"bearer":        map[string]any{"type": "http", "scheme": "bearer"},
			"portalSession": map[string]any{"type": "apiKey", "in": "cookie", "name": "latchkey_account", "description": "plus the X-CSRF-Token header on changes"},
		}},
	})
}
