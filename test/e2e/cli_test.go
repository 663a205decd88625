package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runWeft runs the weft binary with args and returns its combined output
// and exit code.
func runWeft(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, weftBin, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("weft %v: %v", args, err)
	}
	return string(out), 0
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	out, code := runWeft(t, "version")
	if code != 0 || !regexp.MustCompile(`^weft \S+\n$`).MatchString(out) {
		t.Errorf("weft version: exit %d, output %q", code, out)
	}
}

func TestCLIValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("a")})}, staticCluster("a", 8080)))
	out, code := runWeft(t, "validate", "-c", good)
	if code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("validate good config: exit %d: %s", code, out)
	}

	example, err := filepath.Abs("../../examples/http/front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out, code := runWeft(t, "validate", "-c", example); code != 0 {
		t.Errorf("validate %s: exit %d: %s", example, code, out)
	}

	// A route naming a missing cluster is refused with its field path.
	bad := write("bad.yaml", bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("missing")})}, staticCluster("a", 8080)))
	out, code = runWeft(t, "validate", "-c", bad)
	if code == 0 || !strings.Contains(out, `unknown cluster "missing"`) || !strings.Contains(out, "static_resources.listeners[0]") {
		t.Errorf("validate bad config: exit %d: %s", code, out)
	}
	// start refuses it too, without binding anything.
	out, code = runWeft(t, "start", "-c", bad, "--admin-address", "-")
	if code == 0 || !strings.Contains(out, `unknown cluster "missing"`) {
		t.Errorf("start with a bad config: exit %d: %s", code, out)
	}
	if out, code := runWeft(t, "validate", "-c", filepath.Join(dir, "nope.yaml")); code == 0 {
		t.Errorf("validate a missing file: exit 0: %s", out)
	}
}

// TestStartPortTaken: when a port of the config is taken after a listener
// was bound (here the admin port), weft exits with the error instead of
// hanging while it closes what it had bound (a regression).
func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	taken := freeListener(t)
	up := freeListener(t)
	cfg := fmt.Sprintf(`
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
%s`, portOf(t, taken.Addr().String()), strings.SplitN(simpleHTTPConfig(portOf(t, up.Addr().String()), "", ""), "\n", 3)[2])
	path := filepath.Join(t.TempDir(), "weft.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := runWeft(t, "start", "-c", path)
	if code <= 0 || !strings.Contains(out, "address already in use") || time.Since(start) > 10*time.Second {
		t.Fatalf("weft start with the admin port taken: exit %d after %v, output:\n%s", code, time.Since(start), out)
	}
}

// TestValidateMeshAgent: `weft validate` checks the mesh agent's config
// with field paths, and refuses unknown bootstrap extensions by name.
func TestValidateMeshAgent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ ext, want string }{
		{`{name: weft.bootstrap.mesh_agent, typed_config: {"@type": type.googleapis.com/xds.type.v3.TypedStruct, type_url: type.weftmesh.io/weft.bootstrap.mesh_agent.v1.MeshAgent, value: {registry: {kind: consul}, egress: {bolt: "127.0.0.1:0"}}}}`,
			`bootstrap_extensions[0].typed_config.registry.kind: unknown registry "consul"`},
		{`{name: weft.bootstrap.mesh_agent, typed_config: {"@type": type.googleapis.com/xds.type.v3.TypedStruct, type_url: type.weftmesh.io/weft.bootstrap.mesh_agent.v1.MeshAgent, value: {registry: {address: "127.0.0.1:1"}, egress: {thrift: "127.0.0.1:0"}}}}`,
			`egress.thrift: unknown protocol "thrift"`},
		{`{name: acme.bootstrap.thing, typed_config: {"@type": type.googleapis.com/acme.Thing, x: 1}}`,
			`unknown extension "acme.bootstrap.thing"`},
	} {
		path := filepath.Join(dir, "weft.yaml")
		cfg := "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\nbootstrap_extensions:\n- " + tc.ext + "\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runWeft(t, "validate", "-c", path)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("validate %s: exit %d, output:\n%s\nwant %q", tc.ext, code, out, tc.want)
		}
	}
}
