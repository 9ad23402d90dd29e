package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/notify"
	"github.com/latchkey/latchkey/store"
)

// serve runs the server until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	go tuneGC(gcCtx)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	return serveOn(ctx, ln, cfg, log, stdout, buildOptions{})
}

func serveOn(ctx context.Context, ln net.Listener, cfg *config.Config, log *slog.Logger, stdout io.Writer, bo buildOptions) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	a, err := build(ctx, cfg, st, log, bo)
	if err != nil {
		return err
	}
	if cfg.Mode == config.ModeDev {
		if err := a.devBootstrap(ctx, stdout); err != nil {
			return fmt.Errorf("dev bootstrap: %w", err)
		}
	}
	cleanupCtx, stopCleanup := context.WithCancel(ctx)
	defer stopCleanup()
	go a.provider.RunCleanup(cleanupCtx, cfg.Tokens.CleanupInterval.D(), cfg.Tokens.EventRetention.D())
	go audit.RunSealer(cleanupCtx, a.store, a.ledger, time.Second, a.sealed.observe,
		func(err error) { a.log.ErrorContext(cleanupCtx, "audit sealing failed", "err", err) })
	for _, d := range a.anchors() {
		go d.Run(cleanupCtx, 2*time.Second)
	}
	for _, d := range a.dispatchers() {
		go d.Run(cleanupCtx, 2*time.Second)
	}

	newServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	servers := []*http.Server{newServer(a.router)}
	listeners := []net.Listener{ln}
	adminAt := "on the public listener (profiler off)"
	if a.adminRouter != nil {
		aln, err := net.Listen("tcp", cfg.HTTP.AdminListen)
		if err != nil {
			return fmt.Errorf("http.admin_listen: %w", err)
		}
		servers, listeners = append(servers, newServer(a.adminRouter)), append(listeners, aln)
		adminAt = "http://" + aln.Addr().String() + " (keep it private)"
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	backChannel := cfg.Issuer
	if cfg.HTTP.InternalURL != "" {
		backChannel = cfg.HTTP.InternalURL
	}
	fmt.Fprintf(stdout, "  %s: %s mode, %s store\n", versionString(), cfg.Mode, st.Backend())
	fmt.Fprintf(stdout, "    public (sign-in, OIDC, /account, /console): http://%s  issuer %s\n", ln.Addr(), cfg.Issuer)
	fmt.Fprintf(stdout, "    admin API, /metrics, /debug/pprof:          %s\n", adminAt)
	fmt.Fprintf(stdout, "    portal and console reach the provider at:   %s\n", backChannel)
	log.Info("latchkey listening", "addr", ln.Addr().String(), "admin", adminAt, "issuer", cfg.Issuer, "mode", cfg.Mode, "store", st.Backend(),
		"audit_verifier_key", a.auditKey)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	defer a.provider.FlushTokenLog()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, srv.Shutdown(shutdownCtx))
	}
	for range servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// anchors hand each new signed audit checkpoint outside the database: to
// the webhook and to a file, when configured.
func (a *app) anchors() []*notify.AnchorDispatcher {
	var out []*notify.AnchorDispatcher
	if n := a.cfg.Notifications; n.WebhookURL != "" {
		out = append(out, &notify.AnchorDispatcher{Store: a.store, Logger: a.log,
			Sink: &notify.WebhookAnchor{Webhook: &notify.Webhook{URL: n.WebhookURL, Secret: []byte(n.WebhookSecret)}}})
	}
	if f := a.cfg.Audit.AnchorFile; f != "" {
		out = append(out, &notify.AnchorDispatcher{Store: a.store, Logger: a.log, Sink: &notify.FileAnchor{Path: f}})
	}
	return out
}

// dispatchers are the configured notification channels.
func (a *app) dispatchers() []*notify.Dispatcher { return dispatchers(a.cfg, a.store, a.log) }

func deliveryCursors(ds []*notify.Dispatcher) []string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.CursorName()
	}
	return names
}

func dispatchers(cfg *config.Config, st store.Store, log *slog.Logger) []*notify.Dispatcher {
	n := cfg.Notifications
	var out []*notify.Dispatcher
	if n.WebhookURL != "" {
		out = append(out, &notify.Dispatcher{Store: st, Logger: log,
			Sink: &notify.Webhook{URL: n.WebhookURL, Secret: []byte(n.WebhookSecret)}})
	}
	if n.SMTPAddr != "" {
		mail := &notify.Email{Addr: n.SMTPAddr, From: n.SMTPFrom, Username: n.SMTPUsername, Password: n.SMTPPassword, Issuer: cfg.Issuer, Users: st}
		out = append(out, &notify.Dispatcher{Store: st, Logger: log, Sink: mail},
			&notify.Dispatcher{Store: st, Logger: log, Sink: &notify.AdminEmail{Mail: mail, Admins: st}})
	}
	return out
}

// Demo identities exist only in dev mode, so a newcomer can sign in at once.
const (
	demoClientID = "demo-app"
	demoUsername = "demo"
)

// devBootstrap creates the demo application and user on first start and
// prints how to sign in.
//
// On every dev start the banner shows the demo credentials: a restarted
// dev server (or a newcomer using `go run`, with no latchkey binary on
// their PATH to reset anything) must not leave them stuck at the
// second-factor page. The password cannot be read back, so each start
// sets a new one (audited); the TOTP secret is opened from the store.
// Dev mode only: production never reads a secret back.
func (a *app) devBootstrap(ctx context.Context, out io.Writer) error {
	iss := a.cfg.Issuer
	if _, err := a.store.GetClient(ctx, demoClientID); errors.Is(err, store.ErrNotFound) {
		// Public client with PKCE: the built-in demo page at /demo plays the
		// application and needs no secret.
		err := a.store.CreateClient(ctx, store.Client{ID: demoClientID, Name: "Demo application (dev mode only)", Public: true, FirstParty: true,
			RedirectURIs: []string{iss + "/demo/callback"}, PostLogoutRedirectURIs: []string{iss + "/demo"},
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
			Scopes: []string{"openid", "profile", "email", "offline_access"}, CreatedAt: time.Now().UTC()})
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n  Latchkey is running in DEV MODE (embedded store %s; not for production).\n", a.cfg.Database.Path)
	d, err := a.demoUser(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n  Demo user (dev mode only; %s):\n    username:       %s\n    password:       %s\n", d.note, demoUsername, d.password)
	if d.secret != "" {
		fmt.Fprintf(out, "    TOTP secret:    %s\n    otpauth URI:    %s\n", d.secret, authn.TOTPURI("Latchkey (dev)", demoUsername, d.secret))
	} else {
		fmt.Fprintln(out, "    2SV:            set up at the first sign-in (the demo user has a key or no authenticator)")
	}
	if len(d.codes) > 0 {
		fmt.Fprintf(out, "    recovery codes: %s\n", strings.Join(d.codes, " "))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  Sign in to the demo application: %s/demo\n  Discovery: %s/.well-known/openid-configuration\n\n", iss, iss)
	a.mountDemo()
	return nil
}

// demoCredentials is what the dev banner shows.
type demoCredentials struct {
	note, password, secret string
	codes                  []string
}

// demoUser creates the demo user (password, TOTP app, recovery codes) or,
// when it exists, gives it a new password and reads its TOTP secret.
func (a *app) demoUser(ctx context.Context) (demoCredentials, error) {
	d := demoCredentials{password: authn.RandomToken(8)}
	u, err := a.store.GetUserByUsername(ctx, demoUsername)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.note, d.secret = "created", authn.NewTOTPSecret()
		now := time.Now().UTC()
		u = store.User{ID: authn.NewID("user"), Username: demoUsername, Email: "demo@example.com", DisplayName: "Demo User (dev only)",
			PasswordHash: a.authn.Hasher().Hash(d.password), CreatedAt: now, UpdatedAt: now}
		if err := a.store.CreateUser(ctx, u); err != nil {
			return d, err
		}
		d.codes, err = a.mfa.EnrollVerified(ctx, mfa.Actor{Type: audit.ActorSystem}, u.ID, d.secret)
		return d, err
	case err != nil:
		return d, err
	}
	d.note = "existing user, new password for this start"
	hash := a.authn.Hasher().Hash(d.password)
	err = a.store.InTx(ctx, func(q store.Queries) error {
		if err := q.SetPassword(ctx, u.ID, hash, time.Now()); err != nil {
			return err
		}
		_, err := audit.Append(ctx, q, audit.Event{Type: audit.PasswordChanged, ActorType: audit.ActorSystem, ActorID: "dev-mode", SubjectID: u.ID,
			Details: map[string]any{"via": "dev_banner"}})
		return err
	})
	if err != nil {
		return d, err
	}
	d.secret, err = a.authn.DevTOTPSecret(ctx, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	return d, err
}
