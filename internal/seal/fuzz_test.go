package seal

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzOpen: the opener never panics on bytes from the database, and it
// opens only what a key of the ring sealed for the same row: any other
// input, including a genuine value with one byte changed or read for
// another row, is ErrOpen.
func FuzzOpen(f *testing.F) {
	ring, _ := New(Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	genuine := ring.Seal([]byte("totp secret"), []byte("row-1"))
	f.Add(genuine, []byte("row-1"))
	f.Add(genuine, []byte("row-2"))
	f.Add(genuine[:len(genuine)-1], []byte("row-1"))
	f.Add([]byte{}, []byte{})
	f.Add([]byte{255}, []byte("row-1"))
	f.Add(append([]byte{2, 'k', '1'}, make([]byte, 40)...), []byte("row-1"))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := ring.Open(sealed, aad)
		if err != nil {
			if !errors.Is(err, ErrOpen) || pt != nil {
				t.Fatalf("failure must be ErrOpen and nothing else: %v %q", err, pt)
			}
			return
		}
		// Forging a GCM tag is out of reach for a fuzzer: whatever opens
		// is a genuine value (the seed's; fuzzing workers seal their own
		// with fresh nonces, so the bytes are not compared) for its row.
		if !bytes.Equal(aad, []byte("row-1")) || string(pt) != "totp secret" {
			t.Fatalf("opened something not sealed by the ring: %x %q -> %q", sealed, aad, pt)
		}
	})
}
