package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
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
	// Password hashing allocates 9 MiB per sign-in and drops it at once;
	// with the default GOGC=100 the heap may double past that before a
	// collection, so a login burst inflates RSS. 50 keeps peak RSS near the
	// live heap for a few percent of CPU. GOGC, when set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
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

	srv := &http.Server{Handler: a.router, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("latchkey listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "mode", cfg.Mode, "store", st.Backend(),
		"audit_verifier_key", a.auditKey)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

const defaultGCPercent = 50

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
	if _, err := a.store.GetUserByUsername(ctx, demoUsername); errors.Is(err, store.ErrNotFound) {
		password := authn.RandomToken(8)
		secret := authn.NewTOTPSecret()
		now := time.Now().UTC()
		u := store.User{ID: authn.NewID("user"), Username: demoUsername, Email: "demo@example.com", DisplayName: "Demo User (dev only)",
			PasswordHash: a.authn.Hasher().Hash(password), CreatedAt: now, UpdatedAt: now}
		if err := a.store.CreateUser(ctx, u); err != nil {
			return err
		}
		codes, err := a.mfa.EnrollVerified(ctx, mfa.Actor{Type: audit.ActorSystem}, u.ID, secret)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, `
  Demo user created (shown once; dev mode only):
    username:       %s
    password:       %s
    TOTP secret:    %s
    otpauth URI:    %s
    recovery codes: %s

`, demoUsername, password, secret, authn.TOTPURI("Latchkey (dev)", demoUsername, secret), strings.Join(codes, " "))
	} else if err != nil {
		return err
	} else {
		fmt.Fprintf(out, "  Demo user %q exists; reset its password with: latchkey users set-password %s\n", demoUsername, demoUsername)
	}
	fmt.Fprintf(out, "  Sign in to the demo application: %s/demo\n  Discovery: %s/.well-known/openid-configuration\n\n", iss, iss)
	a.mountDemo()
	return nil
}
