package admin

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// User is the admin view of a user.
type User struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func ViewUser(u store.User) User {
	return User{ID: u.ID, Username: u.Username, Email: u.Email, DisplayName: u.DisplayName, Disabled: u.Disabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			h.fail(w, r, invalid(map[string]string{"limit": "must be a number from 1 to 500"}))
			return
		}
		limit = n
	}
	if len(q.Get("q")) > 200 {
		h.fail(w, r, invalid(map[string]string{"q": "at most 200 characters"}))
		return
	}
	us, err := h.o.Store.SearchUsers(r.Context(), q.Get("q"), q.Get("after"), limit+1)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := UserPage{Users: make([]User, 0, len(us))}
	for i, u := range us {
		if i == limit {
			out.Next = out.Users[len(out.Users)-1].Username // cursor: pass as ?after=
			break
		}
		out.Users = append(out.Users, ViewUser(u))
	}
	writeJSON(w, http.StatusOK, out)
}

// UserInput is POST /admin/users.
type UserInput struct {
	Username    string `json:"username"`
	Email       string `json:"email"`
	DisplayName string `json:"display_name"`
	Password    string `json:"password"`
}

func validEmail(e string) bool {
	if e == "" {
		return true
	}
	a, err := mail.ParseAddress(e)
	return err == nil && a.Address == e && len(e) <= 254
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	var b UserInput
	if err := decode(r, &b); err != nil {
		h.fail(w, r, err)
		return
	}
	fields := map[string]string{}
	if u, err := authn.Username(b.Username); err != nil {
		fields["username"], _ = authn.AsBadName(err)
	} else {
		b.Username = u
	}
	if !validEmail(b.Email) {
		fields["email"] = "must be an email address"
	}
	if name, err := authn.DisplayText(b.DisplayName, 200); err != nil {
		reason, _ := authn.AsBadName(err)
		fields["display_name"] = reason + " (at most 200 characters)"
	} else {
		b.DisplayName = name
	}
	if len(b.Password) < 8 || len(b.Password) > 1024 {
		fields["password"] = "required, 8 to 1024 characters"
	}
	if len(fields) > 0 {
		h.fail(w, r, invalid(fields))
		return
	}
	a := actorOf(r)
	now := h.o.Now().UTC()
	u := store.User{ID: authn.NewID("user"), Username: b.Username, Email: b.Email, DisplayName: b.DisplayName,
		PasswordHash: h.o.Authn.Hasher().Hash(b.Password), CreatedAt: now, UpdatedAt: now}
	if !h.inTx(w, r, func(q store.Queries) error {
		// A name that looks like an existing one is refused too.
		if sk := authn.Skeleton(u.Username); sk != u.Username {
			if _, err := q.GetUserByUsername(r.Context(), sk); err == nil {
				return conflict("username_confusable", "That username looks like an existing one.")
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if err := q.CreateUser(r.Context(), u); errors.Is(err, store.ErrAlreadyExists) {
			return conflict("username_taken", "That username is taken.")
		} else if err != nil {
			return err
		}
		return h.appendAudit(r.Context(), q, a.event(audit.UserCreated, u.ID, map[string]any{"username": u.Username}))
	}) {
		return
	}
	writeJSON(w, http.StatusCreated, ViewUser(u))
}

// UserDetail is GET /admin/users/{id}.
type UserDetail struct {
	User
	Groups    []string      `json:"groups"`
	IsAdmin   bool          `json:"is_admin"`
	MFA       MFA           `json:"mfa"`
	Effective EffectiveView `json:"effective_policy"`
}

// MFA is a user's 2SV state.
type MFA struct {
	Active            bool       `json:"active"`
	Method            string     `json:"method,omitempty"`
	EnrolledAt        *time.Time `json:"enrolled_at,omitempty"`
	LastUsedAt        *time.Time `json:"last_used_at,omitempty"` // start of the last accepted code's 30 s step
	RecoveryCodesLeft int        `json:"recovery_codes_left"`
	RemovedAt         *time.Time `json:"removed_at,omitempty"`
	// Methods are every way the user confirms it's them (TOTP app,
	// passkeys and security keys).
	Methods []mfa.Method `json:"methods"`
}

// EffectiveView explains a user's effective policy.
type EffectiveView struct {
	RequireMFA         bool            `json:"require_mfa"`
	SelfServiceRemoval bool            `json:"self_service_removal"`
	StepUpMaxAge       int             `json:"step_up_max_age"`
	Reenroll           string          `json:"reenroll"`
	GracePeriod        int             `json:"grace_period"`
	Reason             string          `json:"reason"`
	DecidedBy          []policy.Source `json:"decided_by"`
	AllowedMethods     []string        `json:"allowed_methods"`
	MethodsReason      string          `json:"methods_reason"`
	Applied            []policy.Source `json:"applied"`
}

func viewEffective(e policy.Effective) EffectiveView {
	return EffectiveView{RequireMFA: e.RequireMFA, SelfServiceRemoval: e.AllowSelfServiceRemoval, StepUpMaxAge: int(e.StepUpMaxAge.Seconds()),
		Reenroll: e.Reenroll, GracePeriod: int(e.GracePeriod.Seconds()), Reason: e.RemovalReason(), DecidedBy: e.AllowSelfServiceRemovalBy, Applied: e.Applied,
		AllowedMethods: e.AllowedMethods, MethodsReason: e.MethodsReason()}
}

func (h *Handler) mfaOf(ctx context.Context, q store.Queries, userID string) (MFA, error) {
	var m MFA
	cred, err := q.GetTOTP(ctx, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return m, err
	default:
		m.Active, m.Method = true, "totp"
		t := cred.VerifiedAt
		m.EnrolledAt = &t
		// The replay counter is the last step a code was accepted for.
		if used := time.Unix(cred.LastStep*30, 0).UTC(); !used.Before(cred.VerifiedAt.Add(-time.Minute)) {
			m.LastUsedAt = &used
		}
		if m.RecoveryCodesLeft, err = q.CountRecoveryCodes(ctx, userID); err != nil {
			return m, err
		}
	}
	if m.Methods, err = h.o.MFA.Methods(ctx, userID); err != nil {
		return m, err
	}
	if len(m.Methods) > 0 && !m.Active {
		m.Active, m.Method = true, m.Methods[0].Kind
		t := m.Methods[0].CreatedAt
		m.EnrolledAt = &t
		if m.RecoveryCodesLeft, err = q.CountRecoveryCodes(ctx, userID); err != nil {
			return m, err
		}
	}
	removed, err := q.MFARemovedAt(ctx, userID)
	if err != nil {
		return m, err
	}
	if !removed.IsZero() {
		m.RemovedAt = &removed
	}
	return m, nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	if err := h.Member(r.Context(), actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
	d, err := h.UserDetail(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// UserDetail is a user with groups, admin role, 2SV and effective policy.
func (h *Handler) UserDetail(ctx context.Context, id string) (UserDetail, error) {
	q := h.o.Store
	u, err := q.GetUser(ctx, id)
	if err != nil {
		return UserDetail{}, err
	}
	d := UserDetail{User: ViewUser(u), Groups: []string{}}
	gs, err := q.UserGroups(ctx, u.ID)
	if err != nil {
		return d, err
	}
	for _, g := range gs {
		d.Groups = append(d.Groups, g.Name)
	}
	if d.IsAdmin, err = q.IsAdmin(ctx, u.ID); err != nil {
		return d, err
	}
	if d.MFA, err = h.mfaOf(ctx, q, u.ID); err != nil {
		return d, err
	}
	eff, err := authn.EffectivePolicy(ctx, q, u.ID)
	if err != nil {
		return d, err
	}
	d.Effective = viewEffective(eff)
	return d, nil
}

type UserUpdate struct {
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
	Disabled    *bool   `json:"disabled"`
}

// UpdateUser changes email, display name or disabled; disabling revokes
// the user's sessions and tokens in the same transaction.
func (h *Handler) UpdateUser(ctx context.Context, a Actor, id string, b UserUpdate) (User, error) {
	fields := map[string]string{}
	if b.Email != nil && !validEmail(*b.Email) {
		fields["email"] = "must be an email address"
	}
	if b.DisplayName != nil {
		if name, err := authn.DisplayText(*b.DisplayName, 200); err != nil {
			reason, _ := authn.AsBadName(err)
			fields["display_name"] = reason + " (at most 200 characters)"
		} else {
			b.DisplayName = &name
		}
	}
	if len(fields) > 0 {
		return User{}, invalid(fields)
	}
	if b.Disabled != nil && *b.Disabled {
		if err := h.Fresh(a); err != nil {
			return User{}, err
		}
	}
	var u store.User
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		var err error
		if u, err = q.GetUser(ctx, id); err != nil {
			return err
		}
		changes := map[string]any{}
		if b.Email != nil {
			u.Email, changes["email"] = *b.Email, *b.Email
		}
		if b.DisplayName != nil {
			u.DisplayName, changes["display_name"] = *b.DisplayName, *b.DisplayName
		}
		if b.Disabled != nil {
			u.Disabled, changes["disabled"] = *b.Disabled, *b.Disabled
		}
		u.UpdatedAt = h.o.Now().UTC()
		if err := q.UpdateUser(ctx, u); err != nil {
			return err
		}
		if b.Disabled != nil && *b.Disabled {
			// A disabled account keeps nothing it was issued.
			if err := q.DeleteUserSessions(ctx, u.ID); err != nil {
				return err
			}
			if err := q.DeleteUserPortalSessions(ctx, u.ID); err != nil {
				return err
			}
			if _, err := q.DeactivateUserTokens(ctx, u.ID, ""); err != nil {
				return err
			}
		}
		return h.appendAudit(ctx, q, a.event(audit.UserUpdated, u.ID, changes))
	})
	return ViewUser(u), err
}

// createResetLink answers with a single-use password reset link. The link
// is in this response only; the audit event never holds it.
func (h *Handler) createResetLink(w http.ResponseWriter, r *http.Request) {
	link, err := h.CreateResetLink(r.Context(), actorOf(r), chi.URLParam(r, "id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ResetLink{URL: link, ExpiresIn: int(authn.ResetLinkLifetime.Seconds())})
}

// CreateResetLink makes a single-use password reset link for the user,
// with its audit event (which never contains the link).
func (h *Handler) CreateResetLink(ctx context.Context, a Actor, userID string) (string, error) {
	if h.o.Issuer == "" {
		return "", errors.New("admin: reset links need Options.Issuer")
	}
	if err := h.Fresh(a); err != nil {
		return "", err
	}
	var token string
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		if _, err := q.GetUser(ctx, userID); err != nil {
			return err
		}
		var err error
		if token, err = h.o.Authn.NewResetLink(ctx, q, userID, a.id()); err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(audit.ResetLinkCreated, userID, map[string]any{}))
	})
	if err != nil {
		return "", err
	}
	return h.o.Issuer + "/password-reset?token=" + token, nil
}
