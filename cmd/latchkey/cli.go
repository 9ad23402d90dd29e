package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchkey/latchkey/admin"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/mfa"
	"github.com/latchkey/latchkey/policy"
	"github.com/latchkey/latchkey/store"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// command is one bootstrap subcommand. args and summary are what -h
// prints; flags says the command parses a flag set first thing, so -h can be
// handed to it for the flag list without a store behind it.
type command struct {
	args    string
	summary string
	flags   bool
	run     func(*cli, context.Context, []string) error
}

var commands = map[string]command{
	"clients create":     {"[flags]", "create an OAuth client; prints its secret once", true, (*cli).clientsCreate},
	"clients list":       {"", "list OAuth clients", false, (*cli).clientsList},
	"clients delete":     {"CLIENT_ID", "delete a client", false, (*cli).clientsDelete},
	"users create":       {"[flags]", "create a user (password on standard input)", true, (*cli).usersCreate},
	"users list":         {"", "list users", false, (*cli).usersList},
	"users set-password": {"USERNAME", "set a password (read from standard input)", false, (*cli).usersSetPassword},
	"users add-to-group": {"USERNAME GROUP", "add a user to a group", false, (*cli).usersAddToGroup},
	"users enroll-totp":  {"USERNAME", "enroll an authenticator app; prints the secret once", false, (*cli).usersEnrollTOTP},
	"users remove-2sv":   {"[flags] USERNAME", "remove a user's 2SV (audited)", true, (*cli).usersRemove2SV},
	"groups create":      {"[flags] NAME", "create a group", true, (*cli).groupsCreate},
	"groups list":        {"", "list groups", false, (*cli).groupsList},
	"groups admins":      {"add|remove GROUP USERNAME", "delegate a group's 2SV resets", false, (*cli).groupsAdmins},
	"keys list":          {"", "list signing keys", false, (*cli).keysList},
	"keys rotate":        {"", "publish a new signing key; it signs once every replica serves it", false, (*cli).keysRotate},
	"policies create":    {"[flags] NAME", "create an authentication policy", true, (*cli).policiesCreate},
	"policies list":      {"", "list policies", false, (*cli).policiesList},
	"policies assign":    {"POLICY GROUP", "assign a policy to a group", false, (*cli).policiesAssign},
	"admins add":         {"USERNAME", "grant admin (for the admin API and console)", false, (*cli).adminsAdd},
	"admins remove":      {"USERNAME", "revoke admin", false, (*cli).adminsRemove},
	"audit verify":       {"[flags]", "check the audit log's hashes, tree and checkpoints", true, (*cli).auditVerify},
	"audit export":       {"[flags]", "export audit events as JSON Lines", true, (*cli).auditExport},
	"audit checkpoint":   {"", "print the latest signed checkpoint (keep it outside the database)", false, (*cli).auditCheckpoint},
	"audit key":          {"", "print the checkpoint verifier key", false, (*cli).auditKey},
}

// wantsHelp reports whether args ask for help anywhere before "--". It is
// checked before anything opens the store, so "keys rotate -h" rotates
// nothing and "serve -h" serves nothing.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// printHelp describes group (and sub, when it names a command) and touches
// nothing else.
func printHelp(w io.Writer, group string, args []string) {
	if len(args) > 0 {
		if c, ok := commands[group+" "+args[0]]; ok {
			fmt.Fprintf(w, "Usage: latchkey %s %s %s\n\n%s\n", group, args[0], c.args, c.summary)
			if c.flags {
				_ = c.run(&cli{errOut: w}, context.Background(), []string{"-h"})
			}
			return
		}
	}
	fmt.Fprintf(w, "Usage: latchkey %s SUBCOMMAND [ARGS]\n\nSubcommands:\n", group)
	var names []string
	for name := range commands {
		if strings.HasPrefix(name, group+" ") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-20s %-26s %s\n", name, commands[name].args, commands[name].summary)
	}
}

// runCLI runs the bootstrap subcommands that work without the admin API.
func runCLI(ctx context.Context, cfg *config.Config, log *slog.Logger, group string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if wantsHelp(args) {
		printHelp(stdout, group, args)
		return nil
	}
	if len(args) == 0 {
		printHelp(stderr, group, nil)
		return fmt.Errorf("%s: missing subcommand", group)
	}
	cmd, ok := commands[group+" "+args[0]]
	if !ok {
		printHelp(stderr, group, nil)
		return fmt.Errorf("unknown command %q", group+" "+args[0])
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	c := &cli{cfg: cfg, st: st, log: log, stdin: stdin, out: stdout, errOut: stderr}
	return cmd.run(c, ctx, args[1:])
}

type cli struct {
	cfg    *config.Config
	st     store.Store
	log    *slog.Logger
	stdin  io.Reader
	out    io.Writer
	errOut io.Writer
}

func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	return fs
}

func (c *cli) clientsCreate(ctx context.Context, args []string) error {
	fs := c.flags("clients create")
	id := fs.String("id", "", "client id (default: generated)")
	name := fs.String("name", "", "display name shown on the consent page")
	public := fs.Bool("public", false, "public client (no secret)")
	firstParty := fs.Bool("first-party", false, "first-party client: no consent screen")
	noPKCE := fs.Bool("allow-no-pkce", false, "legacy confidential client that cannot send PKCE (every other client must)")
	var redirects, logoutRedirects, grants, scopes stringList
	fs.Var(&redirects, "redirect-uri", "allowed redirect URI, exact match (repeatable)")
	fs.Var(&logoutRedirects, "post-logout-redirect-uri", "allowed post-logout redirect URI (repeatable)")
	fs.Var(&grants, "grant-type", "authorization_code, refresh_token or client_credentials (repeatable; default authorization_code + refresh_token)")
	fs.Var(&scopes, "scope", "allowed scope (repeatable; default openid profile email offline_access)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		*id = authn.NewID("client")
	}
	if len(grants) == 0 {
		grants = stringList{"authorization_code", "refresh_token"}
	}
	if len(scopes) == 0 {
		scopes = stringList{"openid", "profile", "email", "offline_access"}
	}
	var problems []string
	for _, g := range grants {
		switch g {
		case "authorization_code", "refresh_token":
		case "client_credentials":
			if *public {
				problems = append(problems, "--grant-type client_credentials needs a confidential client")
			}
		default:
			problems = append(problems, fmt.Sprintf("--grant-type %q is not supported", g))
		}
	}
	if *noPKCE && *public {
		problems = append(problems, "--allow-no-pkce is for confidential clients only")
	}
	hasCode := false
	for _, g := range grants {
		hasCode = hasCode || g == "authorization_code"
	}
	if hasCode && len(redirects) == 0 {
		problems = append(problems, "--redirect-uri is required for the authorization_code grant")
	}
	for _, u := range append(append([]string{}, redirects...), logoutRedirects...) {
		if err := admin.ValidRedirectURI(u, c.cfg.Mode == config.ModeDev); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	cl := store.Client{ID: *id, Name: *name, Public: *public, FirstParty: *firstParty, PKCEOptional: *noPKCE, RedirectURIs: redirects,
		PostLogoutRedirectURIs: logoutRedirects, GrantTypes: grants, ResponseTypes: []string{"code"}, Scopes: scopes, CreatedAt: time.Now().UTC()}
	var secret string
	if !*public {
		secret, cl.SecretHash = authn.NewClientSecret()
	}
	if err := c.audited(ctx, audit.Event{Type: audit.ClientCreated, Details: map[string]any{"client_id": cl.ID, "name": cl.Name}},
		func(q store.Queries) error { return q.CreateClient(ctx, cl) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "client_id:     %s\n", cl.ID)
	if secret != "" {
		fmt.Fprintf(c.out, "client_secret: %s\n(shown once: store it now; Latchkey keeps only its digest)\n", secret)
	}
	return nil
}

func (c *cli) clientsList(ctx context.Context, _ []string) error {
	cs, err := c.st.ListClients(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tFIRST-PARTY\tPKCE\tGRANTS\tREDIRECT URIS")
	for _, cl := range cs {
		typ := "confidential"
		if cl.Public {
			typ = "public"
		}
		pkce := "required"
		if cl.PKCEOptional {
			pkce = "optional"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", cl.ID, cl.Name, typ, cl.FirstParty, pkce, strings.Join(cl.GrantTypes, ","), strings.Join(cl.RedirectURIs, " "))
	}
	return tw.Flush()
}

func (c *cli) clientsDelete(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: clients delete CLIENT_ID")
	}
	if err := c.audited(ctx, audit.Event{Type: audit.ClientDeleted, Details: map[string]any{"client_id": args[0]}},
		func(q store.Queries) error { return q.DeleteClient(ctx, args[0]) }); err != nil {
		return fmt.Errorf("delete client %s: %w", args[0], err)
	}
	fmt.Fprintf(c.out, "client %s deleted\n", args[0])
	return nil
}

// readPassword reads one line from stdin, so passwords stay out of shell
// history and process listings.
func (c *cli) readPassword() (string, error) {
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", errors.New("password (from standard input) must be at least 8 characters")
	}
	if len(pw) > 1024 {
		return "", errors.New("password must be at most 1024 characters")
	}
	return pw, nil
}

func (c *cli) usersCreate(ctx context.Context, args []string) error {
	fs := c.flags("users create")
	username := fs.String("username", "", "username (unique, case-insensitive)")
	email := fs.String("email", "", "email address")
	name := fs.String("name", "", "display name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	normalised, err := authn.Username(*username)
	if err != nil {
		return fmt.Errorf("--username: %w", err)
	}
	*username = normalised
	if *name, err = authn.DisplayText(*name, 200); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	fmt.Fprintln(c.errOut, "reading the password from standard input")
	pw, err := c.readPassword()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	u := store.User{ID: authn.NewID("user"), Username: *username, Email: *email, DisplayName: *name,
		PasswordHash: authn.NewPasswordHasher(authn.DefaultArgon2, 0).Hash(pw), CreatedAt: now, UpdatedAt: now}
	if err := c.audited(ctx, audit.Event{Type: audit.UserCreated, SubjectID: u.ID, Details: map[string]any{"username": u.Username}},
		func(q store.Queries) error { return q.CreateUser(ctx, u) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "user %s created with id %s\n", u.Username, u.ID)
	return nil
}

func (c *cli) usersList(ctx context.Context, _ []string) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSERNAME\tEMAIL\tNAME\tDISABLED")
	after := ""
	for {
		us, err := c.st.ListUsers(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", u.ID, u.Username, u.Email, u.DisplayName, u.Disabled)
		}
		if len(us) < 500 {
			break
		}
		after = us[len(us)-1].Username
	}
	return tw.Flush()
}

func (c *cli) usersSetPassword(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: users set-password USERNAME  (password on standard input)")
	}
	u, err := c.st.GetUserByUsername(ctx, args[0])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[0], err)
	}
	pw, err := c.readPassword()
	if err != nil {
		return err
	}
	hash := authn.NewPasswordHasher(authn.DefaultArgon2, 0).Hash(pw)
	err = c.audited(ctx, audit.Event{Type: audit.PasswordChanged, SubjectID: u.ID}, func(q store.Queries) error {
		if err := q.SetPassword(ctx, u.ID, hash, time.Now()); err != nil {
			return err
		}
		// A new password ends every session and token issued before it.
		if err := q.DeleteUserSessions(ctx, u.ID); err != nil {
			return err
		}
		if err := q.DeleteUserPortalSessions(ctx, u.ID); err != nil {
			return err
		}
		_, err := q.DeactivateUserTokens(ctx, u.ID, "")
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "password of %s changed; their sessions and tokens were revoked\n", u.Username)
	return nil
}

func (c *cli) usersAddToGroup(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: users add-to-group USERNAME GROUP")
	}
	u, err := c.st.GetUserByUsername(ctx, args[0])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[0], err)
	}
	g, err := c.st.GetGroupByName(ctx, args[1])
	if err != nil {
		return fmt.Errorf("group %s: %w", args[1], err)
	}
	if err := c.audited(ctx, audit.Event{Type: audit.GroupMemberAdded, SubjectID: u.ID, Details: map[string]any{"group_id": g.ID}},
		func(q store.Queries) error { return q.AddMember(ctx, g.ID, u.ID) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s added to %s\n", u.Username, g.Name)
	return nil
}

// usersEnrollTOTP gives a user an authenticator from the command line, for
// bootstrap; people normally enroll at the account portal.
func (c *cli) usersEnrollTOTP(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: users enroll-totp USERNAME")
	}
	u, err := c.st.GetUserByUsername(ctx, args[0])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[0], err)
	}
	svc, err := c.lifecycle()
	if err != nil {
		return err
	}
	secret := authn.NewTOTPSecret()
	codes, err := svc.EnrollVerified(ctx, operator, u.ID, secret)
	if r, ok := mfa.AsRefusal(err); ok && r.Code == mfa.CodeMFAActive {
		return fmt.Errorf("%s already has an authenticator", u.Username)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "secret:      %s\notpauth URI: %s\nrecovery codes (shown once):\n  %s\n",
		secret, authn.TOTPURI("Latchkey", u.Username, secret), strings.Join(codes, "\n  "))
	return nil
}

// operator is the CLI as the 2SV lifecycle records it: whoever runs it
// holds the database and its secrets.
var operator = mfa.Actor{Type: audit.ActorSystem}

// lifecycle builds the 2SV lifecycle service on the CLI's store.
func (c *cli) lifecycle() (*mfa.Service, error) {
	system, ring, err := secrets(c.cfg)
	if err != nil {
		return nil, err
	}
	an := authn.NewService(authn.Options{Store: c.st, Keyring: ring, Pepper: derive(system, "recovery-codes")})
	return mfa.New(mfa.Options{Store: c.st, Authn: an, Logger: c.log}), nil
}

// usersRemove2SV removes a user's 2SV as the operator (for example when no
// admin can sign in), through the same lifecycle service and audit event
// as the admin API.
func (c *cli) usersRemove2SV(ctx context.Context, args []string) error {
	fs := c.flags("users remove-2sv")
	reason := fs.String("reason", "", "why (recorded in the audit event)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: users remove-2sv [-reason TEXT] USERNAME")
	}
	u, err := c.st.GetUserByUsername(ctx, fs.Arg(0))
	if err != nil {
		return fmt.Errorf("user %s: %w", fs.Arg(0), err)
	}
	svc, err := c.lifecycle()
	if err != nil {
		return err
	}
	if err := svc.RemoveByAdmin(ctx, operator, mfa.Proof{Via: mfa.ViaOperator}, u.ID, *reason); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "two-step verification removed for %s; their sessions and tokens were revoked\n", u.Username)
	return nil
}

func (c *cli) groupsCreate(ctx context.Context, args []string) error {
	fs := c.flags("groups create")
	desc := fs.String("description", "", "description")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || strings.TrimSpace(fs.Arg(0)) == "" {
		return errors.New("usage: groups create [-description TEXT] NAME")
	}
	name, err := authn.DisplayText(fs.Arg(0), 100)
	if err != nil {
		return fmt.Errorf("group name: %w", err)
	}
	g := store.Group{ID: authn.NewID("group"), Name: name, Description: *desc, CreatedAt: time.Now().UTC()}
	if err := c.audited(ctx, audit.Event{Type: audit.GroupCreated, Details: map[string]any{"group_id": g.ID, "name": g.Name}},
		func(q store.Queries) error { return q.CreateGroup(ctx, g) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "group %s created with id %s\n", g.Name, g.ID)
	return nil
}

func (c *cli) groupsList(ctx context.Context, _ []string) error {
	gs, err := c.st.ListGroups(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tDESCRIPTION")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.ID, g.Name, g.Description)
	}
	return tw.Flush()
}

func (c *cli) keysList(ctx context.Context, _ []string) error {
	a, err := build(ctx, c.cfg, c.st, c.log, buildOptions{})
	if err != nil {
		return err
	}
	ks, err := a.keys.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tCREATED\tSIGNS FROM\tPUBLISHED UNTIL\tSTATE")
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, stamp(k.CreatedAt), stamp(k.NotBefore), stamp(k.NotAfter), k.State)
	}
	return tw.Flush()
}

func (c *cli) keysRotate(ctx context.Context, _ []string) error {
	a, err := build(ctx, c.cfg, c.st, c.log, buildOptions{})
	if err != nil {
		return err
	}
	kid, err := a.keys.RotateWith(ctx, func(ctx context.Context, q store.Queries, kid string) error {
		_, err := audit.Append(ctx, q, audit.Event{Type: audit.KeyRotated, ActorType: audit.ActorSystem, ActorID: "cli", Details: map[string]any{"kid": kid, "via": "cli"}})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "new signing key %s is published and signs from %s; previous keys stay published until their tokens expire\n", kid, a.keys.SignsFrom(ctx, kid).Format(time.RFC3339))
	return nil
}

// audited runs fn and its audit event (actor: system, via the CLI) in one
// transaction.
func (c *cli) audited(ctx context.Context, e audit.Event, fn func(q store.Queries) error) error {
	return c.st.InTx(ctx, func(q store.Queries) error {
		if err := fn(q); err != nil {
			return err
		}
		e.ActorType, e.ActorID = audit.ActorSystem, "cli"
		if e.Details == nil {
			e.Details = map[string]any{}
		}
		e.Details["via"] = "cli"
		_, err := audit.Append(ctx, q, e)
		return err
	})
}

func (c *cli) policiesCreate(ctx context.Context, args []string) error {
	fs := c.flags("policies create")
	desc := fs.String("description", "", "description")
	requireMFA := fs.Bool("require-mfa", true, "members must have 2SV")
	allow := fs.Bool("allow-self-removal", false, "members may remove their own 2SV after a step-up")
	stepUp := fs.Duration("step-up-max-age", policy.DefaultStepUpMaxAge, "how recent the step-up must be")
	grace := fs.Duration("grace", 0, "re-enrollment grace period (0: immediate)")
	window := fs.Duration("setup-window", policy.DefaultSetupWindow, "how long after removing their own 2SV members may set up a new authenticator with a password alone")
	methods := fs.String("allowed-methods", strings.Join(policy.Methods, ","), `second factors members may use: "totp", "passkey" or both ("passkey" alone requires phishing-resistant keys)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: policies create [flags] NAME")
	}
	p := policy.New(authn.NewID("policy"), fs.Arg(0))
	p.Description, p.RequireMFA, p.AllowSelfServiceRemoval, p.StepUpMaxAge, p.SetupWindow = *desc, *requireMFA, *allow, *stepUp, *window
	p.AllowedMethods = policy.ParseMethods(*methods)
	if *grace > 0 {
		p.Reenroll, p.GracePeriod = policy.ReenrollGrace, *grace
	}
	p.UpdatedAt = time.Now().UTC()
	if err := p.Validate(); err != nil {
		return err
	}
	e := audit.Event{Type: audit.PolicyCreated, PolicyID: p.ID, PolicyVersion: p.Version, Details: map[string]any{"name": p.Name}}
	if err := c.audited(ctx, e, func(q store.Queries) error { return q.CreatePolicy(ctx, authn.PolicyToStore(p)) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "policy %s created with id %s\n", p.Name, p.ID)
	return nil
}

func (c *cli) policiesList(ctx context.Context, _ []string) error {
	ps, err := c.st.ListPolicies(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tREQUIRE 2SV\tSELF-REMOVAL\tMETHODS\tSTEP-UP\tRE-ENROLL\tVERSION\tGROUPS")
	for _, p := range ps {
		gs, err := c.st.PolicyGroups(ctx, p.ID)
		if err != nil {
			return err
		}
		names := make([]string, len(gs))
		for i, g := range gs {
			names[i] = g.Name
		}
		if p.IsDefault {
			names = append(names, "(default)")
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\t%s\t%d\t%s\n", p.ID, p.Name, p.RequireMFA, p.AllowSelfServiceRemoval,
			strings.Join(authn.PolicyFromStore(p).Methods(), ","), p.StepUpMaxAge, p.Reenroll, p.Version, strings.Join(names, ", "))
	}
	return tw.Flush()
}

func (c *cli) policiesAssign(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: policies assign POLICY_NAME_OR_ID GROUP")
	}
	g, err := c.st.GetGroupByName(ctx, args[1])
	if err != nil {
		return fmt.Errorf("group %s: %w", args[1], err)
	}
	ps, err := c.st.ListPolicies(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.ID == args[0] || p.Name == args[0] {
			e := audit.Event{Type: audit.PolicyAssigned, PolicyID: p.ID, PolicyVersion: p.Version, Details: map[string]any{"group_id": g.ID}}
			if err := c.audited(ctx, e, func(q store.Queries) error { return q.AssignPolicy(ctx, g.ID, p.ID) }); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "policy %s assigned to %s\n", p.Name, g.Name)
			return nil
		}
	}
	return fmt.Errorf("policy %s: %w", args[0], store.ErrNotFound)
}

// adminsAdd makes a user an admin, so a deployment has someone who can
// sign in to the admin API before any admin exists.
func (c *cli) adminsAdd(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: admins add USERNAME")
	}
	u, err := c.st.GetUserByUsername(ctx, args[0])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[0], err)
	}
	e := audit.Event{Type: audit.AdminAdded, SubjectID: u.ID}
	if err := c.audited(ctx, e, func(q store.Queries) error { return q.AddAdmin(ctx, u.ID, time.Now()) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s is now an admin\n", u.Username)
	return nil
}

func (c *cli) adminsRemove(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: admins remove USERNAME")
	}
	u, err := c.st.GetUserByUsername(ctx, args[0])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[0], err)
	}
	err = c.audited(ctx, audit.Event{Type: audit.AdminRemoved, SubjectID: u.ID}, func(q store.Queries) error { return q.RemoveAdmin(ctx, u.ID) })
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s is not a global admin", u.Username)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s is no longer a global admin\n", u.Username)
	return nil
}

// groupsAdmins makes a user an admin contact of a group (a delegated
// admin of its members) or takes that away.
func (c *cli) groupsAdmins(ctx context.Context, args []string) error {
	if len(args) != 3 || (args[0] != "add" && args[0] != "remove") {
		return errors.New("usage: groups admins add|remove GROUP USERNAME")
	}
	g, err := c.st.GetGroupByName(ctx, args[1])
	if err != nil {
		return fmt.Errorf("group %s: %w", args[1], err)
	}
	u, err := c.st.GetUserByUsername(ctx, args[2])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[2], err)
	}
	typ, change := audit.GroupAdminAdded, func(q store.Queries) error { return q.AddGroupAdmin(ctx, g.ID, u.ID) }
	if args[0] == "remove" {
		typ, change = audit.GroupAdminRemoved, func(q store.Queries) error { return q.RemoveGroupAdmin(ctx, g.ID, u.ID) }
	}
	if err := c.audited(ctx, audit.Event{Type: typ, SubjectID: u.ID, Details: map[string]any{"group_id": g.ID}}, change); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s: %s %s as admin of %s\n", args[0], u.Username, map[string]string{"add": "added", "remove": "removed"}[args[0]], g.Name)
	return nil
}

// errChainBroken makes `audit verify` exit non-zero.
var errChainBroken = errors.New("audit chain is broken")

func (c *cli) auditVerify(ctx context.Context, args []string) error {
	fs := c.flags("audit verify")
	anchorFile := fs.String("anchor", "", "FILE holding a checkpoint kept outside the database (from latchkey audit checkpoint); prove the log still extends it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var anchor []byte
	if *anchorFile != "" {
		var err error
		if anchor, err = os.ReadFile(*anchorFile); err != nil {
			return err
		}
	}
	ledger, _, err := c.ledger()
	if err != nil {
		return err
	}
	n, broken, err := audit.Verify(ctx, c.st)
	if err != nil {
		return err
	}
	if broken != nil {
		fmt.Fprintf(c.out, "BROKEN at event %d after %d events: %s\n", broken.EventID, n, broken.Reason)
		return errChainBroken
	}
	rep, err := audit.VerifyTree(ctx, c.st, ledger, anchor)
	if err != nil {
		return err
	}
	if p := rep.Problem; p != nil {
		fmt.Fprintf(c.out, "BROKEN at tree position %d (event %d): %s\n", p.Position, p.EventID, p.Reason)
		return errChainBroken
	}
	fmt.Fprintf(c.out, "ok: %d events, chain intact; %d sealed in the tree of checkpoint %d", n, rep.Sealed, rep.Head.Size)
	if anchor != nil {
		fmt.Fprint(c.out, ", which extends the anchor")
	}
	fmt.Fprintf(c.out, "; %d pending (not yet sealed, not verified)", rep.Pending)
	if rep.Pruned > 0 {
		fmt.Fprintf(c.out, "; positions 0 to %d pruned under a signed retention record (audit.pruned events)", rep.Pruned-1)
	}
	fmt.Fprintln(c.out)
	return nil
}

// ledger is the audit checkpointer, from the configured secrets.
func (c *cli) ledger() (*audit.Checkpointer, string, error) {
	system, _, err := secrets(c.cfg)
	if err != nil {
		return nil, "", err
	}
	return auditLedger(c.cfg, system)
}

// auditCheckpoint seals what is pending and prints the newest signed
// checkpoint, for keeping outside the database as an anchor.
func (c *cli) auditCheckpoint(ctx context.Context, _ []string) error {
	ledger, _, err := c.ledger()
	if err != nil {
		return err
	}
	if _, _, err := audit.Seal(ctx, c.st, ledger, 100000, time.Now()); err != nil {
		return err
	}
	head, err := c.st.LatestAuditHead(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return errors.New("the audit log is empty: nothing to checkpoint")
	}
	if err != nil {
		return err
	}
	fmt.Fprint(c.out, head.Note)
	return nil
}

// auditKey prints the key that verifies the audit log's checkpoints.
func (c *cli) auditKey(context.Context, []string) error {
	_, vkey, err := c.ledger()
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, vkey)
	return nil
}

// auditExport writes the audit log as JSON Lines to standard output.
func (c *cli) auditExport(ctx context.Context, args []string) error {
	fs := c.flags("audit export")
	since := fs.String("since", "", "only events at or after this RFC 3339 time")
	typ := fs.String("type", "", "only events whose type starts with this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := store.AuditFilter{TypePrefix: *typ, Limit: 1000}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return fmt.Errorf("-since: %w", err)
		}
		f.Since = t
	}
	enc := json.NewEncoder(c.out)
	for {
		evs, err := c.st.ListAuditEvents(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if len(evs) < f.Limit {
			return nil
		}
		f.AfterID = evs[len(evs)-1].ID
	}
}
