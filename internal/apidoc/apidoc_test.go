package apidoc

import (
	"encoding/json"
	"testing"
	"time"
)

type inner struct {
	At time.Time `json:"at"`
}

type sample struct {
	Name     string            `json:"name"`
	Note     string            `json:"note,omitempty"`
	Count    *int              `json:"count"`
	Tags     []string          `json:"tags"`
	Labels   map[string]string `json:"labels,omitzero"`
	Inner    inner             `json:"inner"`
	Optional *inner            `json:"optional,omitempty"`
	Self     []sample          `json:"self,omitempty"` // recursion
	Raw      json.RawMessage   `json:"raw"`
	hidden   string
	Skipped  string `json:"-"`
}

// TestSchemasFollowTheTypes: the generated schema is the type's JSON
// shape: names from tags, required unless omitempty/omitzero or a pointer,
// nil slices and maps and pointers nullable, named structs as components
// (recursion included), unexported and "-" fields left out.
func TestSchemasFollowTheTypes(t *testing.T) {
	raw, err := Document(Spec{Title: "t", Version: "1"}, []Route{{Method: "GET", Path: "/x/{id}", Summary: "s", Tag: "x", Response: sample{}, Query: []string{"q: query"}}})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]struct {
				Required   []string                  `json:"required"`
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
		Paths map[string]map[string]struct {
			OperationID string           `json:"operationId"`
			Parameters  []map[string]any `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%v %s", err, raw)
	}
	s := doc.Components.Schemas["sample"]
	want := []string{"inner", "name", "raw", "tags"}
	if len(s.Required) != len(want) {
		t.Fatalf("required %v, want %v", s.Required, want)
	}
	for i := range want {
		if s.Required[i] != want[i] {
			t.Fatalf("required %v, want %v", s.Required, want)
		}
	}
	for _, gone := range []string{"hidden", "Skipped"} {
		if _, ok := s.Properties[gone]; ok {
			t.Errorf("%s is documented", gone)
		}
	}
	if s.Properties["self"]["items"].(map[string]any)["$ref"] != "#/components/schemas/sample" {
		t.Errorf("recursion: %v", s.Properties["self"])
	}
	if typ, _ := s.Properties["count"]["type"].([]any); len(typ) != 2 || typ[1] != "null" {
		t.Errorf("a pointer is nullable: %v", s.Properties["count"])
	}
	if at := doc.Components.Schemas["inner"].Properties["at"]; at["format"] != "date-time" {
		t.Errorf("time: %v", at)
	}
	op := doc.Paths["/x/{id}"]["get"]
	if op.OperationID != "get_x_id" || len(op.Parameters) != 2 {
		t.Errorf("operation: %+v", op)
	}
}
