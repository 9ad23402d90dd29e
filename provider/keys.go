package provider

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/store"
)

// KeyOptions configures the key manager.
type KeyOptions struct {
	Store     store.Store
	Keyring   *seal.Keyring
	Algorithm string // RS256 or ES256; empty: ES256 for a new store, else the current key's
	// Overlap is how long a rotated-out key stays published: at least the
	// longest lifetime of a token it signed.
	Overlap time.Duration
	// Refresh is how often keys are re-read, so a rotation on one replica
	// reaches the others.
	Refresh time.Duration
	// PromoteAfter is how long a new key is published before it signs, so
	// every replica serves it first (default: two refresh periods).
	PromoteAfter time.Duration
	Now          func() time.Time
}

// KeyManager holds the signing keys in memory, loaded from the store where
// their private halves are sealed. Every key not yet past its end is
// published in the JWKS; the newest key whose start has come signs. A new
// key starts PromoteAfter after it is created — published as the "next" key
// first, as Keycloak and Hydra do — so a relying party that fetches the JWKS
// from any replica already has it when the first token it signs arrives.
type KeyManager struct {
	o KeyOptions

	mu       sync.RWMutex
	signing  *signingKey
	public   map[string]jose.JSONWebKey
	algs     []string // of the published keys, the signing key's first
	jwks     []byte
	loadedAt time.Time
	promote  time.Time // when the next key starts signing; zero: none pending
}

type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	key    crypto.Signer
	signer jose.Signer
	// atSigner signs access tokens: typ "at+jwt" (RFC 9068 §2.1), so a
	// resource server cannot take an ID token for one.
	atSigner jose.Signer
}

// NewKeyManager loads the keys, creating the first one if there is none.
func NewKeyManager(ctx context.Context, o KeyOptions) (*KeyManager, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = 30 * time.Second
	}
	if o.PromoteAfter == 0 {
		o.PromoteAfter = 2 * o.Refresh
	}
	km := &KeyManager{o: o}
	if err := km.o.Store.InTx(ctx, func(q store.Queries) error {
		// The lock makes replicas starting together create one key, not one each.
		if err := q.Lock(ctx, "signing-keys"); err != nil {
			return err
		}
		keys, err := q.ListKeys(ctx)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			// Nothing was ever signed: the first key signs at once. A new
			// deployment signs with ES256 unless told otherwise: as
			// compatible as RS256 for relying parties, and a JWT access
			// token costs a fraction of an RSA signature (BENCHMARKS.md).
			km.o.Algorithm = cmp.Or(km.o.Algorithm, "ES256")
			_, err = km.create(ctx, q, time.Time{})
			return err
		}
		newest := slices.MaxFunc(keys, func(a, b store.SigningKey) int { return startOf(a).Compare(startOf(b)) })
		// Unset: keep the algorithm the deployment already signs with.
		km.o.Algorithm = cmp.Or(km.o.Algorithm, newest.Algorithm)
		if newest.Algorithm != km.o.Algorithm {
			// keys.algorithm changed: the new algorithm arrives as the
			// next key, like any rotation, and never ahead of the JWKS.
			kid, err := km.rotate(ctx, q, keys)
			if err != nil {
				return err
			}
			_, err = audit.Append(ctx, q, audit.Event{Type: audit.KeyRotated, ActorType: audit.ActorSystem, ActorID: "config",
				Details: map[string]any{"kid": kid, "alg": km.o.Algorithm, "reason": "keys.algorithm changed from " + newest.Algorithm}})
			return err
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("provider: initial signing key: %w", err)
	}
	if err := km.reload(ctx); err != nil {
		return nil, err
	}
	return km, nil
}

func (km *KeyManager) create(ctx context.Context, q store.Queries, notBefore time.Time) (string, error) {
	var priv crypto.Signer
	var err error
	switch km.o.Algorithm {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return "", fmt.Errorf("provider: unsupported signing algorithm %q", km.o.Algorithm)
	}
	if err != nil {
		return "", err
	}
	kid := authn.RandomToken(8)
	jwk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: km.o.Algorithm, Use: "sig"}
	privJSON, err := jwk.MarshalJSON()
	if err != nil {
		return "", err
	}
	pubJSON, err := jwk.Public().MarshalJSON()
	if err != nil {
		return "", err
	}
	k := store.SigningKey{ID: kid, Algorithm: km.o.Algorithm, Private: km.o.Keyring.Seal(privJSON, []byte("signing-key:"+kid)),
		Public: pubJSON, CreatedAt: km.o.Now().UTC(), NotBefore: notBefore}
	return kid, q.CreateKey(ctx, k)
}

// rotate creates the next key, signing from PromoteAfter on, and ends the
// publication of the keys before it an overlap after that: they sign until
// the next key starts, and tokens they signed verify until they expire.
func (km *KeyManager) rotate(ctx context.Context, q store.Queries, keys []store.SigningKey) (string, error) {
	start := km.o.Now().UTC().Add(km.o.PromoteAfter)
	end := start.Add(km.o.Overlap)
	for _, k := range keys {
		if k.NotAfter.IsZero() {
			if err := q.SetKeyNotAfter(ctx, k.ID, end); err != nil {
				return "", err
			}
		}
	}
	return km.create(ctx, q, start)
}

// Rotate publishes a new key that starts signing PromoteAfter from now, and
// schedules the current ones to leave the JWKS an overlap after that, so
// tokens they signed still verify until they expire.
func (km *KeyManager) Rotate(ctx context.Context) (string, error) {
	return km.RotateWith(ctx, nil)
}

// RotateWith is Rotate that also calls record, with the new key id, inside
// the rotation's transaction (for its audit event).
func (km *KeyManager) RotateWith(ctx context.Context, record func(ctx context.Context, q store.Queries, kid string) error) (string, error) {
	var kid string
	err := km.o.Store.InTx(ctx, func(q store.Queries) error {
		if err := q.Lock(ctx, "signing-keys"); err != nil {
			return err
		}
		keys, err := q.ListKeys(ctx)
		if err != nil {
			return err
		}
		if kid, err = km.rotate(ctx, q, keys); err != nil || record == nil {
			return err
		}
		return record(ctx, q, kid)
	})
	if err != nil {
		return "", fmt.Errorf("provider: rotate keys: %w", err)
	}
	return kid, km.reload(ctx)
}

func (km *KeyManager) reload(ctx context.Context) error {
	keys, err := km.o.Store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("provider: load keys: %w", err)
	}
	now := km.o.Now()
	public := map[string]jose.JSONWebKey{}
	var set jose.JSONWebKeySet
	var signing *signingKey
	var signer *store.SigningKey
	var promote time.Time
	algs := []string{}
	for _, k := range keys { // newest first
		if !k.NotAfter.IsZero() && now.After(k.NotAfter) {
			continue
		}
		var pub jose.JSONWebKey
		if err := pub.UnmarshalJSON(k.Public); err != nil {
			return fmt.Errorf("provider: key %s: %w", k.ID, err)
		}
		public[k.ID] = pub
		set.Keys = append(set.Keys, pub)
		if now.Before(k.NotBefore) {
			if promote.IsZero() || k.NotBefore.Before(promote) {
				promote = k.NotBefore
			}
			continue
		}
		// The key that started last signs (a key without a start started
		// when it was created).
		if start := startOf(k); signer == nil || start.After(startOf(*signer)) {
			signer = &k
		}
	}
	if signer == nil {
		return errors.New("provider: no active signing key")
	}
	if km.signing != nil && km.signing.kid == signer.ID {
		signing = km.signing
	} else if signing, err = km.open(*signer); err != nil {
		return err
	}
	algs = append(algs, string(signing.alg))
	for _, k := range set.Keys {
		if !slices.Contains(algs, k.Algorithm) {
			algs = append(algs, k.Algorithm)
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return err
	}
	km.mu.Lock()
	km.signing, km.public, km.algs, km.jwks, km.loadedAt, km.promote = signing, public, algs, jwks, now, promote
	km.mu.Unlock()
	return nil
}

func startOf(k store.SigningKey) time.Time {
	if k.NotBefore.IsZero() {
		return k.CreatedAt
	}
	return k.NotBefore
}

func (km *KeyManager) open(k store.SigningKey) (*signingKey, error) {
	raw, err := km.o.Keyring.Open(k.Private, []byte("signing-key:"+k.ID))
	if err != nil {
		return nil, fmt.Errorf("provider: open key %s: %w", k.ID, err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("provider: key %s: %w", k.ID, err)
	}
	priv, ok := jwk.Key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("provider: key %s is not a private key", k.ID)
	}
	alg := jose.SignatureAlgorithm(k.Algorithm)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	if err != nil {
		return nil, err
	}
	atSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", k.ID))
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: k.ID, alg: alg, key: priv, signer: signer, atSigner: atSigner}, nil
}

// maybeReload re-reads keys when the cache is older than the refresh period
// or the next key's start has come (every replica switches at that time, not
// a refresh later). It runs on the signing path, so it only takes the lock
// to check.
func (km *KeyManager) maybeReload(ctx context.Context) {
	now := km.o.Now()
	km.mu.RLock()
	stale := now.Sub(km.loadedAt) > km.o.Refresh || (!km.promote.IsZero() && !now.Before(km.promote))
	km.mu.RUnlock()
	if stale {
		_ = km.reload(ctx) // on failure keep serving the keys we have
	}
}

func (km *KeyManager) current(ctx context.Context) *signingKey {
	km.maybeReload(ctx)
	km.mu.RLock()
	defer km.mu.RUnlock()
	return km.signing
}

// JWKS returns the public key set as JSON.
func (km *KeyManager) JWKS(ctx context.Context) []byte {
	km.maybeReload(ctx)
	km.mu.RLock()
	defer km.mu.RUnlock()
	return km.jwks
}

// PublicKey returns the published key with kid.
func (km *KeyManager) PublicKey(ctx context.Context, kid string) (any, bool) {
	km.mu.RLock()
	k, ok := km.public[kid]
	km.mu.RUnlock()
	if !ok {
		// A key rotated in on another replica: look again before refusing.
		if err := km.reload(ctx); err != nil {
			return nil, false
		}
		km.mu.RLock()
		k, ok = km.public[kid]
		km.mu.RUnlock()
	}
	return k.Key, ok
}

// SignsFrom returns when key kid starts (or started) signing; zero if
// unknown.
func (km *KeyManager) SignsFrom(ctx context.Context, kid string) time.Time {
	keys, err := km.o.Store.ListKeys(ctx)
	if err != nil {
		return time.Time{}
	}
	for _, k := range keys {
		if k.ID == kid {
			return startOf(k)
		}
	}
	return time.Time{}
}

// Algorithms returns the algorithms of the published keys, the signing
// key's first: what discovery advertises, since tokens in circulation and
// those about to be signed use them.
func (km *KeyManager) Algorithms(ctx context.Context) []string {
	km.maybeReload(ctx)
	km.mu.RLock()
	defer km.mu.RUnlock()
	return slices.Clone(km.algs)
}

// KeyInfo describes a key for listing. State is "next" (published, signs
// from NotBefore), "signing", or "retiring" (published until NotAfter so
// tokens it signed still verify).
type KeyInfo struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Signing   bool      `json:"signing"`
	State     string    `json:"state"`
}

// List returns every stored key, newest first.
func (km *KeyManager) List(ctx context.Context) ([]KeyInfo, error) {
	keys, err := km.o.Store.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	cur := km.current(ctx)
	out := make([]KeyInfo, len(keys))
	now := km.o.Now()
	for i, k := range keys {
		ki := KeyInfo{ID: k.ID, Algorithm: k.Algorithm, CreatedAt: k.CreatedAt, NotBefore: k.NotBefore, NotAfter: k.NotAfter, Signing: cur != nil && cur.kid == k.ID}
		switch {
		case ki.Signing:
			ki.State = "signing"
		case now.Before(k.NotBefore):
			ki.State = "next"
		case !k.NotAfter.IsZero() && now.After(k.NotAfter):
			ki.State = "expired"
		default:
			ki.State = "retiring"
		}
		out[i] = ki
	}
	return out, nil
}
