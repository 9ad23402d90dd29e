// Package apidoc builds the OpenAPI 3.1 document of Latchkey's JSON APIs
// from the route tables the admin API and the account portal declare,
// and from the Go types their handlers encode: each route names its
// request and response types, and their schemas are derived from those
// types by reflection (json tags, pointers, omitempty), so the document
// cannot drift from what the handlers write.
package apidoc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Route is one documented operation.
type Route struct {
	Method, Path, Summary, Tag string
	// Request is the JSON body's type (a zero value), or nil without a body.
	Request any
	// Response is the success body's type (a zero value), or nil for 204.
	Response any
	// Status is the success status (200 when zero, 204 without Response).
	Status int
	// Query lists the query parameters, "name: description".
	Query []string
	// Raw says the success body is not JSON (content type and description).
	Raw *Raw
}

// OneOf is a Response that is one of several types.
type OneOf []any

// Raw describes a non-JSON success body.
type Raw struct{ ContentType, Description string }

// Security is how a family of routes authenticates.
type Security struct {
	// PathPrefix selects the routes ("/admin/", "/account/").
	PathPrefix string
	// Requirements are OpenAPI security requirement objects.
	Requirements []map[string][]string
	// Except lists paths under the prefix that need no authentication.
	Except []string
}

// Spec is what Document needs besides the routes.
type Spec struct {
	Title, Version, Description string
	// Schemes are the components.securitySchemes.
	Schemes  map[string]any
	Security []Security
	// StepUps maps "METHOD path" to the step-up a route needs
	// ("admin" or an account action); documented as x-step-up and 401.
	StepUps map[string]string
	// Errors are the error body types, by path prefix.
	Errors map[string]any
}

// Document returns the OpenAPI 3.1 document for routes.
func Document(spec Spec, routes []Route) ([]byte, error) {
	g := &gen{schemas: map[string]any{}, names: map[reflect.Type]string{}}
	paths := map[string]map[string]any{}
	for _, rt := range routes {
		op, err := g.operation(spec, rt)
		if err != nil {
			return nil, fmt.Errorf("apidoc: %s %s: %w", rt.Method, rt.Path, err)
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	var tags []map[string]string
	for _, rt := range routes {
		if !slices.ContainsFunc(tags, func(t map[string]string) bool { return t["name"] == rt.Tag }) {
			tags = append(tags, map[string]string{"name": rt.Tag, "description": "Operations on " + rt.Tag + "."})
		}
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": spec.Title, "version": spec.Version, "description": spec.Description,
			"license": map[string]string{"name": "Proprietary", "identifier": "LicenseRef-Latchkey"}},
		"servers":    []map[string]string{{"url": "/", "description": "the issuer"}},
		"tags":       tags,
		"paths":      paths,
		"components": map[string]any{"securitySchemes": spec.Schemes, "schemas": g.schemas},
	}
	return json.MarshalIndent(doc, "", "  ")
}

type gen struct {
	schemas map[string]any
	names   map[reflect.Type]string
}

func (g *gen) operation(spec Spec, rt Route) (map[string]any, error) {
	id := operationID(rt.Method, rt.Path)
	op := map[string]any{"operationId": id, "summary": rt.Summary, "tags": []string{rt.Tag}}
	var params []map[string]any
	for _, seg := range strings.Split(rt.Path, "/") {
		if strings.HasPrefix(seg, "{") {
			params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
		}
	}
	for _, q := range rt.Query {
		name, desc, _ := strings.Cut(q, ": ")
		params = append(params, map[string]any{"name": name, "in": "query", "required": false, "description": desc, "schema": map[string]string{"type": "string"}})
	}
	if params != nil {
		op["parameters"] = params
	}
	if rt.Request != nil {
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(rt.Request))}}}
	}
	responses := map[string]any{}
	status := rt.Status
	switch {
	case rt.Raw != nil:
		responses[code(status, http.StatusOK)] = map[string]any{"description": rt.Raw.Description,
			"content": map[string]any{rt.Raw.ContentType: map[string]any{"schema": map[string]string{"type": "string"}}}}
	case rt.Response == nil:
		responses[code(status, http.StatusNoContent)] = map[string]any{"description": "Done; no body."}
	default:
		var schema map[string]any
		if alts, ok := rt.Response.(OneOf); ok {
			var one []any
			for _, a := range alts {
				one = append(one, g.schema(reflect.TypeOf(a)))
			}
			schema = map[string]any{"oneOf": one}
		} else {
			schema = g.schema(reflect.TypeOf(rt.Response))
		}
		responses[code(status, http.StatusOK)] = map[string]any{"description": "Success.",
			"content": map[string]any{"application/json": map[string]any{"schema": schema}}}
	}
	var errType any
	for prefix, t := range spec.Errors {
		if strings.HasPrefix(rt.Path, prefix) {
			errType = t
		}
	}
	errBody := map[string]any{"description": "A refusal with a stable machine-readable code; nothing changed."}
	if errType != nil {
		errBody["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(errType))}}
	}
	responses["4XX"] = errBody
	responses["default"] = map[string]any{"description": "Server error or unavailable (503 with Retry-After).",
		"content": errBody["content"]}
	if errType == nil {
		delete(responses["default"].(map[string]any), "content")
	}
	if kind, ok := spec.StepUps[rt.Method+" "+rt.Path]; ok {
		op["x-step-up"] = kind
		desc := "insufficient_user_authentication (RFC 9470): sign in again with the second factor within max_age (WWW-Authenticate names acr_values and max_age)"
		if kind != "admin" {
			desc += `, with authorization_details [{"type":"latchkey_mfa","actions":["` + kind + `"]}] and prompt=login; the step-up is spent by the call`
		}
		r401 := map[string]any{"description": desc}
		if c, ok := errBody["content"]; ok {
			r401["content"] = c
		}
		responses["401"] = r401
	}
	op["responses"] = responses
	op["security"] = []map[string][]string{}
	for _, s := range spec.Security {
		if strings.HasPrefix(rt.Path, s.PathPrefix) && !slices.Contains(s.Except, rt.Path) {
			op["security"] = s.Requirements
		}
	}
	return op, nil
}

func code(status, fallback int) string {
	if status == 0 {
		status = fallback
	}
	return fmt.Sprint(status)
}

// operationID is "get_admin_users_id" for GET /admin/users/{id}.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, seg := range strings.Split(path, "/") {
		seg = strings.Trim(seg, "{}")
		if seg == "" {
			continue
		}
		b.WriteByte('_')
		b.WriteString(strings.NewReplacer("-", "_", ".", "_").Replace(seg))
	}
	return b.String()
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// schema returns t's JSON Schema, registering named structs as components.
func (g *gen) schema(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.schema(t.Elem())
		if _, ref := s["$ref"]; ref {
			return map[string]any{"oneOf": []any{s, map[string]string{"type": "null"}}}
		}
		switch typ := s["type"].(type) {
		case string:
			s["type"] = []string{typ, "null"}
		case nil:
			// any JSON value already includes null
		}
		return s
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		// A nil slice is encoded as null.
		return map[string]any{"type": []string{"array", "null"}, "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": []string{"object", "null"}, "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{"description": "any JSON value"}
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		name, ok := g.names[t]
		if !ok {
			name = g.nameOf(t)
			g.names[t] = name
			g.schemas[name] = map[string]any{} // placeholder against recursion
			g.schemas[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{"description": "any JSON value"}
}

// nameOf names a component after the type, with its package when two
// packages declare the same name.
func (g *gen) nameOf(t reflect.Type) string {
	pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
	for other := range g.names {
		if other.Name() == t.Name() && other != t {
			return pkg + "." + t.Name()
		}
	}
	if _, taken := g.schemas[t.Name()]; taken {
		return pkg + "." + t.Name()
	}
	return t.Name()
}

// object is a struct's schema: its exported fields by json tag;
// embedded structs are flattened; fields without omitempty/omitzero
// are required.
func (g *gen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.schema(f.Type)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	walk(t)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	return s
}
