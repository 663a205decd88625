package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/weftmesh/weft/internal/registry/registrytest/servers"
	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/test/rpcpeer"
)

// The mesh agent with the real registries (servers started per test, see
// internal/registry/registrytest/servers): ZooKeeper shared with plain
// Dubbo applications in Dubbo's layout, and etcd through an outage.

// rawZK is a plain ZooKeeper client, as a Dubbo application has.
func rawZK(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(servers.Quiet{}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// zkProviders lists the provider nodes of iface as a Dubbo consumer does
// (none when the directory does not exist).
func zkProviders(t *testing.T, c *zk.Conn, iface string) []string {
	t.Helper()
	names, _, err := c.Children("/dubbo/" + iface + "/providers")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("children of /dubbo/%s/providers: %v", iface, err)
	}
	return names
}

func meshZK(z *servers.ZooKeeper) M {
	return M{"kind": "zookeeper", "servers": []any{z.Addr()}, "ttl": "2s"}
}

// A plain Dubbo provider registers itself in ZooKeeper (an ephemeral node
// named after its encoded URL, under persistent parents, as Dubbo's
// ZookeeperRegistry writes it); a meshed consumer subscribes through its
// sidecar and calls it through the egress. When the node goes, the
// subscription empties.
func TestMeshZooKeeperPlainProvider(t *testing.T) {
	t.Parallel()
	z := servers.StartZooKeeper(t)
	const iface = "com.example.zk.PlainEcho"
	prov := rpcServe(t, rpcpeer.Dubbo, "plain-dubbo", 0)

	raw := rawZK(t, z.Addr())
	dir := "/dubbo/" + iface + "/providers"
	for _, p := range []string{"/dubbo", "/dubbo/" + iface, dir} {
		if _, err := raw.Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatalf("create %s: %v", p, err)
		}
	}
	u := "dubbo://" + prov.Addr() + "/" + iface + "?anyhost=true&application=plain&interface=" + iface +
		"&methods=echo&side=provider&version=1.0.0"
	node := dir + "/" + url.QueryEscape(u)
	if _, err := raw.Create(node, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s: %v", node, err)
	}

	side := startMeshSidecarWith(t, meshZK(z))
	sub := waitInstances(t, side.sdk, iface, "dubbo", 1)
	in := sub.Instances[0]
	if in.Address != prov.Addr() || in.Protocol != "dubbo" || in.Metadata["application"] != "plain" ||
		in.Metadata["version"] != "1.0.0" || in.Metadata["meshed"] != "" {
		t.Errorf("the plain provider as the sidecar sees it: %+v", in)
	}
	c := rpcDial(t, rpcpeer.Dubbo, sub.Address)
	req := &rpcpeer.Request{Service: iface, Method: "echo", Version: "1.0.0", Body: []byte("to a plain provider")}
	r := rpcCall(t, c, req)
	if r.Status != rpcpeer.DubboOK || string(r.Body) != "to a plain provider" || r.Headers["x-served-by"] != "plain-dubbo" {
		t.Fatalf("call through the egress: status %d body %q headers %v", r.Status, r.Body, r.Headers)
	}

	// The Dubbo application unregisters.
	if err := raw.Delete(node, -1); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, side.sdk, iface, "dubbo", 0)
	if r := rpcCall(t, c, req); r.Status == rpcpeer.DubboOK {
		t.Errorf("a call with no provider left succeeded: %q", r.Body)
	}
}

// A meshed provider published through its sidecar is, in ZooKeeper, one
// provider node that a plain Dubbo consumer reads as a provider URL (the
// sidecar's ingress) and calls directly. The sidecar's shutdown removes
// it.
func TestMeshZooKeeperPlainConsumer(t *testing.T) {
	t.Parallel()
	z := servers.StartZooKeeper(t)
	const iface = "com.example.zk.MeshedEcho"
	prov := rpcServe(t, rpcpeer.Dubbo, "meshed-provider", 0)
	side := startMeshSidecarWith(t, meshZK(z))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := side.sdk.Publish(ctx, sdk.Publication{Service: iface, Protocol: "dubbo", Port: portOf(t, prov.Addr()),
		Metadata: map[string]string{"version": "1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Registered || pub.Instance.Address == prov.Addr() {
		t.Fatalf("published %+v: want registered, at the sidecar's ingress", pub)
	}

	raw := rawZK(t, z.Addr())
	names := zkProviders(t, raw, iface)
	if len(names) != 1 {
		t.Fatalf("provider nodes of %s: %q, want one", iface, names)
	}
	dir := "/dubbo/" + iface + "/providers"
	if _, st, err := raw.Exists(dir + "/" + names[0]); err != nil || st.EphemeralOwner == 0 {
		t.Errorf("the provider node is not ephemeral: %+v %v", st, err)
	}
	s, err := url.QueryUnescape(names[0])
	if err != nil {
		t.Fatalf("node name %q: %v", names[0], err)
	}
	pu, err := url.Parse(s)
	if err != nil {
		t.Fatalf("node URL %q: %v", s, err)
	}
	t.Logf("provider node URL: %s", s)
	q := pu.Query()
	if pu.Scheme != "dubbo" || pu.Host != pub.Instance.Address || pu.Path != "/"+iface ||
		q.Get("interface") != iface || q.Get("side") != "provider" || q.Get("version") != "1.0.0" || q.Get("meshed") != "true" {
		t.Errorf("provider URL %s: want dubbo://%s/%s with interface, side=provider, version, meshed", s, pub.Instance.Address, iface)
	}

	// A plain Dubbo consumer calls the address in the URL.
	c := rpcDial(t, rpcpeer.Dubbo, pu.Host)
	r := rpcCall(t, c, &rpcpeer.Request{Service: iface, Method: "echo", Version: q.Get("version"), Body: []byte("from a plain consumer")})
	if r.Status != rpcpeer.DubboOK || string(r.Body) != "from a plain consumer" || r.Headers["x-served-by"] != "meshed-provider" {
		t.Fatalf("plain call to the sidecar's ingress: status %d body %q headers %v", r.Status, r.Body, r.Headers)
	}

	// The sidecar stops: it deregisters first.
	side.w.Signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the provider node to go", func() bool { return len(zkProviders(t, raw, iface)) == 0 })
	if !side.w.Wait(10 * time.Second) {
		t.Fatal("the sidecar did not exit")
	}
}

// Two sidecars on etcd: a service published on one is called through the
// other. While etcd is down, calls keep working (the consumer's sidecar
// keeps the endpoints it knows, past the lease TTL) and a publish is
// accepted; once etcd is back, that publish and a new one are seen.
func TestMeshEtcdOutage(t *testing.T) {
	t.Parallel()
	e := servers.StartEtcd(t)
	reg := M{"kind": "etcd", "endpoints": []any{e.Endpoint()}, "ttl": "2s"}
	provSide, consSide := startMeshSidecarWith(t, reg), startMeshSidecarWith(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	publish := func(service, name string) *sdk.Published {
		t.Helper()
		prov := rpcServe(t, rpcpeer.Bolt, name, 0)
		pub, err := provSide.sdk.Publish(ctx, sdk.Publication{Service: service, Protocol: "bolt", Port: portOf(t, prov.Addr())})
		if err != nil {
			t.Fatalf("publish %s: %v", service, err)
		}
		return pub
	}
	call := func(c *rpcpeer.Client, service string) (*rpcpeer.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return c.Call(ctx, &rpcpeer.Request{Service: service, Method: "echo", Body: []byte("over etcd")})
	}
	// reaches waits until service is listed through the consumer's sidecar
	// and answers from the provider named name.
	reaches := func(service, name string, d time.Duration) {
		t.Helper()
		sub := waitInstancesWithin(t, d, consSide.sdk, service, "bolt", 1)
		c := rpcDial(t, rpcpeer.Bolt, sub.Address)
		var r *rpcpeer.Response
		var err error
		waitFor(t, 5*time.Second, service+" answering through the sidecars", func() bool {
			r, err = call(c, service)
			return err == nil && r.Status == rpcpeer.BoltSuccess
		})
		if string(r.Body) != "over etcd" || r.Headers["x-served-by"] != name {
			t.Fatalf("%s answered %q, served by %q", service, r.Body, r.Headers["x-served-by"])
		}
	}

	const svc = "com.example.etcd.Echo"
	if pub := publish(svc, "etcd-provider"); !pub.Registered {
		t.Fatalf("published %+v: not registered", pub)
	}
	reaches(svc, "etcd-provider", 10*time.Second)
	sub := waitInstances(t, consSide.sdk, svc, "bolt", 1)
	c := rpcDial(t, rpcpeer.Bolt, sub.Address)

	// The outage: calls go on, from the endpoints the sidecar knows.
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r, err := call(c, svc)
			if err == nil && r.Status != rpcpeer.BoltSuccess {
				err = errors.New("status " + string(r.Body))
			}
			if err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
				continue
			}
			ok.Add(1)
		}
	}()
	e.Stop()
	down := time.Now()
	// Accepted while etcd is down, registered when it is back.
	if pub := publish("com.example.etcd.During", "during-outage"); pub.Registered {
		t.Errorf("published %+v: registered with etcd down", pub)
	}
	time.Sleep(time.Until(down.Add(5 * time.Second))) // past the 2s lease TTL
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || ok.Load() < 20 {
		t.Fatalf("calls during the etcd outage: %d ok, %d failed (last: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	if s := waitInstances(t, consSide.sdk, svc, "bolt", 1); !s.Known {
		t.Errorf("subscription during the outage: %+v", s)
	}
	t.Logf("etcd down for %v: %d calls, none failed", time.Since(down).Round(time.Millisecond), ok.Load())

	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	// The provider's sidecar may not have reconnected yet: registered or
	// not, the publish is seen.
	pub := publish("com.example.etcd.After", "after-outage")
	t.Logf("published right after the restart: registered %v", pub.Registered)
	reaches("com.example.etcd.After", "after-outage", 30*time.Second)
	reaches("com.example.etcd.During", "during-outage", 30*time.Second)
	reaches(svc, "etcd-provider", 30*time.Second)
	if r, err := call(c, svc); err != nil || r.Status != rpcpeer.BoltSuccess {
		t.Errorf("the first service after the outage: %v %v", r, err)
	}
	if !strings.HasPrefix(sub.Address, "127.0.0.1:") {
		t.Errorf("egress address %q", sub.Address)
	}
	// The status the application sees catches up: registered now.
	waitFor(t, 30*time.Second, "the publish made during the outage reported registered", func() bool {
		code, body := httpGet("http://" + provSide.sdkAddr + "/v1/status")
		var st struct {
			Published []struct {
				Service    string `json:"service"`
				Registered bool   `json:"registered"`
			} `json:"published"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		for _, p := range st.Published {
			if p.Service == "com.example.etcd.During" {
				return p.Registered
			}
		}
		return false
	})
}
