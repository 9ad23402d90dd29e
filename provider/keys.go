package provider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/seal"
	"github.com/latchkey/latchkey/store"
)

// KeyOptions configures the key manager.
type KeyOptions struct {
	Store     store.Store
	Keyring   *seal.Keyring
	Algorithm string // RS256 or ES256
	// Overlap is how long a rotated-out key stays published: at least the
	// longest lifetime of a token it signed.
	Overlap time.Duration
	// Refresh is how often keys are re-read, so a rotation on one replica
	// reaches the others.
	Refresh time.Duration
	Now     func() time.Time
}

// KeyManager holds the signing keys in memory, loaded from the store where
// their private halves are sealed. The newest key without an end signs; every
// key not yet past its end is published in the JWKS.
type KeyManager struct {
	o KeyOptions

	mu       sync.RWMutex
	signing  *signingKey
	public   map[string]jose.JSONWebKey
	jwks     []byte
	loadedAt time.Time
}

type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	key    crypto.Signer
	signer jose.Signer
}

// NewKeyManager loads the keys, creating the first one if there is none.
func NewKeyManager(ctx context.Context, o KeyOptions) (*KeyManager, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = 30 * time.Second
	}
	if o.Algorithm == "" {
		o.Algorithm = "RS256"
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
		if len(keys) > 0 {
			return nil
		}
		_, err = km.create(ctx, q)
		return err
	}); err != nil {
		return nil, fmt.Errorf("provider: initial signing key: %w", err)
	}
	if err := km.reload(ctx); err != nil {
		return nil, err
	}
	return km, nil
}

func (km *KeyManager) create(ctx context.Context, q store.Queries) (string, error) {
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
		Public: pubJSON, CreatedAt: km.o.Now().UTC()}
	return kid, q.CreateKey(ctx, k)
}

// Rotate creates a new signing key and schedules the current ones to leave
// the JWKS after the overlap, so tokens they signed still verify until they
// expire.
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
		end := km.o.Now().UTC().Add(km.o.Overlap)
		for _, k := range keys {
			if k.NotAfter.IsZero() {
				if err := q.SetKeyNotAfter(ctx, k.ID, end); err != nil {
					return err
				}
			}
		}
		if kid, err = km.create(ctx, q); err != nil || record == nil {
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
		if signing != nil || !k.NotAfter.IsZero() {
			continue
		}
		if km.signing != nil && km.signing.kid == k.ID {
			signing = km.signing
			continue
		}
		if signing, err = km.open(k); err != nil {
			return err
		}
	}
	if signing == nil {
		return errors.New("provider: no active signing key")
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return err
	}
	km.mu.Lock()
	km.signing, km.public, km.jwks, km.loadedAt = signing, public, jwks, now
	km.mu.Unlock()
	return nil
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
	return &signingKey{kid: k.ID, alg: alg, key: priv, signer: signer}, nil
}

// maybeReload re-reads keys when the cache is older than the refresh period.
// It runs on the signing path, so it only takes the lock to check.
func (km *KeyManager) maybeReload(ctx context.Context) {
	km.mu.RLock()
	stale := km.o.Now().Sub(km.loadedAt) > km.o.Refresh
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

// Algorithm returns the signing algorithm of the current key.
func (km *KeyManager) Algorithm() string { return km.o.Algorithm }

// KeyInfo describes a key for listing.
type KeyInfo struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Signing   bool      `json:"signing"`
}

// List returns every stored key, newest first.
func (km *KeyManager) List(ctx context.Context) ([]KeyInfo, error) {
	keys, err := km.o.Store.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	cur := km.current(ctx)
	out := make([]KeyInfo, len(keys))
	for i, k := range keys {
		out[i] = KeyInfo{ID: k.ID, Algorithm: k.Algorithm, CreatedAt: k.CreatedAt, NotAfter: k.NotAfter, Signing: cur != nil && cur.kid == k.ID}
	}
	return out, nil
}
