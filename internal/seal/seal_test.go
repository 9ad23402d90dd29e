package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	k1 := Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}
	k2 := Key{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}
	old, _ := New(k1)
	ct := old.Seal([]byte("secret"), []byte("row-1"))
	if bytes.Contains(ct, []byte("secret")) {
		t.Fatal("plaintext visible in ciphertext")
	}
	rotated, _ := New(k2, k1)
	pt, err := rotated.Open(ct, []byte("row-1"))
	if err != nil || string(pt) != "secret" {
		t.Fatalf("old key must still open: %v %q", err, pt)
	}
	if _, err := rotated.Open(ct, []byte("row-2")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other row's aad must not open: %v", err)
	}
	onlyNew, _ := New(k2)
	if _, err := onlyNew.Open(ct, []byte("row-1")); !errors.Is(err, ErrOpen) {
		t.Fatalf("unknown key must not open: %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := rotated.Open(ct, []byte("row-1")); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered ciphertext must not open: %v", err)
	}
	for _, bad := range [][]byte{nil, {5}, {2, 'k', '1'}} {
		if _, err := rotated.Open(bad, nil); !errors.Is(err, ErrOpen) {
			t.Fatalf("short input %v: %v", bad, err)
		}
	}
}
