// Package config holds Latchkey's one typed configuration, read from a YAML
// file and LATCHKEY_* environment variables and validated at start.
//
// Only cmd/latchkey reads this package; every other package takes its own
// Options struct, so a component can be built and tested without a file.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Mode selects dev defaults (embedded store, generated secrets, plain HTTP on
// loopback) or production rules (explicit secrets, HTTPS issuer).
type Mode string

// The two modes.
const (
	ModeDev        Mode = "dev"
	ModeProduction Mode = "production"
)

// Config is the whole configuration. Field names are the YAML keys; the
// environment variable for a field is LATCHKEY_ followed by its path in upper
// case joined by underscores (database.dsn → LATCHKEY_DATABASE_DSN).
type Config struct {
	Mode          Mode          `yaml:"mode"`
	Issuer        string        `yaml:"issuer"`
	Listen        string        `yaml:"listen"`
	HTTP          HTTP          `yaml:"http"`
	Database      Database      `yaml:"database"`
	Secrets       Secrets       `yaml:"secrets"`
	Keys          Keys          `yaml:"keys"`
	Tokens        Tokens        `yaml:"tokens"`
	Sessions      Sessions      `yaml:"sessions"`
	Lockout       Lockout       `yaml:"lockout"`
	Passwords     Passwords     `yaml:"passwords"`
	RateLimits    RateLimits    `yaml:"rate_limits"`
	Audit         Audit         `yaml:"audit"`
	Notifications Notifications `yaml:"notifications"`
	Support       Support       `yaml:"support"`
	MFA           MFA           `yaml:"mfa"`
	Log           Log           `yaml:"log"`
}

// HTTP configures what Latchkey believes about its network.
type HTTP struct {
	// TrustedProxies are the reverse proxies (CIDRs or addresses) whose
	// Forwarded / X-Forwarded-For headers name the client. Empty: the TCP
	// peer is the client, whatever headers say.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// InternalURL is where the account portal and the admin console reach
	// the provider's back channel (discovery, token, JWKS) instead of the
	// issuer, e.g. http://127.0.0.1:8080 behind a TLS proxy whose
	// certificate this process does not trust. Empty: the issuer.
	InternalURL string `yaml:"internal_url"`
	// AdminListen, when set, is a second listener that alone serves the
	// admin API (/admin/*), /metrics and the profiler (/debug/pprof/*);
	// the public listener then answers 404 there. Keep it private.
	AdminListen string `yaml:"admin_listen"`
}

// TrustedPrefixes parses TrustedProxies (Validate has checked them).
func (h HTTP) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range h.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads "10.0.0.0/8" or a single address ("10.0.0.7").
func parsePrefix(s string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

// MFA bounds how long a password alone reaches the setup screen after
// 2SV was removed.
type MFA struct {
	SetupWindow    Duration `yaml:"setup_window"`    // after removing one's own 2SV
	ApprovalWindow Duration `yaml:"approval_window"` // after an admin's removal or approval
}

// Support names whom users ask for help when their groups name no admin.
type Support struct {
	// Contacts are "Name <email>" or "Name <https://url>" entries, shown on
	// the lost-authenticator page and the account portal.
	Contacts []string `yaml:"contacts"`
}

// Notifications configures email to users and the audit webhook.
type Notifications struct {
	SMTPAddr      string `yaml:"smtp_addr"` // host:port; empty: no email
	SMTPFrom      string `yaml:"smtp_from"`
	SMTPUsername  string `yaml:"smtp_username"`
	SMTPPassword  string `yaml:"smtp_password"`
	WebhookURL    string `yaml:"webhook_url"` // empty: no webhook
	WebhookSecret string `yaml:"webhook_secret"`
}

// Audit configures the audit log.
type Audit struct {
	// Retention prunes events older than this (0: keep forever). Pruning
	// leaves a checkpoint, so the chain still verifies.
	Retention Duration `yaml:"retention"`
	// AnchorFile, when set, always holds the newest signed checkpoint of
	// the audit log (for log shipping and backups).
	AnchorFile string `yaml:"anchor_file"`
}

// Passwords tunes password hashing.
type Passwords struct {
	// HashConcurrency caps concurrent argon2id hashes (each holds 9 MiB);
	// 0 means one per CPU.
	HashConcurrency int `yaml:"hash_concurrency"`
	// HashQueue is how many sign-ins may wait for a hash beyond those
	// running; more are refused with 503 (0: 32 per running hash).
	HashQueue int `yaml:"hash_queue"`
}

// RateLimits caps requests per client address and minute, per replica
// (0: off).
type RateLimits struct {
	SignInPerMinute int `yaml:"sign_in_per_minute"` // credential forms
	TokenPerMinute  int `yaml:"token_per_minute"`   // token, revocation, introspection
}

// Database selects the store: the embedded SQLite file or PostgreSQL.
type Database struct {
	Driver   string `yaml:"driver"` // "sqlite" or "postgres"
	DSN      string `yaml:"dsn"`    // PostgreSQL connection string
	Path     string `yaml:"path"`   // SQLite file
	MaxConns int    `yaml:"max_conns"`
}

// Secrets are the server's own keys. System keys HMAC tokens, CSRF tokens and
// recovery codes; encryption keys seal TOTP secrets and signing keys at rest.
type Secrets struct {
	// System is base64 of at least 32 random bytes.
	System string `yaml:"system"`
	// EncryptionKeys are "id:base64-of-32-bytes" entries; the first seals new
	// data, the others still open old data, so keys can rotate.
	EncryptionKeys []string `yaml:"encryption_keys"`
	// AuditKeys are "id:base64-of-32-bytes" Ed25519 seeds for the audit
	// log's checkpoints; the first signs, all verify, so the key can
	// rotate. Empty: one derived from System.
	AuditKeys []string `yaml:"audit_keys"`
	// File, in dev mode, keeps generated secrets between restarts.
	File string `yaml:"file"`
}

// Keys configures token signing.
type Keys struct {
	Algorithm string `yaml:"algorithm"` // ES256 or RS256; empty: ES256 for a new deployment, else the current key's
	// RefreshInterval is how often every replica re-reads the keys. A new
	// key (a rotation, or a changed algorithm) is published at once and
	// signs only after two intervals, when every replica serves it.
	RefreshInterval Duration `yaml:"refresh_interval"`
}

// Tokens sets token lifetimes.
type Tokens struct {
	AccessTokenLifespan  Duration `yaml:"access_token_lifespan"`
	RefreshTokenLifespan Duration `yaml:"refresh_token_lifespan"`
	// RefreshTokenGracePeriod: a rotated refresh token may be presented
	// once more within it (a retry after a lost response); 0 turns it off.
	RefreshTokenGracePeriod Duration `yaml:"refresh_token_grace_period"`
	IDTokenLifespan         Duration `yaml:"id_token_lifespan"`
	AuthorizeCodeLifespan   Duration `yaml:"authorize_code_lifespan"`
	EventRetention          Duration `yaml:"event_retention"`
	CleanupInterval         Duration `yaml:"cleanup_interval"`
}

// Sessions sets browser-session timeouts.
type Sessions struct {
	IdleTimeout     Duration `yaml:"idle_timeout"`
	AbsoluteTimeout Duration `yaml:"absolute_timeout"`
}

// Lockout sets failed-login limits.
type Lockout struct {
	AccountThreshold int      `yaml:"account_threshold"`
	IPThreshold      int      `yaml:"ip_threshold"`
	BaseDelay        Duration `yaml:"base_delay"`
	MaxDelay         Duration `yaml:"max_delay"`
}

// Log sets logging.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
}

// Duration is a time.Duration written as "15m" in YAML and environment.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 15m or 1h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults returns the configuration used when nothing is set: dev mode on
// loopback with the embedded store.
func Defaults() Config {
	return Config{
		Mode:     ModeDev,
		Issuer:   "http://127.0.0.1:8080",
		Listen:   "127.0.0.1:8080",
		Database: Database{Driver: "sqlite", Path: "latchkey-dev.db", MaxConns: 16},
		Secrets:  Secrets{File: "latchkey-dev.secrets"},
		Keys:     Keys{RefreshInterval: Duration(30 * time.Second)},
		Tokens: Tokens{
			AccessTokenLifespan:     Duration(time.Hour),
			RefreshTokenLifespan:    Duration(30 * 24 * time.Hour),
			RefreshTokenGracePeriod: Duration(30 * time.Second),
			IDTokenLifespan:         Duration(time.Hour),
			AuthorizeCodeLifespan:   Duration(time.Minute),
			EventRetention:          Duration(30 * 24 * time.Hour),
			CleanupInterval:         Duration(10 * time.Minute),
		},
		Sessions:   Sessions{IdleTimeout: Duration(30 * time.Minute), AbsoluteTimeout: Duration(12 * time.Hour)},
		Lockout:    Lockout{AccountThreshold: 5, IPThreshold: 50, BaseDelay: Duration(time.Second), MaxDelay: Duration(15 * time.Minute)},
		Log:        Log{Level: "info"},
		MFA:        MFA{SetupWindow: Duration(24 * time.Hour), ApprovalWindow: Duration(72 * time.Hour)},
		RateLimits: RateLimits{SignInPerMinute: 300, TokenPerMinute: 6000},
	}
}

// Load reads the YAML file at path (none when empty), then applies the
// LATCHKEY_* variables from environ, then validates. Without a file and
// without a database DSN the result is dev mode; a PostgreSQL DSN alone
// switches to production mode unless mode is set explicitly.
func Load(path string, environ []string) (*Config, error) {
	c := Defaults()
	explicitMode := false
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true) // a misspelt key is an error, not a silent default
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		explicitMode = bytes.Contains(raw, []byte("mode:"))
	}
	envMode, err := applyEnv(&c, environ)
	if err != nil {
		return nil, err
	}
	if !explicitMode && !envMode && (path != "" || c.Database.DSN != "") {
		c.Mode = ModeProduction
	}
	if c.Database.DSN != "" && c.Database.Driver == "sqlite" {
		c.Database.Driver = "postgres"
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// applyEnv sets fields from LATCHKEY_* variables. Unknown LATCHKEY_ names are
// errors so a typo does not silently keep a default.
func applyEnv(c *Config, environ []string) (modeSet bool, err error) {
	fields := map[string]reflect.Value{}
	collectFields(reflect.ValueOf(c).Elem(), "LATCHKEY", fields)
	var problems []string
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "LATCHKEY_") {
			continue
		}
		if name == "LATCHKEY_CONFIG" || name == "LATCHKEY_DEBUG_PPROF" || strings.HasPrefix(name, "LATCHKEY_TEST_") {
			continue // read by the command itself, not configuration
		}
		f, known := fields[name]
		if !known {
			problems = append(problems, fmt.Sprintf("%s: unknown setting", name))
			continue
		}
		if name == "LATCHKEY_MODE" {
			modeSet = true
		}
		if err := setField(f, value); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(problems) > 0 {
		return false, &Error{Problems: problems}
	}
	return modeSet, nil
}

func collectFields(v reflect.Value, prefix string, out map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			collectFields(fv, name, out)
			continue
		}
		out[name] = fv
	}
}

func setField(f reflect.Value, s string) error {
	switch f.Interface().(type) {
	case Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 15m or 1h", s)
		}
		f.Set(reflect.ValueOf(Duration(d)))
		return nil
	case []string:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// Error lists every configuration problem found, one per field.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "config: invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Validate reports every problem at once, naming the field.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	if c.Mode != ModeDev && c.Mode != ModeProduction {
		add("mode: must be dev or production, got %q", c.Mode)
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "" || err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		add("issuer: must be an absolute URL without query or fragment, got %q", c.Issuer)
	case c.Mode == ModeProduction && u.Scheme != "https" && !isLoopback(u.Hostname()):
		add("issuer: must use https in production mode, got %q", c.Issuer)
	case strings.HasSuffix(c.Issuer, "/"):
		add("issuer: must not end with a slash, got %q", c.Issuer)
	}
	if c.Listen == "" {
		add("listen: must be set, e.g. 127.0.0.1:8080")
	}
	if iu := c.HTTP.InternalURL; iu != "" {
		if u, err := url.Parse(iu); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(iu, "/") {
			add("http.internal_url: must be an http(s) base URL without query, fragment or trailing slash, got %q", iu)
		}
	}
	if al := c.HTTP.AdminListen; al != "" {
		if _, _, err := net.SplitHostPort(al); err != nil || al == c.Listen {
			add("http.admin_listen: must be host:port, not the public listen address, got %q", al)
		}
	}
	for _, s := range c.HTTP.TrustedProxies {
		if p, err := parsePrefix(s); err != nil || (p.Bits() == 0 && c.Mode == ModeProduction) {
			add("http.trusted_proxies: %q must be an address or CIDR of your proxies (not everything)", s)
		}
	}
	switch c.Database.Driver {
	case "sqlite":
		if c.Database.Path == "" {
			add("database.path: must be set for the sqlite driver")
		}
	case "postgres":
		if c.Database.DSN == "" {
			add("database.dsn: must be set for the postgres driver")
		}
	default:
		add("database.driver: must be sqlite or postgres, got %q", c.Database.Driver)
	}
	if c.Database.MaxConns < 1 {
		add("database.max_conns: must be at least 1")
	}
	if c.Mode == ModeProduction {
		if c.Secrets.System == "" {
			add("secrets.system: required in production mode (base64 of 32 random bytes)")
		}
		if len(c.Secrets.EncryptionKeys) == 0 {
			add("secrets.encryption_keys: required in production mode (id:base64-of-32-bytes)")
		}
	}
	if c.Secrets.System != "" {
		if b, err := base64.StdEncoding.DecodeString(c.Secrets.System); err != nil || len(b) < 32 {
			add("secrets.system: must be base64 of at least 32 bytes")
		}
	}
	for _, list := range []struct {
		name string
		keys []string
	}{{"encryption_keys", c.Secrets.EncryptionKeys}, {"audit_keys", c.Secrets.AuditKeys}} {
		name := list.name
		for i, k := range list.keys {
			id, key, ok := strings.Cut(k, ":")
			if b, err := base64.StdEncoding.DecodeString(key); !ok || id == "" || err != nil || len(b) != 32 {
				add("secrets.%s[%d]: must be id:base64-of-32-bytes", name, i)
			}
		}
	}
	if c.Keys.Algorithm != "" && c.Keys.Algorithm != "RS256" && c.Keys.Algorithm != "ES256" {
		add("keys.algorithm: must be RS256 or ES256, got %q", c.Keys.Algorithm)
	}
	positive := map[string]Duration{
		"tokens.access_token_lifespan":   c.Tokens.AccessTokenLifespan,
		"tokens.refresh_token_lifespan":  c.Tokens.RefreshTokenLifespan,
		"tokens.id_token_lifespan":       c.Tokens.IDTokenLifespan,
		"tokens.authorize_code_lifespan": c.Tokens.AuthorizeCodeLifespan,
		"tokens.event_retention":         c.Tokens.EventRetention,
		"tokens.cleanup_interval":        c.Tokens.CleanupInterval,
		"sessions.idle_timeout":          c.Sessions.IdleTimeout,
		"sessions.absolute_timeout":      c.Sessions.AbsoluteTimeout,
		"lockout.base_delay":             c.Lockout.BaseDelay,
		"lockout.max_delay":              c.Lockout.MaxDelay,
	}
	for _, name := range slices.Sorted(maps.Keys(positive)) {
		if positive[name] <= 0 {
			add("%s: must be a positive duration", name)
		}
	}
	if c.RateLimits.SignInPerMinute < 0 || c.RateLimits.TokenPerMinute < 0 {
		add("rate_limits: limits must be 0 (off) or positive")
	}
	if c.Passwords.HashQueue < 0 || c.Passwords.HashQueue > 10000 {
		add("passwords.hash_queue: must be between 0 (default) and 10000")
	}
	if g := c.Tokens.RefreshTokenGracePeriod; g < 0 || g > Duration(5*time.Minute) {
		add("tokens.refresh_token_grace_period: must be between 0 (off) and 5m")
	}
	if r := c.Keys.RefreshInterval; r < Duration(time.Second) || r > Duration(10*time.Minute) {
		add("keys.refresh_interval: must be between 1s and 10m")
	}
	if c.Tokens.AuthorizeCodeLifespan > Duration(10*time.Minute) {
		add("tokens.authorize_code_lifespan: must be at most 10m (codes are short-lived)")
	}
	if c.Sessions.IdleTimeout > c.Sessions.AbsoluteTimeout {
		add("sessions.idle_timeout: must not exceed sessions.absolute_timeout")
	}
	if c.Lockout.AccountThreshold < 1 || c.Lockout.AccountThreshold > 20 {
		add("lockout.account_threshold: must be between 1 and 20")
	}
	if c.Lockout.IPThreshold < 1 || c.Lockout.IPThreshold > 99 {
		add("lockout.ip_threshold: must be between 1 and 99")
	}
	if c.Audit.Retention != 0 && c.Audit.Retention < Duration(24*time.Hour) {
		add("audit.retention: 0 (keep) or at least 24h")
	}
	if n := c.Notifications; n.SMTPAddr != "" {
		if _, _, err := net.SplitHostPort(n.SMTPAddr); err != nil {
			add("notifications.smtp_addr: must be host:port")
		}
		if !strings.Contains(n.SMTPFrom, "@") || strings.ContainsAny(n.SMTPFrom, "\r\n") {
			add("notifications.smtp_from: an email address is required with smtp_addr")
		}
	}
	if n := c.Notifications; n.WebhookURL != "" {
		u, err := url.Parse(n.WebhookURL)
		if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) || u.Host == "" {
			add("notifications.webhook_url: must be an https URL (http only on loopback)")
		}
		if len(n.WebhookSecret) < 16 {
			add("notifications.webhook_secret: at least 16 characters, to sign deliveries")
		}
	}
	for _, w := range []struct {
		name string
		d    Duration
	}{{"mfa.setup_window", c.MFA.SetupWindow}, {"mfa.approval_window", c.MFA.ApprovalWindow}} {
		if w.d < Duration(time.Hour) || w.d > Duration(30*24*time.Hour) {
			add("%s: between 1h and 720h", w.name)
		}
	}
	for i, s := range c.Support.Contacts {
		if _, err := ParseContact(s); err != nil {
			add("support.contacts[%d]: %v", i, err)
		}
	}
	if len(c.Support.Contacts) > 20 {
		add("support.contacts: at most 20 entries")
	}
	if c.Passwords.HashConcurrency < 0 || c.Passwords.HashConcurrency > 256 {
		add("passwords.hash_concurrency: must be between 0 (one per CPU) and 256")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
