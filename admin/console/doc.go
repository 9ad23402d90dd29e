// Package console is the admin console: server-rendered pages for people
// (policies with preview and assignment, groups, users and their 2SV,
// reset requests, the audit log, applications, signing keys), built on
// the admin service methods the JSON API calls, so both enforce the same
// rules. It signs admins in as a first-party OIDC client of the provider
// (internal/rp) and admits only admins. A sensitive change made without a
// fresh sign-in is kept server-side while the admin steps up, then
// completed. It never imports provider or selfservice.
package console
