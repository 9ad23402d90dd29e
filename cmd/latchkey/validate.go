package main

import (
	"fmt"
	"net/url"
)

// validRedirect accepts absolute https URIs without fragments; plain http
// only for loopback hosts (native apps, dev), per the OAuth 2.0 Security BCP.
func validRedirect(raw string, dev bool) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("redirect URI %q must be absolute, with a host and no fragment", raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1" || u.Hostname() == "localhost"):
	case u.Scheme == "http" && dev:
	default:
		return fmt.Errorf("redirect URI %q must use https (http only on loopback)", raw)
	}
	return nil
}
