// Package admin is the admin API: JSON under /admin/ for users, groups and
// their admin contacts, policies and their assignment, users' 2SV and
// reset requests, OAuth clients and signing keys.
//
// Every call needs a bearer access token with scope "admin", issued either
// to a user who is an admin or, for automation, to a first-party
// client-credentials client registered with the admin scope. Sensitive
// changes (StepUps) also need a sign-in with the second factor within the
// last 5 minutes, or a client registered for admin:sensitive; the service
// methods check it themselves, so the console (package admin/console, a
// thin caller of the same methods) gets the same rule. 2SV changes go
// through the lifecycle service (package mfa). Every change writes its
// audit event in the same transaction. It depends on store, policy, audit and
// authn, and on small interfaces for what the provider owns (token checks,
// signing keys); it never imports provider.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/store"
)

// Token is a verified access token.
type Token struct {
	UserID   string // empty for client credentials
	ClientID string
	Scopes   []string
	AuthTime time.Time // of the person's sign-in
	AMR      []string
}

// TokenVerifier checks bearer tokens (the provider implements it).
type TokenVerifier interface {
	VerifyAdminToken(ctx context.Context, token string) (Token, error)
}

// Key describes a signing key.
// State is "next" (published, signs from NotBefore), "signing",
// "retiring" (published until NotAfter) or "expired".
type Key struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Signing   bool      `json:"signing"`
	State     string    `json:"state"`
}

// Keys lists and rotates signing keys (the provider's key manager).
type Keys interface {
	ListKeys(ctx context.Context) ([]Key, error)
	// RotateKey rotates and calls record inside the rotation's transaction.
	RotateKey(ctx context.Context, record func(ctx context.Context, q store.Queries, kid string) error) (string, error)
}

// Options configures the admin API.
type Options struct {
	// OpenAPI is the document served at /admin/openapi.json (built by the
	// composition root from Routes and the account API's routes).
	OpenAPI []byte
	Store   store.Store
	Authn   *authn.Service
	MFA     *mfa.Service // the 2SV lifecycle, and the admins' step-up rule
	Tokens  TokenVerifier
	Keys    Keys
	// Ledger verifies the audit log's signed checkpoints; AuditKey is its
	// published verifier key.
	Ledger   *audit.Checkpointer
	AuditKey string
	// Issuer is the public base URL, for links the admin API hands out.
	Issuer string
	Logger *slog.Logger
	Now    func() time.Time
}

// Handler serves /admin/.
type Handler struct{ o Options }

// New returns the admin API handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o}
}

// Mount adds the /admin routes. The OpenAPI document is public; every other
// route requires an admin token.
func (h *Handler) Mount(r chi.Router) {
	r.Get("/admin/openapi.json", h.openAPI)
	r.Route("/admin", func(r chi.Router) {
		r.Use(httpx.NoStore, h.authenticate)
		// Group admins (a group's admin contacts) may use these too; each
		// checks, through the lifecycle service, that the user concerned is
		// theirs to act on.
		r.Get("/users/{id}", h.getUser)
		r.Get("/users/{id}/mfa", h.getUserMFA)
		r.Delete("/users/{id}/mfa", h.removeUserMFA)
		r.Delete("/users/{id}/mfa/methods/{method}", h.removeUserMethod)
		r.Get("/reset-requests", h.listResetRequests)
		r.Post("/reset-requests/{id}/approve", h.approveReset)
		r.Post("/reset-requests/{id}/deny", h.denyReset)
		r.Get("/audit", h.queryAudit)
		r.Get("/notifications", h.notifications)
		r.Group(func(r chi.Router) {
			r.Use(h.globalOnly)
			r.Get("/users", h.listUsers)
			r.Post("/users", h.createUser)
			r.Patch("/users/{id}", jsonCall(h, http.StatusOK, func(r *http.Request, a Actor, b UserUpdate) (User, error) {
				return h.UpdateUser(r.Context(), a, chi.URLParam(r, "id"), b)
			}))
			r.Post("/users/{id}/reset-link", h.createResetLink)
			r.Get("/groups", h.listGroups)
			r.Post("/groups", h.createGroup)
			r.Get("/groups/{id}", h.getGroup)
			r.Post("/groups/{id}/members", h.addMember)
			r.Delete("/groups/{id}/members/{userID}", h.removeMember)
			r.Post("/groups/{id}/admins", h.addGroupAdmin)
			r.Delete("/groups/{id}/admins/{userID}", h.removeGroupAdmin)
			r.Put("/groups/{id}/policy", h.assignPolicy)
			r.Delete("/groups/{id}/policy", h.unassignPolicy)
			r.Get("/policies", h.listPolicies)
			r.Post("/policies", jsonCall(h, http.StatusCreated, func(r *http.Request, a Actor, b PolicyInput) (Policy, error) {
				return h.CreatePolicy(r.Context(), a, b)
			}))
			r.Get("/policies/{id}", h.getPolicy)
			r.Put("/policies/{id}", jsonCall(h, http.StatusOK, func(r *http.Request, a Actor, b PolicyInput) (Policy, error) {
				return h.UpdatePolicy(r.Context(), a, chi.URLParam(r, "id"), b)
			}))
			r.Delete("/policies/{id}", h.deletePolicy)
			r.Post("/policies/{id}/preview", h.previewPolicy)
			r.Get("/clients", h.listClients)
			r.Post("/clients", jsonCall(h, http.StatusCreated, func(r *http.Request, a Actor, b ClientInput) (Client, error) {
				return h.CreateClient(r.Context(), a, b)
			}))
			r.Patch("/clients/{id}", jsonCall(h, http.StatusOK, func(r *http.Request, a Actor, b ClientRedirects) (Client, error) {
				return h.UpdateClient(r.Context(), a, chi.URLParam(r, "id"), b)
			}))
			r.Delete("/clients/{id}", h.deleteClient)
			r.Get("/audit/export", h.exportAudit)
			r.Get("/audit/verify", h.verifyAudit)
			r.Get("/audit/checkpoint", h.auditCheckpoint)
			r.Get("/audit/events/{id}/proof", h.auditProof)
			r.Get("/token-events", h.tokenEvents)
			r.Get("/keys", h.listKeys)
			r.Post("/keys/rotate", h.rotateKey)
		})
	})
}

type ctxKey struct{}

// actor is who is calling, and how they authenticated.
type Actor struct {
	Token
	Request audit.Request
	Proof   mfa.Proof
	// Global: a global admin or an admin client; otherwise the actor is a
	// group admin, limited to their groups' members.
	Global bool
}

// globalOnly refuses group admins the routes that are not about their
// members.
func (h *Handler) globalOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !actorOf(r).Global {
			h.fail(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "global_admin_only", Message: "Only global admins may do this; group admins act on their groups' members."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Roles reports whether the user is a global admin, and whether they
// administer a group (a delegated admin of its members).
func (h *Handler) Roles(ctx context.Context, userID string) (global, groupAdmin bool, err error) {
	if global, err = h.o.Store.IsAdmin(ctx, userID); err != nil || global {
		return global, false, err
	}
	groupAdmin, err = h.o.MFA.IsAnyAdmin(ctx, userID)
	return false, groupAdmin, err
}

// Member refuses unless a may administer the user (see mfa.MayAdminister).
func (h *Handler) Member(ctx context.Context, a Actor, userID string) error {
	if a.Global {
		return nil
	}
	_, err := h.o.MFA.MayAdminister(ctx, a.mfaActor(), userID)
	return err
}

// mfaActor is the Actor as the 2SV lifecycle records it.
func (a Actor) mfaActor() mfa.Actor {
	return mfa.Actor{Type: audit.ActorAdmin, UserID: a.UserID, ClientID: a.ClientID, Request: a.Request}
}

// tokenProof is how a bearer caller authenticated: a person's sign-in, or a
// client's credentials.
func tokenProof(t Token) mfa.Proof {
	if t.UserID == "" {
		return mfa.Proof{Via: mfa.ViaClient, Scopes: t.Scopes}
	}
	return mfa.Proof{Via: mfa.ViaBearer, AuthTime: t.AuthTime, AMR: t.AMR}
}

// fresh refuses a sensitive action unless the Actor's authentication is
// fresh enough for it (mfa.Service.RequireAdminFresh: a sign-in with the
// second factor within 5 minutes, or a client registered for it). Every
// sensitive service method calls it, so the API and the console agree.
func (h *Handler) Fresh(a Actor) error { return h.o.MFA.RequireAdminFresh(a.Proof) }

func (a Actor) id() string {
	if a.UserID != "" {
		return a.UserID
	}
	return "client:" + a.ClientID
}

func (a Actor) event(typ audit.Type, subject string, details map[string]any) audit.Event {
	return audit.Event{Type: typ, ActorType: audit.ActorAdmin, ActorID: a.id(), SubjectID: subject, ClientID: a.ClientID, Request: a.Request, Details: details}
}

func actorOf(r *http.Request) Actor { return r.Context().Value(ctxKey{}).(Actor) }

// authenticate admits a bearer token with scope admin whose user is an
// admin (or a client token, whose admin scope the client was granted).
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="admin"`)
			h.fail(w, r, &httpx.Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "A bearer access token with scope admin is required."})
			return
		}
		t, err := h.o.Tokens.VerifyAdminToken(r.Context(), strings.TrimSpace(tok))
		if errors.Is(err, store.ErrUnavailable) {
			httpx.WriteUnavailable(w, r, h.o.Logger, err)
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="admin", error="invalid_token"`)
			h.fail(w, r, &httpx.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "The access token is invalid, expired or revoked."})
			return
		}
		if !slices.Contains(t.Scopes, "admin") {
			h.fail(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "insufficient_scope", Message: "The access token lacks the admin scope."})
			return
		}
		global := true
		if t.UserID != "" {
			var err error
			if global, err = h.o.Store.IsAdmin(r.Context(), t.UserID); err != nil {
				h.fail(w, r, err)
				return
			}
			groupAdmin := false
			if !global {
				if groupAdmin, err = h.o.MFA.IsAnyAdmin(r.Context(), t.UserID); err != nil {
					h.fail(w, r, err)
					return
				}
			}
			if !global && !groupAdmin {
				h.fail(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "not_admin", Message: "Only admins may use the admin API."})
				return
			}
		}
		a := Actor{Token: t, Request: audit.Request{IP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: httpx.RequestID(r.Context())},
			Proof: tokenProof(t), Global: global}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)))
	})
}

// fail maps store sentinels and lifecycle refusals to HTTP errors; the one
// place that does.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	err = HTTPError(err)
	var he *httpx.Error
	if errors.As(err, &he) && he.Code == mfa.CodeStepUpRequired {
		// RFC 9470: the client gets a new token with a fresh sign-in.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="admin", error="insufficient_user_authentication", error_description=%q, acr_values="aal2", max_age=%d`,
			"A sign-in with the second factor within the last 5 minutes is required", int(mfa.AdminStepUpMaxAge.Seconds())))
	}
	switch {
	case errors.As(err, &he):
	case errors.Is(err, store.ErrNotFound):
		err = &httpx.Error{Status: http.StatusNotFound, Code: "not_found", Message: "No such resource."}
	case errors.Is(err, store.ErrInvalidClient):
		err = &httpx.Error{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Message: strings.TrimPrefix(err.Error(), "store: "),
			Fields: map[string]string{"scopes": "the admin scopes are for first-party clients only (admin:sensitive also needs admin)"}}
	case errors.Is(err, store.ErrAlreadyExists):
		err = &httpx.Error{Status: http.StatusConflict, Code: "conflict", Message: "It already exists.", Err: err}
	}
	httpx.WriteError(w, r, h.o.Logger, err)
}

// HTTPError turns a lifecycle refusal into an HTTP error; other errors
// pass through.
func HTTPError(err error) error {
	ref, ok := mfa.AsRefusal(err)
	if !ok {
		return err
	}
	status := http.StatusConflict
	switch ref.Code {
	case mfa.CodeStepUpRequired:
		status = http.StatusUnauthorized
	case mfa.CodeSelfAction, mfa.CodeInsufficientScope, mfa.CodeAdminOnly, mfa.CodeNotYourMember, mfa.CodeTargetIsAdmin, mfa.CodeStricterGroup:
		status = http.StatusForbidden
	case mfa.CodeNotFound:
		status = http.StatusNotFound
	case mfa.CodeInvalidCode, mfa.CodeInvalidReason:
		status = http.StatusUnprocessableEntity
	}
	return &httpx.Error{Status: status, Code: ref.Code, Message: ref.Message, Err: err}
}

func notFound(what string) error {
	return &httpx.Error{Status: http.StatusNotFound, Code: "not_found", Message: "No such " + what + "."}
}

func conflict(code, msg string) error {
	return &httpx.Error{Status: http.StatusConflict, Code: code, Message: msg}
}

func invalid(fields map[string]string) error {
	return &httpx.Error{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Message: "Some fields are invalid.", Fields: fields}
}

const maxBody = 64 << 10

// decode reads one JSON object into v: application/json only, at most
// 64 KiB, no unknown fields, no trailing data; type errors name the field.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return &httpx.Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Send application/json."}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return &httpx.Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "Could not read the body."}
	}
	if len(body) > maxBody {
		return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("The body exceeds %d bytes.", maxBody)}
	}
	if httpx.BadJSONText(body) {
		return &httpx.Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "Text must be valid UTF-8 without NUL bytes."}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return invalid(map[string]string{te.Field: "must be " + jsonType(te.Type.String())})
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return invalid(map[string]string{strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`): "unknown field"})
		}
		return &httpx.Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "The body must be one JSON object."}
	}
	if dec.More() {
		return &httpx.Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "The body must be one JSON object."}
	}
	return nil
}

// noBody refuses a body on an action that takes none, unless it is an
// empty JSON object: a request carrying something else was not meant for
// this action, and must not trigger it.
func noBody(r *http.Request) error {
	// The edge check may already have read a form body (r.PostForm), so
	// the declared length counts too, not only what is left to read.
	var peek [1]byte
	if n, _ := io.ReadFull(r.Body, peek[:]); n == 0 && r.ContentLength <= 0 && len(r.PostForm) == 0 {
		return nil
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(peek[:]), r.Body))
	return decode(r, &struct{}{})
}

func jsonType(goType string) string {
	switch {
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	}
	return "a different type"
}

func writeJSON(w http.ResponseWriter, status int, v any) { httpx.WriteJSON(w, status, v) }

// jsonCall is the thin handler of a service method that takes a JSON body:
// decode, call, answer (errors through the one error writer).
func jsonCall[B, R any](h *Handler, status int, fn func(r *http.Request, a Actor, b B) (R, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b B
		if err := decode(r, &b); err != nil {
			h.fail(w, r, err)
			return
		}
		v, err := fn(r, actorOf(r), b)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, status, v)
	}
}

// inTx runs fn in a transaction and answers with its error.
func (h *Handler) inTx(w http.ResponseWriter, r *http.Request, fn func(q store.Queries) error) bool {
	if err := h.o.Store.InTx(r.Context(), fn); err != nil {
		h.fail(w, r, err)
		return false
	}
	return true
}

func (h *Handler) appendAudit(ctx context.Context, q store.Queries, e audit.Event) error {
	e.Time = h.o.Now()
	_, err := audit.Append(ctx, q, e)
	return err
}
