package authn

import (
	"context"
	"strings"
	"testing"
)

// FuzzParsePHC: the stored-hash decoder never panics, and whatever it
// accepts stays inside the bounds that keep one verification cheap enough,
// even for a row written by an intruder.
func FuzzParsePHC(f *testing.F) {
	h := NewPasswordHasher(Argon2Params{MemoryKiB: 8, Time: 1, Threads: 1}, 0)
	good := h.Hash("pw")
	f.Add(good)
	f.Add(strings.Replace(good, "m=8,", "m=4194304,", 1))
	f.Add(strings.Replace(good, "p=1", "p=255", 1))
	f.Add("$argon2id$v=19$m=8,t=1,p=1$" + strings.Repeat("A", 100) + "$" + strings.Repeat("A", 4000))
	f.Add("$argon2id$v=19$m=8,t=1,p=1$\x00$\u202e")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, sum, err := parsePHC(s)
		if err != nil {
			return
		}
		if p.MemoryKiB > maxHashMemoryKiB || p.Time > 16 || p.Threads > 16 || len(salt) > 64 || len(sum) > 64 || len(sum) < 16 || len(salt) < 8 {
			t.Fatalf("accepted an out-of-bounds hash %q: %+v salt %d sum %d", s, p, len(salt), len(sum))
		}
	})
}

func TestParsePHCBounds(t *testing.T) {
	h := NewPasswordHasher(Argon2Params{MemoryKiB: 8, Time: 1, Threads: 1}, 0)
	good := h.Hash("pw")
	if ok, _ := h.Verify(context.Background(), good, "pw"); !ok {
		t.Fatal("an honest hash does not verify")
	}
	if _, _, _, err := parsePHC(good); err != nil {
		t.Fatalf("an honest hash: %v", err)
	}
	for name, bad := range map[string]string{
		"4 GiB of memory": strings.Replace(good, "m=8,", "m=4194304,", 1),
		"255 lanes":       strings.Replace(good, "p=1", "p=255", 1),
		"3 KB key":        good + strings.Repeat("A", 4000),
	} {
		if _, _, _, err := parsePHC(bad); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
