// Package mfa owns the two-step verification lifecycle: enrolling and
// replacing an authenticator, removing it (by its user or by an admin),
// reset requests and their decisions, recovery codes and re-enrollment.
// The account portal and its JSON API, the admin API, the admin console and
// the CLI are thin callers of this package, and only this package writes
// 2SV state (internal/archtest enforces it).
//
// Each operation takes the actor, the target and a Proof of how the actor
// authenticated, and does, in one transaction: lock the target, re-read the
// policy, check the step-up (spending it when it is single-use), change,
// revoke what the change makes untrustworthy, and append the audit event —
// with the same fields whichever path called it. Refusals are *Refusal
// values with a stable code; callers map them to their own answers.
//
// It is HTTP-free and depends on authn (secrets, codes), policy, store and
// audit; it never imports provider, selfservice or admin.
package mfa
