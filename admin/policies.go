package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// Policy is the admin view of a policy; durations are seconds.
type Policy struct {
	ID                      string    `json:"id"`
	Name                    string    `json:"name"`
	Description             string    `json:"description"`
	RequireMFA              bool      `json:"require_mfa"`
	AllowSelfServiceRemoval bool      `json:"allow_self_service_mfa_removal"`
	StepUpMaxAge            int       `json:"step_up_max_age"`
	Reenroll                string    `json:"reenroll"`
	GracePeriod             int       `json:"grace_period"`
	SetupWindow             int       `json:"setup_window"`
	AllowedMethods          []string  `json:"allowed_methods"`
	Version                 int       `json:"version"`
	IsDefault               bool      `json:"is_default"`
	Groups                  []string  `json:"groups"`
	UpdatedAt               time.Time `json:"updated_at"`
}

func (h *Handler) ViewPolicy(ctx context.Context, q store.Queries, p store.Policy) (Policy, error) {
	gs, err := q.PolicyGroups(ctx, p.ID)
	v := Policy{ID: p.ID, Name: p.Name, Description: p.Description, RequireMFA: p.RequireMFA, AllowSelfServiceRemoval: p.AllowSelfServiceRemoval,
		StepUpMaxAge: int(p.StepUpMaxAge.Seconds()), Reenroll: p.Reenroll, GracePeriod: int(p.GracePeriod.Seconds()), SetupWindow: int(p.SetupWindow.Seconds()), Version: p.Version,
		AllowedMethods: authn.PolicyFromStore(p).Methods(), IsDefault: p.IsDefault, UpdatedAt: p.UpdatedAt, Groups: []string{}}
	for _, g := range gs {
		v.Groups = append(v.Groups, g.Name)
	}
	return v, err
}

// PolicyInput is the input of create and update. Pointers tell "absent"
// from "false"/0, so defaults apply only to what was not sent.
type PolicyInput struct {
	Name                    *string `json:"name"`
	Description             *string `json:"description"`
	RequireMFA              *bool   `json:"require_mfa"`
	AllowSelfServiceRemoval *bool   `json:"allow_self_service_mfa_removal"`
	StepUpMaxAge            *int    `json:"step_up_max_age"`
	Reenroll                *string `json:"reenroll"`
	GracePeriod             *int    `json:"grace_period"`
	SetupWindow             *int    `json:"setup_window"` // seconds
	// AllowedMethods: "totp" and/or "passkey"; ["passkey"] requires
	// phishing-resistant authenticators.
	AllowedMethods *[]string `json:"allowed_methods"`
	Version        *int      `json:"version"` // update: the version the change is based on
}

func (b PolicyInput) apply(p *policy.Policy) {
	if b.Name != nil {
		p.Name = *b.Name
	}
	if b.Description != nil {
		p.Description = *b.Description
	}
	if b.RequireMFA != nil {
		p.RequireMFA = *b.RequireMFA
	}
	if b.AllowSelfServiceRemoval != nil {
		p.AllowSelfServiceRemoval = *b.AllowSelfServiceRemoval
	}
	if b.StepUpMaxAge != nil {
		p.StepUpMaxAge = time.Duration(*b.StepUpMaxAge) * time.Second
	}
	if b.Reenroll != nil {
		p.Reenroll = *b.Reenroll
	}
	if b.GracePeriod != nil {
		p.GracePeriod = time.Duration(*b.GracePeriod) * time.Second
	}
	if b.SetupWindow != nil {
		p.SetupWindow = time.Duration(*b.SetupWindow) * time.Second
	}
	if b.AllowedMethods != nil {
		p.AllowedMethods = *b.AllowedMethods
	}
}

func validationError(err error) error {
	var ve *policy.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	fields := map[string]string{}
	for _, f := range ve.Fields {
		fields[f.Field] = f.Message
	}
	return invalid(fields)
}

func (h *Handler) listPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := h.o.Store.ListPolicies(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]Policy, 0, len(ps))
	for _, p := range ps {
		v, err := h.ViewPolicy(r.Context(), h.o.Store, p)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, PolicyList{Policies: out})
}

// CreatePolicy creates a policy from b over SPEC §4's defaults (removal
// off), with its audit event.
func (h *Handler) CreatePolicy(ctx context.Context, a Actor, b PolicyInput) (Policy, error) {
	if err := h.Fresh(a); err != nil {
		return Policy{}, err
	}
	if b.Version != nil {
		return Policy{}, invalid(map[string]string{"version": "set by the server"})
	}
	p := policy.New(authn.NewID("policy"), "")
	b.apply(&p)
	p.UpdatedAt = h.o.Now().UTC()
	if err := p.Validate(); err != nil {
		return Policy{}, validationError(err)
	}
	var v Policy
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.CreatePolicy(ctx, authn.PolicyToStore(p)); errors.Is(err, store.ErrAlreadyExists) {
			return conflict("name_taken", "A policy with that name exists.")
		} else if err != nil {
			return err
		}
		e := a.event(audit.PolicyCreated, "", map[string]any{"name": p.Name, "allow_self_service_mfa_removal": p.AllowSelfServiceRemoval})
		e.PolicyID, e.PolicyVersion = p.ID, p.Version
		if err := h.appendAudit(ctx, q, e); err != nil {
			return err
		}
		var err error
		v, err = h.ViewPolicy(ctx, q, authn.PolicyToStore(p))
		return err
	})
	return v, err
}

func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := h.o.Store.GetPolicy(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.ViewPolicy(r.Context(), h.o.Store, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// UpdatePolicy applies b on top of the version the admin read (b.Version);
// a concurrent change makes it a version_conflict instead of silently
// overwriting.
func (h *Handler) UpdatePolicy(ctx context.Context, a Actor, id string, b PolicyInput) (Policy, error) {
	if err := h.Fresh(a); err != nil {
		return Policy{}, err
	}
	if b.Version == nil {
		return Policy{}, invalid(map[string]string{"version": "required: the version you are changing"})
	}
	var v Policy
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		cur, err := q.GetPolicy(ctx, id)
		if err != nil {
			return err
		}
		if cur.Version != *b.Version {
			return conflict("version_conflict", "The policy changed since you read it; reload and try again.")
		}
		p := authn.PolicyFromStore(cur)
		b.apply(&p)
		if err := p.Validate(); err != nil {
			return validationError(err)
		}
		p.Version, p.UpdatedAt = cur.Version+1, h.o.Now().UTC()
		if err := q.UpdatePolicy(ctx, authn.PolicyToStore(p)); errors.Is(err, store.ErrNotFound) {
			return conflict("version_conflict", "The policy changed since you read it; reload and try again.")
		} else if errors.Is(err, store.ErrAlreadyExists) {
			return conflict("name_taken", "A policy with that name exists.")
		} else if err != nil {
			return err
		}
		e := a.event(audit.PolicyUpdated, "", map[string]any{"from_version": cur.Version, "allow_self_service_mfa_removal": p.AllowSelfServiceRemoval,
			"require_mfa": p.RequireMFA, "step_up_max_age": int(p.StepUpMaxAge.Seconds())})
		e.PolicyID, e.PolicyVersion = p.ID, p.Version
		if err := h.appendAudit(ctx, q, e); err != nil {
			return err
		}
		v, err = h.ViewPolicy(ctx, q, authn.PolicyToStore(p))
		return err
	})
	return v, err
}

func (h *Handler) deletePolicy(w http.ResponseWriter, r *http.Request) {
	a := actorOf(r)
	ctx := r.Context()
	if err := h.Fresh(a); err != nil {
		h.fail(w, r, err)
		return
	}
	if !h.inTx(w, r, func(q store.Queries) error {
		p, err := q.GetPolicy(ctx, chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		if p.IsDefault {
			return conflict("policy_is_default", "The default policy cannot be deleted.")
		}
		gs, err := q.PolicyGroups(ctx, p.ID)
		if err != nil {
			return err
		}
		if len(gs) > 0 {
			return conflict("policy_assigned", "Unassign the policy from its groups first.")
		}
		if err := q.DeletePolicy(ctx, p.ID); err != nil {
			return err
		}
		e := a.event(audit.PolicyDeleted, "", map[string]any{"name": p.Name})
		e.PolicyID, e.PolicyVersion = p.ID, p.Version
		return h.appendAudit(ctx, q, e)
	}) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
