// Package seal encrypts small secrets at rest (TOTP secrets, signing keys)
// with AES-256-GCM under a keyring of named keys, so keys can rotate: new
// data is sealed with the current key, old data opens with the key whose id
// it carries. Callers bind each ciphertext to its row with additional data,
// so a sealed value copied into another row does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrOpen means the ciphertext is corrupt, was sealed for other additional
// data, or names an unknown key.
var ErrOpen = errors.New("seal: cannot open")

// Key is one named 32-byte key.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring seals with its first key and opens with any.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// New builds a keyring; keys[0] is current.
func New(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no keys")
	}
	k := &Keyring{current: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, key := range keys {
		if len(key.Secret) != 32 || key.ID == "" || len(key.ID) > 255 {
			return nil, fmt.Errorf("seal: key %q must have an id and 32 bytes", key.ID)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.aeads[key.ID] = gcm
	}
	return k, nil
}

// Seal encrypts plaintext bound to aad. Layout: len(id) | id | nonce | ct.
func (k *Keyring) Seal(plaintext, aad []byte) []byte {
	gcm := k.aeads[k.current]
	out := make([]byte, 0, 1+len(k.current)+gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	out = append(out, byte(len(k.current)))
	out = append(out, k.current...)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: no randomness: " + err.Error())
	}
	out = append(out, nonce...)
	return gcm.Seal(out, nonce, plaintext, aad)
}

// Open decrypts what Seal produced for the same aad.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1 {
		return nil, ErrOpen
	}
	n := int(sealed[0])
	if len(sealed) < 1+n {
		return nil, ErrOpen
	}
	gcm, ok := k.aeads[string(sealed[1:1+n])]
	if !ok {
		return nil, ErrOpen
	}
	rest := sealed[1+n:]
	if len(rest) < gcm.NonceSize()+gcm.Overhead() {
		return nil, ErrOpen
	}
	pt, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Derive returns a 32-byte key for one purpose from a master secret
// (HMAC-SHA256 as a PRF), so one configured secret never serves two uses.
func Derive(master []byte, purpose string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("latchkey/" + purpose))
	return m.Sum(nil)
}
