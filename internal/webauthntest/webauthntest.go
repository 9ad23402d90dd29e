// Package webauthntest is a software authenticator for tests: enough of
// one to answer WebAuthn ceremonies the way a security key or passkey does
// (attestation "none", ES256), with knobs to misbehave (another origin or
// RP id, another user handle, a counter that goes backwards).
package webauthntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// Key is one credential on a software authenticator.
type Key struct {
	ID      []byte
	Count   uint32
	Handle  []byte // user handle returned at sign-in (nil: none)
	RPID    string // what it hashes as the RP id
	Origin  string // what the browser reports as the origin
	Synced  bool   // backup-eligible and backed up (a synced passkey)
	NoCount bool   // always sends 0, as many synced passkeys do
	priv    *ecdsa.PrivateKey
}

// New returns a key for rpID, used from origin.
func New(rpID, origin string) *Key {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Key{ID: id, priv: priv, RPID: rpID, Origin: origin}
}

var b64 = base64.RawURLEncoding

func (k *Key) flags(extra byte) byte {
	f := byte(0x01|0x04) | extra // user present, user verified
	if k.Synced {
		f |= 0x08 | 0x10
	}
	return f
}

func (k *Key) authData(flags byte, tail []byte) []byte {
	rp := sha256.Sum256([]byte(k.RPID))
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.Count)
	return append(out, tail...)
}

// Challenge returns the challenge of a creation or request options JSON.
func Challenge(options []byte) (string, error) {
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.PublicKey.Challenge == "" {
		return "", fmt.Errorf("webauthntest: options without a challenge: %v", err)
	}
	return o.PublicKey.Challenge, nil
}

func (k *Key) clientData(typ string, options []byte) ([]byte, error) {
	c, err := Challenge(options)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"type": typ, "challenge": c, "origin": k.Origin, "crossOrigin": false})
}

// Create answers navigator.credentials.create with options (the JSON the
// relying party sent), as the PublicKeyCredential JSON a browser posts.
func (k *Key) Create(options []byte) ([]byte, error) {
	cose, err := cbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         1, XCoord: k.priv.X.FillBytes(make([]byte, 32)), YCoord: k.priv.Y.FillBytes(make([]byte, 32))})
	if err != nil {
		return nil, err
	}
	att := make([]byte, 16) // AAGUID: none
	att = binary.BigEndian.AppendUint16(att, uint16(len(k.ID)))
	att = append(append(att, k.ID...), cose...)
	obj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(k.flags(0x40), att)})
	if err != nil {
		return nil, err
	}
	cd, err := k.clientData("webauthn.create", options)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"id": b64.EncodeToString(k.ID), "rawId": b64.EncodeToString(k.ID), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(cd), "attestationObject": b64.EncodeToString(obj)}})
}

// Get answers navigator.credentials.get with options, counting one use.
func (k *Key) Get(options []byte) ([]byte, error) {
	if !k.NoCount {
		k.Count++
	}
	ad := k.authData(k.flags(0), nil)
	cd, err := k.clientData("webauthn.get", options)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		return nil, err
	}
	resp := map[string]string{"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad), "signature": b64.EncodeToString(sig)}
	if k.Handle != nil {
		resp["userHandle"] = b64.EncodeToString(k.Handle)
	}
	return json.Marshal(map[string]any{"id": b64.EncodeToString(k.ID), "rawId": b64.EncodeToString(k.ID), "type": "public-key", "response": resp})
}
