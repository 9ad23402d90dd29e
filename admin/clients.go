package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/store"
)

// ValidRedirectURI accepts absolute https URIs without fragments; plain
// http only for loopback hosts (native apps), or anywhere when allowHTTP
// (dev mode), per the OAuth 2.0 Security BCP.
func ValidRedirectURI(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || len(raw) > 2000 {
		return fmt.Errorf("redirect URI %q must be absolute, with a host and no fragment", raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1" || u.Hostname() == "localhost"):
	case u.Scheme == "http" && allowHTTP:
	default:
		return fmt.Errorf("redirect URI %q must use https (http only on loopback)", raw)
	}
	return nil
}

// Client is the admin view of an OAuth client (never its secret).
type Client struct {
	ID                     string    `json:"client_id"`
	Name                   string    `json:"name"`
	Public                 bool      `json:"public"`
	FirstParty             bool      `json:"first_party"`
	PKCEOptional           bool      `json:"pkce_optional"`
	AccessTokenFormat      string    `json:"access_token_format"` // "opaque" or "jwt" (RFC 9068)
	RedirectURIs           []string  `json:"redirect_uris"`
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris"`
	GrantTypes             []string  `json:"grant_types"`
	Scopes                 []string  `json:"scopes"`
	CreatedAt              time.Time `json:"created_at"`
	Secret                 string    `json:"client_secret,omitempty"` // only in the create response
}

func ViewClient(c store.Client) Client {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return Client{ID: c.ID, Name: c.Name, Public: c.Public, FirstParty: c.FirstParty, PKCEOptional: c.PKCEOptional,
		AccessTokenFormat: cmp.Or(c.AccessTokenFormat, store.AccessTokensOpaque), RedirectURIs: nz(c.RedirectURIs),
		PostLogoutRedirectURIs: nz(c.PostLogoutRedirectURIs), GrantTypes: nz(c.GrantTypes), Scopes: nz(c.Scopes), CreatedAt: c.CreatedAt}
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := h.o.Store.ListClients(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]Client, 0, len(cs))
	for _, c := range cs {
		out = append(out, ViewClient(c))
	}
	writeJSON(w, http.StatusOK, ClientList{Clients: out})
}

var knownScopes = []string{"openid", "profile", "email", "offline_access", "groups", "account", "admin", "admin:sensitive"}

func checkURIs(fields map[string]string, name string, uris []string) {
	for _, u := range uris {
		if err := ValidRedirectURI(u, false); err != nil {
			fields[name] = err.Error()
			return
		}
	}
}

// ClientInput is the input of client creation.
type ClientInput struct {
	Name       string `json:"name"`
	Public     bool   `json:"public"`
	FirstParty bool   `json:"first_party"`
	// PKCEOptional lets a legacy confidential client go without PKCE.
	PKCEOptional bool `json:"pkce_optional"`
	// AccessTokenFormat is "opaque" (default) or "jwt" (RFC 9068).
	AccessTokenFormat      string   `json:"access_token_format"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	GrantTypes             []string `json:"grant_types"`
	Scopes                 []string `json:"scopes"`
}

// CreateClient registers a client; the returned view carries the secret,
// the only time it is shown (only its digest is stored).
func (h *Handler) CreateClient(ctx context.Context, a Actor, b ClientInput) (Client, error) {
	if err := h.Fresh(a); err != nil {
		return Client{}, err
	}
	if len(b.GrantTypes) == 0 {
		b.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if len(b.Scopes) == 0 {
		b.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	fields := map[string]string{}
	if strings.TrimSpace(b.Name) == "" || len(b.Name) > 100 {
		fields["name"] = "required, at most 100 characters"
	}
	for _, g := range b.GrantTypes {
		switch {
		case g == "client_credentials" && b.Public:
			fields["grant_types"] = "client_credentials needs a confidential client"
		case g != "authorization_code" && g != "refresh_token" && g != "client_credentials":
			fields["grant_types"] = fmt.Sprintf("%q is not supported (no implicit, no password grant)", g)
		}
	}
	if slices.Contains(b.GrantTypes, "authorization_code") && len(b.RedirectURIs) == 0 {
		fields["redirect_uris"] = "required for authorization_code"
	}
	if b.PKCEOptional && b.Public {
		fields["pkce_optional"] = "a public client must use PKCE"
	}
	switch b.AccessTokenFormat {
	case "", store.AccessTokensOpaque, store.AccessTokensJWT:
	default:
		fields["access_token_format"] = `"opaque" or "jwt"`
	}
	checkURIs(fields, "redirect_uris", b.RedirectURIs)
	checkURIs(fields, "post_logout_redirect_uris", b.PostLogoutRedirectURIs)
	for _, s := range b.Scopes {
		if !slices.Contains(knownScopes, s) {
			fields["scopes"] = fmt.Sprintf("unknown scope %q", s)
		}
	}
	if len(fields) > 0 {
		return Client{}, invalid(fields)
	}
	c := store.Client{ID: authn.NewID("client"), Name: b.Name, Public: b.Public, FirstParty: b.FirstParty, PKCEOptional: b.PKCEOptional,
		AccessTokenFormat: cmp.Or(b.AccessTokenFormat, store.AccessTokensOpaque), RedirectURIs: b.RedirectURIs,
		PostLogoutRedirectURIs: b.PostLogoutRedirectURIs, GrantTypes: b.GrantTypes, ResponseTypes: []string{"code"}, Scopes: b.Scopes, CreatedAt: h.o.Now().UTC()}
	var secret string
	if !c.Public {
		secret, c.SecretHash = authn.NewClientSecret()
	}
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateClient(ctx, c); err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(audit.ClientCreated, "", map[string]any{"client_id": c.ID, "name": c.Name, "grant_types": c.GrantTypes}))
	})
	if err != nil {
		return Client{}, err
	}
	v := ViewClient(c)
	v.Secret = secret
	return v, nil
}

// ClientRedirects is the input of a client update; absent lists stay.
type ClientRedirects struct {
	RedirectURIs           *[]string `json:"redirect_uris"`
	PostLogoutRedirectURIs *[]string `json:"post_logout_redirect_uris"`
}

// UpdateClient replaces a client's redirect URIs, with its audit event.
func (h *Handler) UpdateClient(ctx context.Context, a Actor, id string, b ClientRedirects) (Client, error) {
	if err := h.Fresh(a); err != nil {
		return Client{}, err
	}
	fields := map[string]string{}
	if b.RedirectURIs != nil {
		checkURIs(fields, "redirect_uris", *b.RedirectURIs)
	}
	if b.PostLogoutRedirectURIs != nil {
		checkURIs(fields, "post_logout_redirect_uris", *b.PostLogoutRedirectURIs)
	}
	if len(fields) > 0 {
		return Client{}, invalid(fields)
	}
	var c store.Client
	err := h.o.Store.InTx(ctx, func(q store.Queries) error {
		var err error
		if c, err = q.GetClient(ctx, id); err != nil {
			return err
		}
		if b.RedirectURIs != nil {
			c.RedirectURIs = *b.RedirectURIs
		}
		if b.PostLogoutRedirectURIs != nil {
			c.PostLogoutRedirectURIs = *b.PostLogoutRedirectURIs
		}
		if slices.Contains(c.GrantTypes, "authorization_code") && len(c.RedirectURIs) == 0 {
			return invalid(map[string]string{"redirect_uris": "required for authorization_code"})
		}
		if err := q.UpdateClientRedirects(ctx, c.ID, c.RedirectURIs, c.PostLogoutRedirectURIs); err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(audit.ClientUpdated, "", map[string]any{"client_id": c.ID, "redirect_uris": c.RedirectURIs}))
	})
	return ViewClient(c), err
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request) {
	if err := h.DeleteClient(r.Context(), actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeleteClient removes a client, with its audit event.
func (h *Handler) DeleteClient(ctx context.Context, a Actor, id string) error {
	if err := h.Fresh(a); err != nil {
		return err
	}
	return h.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.DeleteClient(ctx, id); errors.Is(err, store.ErrNotFound) {
			return notFound("client")
		} else if err != nil {
			return err
		}
		return h.appendAudit(ctx, q, a.event(audit.ClientDeleted, "", map[string]any{"client_id": id}))
	})
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := h.o.Keys.ListKeys(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, KeyList{Keys: ks})
}

// rotateKey rotates signing keys, with the audit event in the key
// manager's transaction.
func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request) {
	if err := noBody(r); err != nil {
		h.fail(w, r, err)
		return
	}
	kid, err := h.RotateKey(r.Context(), actorOf(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RotatedKey{Kid: kid})
}

// RotateKey rotates signing keys, with the audit event in the rotation's
// transaction.
func (h *Handler) RotateKey(ctx context.Context, a Actor) (string, error) {
	if err := h.Fresh(a); err != nil {
		return "", err
	}
	return h.o.Keys.RotateKey(ctx, func(ctx context.Context, q store.Queries, kid string) error {
		return h.appendAudit(ctx, q, a.event(audit.KeyRotated, "", map[string]any{"kid": kid}))
	})
}
