package provider

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	fjwt "github.com/ory/fosite/token/jwt"
)

// logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
// With an id_token_hint for the browser's current session it signs out at
// once; otherwise it asks, so a cross-site link cannot sign people out.
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target, clientID, ok := p.logoutTarget(r, q.Get("id_token_hint"), q.Get("client_id"), q.Get("post_logout_redirect_uri"))
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "invalid_request", "The post_logout_redirect_uri is not registered for this application.")
		return
	}
	if sid := p.hintSID(r, q.Get("id_token_hint")); sid != "" {
		if bs, err := p.o.Sessions.Current(r); err == nil && bs.SID == sid {
			p.finishLogout(w, r, target, q.Get("state"))
			return
		}
	}
	p.render(w, r, http.StatusOK, "logout.html", map[string]any{"Redirect": target, "State": q.Get("state"), "ClientID": clientID})
}

func (p *Provider) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	if !p.o.CSRF.Valid(r) {
		p.csrfFailed(w, r)
		return
	}
	target, _, ok := p.logoutTarget(r, "", r.PostFormValue("client_id"), r.PostFormValue("post_logout_redirect_uri"))
	if !ok {
		p.errorPage(w, r, http.StatusBadRequest, "invalid_request", "The post_logout_redirect_uri is not registered for this application.")
		return
	}
	p.finishLogout(w, r, target, r.PostFormValue("state"))
}

func (p *Provider) finishLogout(w http.ResponseWriter, r *http.Request, target, state string) {
	if err := p.o.Sessions.End(w, r); err != nil {
		p.serverError(w, r, err)
		return
	}
	if target == "" {
		p.render(w, r, http.StatusOK, "logged_out.html", nil)
		return
	}
	u, _ := url.Parse(target)
	if state != "" {
		qs := u.Query()
		qs.Set("state", state)
		u.RawQuery = qs.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// logoutTarget checks post_logout_redirect_uri against the client named by
// the hint's audience or client_id, by exact match.
func (p *Provider) logoutTarget(r *http.Request, hint, clientID, redirect string) (string, string, bool) {
	if hint != "" {
		if claims := p.decodeHint(r, hint); claims != nil {
			switch aud := claims["aud"].(type) {
			case string:
				clientID = aud
			case []any:
				if len(aud) > 0 {
					clientID, _ = aud[0].(string)
				}
			}
		}
	}
	if redirect == "" {
		return "", clientID, true
	}
	c, err := p.o.Store.GetClient(r.Context(), clientID)
	if err != nil || !slices.Contains(c.PostLogoutRedirectURIs, redirect) {
		return "", clientID, false
	}
	return redirect, clientID, true
}

// decodeHint verifies an ID token we issued; expired ones are fine here.
func (p *Provider) decodeHint(r *http.Request, hint string) fjwt.MapClaims {
	tok, err := (&jwtSigner{keys: p.o.Keys}).Decode(r.Context(), hint)
	var ve *fjwt.ValidationError
	if err != nil && !(errors.As(err, &ve) && ve.Errors == fjwt.ValidationErrorExpired) {
		return nil
	}
	if tok == nil || tok.Claims["iss"] != p.o.Issuer {
		return nil
	}
	return tok.Claims
}

func (p *Provider) hintSID(r *http.Request, hint string) string {
	if hint == "" {
		return ""
	}
	c := p.decodeHint(r, hint)
	if c == nil {
		return ""
	}
	sid, _ := c["sid"].(string)
	return sid
}
