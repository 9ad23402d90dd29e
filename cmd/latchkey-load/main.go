// Command latchkey-load is the load generator behind BENCHMARKS.md. It
// drives a running Latchkey server over loopback HTTP, the way clients and
// browsers do, and reports throughput and latency percentiles.
//
// It only ever targets the issuer it is given, and refuses anything that is
// not a loopback address: benchmarks here must never send traffic elsewhere.
//
//	latchkey-load -setup  ...   create the benchmark client and users in the database
//	latchkey-load -scenario client_credentials|refresh|authcode|argon2 -c 16 -d 10s
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/store"
	"github.com/latchkey/latchkey/store/postgres"
	"github.com/latchkey/latchkey/store/sqlite"
	"github.com/latchkey/latchkey/store/sqlstore"
)

type options struct {
	issuer   string
	scenario string
	// flood: wrong-password workers and the addresses they come from.
	attackers, attackIPs int
	conc                 int
	dur                  time.Duration
	warmup               time.Duration
	setup                bool
	dsn                  string
	sqlitePath           string
	users                int
	state                string
}

// benchState is what setup writes for the load runs: credentials of the
// benchmark client and users.
type benchState struct {
	ClientID     string     `json:"client_id"`
	ClientSecret string     `json:"client_secret"`
	Redirect     string     `json:"redirect"`
	Users        []benchUsr `json:"users"`
}

type benchUsr struct {
	Username, Password, Secret string
}

func main() {
	var o options
	flag.StringVar(&o.issuer, "issuer", "http://127.0.0.1:8090", "issuer of the server under test (loopback only)")
	flag.StringVar(&o.scenario, "scenario", "client_credentials", "client_credentials, refresh, authcode, argon2 or flood")
	flag.IntVar(&o.attackers, "attackers", 32, "flood: workers sending wrong passwords")
	flag.IntVar(&o.attackIPs, "attack-ips", 1, "flood: loopback addresses the attackers come from (127.0.1.1 …)")
	flag.IntVar(&o.conc, "c", 16, "concurrent workers")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "duration")
	flag.DurationVar(&o.warmup, "warmup", 0, "run this long first without measuring (connection pools, caches)")
	flag.BoolVar(&o.setup, "setup", false, "create the benchmark client and users, then exit")
	flag.StringVar(&o.dsn, "dsn", "", "PostgreSQL DSN of the server's database (setup only)")
	flag.StringVar(&o.sqlitePath, "sqlite", "", "the server's SQLite file, instead of -dsn (setup only)")
	flag.IntVar(&o.users, "users", 2000, "users with TOTP to create (setup only)")
	flag.StringVar(&o.state, "state", "bench-state.json", "file for the benchmark credentials")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "latchkey-load:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	u, err := url.Parse(o.issuer)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("refusing a non-loopback target")
	}
	if o.setup {
		return setup(o)
	}
	raw, err := os.ReadFile(o.state)
	if err != nil && o.scenario != "argon2" {
		return err
	}
	var st benchState
	_ = json.Unmarshal(raw, &st)
	// Users are handed out from a cursor kept beside the state file, so no
	// two runs use a user's TOTP code in the same time step.
	cursorFile := o.state + ".cursor"
	if b, err := os.ReadFile(cursorFile); err == nil {
		var n int64
		fmt.Sscan(string(b), &n)
		userCursor.Store(n)
	}
	defer func() { _ = os.WriteFile(cursorFile, []byte(fmt.Sprint(userCursor.Load())), 0o600) }()
	var op func(ctx context.Context, worker int) (func(ctx context.Context) error, error)
	switch o.scenario {
	case "client_credentials":
		op = clientCredentials(o, st)
	case "refresh":
		op = refresh(o, st)
	case "authcode":
		op = authCode(o, st)
	case "argon2":
		op = argon2Only(o.conc)
	case "flood":
		return flood(o, st)
	default:
		return fmt.Errorf("unknown scenario %q", o.scenario)
	}
	return measure(o, op)
}

func httpClient(conc int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, MaxIdleConns: conc * 2, IdleConnTimeout: time.Minute}}
}

// measure runs op from o.conc workers for o.dur and prints one JSON line.
func measure(o options, prepare func(ctx context.Context, worker int) (func(ctx context.Context) error, error)) error {
	ctx := context.Background()
	ops := make([]func(context.Context) error, o.conc)
	for i := range ops {
		var err error
		if ops[i], err = prepare(ctx, i); err != nil {
			return fmt.Errorf("prepare worker %d: %w", i, err)
		}
	}
	if o.warmup > 0 {
		var wg sync.WaitGroup
		end := time.Now().Add(o.warmup)
		for _, fn := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					_ = fn(ctx)
				}
			}()
		}
		wg.Wait()
	}
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(o.dur)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < o.conc; i++ {
		wg.Add(1)
		go func(fn func(context.Context) error) {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := fn(ctx); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(ops[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	out := map[string]any{"scenario": o.scenario, "concurrency": o.conc, "ok": len(lat), "errors": errs.Load(),
		"per_second": float64(len(lat)) / elapsed.Seconds(), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}
	if e := firstErr.Load(); e != nil {
		out["first_error"] = e
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	return nil
}

func clientCredentials(o options, st benchState) func(context.Context, int) (func(context.Context) error, error) {
	hc := httpClient(o.conc)
	body := "grant_type=client_credentials&scope=profile"
	return func(context.Context, int) (func(context.Context) error, error) {
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.issuer+"/oauth2/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(st.ClientID, st.ClientSecret)
			return expect(hc.Do(req))(http.StatusOK)
		}, nil
	}
}

func expect(resp *http.Response, err error) func(int) error {
	return func(status int) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != status {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

var userCursor atomic.Int64

func nextUser(st benchState) benchUsr { return st.Users[int(userCursor.Add(1)-1)%len(st.Users)] }

func oauthConfig(o options, st benchState) *oauth2.Config {
	return &oauth2.Config{ClientID: st.ClientID, ClientSecret: st.ClientSecret, RedirectURL: st.Redirect,
		Endpoint: oauth2.Endpoint{AuthURL: o.issuer + "/oauth2/auth", TokenURL: o.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "profile", "offline_access"}}
}

// refresh: each worker signs in once, then keeps rotating its own refresh
// token (each grant returns the next one).
func refresh(o options, st benchState) func(context.Context, int) (func(context.Context) error, error) {
	hc := httpClient(o.conc)
	conf := oauthConfig(o, st)
	return func(ctx context.Context, worker int) (func(context.Context) error, error) {
		tok, err := fullFlow(ctx, o, st, conf, nextUser(st), time.Now())
		if err != nil {
			return nil, err
		}
		rt := tok.RefreshToken
		cctx := context.WithValue(ctx, oauth2.HTTPClient, hc)
		return func(context.Context) error {
			t, err := conf.TokenSource(cctx, &oauth2.Token{RefreshToken: rt}).Token()
			if err != nil {
				return err
			}
			rt = t.RefreshToken
			return nil
		}, nil
	}
}

// authCode: full browser sign-ins — authorize, login page, password,
// TOTP page, code, resume, code exchange — each with a fresh user, since a
// TOTP code is single-use per user and time step.
func authCode(o options, st benchState) func(context.Context, int) (func(context.Context) error, error) {
	conf := oauthConfig(o, st)
	return func(context.Context, int) (func(context.Context) error, error) {
		return func(ctx context.Context) error {
			_, err := fullFlow(ctx, o, st, conf, nextUser(st), time.Now())
			return err
		}, nil
	}
}

var hiddenRe = regexp.MustCompile(`name="(csrf_token|flow)" value="([^"]*)"`)

func formFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

func fullFlow(ctx context.Context, o options, st benchState, conf *oauth2.Config, u benchUsr, now time.Time) (*oauth2.Token, error) {
	return fullFlowFrom(ctx, o, st, conf, u, now, http.DefaultTransport)
}

// fromAddr is a transport whose connections come from the loopback address
// ip, so one load generator can be many networks.
func fromAddr(ip string) http.RoundTripper {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
}

// fullFlowFrom is fullFlow over transport rt.
func fullFlowFrom(ctx context.Context, o options, st benchState, conf *oauth2.Config, u benchUsr, now time.Time, rt http.RoundTripper) (*oauth2.Token, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Transport: rt, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), st.Redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	verifier := oauth2.GenerateVerifier()
	state := authn.RandomToken(8)
	resp, err := hc.Get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", authn.RandomToken(8))))
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f := formFields(string(body))
	f.Set("username", u.Username)
	f.Set("password", u.Password)
	if resp, err = hc.PostForm(o.issuer+"/login", f); err != nil {
		return nil, err
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp.StatusCode)
	}
	f = formFields(string(body))
	code, _ := authn.TOTPCode(u.Secret, now)
	f.Set("code", code)
	if resp, err = hc.PostForm(o.issuer+"/login/2sv", f); err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.Query().Get("code") == "" {
		return nil, fmt.Errorf("no code (status %d, location %q)", resp.StatusCode, resp.Header.Get("Location"))
	}
	return conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, httpClient(1)), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
}

// statusError is a sign-in step answered with an unexpected status.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("status %d", int(e)) }

// flood measures legitimate password + TOTP sign-ins (o.conc workers, each
// sign-in from the next of 250 addresses 127.0.2.x, as people come from
// many networks) while o.attackers workers from o.attackIPs addresses
// (127.0.1.x) post wrong passwords for unknown names as fast as they are
// answered, each reusing one sign-in page (the cheapest attack: no new
// flow per guess). It prints the legitimate sign-ins' figures, then how the
// flood was answered.
func flood(o options, st benchState) error {
	ctx, cancel := context.WithCancel(context.Background())
	conf := oauthConfig(o, st)
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	for i := range o.attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar, Transport: fromAddr(fmt.Sprintf("127.0.1.%d", i%max(1, o.attackIPs)+1)), Timeout: 30 * time.Second}
			var form url.Values
			for ctx.Err() == nil {
				if form == nil {
					resp, err := hc.Get(conf.AuthCodeURL(authn.RandomToken(8), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
					if err != nil {
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					form = formFields(string(body))
				}
				form.Set("username", "nobody"+authn.RandomToken(4))
				form.Set("password", "guess")
				resp, err := hc.PostForm(o.issuer+"/login", form)
				key := "other"
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					key = fmt.Sprint(resp.StatusCode)
					if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusForbidden {
						form = nil // the page expired: fetch another
					}
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
			}
		}()
	}
	if o.attackers > 0 {
		time.Sleep(2 * time.Second) // let the flood fill the queue first
	}
	legit := make([]http.RoundTripper, 250)
	for i := range legit {
		legit[i] = fromAddr(fmt.Sprintf("127.0.2.%d", i+1))
	}
	var next atomic.Int64
	err := measure(o, func(context.Context, int) (func(context.Context) error, error) {
		return func(ctx context.Context) error {
			rt := legit[int(next.Add(1))%len(legit)]
			_, err := fullFlowFrom(ctx, o, st, conf, nextUser(st), time.Now(), rt)
			return err
		}, nil
	})
	cancel()
	wg.Wait()
	b, _ := json.Marshal(map[string]any{"flood_answers": answers, "attackers": o.attackers, "attack_ips": o.attackIPs})
	fmt.Println(string(b))
	return err
}

// argon2Only measures the password hash alone, with the server's
// parameters and its one-hash-per-core limit: the ceiling for logins.
func argon2Only(conc int) func(context.Context, int) (func(context.Context) error, error) {
	h := authn.NewPasswordHasher(authn.DefaultArgon2, conc)
	hash := h.Hash("benchmark password")
	return func(context.Context, int) (func(context.Context) error, error) {
		return func(ctx context.Context) error {
			if ok, err := h.Verify(ctx, hash, "benchmark password"); !ok {
				return errors.Join(errors.New("verify failed"), err)
			}
			return nil
		}, nil
	}
}

// setup writes the benchmark client and users straight into the server's
// database, sealing TOTP secrets with the server's keys (from the same
// LATCHKEY_SECRETS_* variables the server reads).
func setup(o options) error {
	ctx := context.Background()
	var s *sqlstore.Store
	var err error
	if o.sqlitePath != "" {
		s, err = sqlite.Open(ctx, sqlite.Options{Path: o.sqlitePath})
	} else {
		s, err = postgres.Open(ctx, postgres.Options{DSN: o.dsn})
	}
	if err != nil {
		return err
	}
	defer s.Close()
	system, err := base64.StdEncoding.DecodeString(os.Getenv("LATCHKEY_SECRETS_SYSTEM"))
	if err != nil || len(system) < 32 {
		return errors.New("LATCHKEY_SECRETS_SYSTEM must be set")
	}
	id, key, _ := strings.Cut(os.Getenv("LATCHKEY_SECRETS_ENCRYPTION_KEYS"), ":")
	kb, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return err
	}
	ring, err := seal.New(seal.Key{ID: id, Secret: kb})
	if err != nil {
		return err
	}
	svc := authn.NewService(authn.Options{Store: s, Keyring: ring, Pepper: seal.Derive(system, "recovery-codes")})
	st := benchState{ClientID: "bench", Redirect: "http://127.0.0.1:9/bench/callback"}
	var digest []byte
	st.ClientSecret, digest = authn.NewClientSecret()
	if err := s.CreateClient(ctx, store.Client{ID: st.ClientID, Name: "Benchmark", SecretHash: digest, FirstParty: true,
		RedirectURIs: []string{st.Redirect}, GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"},
		ResponseTypes: []string{"code"}, Scopes: []string{"openid", "profile", "offline_access"}, CreatedAt: time.Now().UTC()}); err != nil {
		return err
	}
	// One hash for every user: setup time is not what is measured.
	password := "bench-password-1"
	hash := svc.Hasher().Hash(password)
	now := time.Now().UTC()
	for i := 0; i < o.users; i++ {
		u := benchUsr{Username: fmt.Sprintf("bench%05d", i), Password: password, Secret: authn.NewTOTPSecret()}
		err := s.InTx(ctx, func(q store.Queries) error {
			id := authn.NewID("user")
			if err := q.CreateUser(ctx, store.User{ID: id, Username: u.Username, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			_, err := svc.EnrollTOTP(ctx, q, id, u.Secret, 0)
			return err
		})
		if err != nil {
			return err
		}
		st.Users = append(st.Users, u)
	}
	raw, _ := json.MarshalIndent(st, "", " ")
	return os.WriteFile(o.state, raw, 0o600)
}
