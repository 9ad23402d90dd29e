package authn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/store"
)

// Errors returned to callers; the same message is shown whatever the cause,
// so responses do not reveal whether an account exists.
var (
	ErrInvalidCredentials = errors.New("authn: invalid username or password")
	ErrInvalidCode        = errors.New("authn: invalid verification code")
	ErrLocked             = errors.New("authn: too many failed attempts")
)

// Lockout bounds failed attempts per account and per IP address.
type Lockout struct {
	AccountThreshold int
	IPThreshold      int
	BaseDelay        time.Duration // lock after the threshold; doubles per further failure
	MaxDelay         time.Duration
	Window           time.Duration // failures older than this are forgotten
}

// DefaultLockout locks an account after 5 consecutive failures.
var DefaultLockout = Lockout{AccountThreshold: 5, IPThreshold: 50, BaseDelay: time.Second, MaxDelay: 15 * time.Minute, Window: 15 * time.Minute}

// Options configures a Service.
type Options struct {
	Store   store.Store
	Keyring *seal.Keyring
	Pepper  []byte // server secret mixed into recovery-code digests
	Hasher  *PasswordHasher
	// Passkeys runs WebAuthn ceremonies; nil: no passkeys.
	Passkeys *Passkeys
	Lockout  Lockout
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service verifies passwords and second factors.
type Service struct {
	o Options

	// pressing remembers, per replica and for pressingFor, the addresses
	// refused a place in the hash queue: they count as suspect, so
	// flooders that are refused before any failure is recorded do not
	// keep competing with people arriving from fresh addresses.
	pressingMu sync.Mutex
	pressing   map[string]time.Time
}

const (
	pressingFor = 30 * time.Second
	maxPressing = 1 << 16 // bounded: forgotten all at once when full
)

// suspect reports whether an address failed recently (database, shared by
// replicas) or was refused a place recently (this replica).
func (s *Service) suspect(ip string, a store.Attempt) bool {
	now := s.o.Now()
	if a.Failures > 0 && now.Sub(a.LastFailure) <= s.o.Lockout.Window {
		return true
	}
	s.pressingMu.Lock()
	defer s.pressingMu.Unlock()
	return now.Before(s.pressing[ip])
}

func (s *Service) refusedPlace(ip string) {
	s.pressingMu.Lock()
	defer s.pressingMu.Unlock()
	if s.pressing == nil || len(s.pressing) >= maxPressing {
		s.pressing = map[string]time.Time{}
	}
	s.pressing[ip] = s.o.Now().Add(pressingFor)
}

// NewService returns a Service; zero options get defaults.
func NewService(o Options) *Service {
	if o.Hasher == nil {
		o.Hasher = NewPasswordHasher(DefaultArgon2, 0)
	}
	if o.Lockout == (Lockout{}) {
		o.Lockout = DefaultLockout
	}
	if o.Lockout.Window == 0 {
		o.Lockout.Window = DefaultLockout.Window
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o}
}

// Hasher returns the password hasher.
func (s *Service) Hasher() *PasswordHasher { return s.o.Hasher }

func accountKey(username string) string {
	return "acct:" + strings.ToLower(strings.TrimSpace(username))
}
func ipKey(ip string) string { return "ip:" + ip }

// CheckPassword verifies username and password. Unknown users, disabled users
// and wrong passwords all return ErrInvalidCredentials after the same work.
func (s *Service) CheckPassword(ctx context.Context, username, password, ip string) (store.User, error) {
	keys := []string{accountKey(username), ipKey(ip)}
	if u, err := Username(username); err == nil {
		// The same account whatever width or case it was typed in.
		username, keys[0] = u, accountKey(u)
	}
	// A full hash queue refuses before anything is counted; an address
	// with recent failures gets only part of it.
	ipa, err := s.o.Store.GetAttempt(ctx, keys[1])
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	suspect := s.suspect(keys[1], ipa)
	release, err := s.o.Hasher.Admit(suspect)
	if err != nil {
		s.refusedPlace(keys[1])
		return store.User{}, err
	}
	ctx = asSuspect(ctx, suspect)
	var once sync.Once
	defer once.Do(release)
	n, err := s.claim(ctx, keys[0], keys[1])
	if err != nil {
		return store.User{}, err
	} else if n == 0 {
		// Locked (known and unknown names alike): shed before hashing, in
		// about the time a hash takes, without holding a place meanwhile.
		once.Do(release)
		s.o.Hasher.Equalise(ctx)
		return store.User{}, ErrLocked
	}
	u, err := s.o.Store.GetUserByUsername(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := s.o.Hasher.VerifyDummy(ctx, password); err != nil {
			return store.User{}, s.abandoned(keys, n, err)
		}
	case err != nil && ctx.Err() != nil:
		return store.User{}, s.abandoned(keys, n, ctx.Err())
	case err != nil:
		return store.User{}, fmt.Errorf("look up user: %w", err)
	default:
		ok, err := s.o.Hasher.Verify(ctx, u.PasswordHash, password)
		if err != nil {
			return store.User{}, s.abandoned(keys, n, err)
		}
		if ok && !u.Disabled {
			return u, s.o.Store.ResetAttempts(ctx, keys[0])
		}
	}
	if err := s.fail(ctx, n, keys[0], keys[1]); err != nil {
		return store.User{}, err
	}
	return store.User{}, ErrInvalidCredentials
}

// abandoned settles an attempt whose caller went away before its hash: it
// counts as a failure (giving the claim back would let a guesser cancel
// every wrong guess uncounted). The request's context is gone, so the
// write gets a short one of its own.
func (s *Service) abandoned(keys []string, n int, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.fail(ctx, n, keys[0], keys[1]); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// CheckSecondFactor verifies a TOTP code or, failing the TOTP format, a
// recovery code. It returns the RFC 8176 method used: "otp" for either (a
// recovery code is a one-time password too).
func (s *Service) CheckSecondFactor(ctx context.Context, userID, code, ip string) (method string, err error) {
	key, ipk := "mfa:"+userID, ipKey(ip)
	n, err := s.claim(ctx, key, ipk)
	if err != nil {
		return "", err
	} else if n == 0 {
		return "", ErrLocked
	}
	code = strings.TrimSpace(code)
	ok, method, err := s.verifyCode(ctx, userID, code)
	if err != nil {
		return "", err
	}
	if !ok {
		if err := s.fail(ctx, n, key, ipk); err != nil {
			return "", err
		}
		return "", ErrInvalidCode
	}
	return method, s.o.Store.ResetAttempts(ctx, key)
}

func (s *Service) verifyCode(ctx context.Context, userID, code string) (bool, string, error) {
	if len(code) == int(totpDigits) && isDigits(code) {
		cred, err := s.o.Store.GetTOTP(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return false, "", nil
		}
		if err != nil {
			return false, "", err
		}
		secret, err := s.o.Keyring.Open(cred.Secret, []byte(cred.ID))
		if err != nil {
			return false, "", fmt.Errorf("open totp secret of %s: %w", userID, err)
		}
		step, ok := matchTOTP(string(secret), code, s.o.Now())
		if !ok || step <= cred.LastStep {
			return false, "", nil
		}
		// The conditional update is the real check: of two requests with
		// the same code, only one moves the step.
		won, err := s.o.Store.AdvanceTOTPStep(ctx, cred.ID, step)
		return won, "totp", err
	}
	// Recovery codes work whatever the user's methods: a passkey-only
	// user's lost key is what they are for.
	used, err := s.o.Store.UseRecoveryCode(ctx, userID, recoveryDigest(s.o.Pepper, code), s.o.Now())
	return used, "recovery_code", err
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Passkeys returns the WebAuthn ceremonies (nil when off).
func (s *Service) Passkeys() *Passkeys { return s.o.Passkeys }

// HasPasskeys reports whether the user has a passkey or security key.
func (s *Service) HasPasskeys(ctx context.Context, userID string) (bool, error) {
	if s.o.Passkeys == nil {
		return false, nil
	}
	cs, err := s.o.Store.ListWebAuthnCredentials(ctx, userID)
	return len(cs) > 0, err
}

// BeginPasskey starts a second-factor check with one of u's passkeys,
// bound to binding (the sign-in flow).
func (s *Service) BeginPasskey(ctx context.Context, u store.User, binding string) (string, []byte, error) {
	if s.o.Passkeys == nil {
		return "", nil, ErrPasskey
	}
	return s.o.Passkeys.BeginLogin(ctx, s.o.Store, u, binding)
}

// CheckPasskey verifies a passkey as the second factor, counted like a
// code: the attempt is claimed first, a failure counts against the account
// and the address, and a locked account is refused (ErrLocked).
func (s *Service) CheckPasskey(ctx context.Context, u store.User, ceremonyID, binding string, response []byte, ip string) (PasskeyUse, error) {
	if s.o.Passkeys == nil {
		return PasskeyUse{}, ErrPasskey
	}
	key, ipk := "mfa:"+u.ID, ipKey(ip)
	n, err := s.claim(ctx, key, ipk)
	if err != nil {
		return PasskeyUse{}, err
	} else if n == 0 {
		return PasskeyUse{}, ErrLocked
	}
	// Taking the challenge and moving the counter commit together (one
	// fsync fewer per sign-in); a refused answer still spends the
	// challenge, so its transaction commits and the refusal is carried out.
	var use PasskeyUse
	var refused error
	err = s.o.Store.InTx(ctx, func(q store.Queries) error {
		var err error
		use, err = s.o.Passkeys.FinishLogin(ctx, q, u, ceremonyID, binding, response)
		if errors.Is(err, ErrPasskey) {
			refused = err
			return nil
		}
		return err
	})
	if err == nil {
		err = refused
	}
	if errors.Is(err, ErrPasskey) {
		if ferr := s.fail(ctx, n, key, ipk); ferr != nil {
			return PasskeyUse{}, ferr
		}
		return PasskeyUse{}, err
	}
	if err != nil {
		return PasskeyUse{}, err
	}
	return use, s.o.Store.ResetAttempts(ctx, key)
}

// AMR is how a passkey sign-in is reported (RFC 8176): "hwk" for a key
// bound to its hardware, "swk" for a synced passkey, "user" when the
// authenticator verified the person; the caller adds "pwd" and "mfa".
func (u PasskeyUse) AMR() []string {
	amr := []string{"swk"}
	if u.Hardware {
		amr[0] = "hwk"
	}
	if u.UserVerified {
		amr = append(amr, "user")
	}
	return amr
}

// DevTOTPSecret opens the user's TOTP secret. Only the dev-mode banner
// calls it (to show the demo user's secret again on a restart); nothing in
// production mode ever reads a secret back out.
func (s *Service) DevTOTPSecret(ctx context.Context, userID string) (string, error) {
	cred, err := s.o.Store.GetTOTP(ctx, userID)
	if err != nil {
		return "", err
	}
	secret, err := s.o.Keyring.Open(cred.Secret, []byte(cred.ID))
	return string(secret), err
}

// HasTOTP reports whether the user has an active authenticator.
func (s *Service) HasTOTP(ctx context.Context, userID string) (bool, error) {
	_, err := s.o.Store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// newRecoveryCodes returns fresh codes and their stored digests.
func (s *Service) newRecoveryCodes() (codes, digests []string) {
	codes = NewRecoveryCodes()
	digests = make([]string, len(codes))
	for i, c := range codes {
		digests[i] = recoveryDigest(s.o.Pepper, c)
	}
	return codes, digests
}

// claim counts an attempt on the account key before it is judged and
// returns its number, 0 when the account or the address is locked. Counting
// first, in one statement, is what keeps concurrent wrong codes from
// overshooting the threshold: a check followed by a later write let seven
// through for a threshold of five. The address is only checked here (many
// people share one), and counted on failure.
func (s *Service) claim(ctx context.Context, acct, ip string) (int, error) {
	now := s.o.Now()
	a, err := s.o.Store.GetAttempt(ctx, ip)
	if err == nil && now.Before(a.LockedUntil) {
		return 0, nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	l := s.o.Lockout
	n, err := s.o.Store.ClaimAttempt(ctx, acct, l.AccountThreshold, now, now.Add(-l.Window), now.Add(l.MaxDelay))
	if err != nil {
		return 0, fmt.Errorf("count attempt: %w", err)
	}
	return n, nil
}

// fail settles the n-th claimed attempt on acct as a failure, locking it
// past the threshold for an exponentially growing delay (replacing the hold
// the claim set), and counts one failure against the address. Counters live
// in the database, so every replica sees the same lock.
func (s *Service) fail(ctx context.Context, n int, acct, ip string) error {
	now := s.o.Now()
	l := s.o.Lockout
	if n >= l.AccountThreshold {
		if err := s.lock(ctx, acct, n-l.AccountThreshold, now); err != nil {
			return err
		}
	}
	if a, err := s.o.Store.GetAttempt(ctx, ip); err == nil && now.Sub(a.LastFailure) > l.Window && now.After(a.LockedUntil) {
		if err := s.o.Store.ResetAttempts(ctx, ip); err != nil {
			return err
		}
	}
	m, err := s.o.Store.RecordFailure(ctx, ip, now)
	if err != nil {
		return fmt.Errorf("record failed attempt: %w", err)
	}
	if m >= l.IPThreshold {
		return s.lock(ctx, ip, m-l.IPThreshold, now)
	}
	return nil
}

func (s *Service) lock(ctx context.Context, key string, over int, now time.Time) error {
	delay := s.o.Lockout.BaseDelay << min(over, 20)
	if delay > s.o.Lockout.MaxDelay || delay <= 0 {
		delay = s.o.Lockout.MaxDelay
	}
	if err := s.o.Store.SetLockedUntil(ctx, key, now.Add(delay)); err != nil {
		return err
	}
	s.o.Logger.WarnContext(ctx, "sign-in locked after repeated failures", "key_kind", strings.SplitN(key, ":", 2)[0], "failures", over+1, "delay", delay)
	return nil
}

// NewID returns a random identifier with a readable prefix.
func NewID(prefix string) string {
	return prefix + "_" + RandomToken(12)
}

// RandomToken returns n random bytes, hex encoded.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("authn: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Allow counts one use of key and reports whether it stays within limit
// uses; the count is forgotten after window without use. Counters live in
// the database, so replicas share them (requests for help from the sign-in
// page are limited per network this way).
func (s *Service) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	n, err := s.Count(ctx, key, window)
	return n <= limit, err
}

// Count counts one occurrence of key and returns how many there were
// since the count was last idle for window (shared by replicas; the
// cleanup job forgets idle counts).
func (s *Service) Count(ctx context.Context, key string, window time.Duration) (int, error) {
	now := s.o.Now()
	if a, err := s.o.Store.GetAttempt(ctx, key); err == nil && now.Sub(a.LastFailure) > window {
		if err := s.o.Store.ResetAttempts(ctx, key); err != nil {
			return 0, err
		}
	}
	return s.o.Store.RecordFailure(ctx, key, now)
}
