package authn

import (
	"strings"
	"testing"
)

func TestUsernamePRECIS(t *testing.T) {
	good := map[string]string{"alice": "alice", "Alice": "alice", "ａｌｉｃｅ": "alice", "zoë": "zoë", "иван": "иван", "o'neil": "o'neil"}
	for in, want := range good {
		if got, err := Username(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"аlice", "alice\u200b", "ali\u202ece", "al ice", "", "a\x00b", "\u0301", strings.Repeat("a", 300)} {
		if got, err := Username(in); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
	if Skeleton("аое") != "aoe" || Skeleton("alice") != "alice" {
		t.Fatal("skeleton")
	}
}

func TestDisplayText(t *testing.T) {
	if got, err := DisplayText("  Zoe\u0308  ", 100); err != nil || got != "Zoë" {
		t.Fatalf("NFC: %q %v", got, err)
	}
	for _, in := range []string{"Bob\u202e", "Bob\u200b", "Bob\x07", strings.Repeat("x", 101)} {
		if _, err := DisplayText(in, 100); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// FuzzUsername: whatever is accepted is stable (normalising again changes
// nothing), has no invisible or control characters and one script.
func FuzzUsername(f *testing.F) {
	for _, s := range []string{"alice", "ａｌｉｃｅ", "аlice", "zoë", "ali\u202ece"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := Username(in)
		if err != nil {
			return
		}
		if again, err := Username(u); err != nil || again != u {
			t.Fatalf("%q → %q → %q %v", in, u, again, err)
		}
		if mixedScripts(u) {
			t.Fatalf("%q mixes scripts", u)
		}
	})
}
