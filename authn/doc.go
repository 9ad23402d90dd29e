// Package authn verifies who a person is and remembers it: argon2id
// passwords, TOTP with single-use codes, recovery codes, WebAuthn
// ceremonies for passkeys and security keys, failed-attempt limits held in
// the database, and server-side browser sessions.
//
// Both the provider and the account portal build on it; it depends only on
// store and the standard library (plus the TOTP, argon2 and WebAuthn primitives), never
// on HTTP routing or fosite.
package authn
