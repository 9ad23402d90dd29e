package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"gopkg.in/yaml.v3"
)

// need returns the path of tool, or skips the test; under CI=true a
// missing tool fails it (scripts/test.sh installs them).
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", tool, err)
		}
		t.Skipf("%s not installed", tool)
	}
	return p
}

// TestReleaseBuildAndSystemdUnit builds the binary the way the Dockerfile
// does (scripts/release.sh -o, static, version stamped), checks the stamp
// and that it runs without cgo, then verifies the systemd unit with
// systemd-analyze against that binary.
func TestReleaseBuildAndSystemdUnit(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "latchkey")
	build := exec.Command("../scripts/release.sh", "-o", bin)
	build.Env = append(os.Environ(), "VERSION=v9.9.9-test", "COMMIT=0123abcd", "DATE=2026-12-02T00:00:00Z")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("release build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "latchkey v9.9.9-test (commit 0123abcd, built 2026-12-02T00:00:00Z") {
		t.Fatalf("version of the release build: %v %q", err, out)
	}
	if file, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(file), "statically linked") {
		t.Errorf("the release binary is not static: %s", file)
	}

	analyze := need(t, "systemd-analyze")
	unit, err := os.ReadFile("systemd/latchkey.service")
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "latchkey.service")
	if err := os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/local/bin/latchkey"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(analyze, "verify", local).CombinedOutput()
	// Containers without a running systemd warn about the manager; what
	// matters is that nothing in the unit itself is reported.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "latchkey.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
	if err != nil && strings.Contains(string(out), "latchkey.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

// TestHelmChart renders the chart's templates with its values (the subset
// of Helm's language they use: .Values and .Release) and reads the
// objects: the Deployment probes /health/alive and /health/ready, runs as
// non-root on a read-only root, takes its configuration from the Secret,
// and the Service selects its pods.
func TestHelmChart(t *testing.T) {
	var values map[string]any
	raw, err := os.ReadFile("helm/latchkey/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"Values": values, "Release": map[string]any{"Name": "idp"}}
	objects := map[string]map[string]any{}
	paths, _ := filepath.Glob("helm/latchkey/templates/*.yaml")
	for _, p := range paths {
		tpl, err := template.New(filepath.Base(p)).Option("missingkey=error").ParseFiles(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var out bytes.Buffer
		if err := tpl.Execute(&out, data); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		dec := yaml.NewDecoder(&out)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s renders invalid YAML: %v", p, err)
			}
			objects[obj["kind"].(string)] = obj
		}
	}
	get := func(v any, path ...any) any {
		for _, k := range path {
			switch k := k.(type) {
			case string:
				v = v.(map[string]any)[k]
			case int:
				v = v.([]any)[k]
			}
		}
		return v
	}
	dep, svc := objects["Deployment"], objects["Service"]
	if dep == nil || svc == nil {
		t.Fatalf("want a Deployment and a Service, got %v", objects)
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	checks := map[string][2]any{
		"liveness path":   {get(c, "livenessProbe", "httpGet", "path"), "/health/alive"},
		"readiness path":  {get(c, "readinessProbe", "httpGet", "path"), "/health/ready"},
		"non-root":        {get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot"), true},
		"read-only root":  {get(c, "securityContext", "readOnlyRootFilesystem"), true},
		"no escalation":   {get(c, "securityContext", "allowPrivilegeEscalation"), false},
		"config secret":   {get(dep, "spec", "template", "spec", "volumes", 0, "secret", "secretName"), values["configSecret"]},
		"config argument": {get(c, "args", 2), "/etc/latchkey/latchkey.yaml"},
		"config mount":    {get(c, "volumeMounts", 0, "mountPath"), "/etc/latchkey"},
		"image":           {get(c, "image"), "ghcr.io/latchkey/latchkey:dev"},
		"service port":    {get(svc, "spec", "ports", 0, "targetPort"), get(c, "ports", 0, "name")},
		"selector": {get(svc, "spec", "selector", "app.kubernetes.io/instance"),
			get(dep, "spec", "template", "metadata", "labels", "app.kubernetes.io/instance")},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s: got %v, want %v", name, c[0], c[1])
		}
	}
}

// TestDockerfileAndCompose: the image builds with the release script on
// the Go version go.mod names, ends on a distroless base as a non-root
// user; compose runs it on PostgreSQL in production mode.
func TestDockerfileAndCompose(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, _ := os.ReadFile("../go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(gomod)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllSubmatch(df, -1)
	if len(froms) != 2 || string(froms[0][1]) != "golang:"+string(goVersion[1])+"-bookworm" || !strings.HasPrefix(string(froms[1][1]), "gcr.io/distroless/static") {
		t.Fatalf("stages: %q (go.mod: go %s)", froms, goVersion[1])
	}
	for _, want := range []string{"scripts/release.sh -o /out/latchkey", "\nUSER 65532:65532\n", `ENTRYPOINT ["/usr/local/bin/latchkey"]`} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       string            `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			ReadOnly    bool              `yaml:"read_only"`
			CapDrop     []string          `yaml:"cap_drop"`
		} `yaml:"services"`
	}
	raw, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	lk := compose.Services["latchkey"]
	if lk.Build != "." || lk.Environment["LATCHKEY_MODE"] != "production" || !strings.Contains(lk.Environment["LATCHKEY_DATABASE_DSN"], "@postgres:5432/") ||
		!lk.ReadOnly || len(lk.CapDrop) != 1 || !strings.HasPrefix(compose.Services["postgres"].Image, "postgres:") {
		t.Fatalf("compose: %+v", compose.Services)
	}
}
