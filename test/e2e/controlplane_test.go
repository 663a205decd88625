package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/controlplane"
	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/test/rpcpeer"
)

// controlPlane is a running `weft control-plane`.
type controlPlane struct {
	XDS, Admin, Rules string
}

// startControlPlane runs `weft control-plane` on rules (file name ->
// content) with extra flags, and waits until it serves.
func startControlPlane(t *testing.T, rules map[string]string, extra ...string) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	for name, body := range rules {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"control-plane", "--rules", dir, "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--poll", "100ms", "--debounce", "100ms", "--log-level", "debug"}, extra...)
	cmd := exec.Command(weftBin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errBuf syncBuffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if strings.Contains(errBuf.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector fired inside weft control-plane")
		}
		if t.Failed() {
			t.Logf("weft control-plane stderr:\n%s", errBuf.String())
		}
	})
	re := regexp.MustCompile(`xDS on (\S+), admin on (\S+),`)
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
	}()
	select {
	case m := <-found:
		cp := &controlPlane{XDS: m[1], Admin: m[2], Rules: dir}
		waitFor(t, 10*time.Second, "the control plane ready", func() bool {
			code, _ := httpGet("http://" + cp.Admin + "/ready")
			return code == 200
		})
		return cp
	case <-time.After(20 * time.Second):
		t.Fatalf("weft control-plane did not start: %s", errBuf.String())
	}
	return nil
}

// write replaces one rule file.
func (cp *controlPlane) write(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cp.Rules, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) status(t *testing.T) string {
	t.Helper()
	_, body := httpGet("http://" + cp.Admin + "/status")
	return body
}

// cpSidecar starts a weft that takes everything from cp as node id.
func cpSidecar(t *testing.T, cp *controlPlane, id string) *Weft {
	t.Helper()
	b, err := controlplane.SidecarBootstrap(id, cp.XDS, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	return startWeft(t, b)
}

// TestControlPlaneRules: the real weft against the real `weft
// control-plane`: traffic follows the rule files, an edit is applied
// without a restart, a broken file is refused with file:line while the
// last good rules keep serving, and fixing it applies.
func TestControlPlaneRules(t *testing.T) {
	t.Parallel()
	v1, v2 := namedUpstream(t, "reviews-v1"), namedUpstream(t, "reviews-v2")
	egress := freeAddr(t)
	services := fmt.Sprintf(`services:
- name: reviews
  protocol: http
  port: 9080
  endpoints:
  - {address: %s, labels: {version: v1}}
  - {address: %s, labels: {version: v2}}
`, v1.Addr, v2.Addr)
	sidecars := fmt.Sprintf(`sidecars:
- name: productpage
  match: {node_id: "productpage-*"}
  listeners:
  - {name: http_egress, address: %q, protocol: http, services: [reviews]}
`, egress)
	routes := func(rule string) string {
		return "routes:\n- service: reviews\n  rules:\n" + rule
	}
	jasonV2 := `  - name: jason
    match: {headers: [{name: end-user, exact: jason}]}
    destinations: [{subset: {version: v2}}]
`
	allTo := func(v string) string {
		return fmt.Sprintf("  - name: rest\n    destinations: [{subset: {version: %s}}]\n", v)
	}
	cp := startControlPlane(t, map[string]string{"services.yaml": services, "sidecars.yaml": sidecars,
		"routes.yaml": routes(jasonV2 + allTo("v1"))})
	w := cpSidecar(t, cp, "productpage-1")
	call := func(user string) response {
		return get(t, client(), "http://"+egress+"/reviews/1", "Host: reviews:9080", "end-user: "+user)
	}
	if r := call("bob"); r.Status != 200 || r.Body != "reviews-v1" {
		t.Fatalf("bob: %d %q, want reviews-v1", r.Status, r.Body)
	}
	if r := call("jason"); r.Status != 200 || r.Body != "reviews-v2" {
		t.Fatalf("jason: %d %q, want reviews-v2", r.Status, r.Body)
	}

	// An edit: everyone to v2, applied without restarting anything.
	cp.write(t, "routes.yaml", routes(jasonV2+allTo("v2")))
	waitFor(t, 10*time.Second, "bob moved to v2", func() bool { return call("bob").Body == "reviews-v2" })

	// A broken file: refused with file and line, the last good rules stay.
	cp.write(t, "routes.yaml", routes(jasonV2+"  - name: broken\n    destinations: [{subset: {version: v1}, weight: 50}]\n    timeout: soon\n"))
	waitFor(t, 10*time.Second, "the control plane reporting routes.yaml:line", func() bool {
		return regexp.MustCompile(`routes\.yaml:\d+`).MatchString(cp.status(t))
	})
	for i := 0; i < 10; i++ {
		if r := call("bob"); r.Status != 200 || r.Body != "reviews-v2" {
			t.Fatalf("after a broken rule file: %d %q (the last good rules must keep serving)", r.Status, r.Body)
		}
	}
	// Fixed: applies.
	cp.write(t, "routes.yaml", routes(jasonV2+allTo("v1")))
	waitFor(t, 10*time.Second, "bob back on v1", func() bool { return call("bob").Body == "reviews-v1" })
	if dump := configDumpXDS(t, w); !strings.Contains(dump, "http_egress") {
		t.Errorf("/config_dump lacks the listener from the control plane")
	}
}

// TestControlPlaneRegistryFeed: the path of SPEC R2 end to end. A meshed
// provider publishes through its sidecar's SDK API into the registry; the
// control plane watches the registry and turns the instance into EDS
// endpoints; a sidecar configured only by the control plane routes a
// Bolt call to the provider's sidecar and on to the provider. Unpublishing
// removes the endpoint again.
func TestControlPlaneRegistryFeed(t *testing.T) {
	t.Parallel()
	const service = "com.example.cp.Catalog"
	reg := startRegistry(t)
	prov := rpcServe(t, rpcpeer.Bolt, "catalog-provider", 0)
	provSide := startMeshSidecar(t, reg)
	egress := freeAddr(t)
	cp := startControlPlane(t, map[string]string{
		"services.yaml": "services:\n- name: " + service + "\n  protocol: bolt\n",
		"sidecars.yaml": fmt.Sprintf("sidecars:\n- name: callers\n  match: {node_id: \"caller-*\"}\n  listeners:\n  - {name: bolt_egress, address: %q, protocol: bolt}\n", egress),
	}, "--registry-kind", "embedded", "--registry-address", reg)
	cpSidecar(t, cp, "caller-1")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := provSide.sdk.Publish(ctx, sdk.Publication{Service: service, Protocol: "bolt", Port: portOf(t, prov.Addr()),
		Metadata: map[string]string{"version": "1.0"}}); err != nil {
		t.Fatal(err)
	}
	c := rpcDial(t, rpcpeer.Bolt, egress)
	req := &rpcpeer.Request{Service: service, Method: "list", Body: []byte("via the control plane")}
	waitFor(t, 15*time.Second, "a call through the control-plane-configured sidecar", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := c.Call(ctx, req)
		return err == nil && r.Status == rpcpeer.BoltSuccess && r.Headers["x-served-by"] == "catalog-provider"
	})
	if err := provSide.sdk.Unpublish(ctx, service, "bolt"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the endpoint gone after unpublish", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := c.Call(ctx, req)
		return err == nil && r.Status != rpcpeer.BoltSuccess
	})
}
