package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/admin/console"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/internal/apidoc"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/internal/ui"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/provider"
	"github.com/latchkey/latchkey/selfservice"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
	"github.com/latchkey/latchkey/store/sqlite"
)

// app is everything serve builds from the configuration.
type app struct {
	cfg      *config.Config
	store    store.Store
	keyring  *seal.Keyring
	system   []byte
	keys     *provider.KeyManager
	authn    *authn.Service
	mfa      *mfa.Service
	ledger   *audit.Checkpointer // signs the audit log's checkpoints
	auditKey string              // its verifier key, published
	sealed   *sealMetrics
	provider *provider.Provider
	router   *chi.Mux
	// adminRouter serves the admin API, /metrics and the profiler when
	// http.admin_listen is set (nil otherwise: they are on router).
	adminRouter *chi.Mux
	log         *slog.Logger
}

// openStore opens the configured backend and applies migrations.
func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	switch cfg.Database.Driver {
	case "postgres":
		return postgres.Open(ctx, postgres.Options{DSN: cfg.Database.DSN, MaxConns: int32(cfg.Database.MaxConns)})
	default:
		return sqlite.Open(ctx, sqlite.Options{Path: cfg.Database.Path})
	}
}

// secrets returns the system secret and the keyring. In dev mode missing
// secrets are generated once and kept in a 0600 file beside the database,
// so tokens and sealed data survive a restart.
func secrets(cfg *config.Config) ([]byte, *seal.Keyring, error) {
	sc := cfg.Secrets
	if cfg.Mode == config.ModeDev && sc.System == "" {
		var err error
		if sc, err = devSecrets(sc.File); err != nil {
			return nil, nil, err
		}
	}
	system, err := base64.StdEncoding.DecodeString(sc.System)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets.system: %w", err)
	}
	var keys []seal.Key
	for _, e := range sc.EncryptionKeys {
		id, b64, _ := strings.Cut(e, ":")
		k, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, nil, fmt.Errorf("secrets.encryption_keys: %w", err)
		}
		keys = append(keys, seal.Key{ID: id, Secret: k})
	}
	ring, err := seal.New(keys...)
	return system, ring, err
}

func devSecrets(path string) (config.Secrets, error) {
	var s config.Secrets
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &s); err != nil {
			return s, fmt.Errorf("dev secrets %s: %w", path, err)
		}
		s.File = path
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	gen := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	s = config.Secrets{System: gen(), EncryptionKeys: []string{"dev1:" + gen()}}
	raw, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return s, fmt.Errorf("write dev secrets: %w", err)
	}
	s.File = path
	return s, nil
}

// buildOptions are the parts of app construction tests vary.
type buildOptions struct {
	Registry *prometheus.Registry
	Hasher   *authn.PasswordHasher // nil: the production argon2id cost
	Now      func() time.Time
	// AuthnNow, when set, is the clock of code verification alone, so tests
	// can step TOTP time without waiting for it.
	AuthnNow func() time.Time
	// HTTPClient is what the account portal uses to reach the provider.
	HTTPClient *http.Client
}

// build wires every component. It is the only place that knows them all.
func build(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger, bo buildOptions) (*app, error) {
	system, ring, err := secrets(cfg)
	if err != nil {
		return nil, err
	}
	if bo.Now == nil {
		bo.Now = time.Now
	}
	if bo.AuthnNow == nil {
		bo.AuthnNow = bo.Now
	}
	if bo.Registry == nil {
		bo.Registry = prometheus.NewRegistry()
		bo.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if bo.Hasher == nil {
		bo.Hasher = authn.NewPasswordHasherQueue(authn.DefaultArgon2, cfg.Passwords.HashConcurrency, cfg.Passwords.HashQueue)
	}
	secure := strings.HasPrefix(cfg.Issuer, "https://")
	keys, err := provider.NewKeyManager(ctx, provider.KeyOptions{Store: st, Keyring: ring, Algorithm: cfg.Keys.Algorithm,
		Overlap: max(cfg.Tokens.IDTokenLifespan.D(), cfg.Tokens.AccessTokenLifespan.D()) + time.Hour, Refresh: cfg.Keys.RefreshInterval.D(), Now: bo.Now})
	if err != nil {
		return nil, err
	}
	// Passkeys belong to the issuer's host (the WebAuthn RP id).
	passkeys, err := authn.NewPasskeys(cfg.Issuer, "Latchkey", bo.Now)
	if errors.Is(err, authn.ErrPasskeysNeedDomain) {
		log.Warn("passkeys and security keys are off: the issuer is an IP address; use a domain name (http://localhost:8080 in dev)", "issuer", cfg.Issuer)
	} else if err != nil {
		return nil, err
	}
	an := authn.NewService(authn.Options{Store: st, Keyring: ring, Pepper: derive(system, "recovery-codes"), Hasher: bo.Hasher, Logger: log, Now: bo.AuthnNow, Passkeys: passkeys,
		Lockout: authn.Lockout{AccountThreshold: cfg.Lockout.AccountThreshold, IPThreshold: cfg.Lockout.IPThreshold,
			BaseDelay: cfg.Lockout.BaseDelay.D(), MaxDelay: cfg.Lockout.MaxDelay.D()}})
	var support []mfa.Contact
	for _, s := range cfg.Support.Contacts {
		c, _ := config.ParseContact(s) // Validate has checked every entry
		support = append(support, mfa.Contact{Name: c.Name, Email: c.Email, URL: c.URL})
	}
	ledger, auditKey, err := auditLedger(cfg, system)
	if err != nil {
		return nil, err
	}
	lifecycle := mfa.New(mfa.Options{Store: st, Authn: an, Passkeys: passkeys, Support: support, SetupWindow: cfg.MFA.SetupWindow.D(),
		ApprovalWindow: cfg.MFA.ApprovalWindow.D(), Logger: log, Now: bo.Now})
	sessions := authn.NewSessions(st, authn.SessionOptions{Secure: secure, IdleTimeout: cfg.Sessions.IdleTimeout.D(),
		AbsoluteTimeout: cfg.Sessions.AbsoluteTimeout.D(), Now: bo.Now})
	csrf := &httpx.CSRF{Key: derive(system, "csrf"), Secure: secure}
	prov, err := provider.New(provider.Options{Issuer: cfg.Issuer, Store: st, Keys: keys, Authn: an, MFA: lifecycle, Sessions: sessions, CSRF: csrf,
		GlobalSecret: derive(system, "fosite-hmac"), AccessTokenLifespan: cfg.Tokens.AccessTokenLifespan.D(),
		RefreshTokenLifespan: cfg.Tokens.RefreshTokenLifespan.D(), RefreshGracePeriod: cfg.Tokens.RefreshTokenGracePeriod.D(),
		RateLimits: provider.RateLimits{SignInPerMinute: cfg.RateLimits.SignInPerMinute, TokenPerMinute: cfg.RateLimits.TokenPerMinute}, IDTokenLifespan: cfg.Tokens.IDTokenLifespan.D(),
		AuthorizeCodeLifespan: cfg.Tokens.AuthorizeCodeLifespan.D(), AuditRetention: cfg.Audit.Retention.D(), AuditLedger: ledger,
		DeliveryCursors: deliveryCursors(dispatchers(cfg, st, log)), Registerer: bo.Registry, Logger: log, Now: bo.Now})
	if err != nil {
		return nil, err
	}
	metrics := httpx.NewMetrics(bo.Registry)
	newRouter := func() *chi.Mux {
		r := chi.NewRouter()
		r.Use(httpx.WithRequestID, httpx.TrustedProxies(cfg.HTTP.TrustedPrefixes()), httpx.Recover(log), httpx.SecurityHeaders, httpx.Observe(log, metrics), httpx.RejectBadText, ui.Outage(log))
		if secure {
			r.Use(httpx.HSTS)
		}
		notFound(r, log)
		return r
	}
	r := newRouter()
	// The admin API, metrics and the profiler: on their own listener when
	// http.admin_listen is set, else beside everything else (no profiler).
	var adminRouter *chi.Mux
	internal := r
	if cfg.HTTP.AdminListen != "" {
		adminRouter = newRouter()
		internal = adminRouter
		mountPprof(adminRouter)
	}
	if bo.HTTPClient == nil && cfg.HTTP.InternalURL != "" {
		bo.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: internalTransport(cfg.Issuer, cfg.HTTP.InternalURL)}
	}
	health := func(r chi.Router) {
		r.Get("/health/alive", func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		r.Get("/health/ready", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := st.Ping(ctx); err != nil {
				log.WarnContext(ctx, "readiness check failed", "err", err)
				httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "unreachable"})
				return
			}
			httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
	}
	health(r)
	if adminRouter != nil {
		health(adminRouter) // probes may use either listener
	}
	internal.Handle("/metrics", promhttp.HandlerFor(bo.Registry, promhttp.HandlerOpts{}))
	r.Handle("/static/*", ui.Static())
	prov.Mount(r)
	if err := ensureFirstPartyClient(ctx, st, portalClientID, "Latchkey account", cfg.Issuer+selfservice.PathCallback, cfg.Issuer+selfservice.PathAccount); err != nil {
		return nil, err
	}
	if err := ensureFirstPartyClient(ctx, st, consoleClientID, "Latchkey admin console", cfg.Issuer+console.Callback, cfg.Issuer+console.Path); err != nil {
		return nil, err
	}
	portal, err := selfservice.New(selfservice.Options{Issuer: cfg.Issuer, ClientID: portalClientID, Store: st, Authn: an, MFA: lifecycle,
		Tokens: tokenVerifier{prov}, CSRF: csrf, Keyring: ring, Secure: secure, Logger: log, Now: bo.Now, HTTPClient: bo.HTTPClient})
	if err != nil {
		return nil, err
	}
	portal.Mount(r)
	doc, err := openAPIDocument()
	if err != nil {
		return nil, err
	}
	adm := admin.New(admin.Options{OpenAPI: doc, Store: st, Authn: an, MFA: lifecycle, Ledger: ledger, AuditKey: auditKey, Tokens: tokenVerifier{prov}, Keys: adminKeys{keys}, Issuer: cfg.Issuer, Logger: log, Now: bo.Now})
	adm.Mount(internal)
	if err := console.Mount(r, console.Options{Admin: adm, Store: st, Ledger: ledger, Keys: adminKeys{keys}, Logger: log, Now: bo.Now,
		Issuer: cfg.Issuer, ClientID: consoleClientID, HTTPClient: bo.HTTPClient, CSRF: csrf,
		Keyring: ring, Secure: secure}); err != nil {
		return nil, err
	}
	return &app{adminRouter: adminRouter, cfg: cfg, store: st, keyring: ring, system: system, keys: keys, authn: an, mfa: lifecycle, ledger: ledger, auditKey: auditKey, sealed: newSealMetrics(bo.Registry), provider: prov, router: r, log: log}, nil
}

// openAPIDocument is the OpenAPI 3.1 document of the admin and account
// APIs, generated from their route tables and body types.
func openAPIDocument() ([]byte, error) {
	spec := admin.OpenAPISpec()
	spec.StepUps = maps.Clone(spec.StepUps)
	maps.Copy(spec.StepUps, selfservice.StepUps)
	spec.Errors["/account/"] = selfservice.ProblemBody{}
	return apidoc.Document(spec, slices.Concat(admin.Routes, selfservice.Routes))
}

// notFound answers unknown paths and methods in JSON.
func notFound(r *chi.Mux, log *slog.Logger) {
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, log, &httpx.Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, log, &httpx.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed"})
	})
}

// internalTransport sends requests for the issuer to internal instead
// (http.internal_url): same paths, the issuer's Host header, so the
// portal and console reach the provider without going out through a
// proxy whose certificate this process may not trust.
func internalTransport(issuer, internal string) http.RoundTripper {
	from, _ := url.Parse(issuer)
	to, _ := url.Parse(internal)
	base := http.DefaultTransport
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.URL.Scheme == from.Scheme && req.URL.Host == from.Host && strings.HasPrefix(req.URL.Path, from.Path) {
			req = req.Clone(req.Context())
			req.Host = from.Host
			req.URL.Scheme, req.URL.Host = to.Scheme, to.Host
			req.URL.Path = to.Path + strings.TrimPrefix(req.URL.Path, from.Path)
		}
		return base.RoundTrip(req)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The account portal's and the admin console's own first-party clients.
const (
	portalClientID  = "latchkey-account"
	consoleClientID = "latchkey-console"
)

// ensureFirstPartyClient registers one of Latchkey's own applications as a
// public, first-party client of this issuer (PKCE, no secret), or corrects
// its redirect URIs when the issuer changed.
func ensureFirstPartyClient(ctx context.Context, st store.Store, id, name, redirect, postLogout string) error {
	want := store.Client{ID: id, Name: name, Public: true, FirstParty: true,
		RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{postLogout},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid", "profile", "email"}, CreatedAt: time.Now().UTC()}
	return st.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "first-party-client"); err != nil {
			return err
		}
		got, err := q.GetClient(ctx, id)
		if err == nil && slices.Equal(got.RedirectURIs, want.RedirectURIs) && slices.Equal(got.PostLogoutRedirectURIs, want.PostLogoutRedirectURIs) {
			return nil
		}
		if err == nil {
			if err := q.DeleteClient(ctx, id); err != nil {
				return err
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return q.CreateClient(ctx, want)
	})
}

// tokenVerifier lets the account API accept the provider's access tokens
// without either package importing the other.
type tokenVerifier struct{ p *provider.Provider }

func (v tokenVerifier) VerifyAccessToken(ctx context.Context, token string) (selfservice.Principal, error) {
	i, err := v.p.AccessTokenInfo(ctx, token)
	if err != nil {
		return selfservice.Principal{}, err
	}
	if i.Subject == "" {
		return selfservice.Principal{}, errors.New("account API: the token has no user")
	}
	return selfservice.Principal{UserID: i.Subject, ClientID: i.ClientID, Scopes: i.Scopes, AuthTime: i.AuthTime, AMR: i.AMR,
		GrantID: i.GrantID, StepUp: i.StepUp, FirstParty: i.FirstParty}, nil
}

// VerifyAdminToken lets the admin API accept the provider's access tokens.
func (v tokenVerifier) VerifyAdminToken(ctx context.Context, token string) (admin.Token, error) {
	i, err := v.p.AccessTokenInfo(ctx, token)
	if err != nil {
		return admin.Token{}, err
	}
	return admin.Token{UserID: i.Subject, ClientID: i.ClientID, Scopes: i.Scopes, AuthTime: i.AuthTime, AMR: i.AMR}, nil
}

// adminKeys adapts the key manager to the admin API.
type adminKeys struct{ km *provider.KeyManager }

func (k adminKeys) ListKeys(ctx context.Context) ([]admin.Key, error) {
	ks, err := k.km.List(ctx)
	out := make([]admin.Key, len(ks))
	for i, x := range ks {
		out[i] = admin.Key(x)
	}
	return out, err
}

func (k adminKeys) RotateKey(ctx context.Context, record func(context.Context, store.Queries, string) error) (string, error) {
	return k.km.RotateWith(ctx, record)
}

// sealMetrics observe the audit sealer: events sealed, and how long the
// oldest event of each batch waited (the window in which an event is
// committed but not yet provable).
type sealMetrics struct {
	events prometheus.Counter
	lag    prometheus.Histogram
}

func newSealMetrics(reg prometheus.Registerer) *sealMetrics {
	m := &sealMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "latchkey_audit_sealed_events_total", Help: "Audit events sealed into the Merkle tree."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latchkey_audit_seal_lag_seconds", Help: "How long the oldest event of a sealed batch waited.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30}}),
	}
	reg.MustRegister(m.events, m.lag)
	return m
}

func (m *sealMetrics) observe(n int, lag time.Duration) {
	m.events.Add(float64(n))
	m.lag.Observe(lag.Seconds())
}

// auditLedger builds the audit checkpointer from secrets.audit_keys (first
// signs, all verify), or from a key derived from the system secret.
func auditLedger(cfg *config.Config, system []byte) (*audit.Checkpointer, string, error) {
	var seeds [][]byte
	for _, k := range cfg.Secrets.AuditKeys {
		_, b64, _ := strings.Cut(k, ":")
		seed, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, "", fmt.Errorf("secrets.audit_keys: %w", err)
		}
		seeds = append(seeds, seed)
	}
	if len(seeds) == 0 {
		seeds = [][]byte{derive(system, "audit-checkpoint-v1")}
	}
	return audit.NewCheckpointer(auditOrigin(cfg.Issuer), seeds[0], seeds[1:]...)
}

// auditOrigin names the audit log in its checkpoints: the issuer's host
// and path, as C2SP checkpoints name logs.
func auditOrigin(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host + strings.TrimSuffix(u.Path, "/") + "/audit"
	}
	return "latchkey/audit"
}

// derive gives each use of the system secret its own key.
func derive(system []byte, purpose string) []byte {
	return seal.Derive(system, purpose)
}
