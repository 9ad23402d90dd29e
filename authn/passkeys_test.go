package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"github.com/latchkey/latchkey/authn"
	"github.com/latchkey/latchkey/internal/testdb"
	"github.com/latchkey/latchkey/store"
)

// softKey is a software authenticator: enough of one to answer WebAuthn
// ceremonies the way a security key does (attestation "none", ES256).
type softKey struct {
	id      []byte
	priv    *ecdsa.PrivateKey
	count   uint32
	handle  []byte // user handle it returns at sign-in
	rpID    string // what it hashes as the RP id
	origin  string // what the browser reports as the origin
	synced  bool   // a backup-eligible (synced) passkey
	noCount bool   // authenticators without a counter always send 0
}

func newSoftKey(t *testing.T, rpID, origin string) *softKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &softKey{id: id, priv: priv, rpID: rpID, origin: origin}
}

var b64 = base64.RawURLEncoding

func (k *softKey) flags(extra byte) byte {
	f := byte(0x01|0x04) | extra // user present, user verified
	if k.synced {
		f |= 0x08 | 0x10 // backup eligible, backed up
	}
	return f
}

func (k *softKey) authData(flags byte, tail []byte) []byte {
	rp := sha256.Sum256([]byte(k.rpID))
	out := append(rp[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.count)
	return append(out, tail...)
}

func challengeOf(t *testing.T, options []byte) string {
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("options without a challenge: %v %s", err, options)
	}
	return o.PublicKey.Challenge
}

func (k *softKey) clientData(t *testing.T, typ string, options []byte) []byte {
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": challengeOf(t, options), "origin": k.origin, "crossOrigin": false})
	return cd
}

// create answers navigator.credentials.create.
func (k *softKey) create(t *testing.T, options []byte) []byte {
	cose, err := cbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         1, XCoord: k.priv.X.FillBytes(make([]byte, 32)), YCoord: k.priv.Y.FillBytes(make([]byte, 32))})
	if err != nil {
		t.Fatal(err)
	}
	att := make([]byte, 16) // AAGUID: none
	att = binary.BigEndian.AppendUint16(att, uint16(len(k.id)))
	att = append(append(att, k.id...), cose...)
	obj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(k.flags(0x40), att)})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(k.clientData(t, "webauthn.create", options)), "attestationObject": b64.EncodeToString(obj)}})
	return out
}

// get answers navigator.credentials.get.
func (k *softKey) get(t *testing.T, options []byte) []byte {
	if !k.noCount {
		k.count++
	}
	ad := k.authData(k.flags(0), nil)
	cd := k.clientData(t, "webauthn.get", options)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	resp := map[string]string{"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad), "signature": b64.EncodeToString(sig)}
	if k.handle != nil {
		resp["userHandle"] = b64.EncodeToString(k.handle)
	}
	out, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key", "response": resp})
	return out
}

type passkeyFixture struct {
	st     store.Store
	pk     *authn.Passkeys
	now    time.Time
	u, v   store.User
	key    *softKey
	stored store.WebAuthnCredential
}

const issuer = "https://id.example.com"

func newPasskeyFixture(t *testing.T) *passkeyFixture {
	ctx := context.Background()
	f := &passkeyFixture{st: testdb.SQLite(t), now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	var err error
	if f.pk, err = authn.NewPasskeys(issuer, "Latchkey", func() time.Time { return f.now }); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"wanda", "victor"} {
		u := store.User{ID: authn.NewID("user"), Username: name, CreatedAt: f.now, UpdatedAt: f.now}
		if err := f.st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			f.u = u
		} else {
			f.v = u
		}
	}
	f.key = newSoftKey(t, "id.example.com", issuer)
	id, opts, err := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
	if err != nil {
		t.Fatal(err)
	}
	if f.stored, err = f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-1", "YubiKey", f.key.create(t, opts)); err != nil {
		t.Fatalf("registration: %v", err)
	}
	if err := f.st.CreateWebAuthnCredential(ctx, f.stored); err != nil {
		t.Fatal(err)
	}
	f.key.handle = []byte(f.u.ID)
	return f
}

// TestPasskeySecondFactor: a registered security key signs in; the
// counter moves forward; user verification and hardware are reported.
func TestPasskeySecondFactor(t *testing.T) {
	ctx := context.Background()
	f := newPasskeyFixture(t)
	if f.stored.UserID != f.u.ID || f.stored.Name != "YubiKey" || len(f.stored.CredentialID) != 16 {
		t.Fatalf("registered: %+v", f.stored)
	}
	for i := range 2 {
		id, opts, err := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
		if err != nil {
			t.Fatal(err)
		}
		use, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
		if err != nil {
			t.Fatalf("sign-in %d: %v", i+1, err)
		}
		if use.Credential.ID != f.stored.ID || !use.UserVerified || !use.Hardware || use.Credential.SignCount != f.key.count {
			t.Fatalf("use: %+v", use)
		}
	}
	cs, _ := f.st.ListWebAuthnCredentials(ctx, f.u.ID)
	if cs[0].SignCount != 2 || !cs[0].LastUsedAt.Equal(f.now) {
		t.Fatalf("stored after use: %+v", cs[0])
	}
	// Registering the same authenticator again is refused up front: it is
	// in the exclusion list.
	_, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
	if !json.Valid(opts) || !containsB64(opts, f.key.id) {
		t.Fatalf("existing credential not excluded: %s", opts)
	}
}

func containsB64(b, id []byte) bool {
	return json.Valid(b) && len(id) > 0 && stringsContains(string(b), b64.EncodeToString(id))
}

func stringsContains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestPasskeyCeremonyChecks: what the library leaves to its caller —
// challenge bound to its session and user, single use, expiry; origin and
// RP id; the user handle; a counter that goes backwards. Each is refused
// with ErrPasskey, and a refusal spends the challenge.
func TestPasskeyCeremonyChecks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, f *passkeyFixture) error
	}{
		{"answer replayed", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			answer := f.key.get(t, opts)
			if _, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer); err != nil {
				t.Fatal(err)
			}
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer)
			return err
		}},
		{"challenge of another session", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-2", f.key.get(t, opts))
			return err
		}},
		{"challenge of another user", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.v, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"registration challenge answered as a sign-in", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"expired challenge", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.now = f.now.Add(5*time.Minute + time.Second)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another origin", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.origin = "https://id.example.com.evil.test"
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another RP id", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.rpID = "example.com"
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"user handle of another account", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			f.key.handle = []byte(f.v.ID)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"another user's credential", func(t *testing.T, f *passkeyFixture) error {
			// Victor registers the same kind of key; Wanda's sign-in
			// answered with it must not pass.
			other := newSoftKey(t, "id.example.com", issuer)
			rid, ropts, _ := f.pk.BeginRegistration(ctx, f.st, f.v, "s-v")
			c, err := f.pk.FinishRegistration(ctx, f.st, f.v, rid, "s-v", "V", other.create(t, ropts))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.st.CreateWebAuthnCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err = f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", other.get(t, opts))
			return err
		}},
		{"cloned authenticator (counter goes backwards)", func(t *testing.T, f *passkeyFixture) error {
			for range 3 {
				id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
				if _, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts)); err != nil {
					t.Fatal(err)
				}
			}
			f.key.count = 1 // the clone's counter
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", f.key.get(t, opts))
			return err
		}},
		{"tampered signature", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			var a map[string]any
			_ = json.Unmarshal(f.key.get(t, opts), &a)
			resp := a["response"].(map[string]any)
			sig, _ := b64.DecodeString(resp["signature"].(string))
			sig[len(sig)-1] ^= 1
			resp["signature"] = b64.EncodeToString(sig)
			answer, _ := json.Marshal(a)
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", answer)
			return err
		}},
		{"garbage answer", func(t *testing.T, f *passkeyFixture) error {
			id, _, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow-1")
			_, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow-1", []byte(`{"id":"x","response":{}}`))
			return err
		}},
		{"registration for another session", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
			_, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-2", "X", newSoftKey(t, "id.example.com", issuer).create(t, opts))
			return err
		}},
		{"registration from another origin", func(t *testing.T, f *passkeyFixture) error {
			id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "session-1")
			_, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "session-1", "X", newSoftKey(t, "id.example.com", "https://evil.test").create(t, opts))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPasskeyFixture(t)
			err := tc.run(t, f)
			t.Log(err)
			if !errors.Is(err, authn.ErrPasskey) {
				t.Fatalf("want ErrPasskey, got %v", err)
			}
		})
	}
}

// TestPasskeyWithoutCounter: authenticators that always send 0 (many
// synced passkeys) keep working; they report as not hardware-bound.
func TestPasskeyWithoutCounter(t *testing.T) {
	ctx := context.Background()
	f := &passkeyFixture{}
	*f = *newPasskeyFixture(t)
	k := newSoftKey(t, "id.example.com", issuer)
	k.synced, k.noCount, k.handle = true, true, []byte(f.u.ID)
	id, opts, _ := f.pk.BeginRegistration(ctx, f.st, f.u, "s")
	c, err := f.pk.FinishRegistration(ctx, f.st, f.u, id, "s", "Phone", k.create(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateWebAuthnCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		id, opts, _ := f.pk.BeginLogin(ctx, f.st, f.u, "flow")
		use, err := f.pk.FinishLogin(ctx, f.st, f.u, id, "flow", k.get(t, opts))
		if err != nil || use.Hardware || use.Credential.ID != c.ID {
			t.Fatalf("synced passkey without a counter: %+v %v", use, err)
		}
	}
}
