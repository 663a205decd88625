package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/test/rpcpeer"
)

// startRegistry runs `weft registry` on a free port.
func startRegistry(t *testing.T) string {
	t.Helper()
	ln := freeListener(t)
	addr := ln.Addr().String()
	_ = ln.Close()
	return startRegistryOn(t, addr)
}

func startRegistryOn(t *testing.T, addr string) string {
	t.Helper()
	cmd := exec.Command(weftBin, "registry", "--address", addr, "--session-ttl", "2s", "--log-level", "warn")
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
		if t.Failed() {
			t.Logf("weft registry stderr:\n%s", errBuf.String())
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("weft registry did not start: %s", errBuf.String())
	}
	return addr
}

// meshSidecar is a weft with a mesh agent and nothing else.
type meshSidecar struct {
	w       *Weft
	sdk     *sdk.Client
	sdkAddr string
}

func startMeshSidecar(t *testing.T, registryAddr string) *meshSidecar {
	t.Helper()
	return startMeshSidecarWith(t, M{"kind": "embedded", "address": registryAddr, "ttl": "2s"})
}

// startMeshSidecarWith is startMeshSidecar with registry as the agent's
// registry config ({kind: zookeeper, servers: [...]}...).
func startMeshSidecarWith(t *testing.T, registry M) *meshSidecar {
	t.Helper()
	reg, err := json.Marshal(registry) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
bootstrap_extensions:
- name: weft.bootstrap.mesh_agent
  typed_config:
    "@type": type.googleapis.com/xds.type.v3.TypedStruct
    type_url: type.weftmesh.io/weft.bootstrap.mesh_agent.v1.MeshAgent
    value:
      sdk_address: "127.0.0.1:0"
      advertise_ip: 127.0.0.1
      drain_grace: 1s
      registry: %s
      ingress: {bolt: "127.0.0.1:0", dubbo: "127.0.0.1:0"}
      egress: {bolt: "127.0.0.1:0", dubbo: "127.0.0.1:0"}
      metadata: {zone: z1}
`, reg)
	w := startWeft(t, cfg)
	// Port 0 everywhere (a port picked in advance can be taken by a
	// parallel test): /listeners tells where the SDK API is.
	sdkAddr := w.Listener("mesh_sdk")
	return &meshSidecar{w: w, sdk: sdk.New(sdkAddr), sdkAddr: sdkAddr}
}

func waitInstances(t *testing.T, c *sdk.Client, service, protocol string, n int) *sdk.Subscription {
	t.Helper()
	return waitInstancesWithin(t, 10*time.Second, c, service, protocol, n)
}

// waitInstancesWithin subscribes until the subscription has n instances,
// for at most d.
func waitInstancesWithin(t *testing.T, d time.Duration, c *sdk.Client, service, protocol string, n int) *sdk.Subscription {
	t.Helper()
	var last *sdk.Subscription
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		s, err := c.Subscribe(ctx, service, protocol)
		cancel()
		if err == nil && s.Known && len(s.Instances) == n {
			return s
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("subscription to %s never had %d instances: %+v", service, n, last)
	return nil
}

// TestMeshPublishSubscribe: an application publishes through its sidecar,
// which registers its own ingress; another application subscribes through
// its sidecar, gets a local egress address and calls the provider through
// both sidecars. Unpublishing and shutting down deregister first.
func TestMeshPublishSubscribe(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			service := "com.example.mesh." + string(p) + ".Echo"
			prov := rpcServe(t, p, "meshed-provider", 0)
			provSide := startMeshSidecar(t, reg)
			consSide := startMeshSidecar(t, reg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			pub, err := provSide.sdk.Publish(ctx, sdk.Publication{Service: service, Protocol: string(p), Port: portOf(t, prov.Addr()),
				Metadata: map[string]string{"version": "1.0"}})
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Registered || pub.Instance.Address == prov.Addr() || pub.Instance.Metadata["meshed"] != "true" ||
				pub.Instance.Metadata["zone"] != "z1" || pub.Instance.Metadata["version"] != "1.0" {
				t.Fatalf("published %+v: the sidecar must register its own ingress with the metadata", pub)
			}
			sub := waitInstances(t, consSide.sdk, service, string(p), 1)
			if sub.Instances[0].Address != pub.Instance.Address || !strings.HasPrefix(sub.Address, "127.0.0.1:") {
				t.Fatalf("subscription %+v", sub)
			}
			c := rpcDial(t, p, sub.Address)
			req := &rpcpeer.Request{Service: service, Method: "echo", Body: []byte("through the mesh")}
			r := rpcCall(t, c, req)
			if r.Status != okStatus(p) || string(r.Body) != "through the mesh" || r.Headers["x-served-by"] != "meshed-provider" {
				t.Fatalf("call through both sidecars: status %d body %q headers %v", r.Status, r.Body, r.Headers)
			}

			// The admin pages show the agent's listeners and clusters.
			if got := consSide.w.Listener("mesh_egress_" + string(p)); got != sub.Address {
				t.Errorf("/listeners: mesh_egress_%s at %q, want %q", p, got, sub.Address)
			}
			if code, body := consSide.w.Admin("/clusters?format=json"); code != 200 || !strings.Contains(body, "mesh_egress_"+string(p)+"/"+service) {
				t.Errorf("/clusters does not show the subscription's cluster: %d %.300s", code, body)
			}

			// Unpublish: the consumer's sidecar loses the endpoint; calls get
			// the protocol's "no provider" answer, not a hang.
			if err := provSide.sdk.Unpublish(ctx, service, string(p)); err != nil {
				t.Fatal(err)
			}
			waitInstances(t, consSide.sdk, service, string(p), 0)
			if r := rpcCall(t, c, req); r.Status == okStatus(p) {
				t.Errorf("a call after unpublish succeeded")
			}

			// Publish again, then shut the provider's sidecar down: it
			// deregisters before it stops serving.
			if _, err := provSide.sdk.Publish(ctx, sdk.Publication{Service: service, Protocol: string(p), Port: portOf(t, prov.Addr())}); err != nil {
				t.Fatal(err)
			}
			waitInstances(t, consSide.sdk, service, string(p), 1)
			provSide.w.Signal(syscall.SIGTERM)
			waitInstances(t, consSide.sdk, service, string(p), 0)
			if !provSide.w.Wait(10 * time.Second) {
				t.Fatal("the provider's sidecar did not exit")
			}
		})
	}
}

// TestMeshBadInput: the SDK API refuses bad requests with clear errors and
// a port nobody listens on; the registry being down at start delays the
// registration, it does not lose it.
func TestMeshBadInput(t *testing.T) {
	t.Parallel()
	ln := freeListener(t)
	regAddr := ln.Addr().String()
	_ = ln.Close()
	side := startMeshSidecar(t, regAddr) // the registry is not up yet
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dead := freeListener(t)
	deadPort := portOf(t, dead.Addr().String())
	_ = dead.Close()
	var se *sdk.Error
	_, err := side.sdk.Publish(ctx, sdk.Publication{Service: "com.example.Dead", Protocol: "bolt", Port: deadPort})
	if !errors.As(err, &se) || se.Status != http.StatusUnprocessableEntity {
		t.Errorf("publish of a port nobody listens on: %v, want 422", err)
	}
	_, err = side.sdk.Publish(ctx, sdk.Publication{Service: "com.example.X", Protocol: "thrift", Port: 1})
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Message, "thrift") {
		t.Errorf("publish with an unknown protocol: %v, want 400 naming it", err)
	}
	_, err = side.sdk.Subscribe(ctx, "bad/name", "bolt")
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("subscribe with a bad service name: %v, want 400", err)
	}
	body, code := curlCode(t, "-s", "-X", "POST", "-d", `{"service": 1}`, "http://"+side.sdkAddr+"/v1/publish")
	if code != 400 || !strings.Contains(body, "error") {
		t.Errorf("garbage JSON: %d %s", code, body)
	}

	// Registry down: publish is accepted, registered once it is up.
	prov := rpcServe(t, rpcpeer.Bolt, "late", 0)
	pub, err := side.sdk.Publish(ctx, sdk.Publication{Service: "com.example.Late", Protocol: "bolt", Port: portOf(t, prov.Addr())})
	if err != nil || pub.Registered {
		t.Fatalf("publish with the registry down: %+v %v (want accepted, not yet registered)", pub, err)
	}
	startRegistryOn(t, regAddr)
	other := startMeshSidecar(t, regAddr)
	waitInstances(t, other.sdk, "com.example.Late", "bolt", 1)

	// A duplicate publish (an application that retries) changes nothing
	// but the metadata: still one instance.
	for i := 0; i < 3; i++ {
		if _, err := side.sdk.Publish(ctx, sdk.Publication{Service: "com.example.Late", Protocol: "bolt", Port: portOf(t, prov.Addr()),
			Metadata: map[string]string{"version": "2.0"}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := waitInstances(t, other.sdk, "com.example.Late", "bolt", 1)
		if s.Instances[0].Metadata["version"] == "2.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the republished metadata never arrived: %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Thousands of subscriptions from one application.
	for i := 0; i < 2000; i++ {
		if _, err := other.sdk.Subscribe(ctx, fmt.Sprintf("com.example.Many%d", i), "dubbo"); err != nil {
			t.Fatalf("subscription %d: %v", i, err)
		}
	}
	if s := waitInstances(t, other.sdk, "com.example.Late", "bolt", 1); s.Address == "" {
		t.Error("no egress address")
	}
}
