// Package provider is Latchkey's OAuth 2.0 / OpenID Connect server, composed
// from fosite's handlers: the authorization, token, revocation,
// introspection, userinfo, discovery, JWKS and logout endpoints; the login
// and consent pages; signing keys (go-jose/v4); and the adapter that stores
// fosite's requests in the store.
//
// Only this package imports fosite. It must not import selfservice: what
// both need lives in authn.
package provider
