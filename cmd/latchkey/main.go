// Command latchkey is the Latchkey identity provider: the server and the
// administrative tasks that bootstrap a deployment.
//
// It is the only composition root: it reads the configuration, opens the
// store, builds every component with explicit options and mounts them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchkey/latchkey/config"
)

const usage = `latchkey — OpenID Connect identity provider

Usage:
  latchkey [-config FILE] COMMAND [ARGS]

Commands:
  serve                         run the server (dev mode when nothing is configured)
  migrate                       apply database migrations and exit
  clients create|list|delete    manage OAuth clients
  users create|list|set-password|add-to-group|enroll-totp|remove-2sv
  groups create|list|admins
  policies create|list|assign   authentication policies
  admins add|remove USERNAME    grant or revoke admin (admin API and console)
  keys list|rotate              signing keys
  audit verify|export|checkpoint|key
                                check the audit log; export JSON Lines; checkpoints
  help                          this text

The configuration comes from FILE (or $LATCHKEY_CONFIG) and LATCHKEY_*
environment variables. "latchkey COMMAND -h" describes a command and its
flags and does nothing else.
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "latchkey:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("latchkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", os.Getenv("LATCHKEY_CONFIG"), "configuration file (YAML)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil // usage already printed
	} else if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if cmd == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if wantsHelp(rest) {
		switch cmd {
		case "serve":
			fmt.Fprint(stdout, "Usage: latchkey [-config FILE] serve\n\nRun the server. With no database configured it runs in dev mode on the\nembedded store (latchkey-dev.db) at http://127.0.0.1:8080.\n")
		case "migrate":
			fmt.Fprint(stdout, "Usage: latchkey [-config FILE] migrate\n\nApply pending database migrations and exit.\n")
		case "clients", "users", "groups", "keys", "policies", "admins", "audit":
			printHelp(stdout, cmd, rest)
		default:
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", cmd)
		}
		return nil
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	switch cmd {
	case "serve":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		startPprof(log)
		return serve(ctx, cfg, log, stdout)
	case "migrate":
		st, err := openStore(ctx, cfg)
		if err != nil {
			return err
		}
		st.Close()
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "clients", "users", "groups", "keys", "policies", "admins", "audit":
		return runCLI(ctx, cfg, log, cmd, rest, stdin, stdout, stderr)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}
