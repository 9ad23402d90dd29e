package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/policy"
)

// The command tree (spf13/cobra). Help, usage errors and shell completion
// are cobra's and run before any RunE: no command opens the store, reads
// secrets or starts anything to print its help. Flags may come anywhere
// after the command (`groups create Ops --description …`).

// Set by the release build (-ldflags "-X main.version=… -X main.commit=…
// -X main.date=…"); debug.ReadBuildInfo fills in what is not set.
var (
	version = ""
	commit  = ""
	date    = ""
)

// env is what every command shares: the streams, the global flags, and
// the configuration and store, loaded only when a command runs.
type env struct {
	stdin       io.Reader
	out, errOut io.Writer
	cfgPath     string
	output      string
}

// open loads the configuration and opens the store for a command.
func (e *env) open(ctx context.Context) (*cli, error) {
	switch e.output {
	case "table", "json":
	default:
		return nil, fmt.Errorf(`--output must be "table" or "json", not %q`, e.output)
	}
	cfg, err := config.Load(e.cfgPath, os.Environ())
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &cli{cfg: cfg, st: st, log: newLogger(cfg, e.errOut), stdin: e.stdin, out: e.out, errOut: e.errOut, output: e.output}, nil
}

// storeCmd is a command that works on the store: run gets it open, and it
// is closed afterwards.
func (e *env) storeCmd(use, short string, args cobra.PositionalArgs, run func(c *cli, ctx context.Context, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: args, RunE: func(cmd *cobra.Command, a []string) error {
		c, err := e.open(cmd.Context())
		if err != nil {
			return err
		}
		defer c.st.Close()
		return run(c, cmd.Context(), a)
	}}
}

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		return cmd.Help()
	}}
	g.AddCommand(subs...)
	return g
}

// newRoot builds the command tree.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "latchkey",
		Short: "Latchkey — OpenID Connect identity provider",
		Long: `Latchkey — OpenID Connect identity provider.

The configuration comes from --config FILE (or $LATCHKEY_CONFIG) and
LATCHKEY_* environment variables. "latchkey COMMAND --help" describes a
command and does nothing else.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&e.cfgPath, "config", os.Getenv("LATCHKEY_CONFIG"), "configuration file (YAML)")
	root.PersistentFlags().StringVarP(&e.output, "output", "o", "table", `list output: "table" or "json"`)
	root.SetIn(e.stdin)
	root.SetOut(e.out)
	root.SetErr(e.errOut)

	root.AddCommand(e.serveCmd(), e.migrateCmd(), e.versionCmd(), e.configCmd(),
		e.clientsCmd(), e.usersCmd(), e.groupsCmd(), e.policiesCmd(), e.adminsCmd(), e.keysCmd(), e.auditCmd())
	return root
}

func (e *env) serveCmd() *cobra.Command {
	return &cobra.Command{Use: "serve", Short: "run the server (dev mode when nothing is configured)", Args: cobra.NoArgs,
		Long: "Run the server. With no database configured it runs in dev mode on the\nembedded store (latchkey-dev.db) at http://127.0.0.1:8080.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(e.cfgPath, os.Environ())
			if err != nil {
				return err
			}
			log := newLogger(cfg, e.errOut)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			startPprof(log)
			return serve(ctx, cfg, log, e.out)
		}}
}

func (e *env) migrateCmd() *cobra.Command {
	return e.storeCmd("migrate", "apply database migrations and exit", cobra.NoArgs, func(c *cli, _ context.Context, _ []string) error {
		fmt.Fprintln(c.out, "migrations applied")
		return nil
	})
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "print the version, commit and build date", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(e.out, versionString())
			return nil
		}}
}

// versionString is the module version, commit and build date: from the
// release build's -ldflags, else from what the Go toolchain recorded.
func versionString() string {
	v, c, d, dirty := version, commit, date, false
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.time":
				if d == "" {
					d = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	} else if dirty && commit == "" {
		c += "-dirty"
	}
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("latchkey %s (commit %s, built %s, %s)", v, c, d, goVersion)
}

func (e *env) configCmd() *cobra.Command {
	check := &cobra.Command{Use: "check [FILE]", Short: "validate a configuration file and print every problem", Args: cobra.MaximumNArgs(1),
		Long: "Validate FILE (default: --config, else $LATCHKEY_CONFIG) with the\nLATCHKEY_* environment applied, as serve would, and print every problem.\nNothing is opened or changed.",
		RunE: func(cmd *cobra.Command, args []string) error {
			path := e.cfgPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path, os.Environ())
			if err != nil {
				fmt.Fprintln(e.out, "invalid configuration:")
				for _, line := range strings.Split(strings.TrimPrefix(err.Error(), "config: "), "; ") {
					fmt.Fprintln(e.out, "  -", line)
				}
				return errors.New("the configuration is invalid")
			}
			where := "the embedded store at " + cfg.Database.Path
			if cfg.Database.Driver == "postgres" {
				where = "PostgreSQL"
			}
			fmt.Fprintf(e.out, "ok: %s mode, issuer %s, %s\n", cfg.Mode, cfg.Issuer, where)
			return nil
		}}
	return group("config", "check configuration", check)
}

func (e *env) clientsCmd() *cobra.Command {
	var o clientOpts
	create := e.storeCmd("create", "create an OAuth client; prints its secret once", cobra.NoArgs,
		func(c *cli, ctx context.Context, _ []string) error { return c.clientsCreate(ctx, o) })
	f := create.Flags()
	f.StringVar(&o.id, "id", "", "client id (default: generated)")
	f.StringVar(&o.name, "name", "", "display name shown on the consent page")
	f.BoolVar(&o.public, "public", false, "public client (no secret)")
	f.BoolVar(&o.firstParty, "first-party", false, "first-party client: no consent screen")
	f.BoolVar(&o.noPKCE, "allow-no-pkce", false, "legacy confidential client that cannot send PKCE (every other client must)")
	f.BoolVar(&o.jwt, "jwt-access-tokens", false, "issue RFC 9068 JWT access tokens (verifiable with the JWKS) instead of opaque ones")
	f.StringArrayVar(&o.redirects, "redirect-uri", nil, "allowed redirect URI, exact match (repeatable)")
	f.StringArrayVar(&o.logoutRedirects, "post-logout-redirect-uri", nil, "allowed post-logout redirect URI (repeatable)")
	f.StringArrayVar(&o.grants, "grant-type", nil, "authorization_code, refresh_token or client_credentials (repeatable; default authorization_code + refresh_token)")
	f.StringArrayVar(&o.scopes, "scope", nil, "allowed scope (repeatable; default openid profile email offline_access)")
	return group("clients", "manage OAuth clients", create,
		e.storeCmd("list", "list OAuth clients", cobra.NoArgs, (*cli).clientsList),
		e.storeCmd("delete CLIENT_ID", "delete a client", cobra.ExactArgs(1), (*cli).clientsDelete))
}

func (e *env) usersCmd() *cobra.Command {
	var o userOpts
	create := e.storeCmd("create", "create a user (password from standard input or --password-file)", cobra.NoArgs,
		func(c *cli, ctx context.Context, _ []string) error { return c.usersCreate(ctx, o) })
	create.Flags().StringVar(&o.username, "username", "", "username (unique; RFC 8265, case-insensitive)")
	create.Flags().StringVar(&o.email, "email", "", "email address")
	create.Flags().StringVar(&o.name, "name", "", "display name")
	create.Flags().StringVar(&o.passwordFile, "password-file", "", "read the password from the first line of FILE instead of standard input")
	var pwFile string
	setPassword := e.storeCmd("set-password USERNAME", "set a password (from standard input or --password-file); revokes sessions and tokens", cobra.ExactArgs(1),
		func(c *cli, ctx context.Context, args []string) error {
			return c.usersSetPassword(ctx, args[0], pwFile)
		})
	setPassword.Flags().StringVar(&pwFile, "password-file", "", "read the password from the first line of FILE instead of standard input")
	var reason string
	remove := e.storeCmd("remove-2sv USERNAME", "remove a user's 2SV (audited; revokes sessions and tokens)", cobra.ExactArgs(1),
		func(c *cli, ctx context.Context, args []string) error { return c.usersRemove2SV(ctx, args[0], reason) })
	remove.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit event)")
	return group("users", "manage users", create,
		e.storeCmd("list", "list users", cobra.NoArgs, (*cli).usersList),
		setPassword,
		e.storeCmd("add-to-group USERNAME GROUP", "add a user to a group", cobra.ExactArgs(2), (*cli).usersAddToGroup),
		e.storeCmd("enroll-totp USERNAME", "enroll an authenticator app; prints the secret once", cobra.ExactArgs(1), (*cli).usersEnrollTOTP),
		remove)
}

func (e *env) groupsCmd() *cobra.Command {
	var desc string
	create := e.storeCmd("create NAME", "create a group", cobra.ExactArgs(1),
		func(c *cli, ctx context.Context, args []string) error { return c.groupsCreate(ctx, args[0], desc) })
	create.Flags().StringVar(&desc, "description", "", "description")
	admins := func(verb, short string) *cobra.Command {
		return e.storeCmd(verb+" GROUP USERNAME", short, cobra.ExactArgs(2), func(c *cli, ctx context.Context, args []string) error {
			return c.groupsAdmins(ctx, append([]string{verb}, args...))
		})
	}
	return group("groups", "manage groups", create,
		e.storeCmd("list", "list groups", cobra.NoArgs, (*cli).groupsList),
		group("admins", "delegate a group's 2SV resets to a user", admins("add", "make a user an admin contact of the group"),
			admins("remove", "stop a user being an admin contact of the group")))
}

func (e *env) policiesCmd() *cobra.Command {
	var o policyOpts
	create := e.storeCmd("create NAME", "create an authentication policy", cobra.ExactArgs(1),
		func(c *cli, ctx context.Context, args []string) error { return c.policiesCreate(ctx, args[0], o) })
	f := create.Flags()
	f.StringVar(&o.desc, "description", "", "description")
	f.BoolVar(&o.requireMFA, "require-mfa", true, "members must have 2SV")
	f.BoolVar(&o.allow, "allow-self-removal", false, "members may remove their own 2SV after a step-up")
	f.DurationVar(&o.stepUp, "step-up-max-age", policy.DefaultStepUpMaxAge, "how recent the step-up must be")
	f.DurationVar(&o.grace, "grace", 0, "re-enrollment grace period (0: immediate)")
	f.DurationVar(&o.setupWindow, "setup-window", policy.DefaultSetupWindow, "how long after removing their own 2SV members may set up a new authenticator with a password alone")
	f.StringVar(&o.methods, "allowed-methods", strings.Join(policy.Methods, ","), `second factors members may use: "totp", "passkey" or both ("passkey" alone requires phishing-resistant keys)`)
	return group("policies", "authentication policies", create,
		e.storeCmd("list", "list policies", cobra.NoArgs, (*cli).policiesList),
		e.storeCmd("assign POLICY GROUP", "assign a policy (name or id) to a group", cobra.ExactArgs(2), (*cli).policiesAssign))
}

func (e *env) adminsCmd() *cobra.Command {
	return group("admins", "grant or revoke admin (admin API and console)",
		e.storeCmd("add USERNAME", "grant admin", cobra.ExactArgs(1), (*cli).adminsAdd),
		e.storeCmd("remove USERNAME", "revoke admin", cobra.ExactArgs(1), (*cli).adminsRemove))
}

func (e *env) keysCmd() *cobra.Command {
	return group("keys", "signing keys",
		e.storeCmd("list", "list signing keys and their states", cobra.NoArgs, (*cli).keysList),
		e.storeCmd("rotate", "publish a new signing key; it signs once every replica serves it", cobra.NoArgs, (*cli).keysRotate))
}

func (e *env) auditCmd() *cobra.Command {
	var anchor string
	verify := e.storeCmd("verify", "check the audit log's hashes, tree and checkpoints", cobra.NoArgs,
		func(c *cli, ctx context.Context, _ []string) error { return c.auditVerify(ctx, anchor) })
	verify.Flags().StringVar(&anchor, "anchor", "", "FILE holding a checkpoint kept outside the database (from latchkey audit checkpoint); prove the log still extends it")
	var since, typ string
	export := e.storeCmd("export", "export audit events as JSON Lines", cobra.NoArgs,
		func(c *cli, ctx context.Context, _ []string) error { return c.auditExport(ctx, since, typ) })
	export.Flags().StringVar(&since, "since", "", "only events at or after this RFC 3339 time")
	export.Flags().StringVar(&typ, "type", "", "only events whose type starts with this")
	return group("audit", "check and export the audit log", verify, export,
		e.storeCmd("checkpoint", "seal pending events and print the latest signed checkpoint (keep it outside the database)", cobra.NoArgs, (*cli).auditCheckpoint),
		e.storeCmd("key", "print the checkpoint verifier key", cobra.NoArgs, (*cli).auditKey))
}
