package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestAPIResponsesAreTyped: the admin and account APIs answer with named
// Go types (the ones the OpenAPI document is generated from), never a
// map literal the document cannot know about.
func TestAPIResponsesAreTyped(t *testing.T) {
	answer := regexp.MustCompile(`(?:writeJSON|WriteJSON|\.answer)\(w,[^\n]*map\[string\]any\{`)
	for _, dir := range []string{"../../admin", "../../selfservice"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range answer.FindAll(src, -1) {
				t.Errorf("%s answers with a map literal, not a documented type: %s", f, m)
			}
		}
	}
}
