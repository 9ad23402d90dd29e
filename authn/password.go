package authn

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are argon2id cost parameters.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultArgon2 is one of OWASP's equivalent argon2id minimums (9 MiB,
// 4 passes, 1 lane): the same work as 19 MiB × 2 passes at half the memory,
// which keeps a login burst inside the server's memory budget.
var DefaultArgon2 = Argon2Params{MemoryKiB: 9 * 1024, Time: 4, Threads: 1}

// PasswordHasher hashes and verifies passwords with argon2id. It bounds how
// many hashes run at once: more than the cores can run would only wait while
// each holds its memory, so a login burst would cost memory, not gain speed.
type PasswordHasher struct {
	Params Argon2Params
	sem    chan struct{}
	dummy  string
}

// NewPasswordHasher returns a hasher with the given parameters that runs at
// most concurrency hashes at once. 0 means half the CPUs (at least one):
// a burst of sign-ins then cannot take every core from token requests, and
// on a small machine the hashes' memory stays bounded.
func NewPasswordHasher(p Argon2Params, concurrency int) *PasswordHasher {
	if concurrency <= 0 {
		concurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	h := &PasswordHasher{Params: p, sem: make(chan struct{}, concurrency)}
	h.dummy = h.Hash("latchkey dummy password for unknown users")
	return h
}

// Hash returns the PHC string of password.
func (h *PasswordHasher) Hash(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic("authn: no randomness: " + err.Error())
	}
	sum := h.derive(password, salt, h.Params, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.Params.MemoryKiB, h.Params.Time, h.Params.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(sum))
}

func (h *PasswordHasher) derive(password string, salt []byte, p Argon2Params, n uint32) []byte {
	h.sem <- struct{}{}
	defer func() { <-h.sem }()
	return argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, n)
}

var errBadHash = errors.New("authn: malformed password hash")

// maxHashMemoryKiB caps the memory a stored hash may ask for (256 MiB).
const maxHashMemoryKiB = 1 << 18

// Verify reports whether password matches the PHC string. A malformed or
// empty hash never matches, and still costs one hash so callers cannot be
// timed apart.
func (h *PasswordHasher) Verify(encoded, password string) bool {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		h.VerifyDummy(password)
		return false
	}
	got := h.derive(password, salt, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// VerifyDummy spends the same work as a real verification, for unknown
// users, so response time does not reveal whether an account exists.
func (h *PasswordHasher) VerifyDummy(password string) {
	p, salt, want, _ := parsePHC(h.dummy)
	_ = h.derive(password, salt, p, uint32(len(want)))
}

func parsePHC(s string) (Argon2Params, []byte, []byte, error) {
	parts := strings.Split(s, "$")
	var p Argon2Params
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadHash
	}
	// The bounds are what an honest hash needs with room to grow; a row
	// edited by someone with database access must not make one sign-in
	// allocate gigabytes or derive a megabyte-long key.
	if p.MemoryKiB < 8 || p.MemoryKiB > maxHashMemoryKiB || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
		return p, nil, nil, errBadHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	sum, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(salt) > 64 || len(sum) < 16 || len(sum) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, sum, nil
}
