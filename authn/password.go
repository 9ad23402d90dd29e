package authn

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

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
// It also bounds how many sign-ins may wait for a turn (Admit): beyond that
// a flood is refused at once (ErrBusy) rather than queued without limit, so
// a sign-in that is admitted is served within a known time.
type PasswordHasher struct {
	Params Argon2Params
	turns  *turns        // running hashes
	admit  chan struct{} // running + waiting verifications
	// suspect holds the places of sign-ins from addresses with recent
	// failures: at most half, so a flood from failing addresses leaves
	// the other half to everyone else.
	suspect chan struct{}
	dummy   string
	avg     atomic.Int64 // moving average of a verification, in ns
	hashes  atomic.Int64 // verifications run
}

// Hashes returns how many verifications have run (for metrics and tests).
func (h *PasswordHasher) Hashes() int64 { return h.hashes.Load() }

// ErrBusy is returned when more verifications wait than the queue holds;
// callers answer 503 with Retry-After.
var ErrBusy = errors.New("authn: too many sign-ins at once")

// NewPasswordHasher returns a hasher with the given parameters that runs at
// most concurrency hashes at once. 0 means half the CPUs (at least one):
// a burst of sign-ins then cannot take every core from token requests, and
// on a small machine the hashes' memory stays bounded. At most queue
// verifications wait beyond those running (0: 32 per running hash).
func NewPasswordHasher(p Argon2Params, concurrency int) *PasswordHasher {
	return NewPasswordHasherQueue(p, concurrency, 0)
}

// NewPasswordHasherQueue is NewPasswordHasher with the queue length.
func NewPasswordHasherQueue(p Argon2Params, concurrency, queue int) *PasswordHasher {
	if concurrency <= 0 {
		concurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if queue <= 0 {
		queue = 32 * concurrency
	}
	h := &PasswordHasher{Params: p, turns: newTurns(concurrency), admit: make(chan struct{}, concurrency+queue),
		suspect: make(chan struct{}, max(1, (concurrency+queue)/2))}
	start := time.Now()
	h.dummy = h.Hash("latchkey dummy password for unknown users")
	h.avg.Store(int64(time.Since(start)))
	return h
}

// Hash returns the PHC string of password. It waits for a turn however
// long the queue (it serves administrators, not the sign-in page).
func (h *PasswordHasher) Hash(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic("authn: no randomness: " + err.Error())
	}
	_ = h.turns.acquire(context.Background(), false)
	sum := argon2.IDKey([]byte(password), salt, h.Params.Time, h.Params.MemoryKiB, h.Params.Threads, 32)
	h.turns.release()
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.Params.MemoryKiB, h.Params.Time, h.Params.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// Admit reserves a place among the running and waiting verifications, or
// fails with ErrBusy when the queue is full. A suspect caller (its address
// failed recently) may take only half the places, so a flood from failing
// addresses cannot shut everyone else out. The sign-in path asks before it
// counts an attempt, so a refused flood changes no counter; release the
// place when done.
func (h *PasswordHasher) Admit(suspect bool) (release func(), err error) {
	if suspect {
		select {
		case h.suspect <- struct{}{}:
		default:
			return nil, ErrBusy
		}
	}
	select {
	case h.admit <- struct{}{}:
		return func() {
			<-h.admit
			if suspect {
				<-h.suspect
			}
		}, nil
	default:
		if suspect {
			<-h.suspect
		}
		return nil, ErrBusy
	}
}

// derive runs one hash once given a turn, or returns the context's error
// when the caller gave up waiting (a closed connection costs no hash).
func (h *PasswordHasher) derive(ctx context.Context, password string, salt []byte, p Argon2Params, n uint32) ([]byte, error) {
	if err := h.turns.acquire(ctx, isSuspect(ctx)); err != nil {
		return nil, err
	}
	defer h.turns.release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.hashes.Add(1)
	start := time.Now()
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, n)
	d := int64(time.Since(start))
	h.avg.Store(h.avg.Load() + (d-h.avg.Load())/8)
	return sum, nil
}

var errBadHash = errors.New("authn: malformed password hash")

// maxHashMemoryKiB caps the memory a stored hash may ask for (256 MiB).
const maxHashMemoryKiB = 1 << 18

// Verify reports whether password matches the PHC string. A malformed or
// empty hash never matches, and still costs one hash so callers cannot be
// timed apart. The error is the context's.
func (h *PasswordHasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, h.VerifyDummy(ctx, password)
	}
	got, err := h.derive(ctx, password, salt, p, uint32(len(want)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// VerifyDummy spends the same work as a real verification, for unknown
// users, so response time does not reveal whether an account exists.
func (h *PasswordHasher) VerifyDummy(ctx context.Context, password string) error {
	p, salt, want, _ := parsePHC(h.dummy)
	_, err := h.derive(ctx, password, salt, p, uint32(len(want)))
	return err
}

// Equalise waits about as long as a verification takes, without hashing or
// taking a turn: a refusal decided before the hash (a locked account or
// address) is answered in the time a verification would have taken, at
// no CPU cost.
func (h *PasswordHasher) Equalise(ctx context.Context) {
	t := time.NewTimer(time.Duration(h.avg.Load()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
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
