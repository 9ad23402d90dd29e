package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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

type cli struct {
	cfg    *config.Config
	st     store.Store
	log    *slog.Logger
	stdin  io.Reader
	out    io.Writer
	errOut io.Writer
	output string // "table" or "json", for list commands
}

// table prints a list command's rows: aligned columns, or with --output
// json an array of objects keyed by the headers in snake_case (lists stay
// lists, numbers and booleans keep their types).
func (c *cli) table(headers []string, rows [][]any) error {
	if c.output == "json" {
		out := make([]map[string]any, 0, len(rows))
		for _, r := range rows {
			m := map[string]any{}
			for i, h := range headers {
				m[strings.NewReplacer(" ", "_", "-", "_").Replace(strings.ToLower(h))] = r[i]
			}
			out = append(out, m)
		}
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			if l, ok := v.([]string); ok {
				v = strings.Join(l, ", ")
			}
			cells[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// clientOpts are the flags of clients create.
type clientOpts struct {
	id, name                                   string
	public, firstParty, noPKCE, jwt            bool
	redirects, logoutRedirects, grants, scopes []string
}

func (c *cli) clientsCreate(ctx context.Context, o clientOpts) error {
	if o.id == "" {
		o.id = authn.NewID("client")
	}
	if len(o.grants) == 0 {
		o.grants = []string{"authorization_code", "refresh_token"}
	}
	if len(o.scopes) == 0 {
		o.scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	var problems []string
	for _, g := range o.grants {
		switch g {
		case "authorization_code", "refresh_token":
		case "client_credentials":
			if o.public {
				problems = append(problems, "--grant-type client_credentials needs a confidential client")
			}
		default:
			problems = append(problems, fmt.Sprintf("--grant-type %q is not supported", g))
		}
	}
	if o.noPKCE && o.public {
		problems = append(problems, "--allow-no-pkce is for confidential clients only")
	}
	hasCode := false
	for _, g := range o.grants {
		hasCode = hasCode || g == "authorization_code"
	}
	if hasCode && len(o.redirects) == 0 {
		problems = append(problems, "--redirect-uri is required for the authorization_code grant")
	}
	for _, u := range append(append([]string{}, o.redirects...), o.logoutRedirects...) {
		if err := admin.ValidRedirectURI(u, c.cfg.Mode == config.ModeDev); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	format := store.AccessTokensOpaque
	if o.jwt {
		format = store.AccessTokensJWT
	}
	cl := store.Client{ID: o.id, Name: o.name, Public: o.public, FirstParty: o.firstParty, PKCEOptional: o.noPKCE, AccessTokenFormat: format, RedirectURIs: o.redirects,
		PostLogoutRedirectURIs: o.logoutRedirects, GrantTypes: o.grants, ResponseTypes: []string{"code"}, Scopes: o.scopes, CreatedAt: time.Now().UTC()}
	var secret string
	if !o.public {
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
	var rows [][]any
	for _, cl := range cs {
		typ := "confidential"
		if cl.Public {
			typ = "public"
		}
		pkce := "required"
		if cl.PKCEOptional {
			pkce = "optional"
		}
		rows = append(rows, []any{cl.ID, cl.Name, typ, cl.FirstParty, pkce, cmp.Or(cl.AccessTokenFormat, store.AccessTokensOpaque), cl.GrantTypes, cl.RedirectURIs})
	}
	return c.table([]string{"ID", "NAME", "TYPE", "FIRST-PARTY", "PKCE", "ACCESS TOKENS", "GRANTS", "REDIRECT URIS"}, rows)
}

func (c *cli) clientsDelete(ctx context.Context, args []string) error {
	if err := c.audited(ctx, audit.Event{Type: audit.ClientDeleted, Details: map[string]any{"client_id": args[0]}},
		func(q store.Queries) error { return q.DeleteClient(ctx, args[0]) }); err != nil {
		return fmt.Errorf("delete client %s: %w", args[0], err)
	}
	fmt.Fprintf(c.out, "client %s deleted\n", args[0])
	return nil
}

// readPassword reads the password: the first line of file, or of standard
// input when file is empty. Never a flag: flags end up in shell history
// and process listings.
func (c *cli) readPassword(file string) (string, error) {
	in := c.stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		in = f
	} else {
		fmt.Fprintln(c.errOut, "reading the password from standard input")
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", errors.New("the password must be at least 8 characters")
	}
	if len(pw) > 1024 {
		return "", errors.New("the password must be at most 1024 characters")
	}
	return pw, nil
}

// userOpts are the flags of users create.
type userOpts struct{ username, email, name, passwordFile string }

func (c *cli) usersCreate(ctx context.Context, o userOpts) error {
	username, err := authn.Username(o.username)
	if err != nil {
		return fmt.Errorf("--username: %w", err)
	}
	name, err := authn.DisplayText(o.name, 200)
	if err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	pw, err := c.readPassword(o.passwordFile)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	u := store.User{ID: authn.NewID("user"), Username: username, Email: o.email, DisplayName: name,
		PasswordHash: authn.NewPasswordHasher(authn.DefaultArgon2, 0).Hash(pw), CreatedAt: now, UpdatedAt: now}
	if err := c.audited(ctx, audit.Event{Type: audit.UserCreated, SubjectID: u.ID, Details: map[string]any{"username": u.Username}},
		func(q store.Queries) error { return q.CreateUser(ctx, u) }); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "user %s created with id %s\n", u.Username, u.ID)
	return nil
}

func (c *cli) usersList(ctx context.Context, _ []string) error {
	var rows [][]any
	after := ""
	for {
		us, err := c.st.ListUsers(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, u := range us {
			rows = append(rows, []any{u.ID, u.Username, u.Email, u.DisplayName, u.Disabled})
		}
		if len(us) < 500 {
			break
		}
		after = us[len(us)-1].Username
	}
	return c.table([]string{"ID", "USERNAME", "EMAIL", "NAME", "DISABLED"}, rows)
}

func (c *cli) usersSetPassword(ctx context.Context, username, passwordFile string) error {
	u, err := c.st.GetUserByUsername(ctx, username)
	if err != nil {
		return fmt.Errorf("user %s: %w", username, err)
	}
	pw, err := c.readPassword(passwordFile)
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
func (c *cli) usersRemove2SV(ctx context.Context, username, reason string) error {
	u, err := c.st.GetUserByUsername(ctx, username)
	if err != nil {
		return fmt.Errorf("user %s: %w", username, err)
	}
	svc, err := c.lifecycle()
	if err != nil {
		return err
	}
	if err := svc.RemoveByAdmin(ctx, operator, mfa.Proof{Via: mfa.ViaOperator}, u.ID, reason); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "two-step verification removed for %s; their sessions and tokens were revoked\n", u.Username)
	return nil
}

func (c *cli) groupsCreate(ctx context.Context, name, desc string) error {
	name, err := authn.DisplayText(name, 100)
	if err != nil || name == "" {
		return fmt.Errorf("group name: %w", cmp.Or(err, errors.New("required")))
	}
	g := store.Group{ID: authn.NewID("group"), Name: name, Description: desc, CreatedAt: time.Now().UTC()}
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
	var rows [][]any
	for _, g := range gs {
		rows = append(rows, []any{g.ID, g.Name, g.Description})
	}
	return c.table([]string{"ID", "NAME", "DESCRIPTION"}, rows)
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
	var rows [][]any
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	for _, k := range ks {
		rows = append(rows, []any{k.ID, k.Algorithm, stamp(k.CreatedAt), stamp(k.NotBefore), stamp(k.NotAfter), k.State})
	}
	return c.table([]string{"KID", "ALG", "CREATED", "SIGNS FROM", "PUBLISHED UNTIL", "STATE"}, rows)
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

// policyOpts are the flags of policies create.
type policyOpts struct {
	desc, methods              string
	requireMFA, allow          bool
	stepUp, grace, setupWindow time.Duration
}

func (c *cli) policiesCreate(ctx context.Context, name string, o policyOpts) error {
	p := policy.New(authn.NewID("policy"), name)
	p.Description, p.RequireMFA, p.AllowSelfServiceRemoval, p.StepUpMaxAge, p.SetupWindow = o.desc, o.requireMFA, o.allow, o.stepUp, o.setupWindow
	p.AllowedMethods = policy.ParseMethods(o.methods)
	if o.grace > 0 {
		p.Reenroll, p.GracePeriod = policy.ReenrollGrace, o.grace
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
	var rows [][]any
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
		rows = append(rows, []any{p.ID, p.Name, p.RequireMFA, p.AllowSelfServiceRemoval, authn.PolicyFromStore(p).Methods(),
			p.StepUpMaxAge.String(), p.Reenroll, p.Version, names})
	}
	return c.table([]string{"ID", "NAME", "REQUIRE 2SV", "SELF-REMOVAL", "METHODS", "STEP-UP", "RE-ENROLL", "VERSION", "GROUPS"}, rows)
}

func (c *cli) policiesAssign(ctx context.Context, args []string) error {
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

func (c *cli) auditVerify(ctx context.Context, anchorFile string) error {
	var anchor []byte
	if anchorFile != "" {
		var err error
		if anchor, err = os.ReadFile(anchorFile); err != nil {
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
func (c *cli) auditExport(ctx context.Context, since, typ string) error {
	f := store.AuditFilter{TypePrefix: typ, Limit: 1000}
	if since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
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
