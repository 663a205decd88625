package zk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/registrytest"
	"github.com/weftmesh/weft/internal/registry/registrytest/servers"
)

const testSession = 2 * time.Second

// testLogger logs into a buffer shown if the test fails (not t.Log: the
// client may log after the test ends).
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var b logBuffer
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("WEFT_ZK_TEST_LOGS") != "" {
			t.Logf("client log:\n%s", b.tail(32<<10))
		}
	})
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newClient(t *testing.T, addr string) *Registry {
	t.Helper()
	log := testLogger(t)
	r, err := New(Options{Servers: []string{addr}, SessionTimeout: testSession, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestConformance(t *testing.T) {
	srv := sharedServer(t)
	registrytest.Run(t, registrytest.Backend{
		New: func(t *testing.T) registry.Registry { return newClient(t, srv.Addr()) },
		Crash: func(t *testing.T, r registry.Registry) {
			r.(*Registry).cut(true)
		},
		// The server expires a session within a tick after its timeout.
		Expiry: testSession + 2*time.Second,
		Outage: func(t *testing.T) func() {
			srv.Stop()
			var once sync.Once
			restart := func() {
				once.Do(func() {
					if err := srv.Start(); err != nil {
						t.Fatal(err)
					}
				})
			}
			t.Cleanup(restart) // even if the test stops before restarting
			return restart
		},
	})
}

// rawClient is a plain ZooKeeper client, as a Dubbo application would use.
func rawClient(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(servers.Quiet{}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func mkdirs(t *testing.T, c *zk.Conn, dir string) {
	t.Helper()
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	for i := range parts {
		p := "/" + strings.Join(parts[:i+1], "/")
		if _, err := c.Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatalf("create %s: %v", p, err)
		}
	}
}

// watchRec records what Watch reports.
type watchRec struct {
	mu    sync.Mutex
	lists [][]registry.Instance
	ret   chan error
}

func startWatch(t *testing.T, r *Registry, service string) *watchRec {
	t.Helper()
	w := &watchRec{ret: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		w.ret <- r.Watch(ctx, service, func(l []registry.Instance) {
			w.mu.Lock()
			w.lists = append(w.lists, l)
			w.mu.Unlock()
		})
	}()
	return w
}

func (w *watchRec) calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lists)
}

func (w *watchRec) all() [][]registry.Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]registry.Instance(nil), w.lists...)
}

func (w *watchRec) waitFor(t *testing.T, d time.Duration, what string, ok func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		var last []registry.Instance
		seen := len(w.lists) > 0
		if seen {
			last = w.lists[len(w.lists)-1]
		}
		w.mu.Unlock()
		if seen && ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last list: %+v", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func uniq(name string) string {
	return fmt.Sprintf("com.weft.zk%d.%s", time.Now().UnixNano(), name)
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A provider registered by a Dubbo application (an ephemeral node named
// after its encoded URL) is reported with its protocol, address and
// parameters; its going away too.
func TestDubboProviderSeen(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.Addr())
	for _, svc := range []string{uniq("EchoService"), uniq("Outer$Inner")} {
		t.Run(svc, func(t *testing.T) {
			// Dubbo names the directory URL.encode(interface): "$" is %24.
			dir := "/dubbo/" + strings.ReplaceAll(svc, "$", "%24") + "/providers"
			mkdirs(t, raw, dir)
			u := "dubbo://127.0.0.1:20880/" + svc + "?anyhost=true&application=demo&dubbo=2.0.2&interface=" + svc +
				"&methods=echo,ping&side=provider&timestamp=1700000000000&version=1.0.0&group=g1"
			if _, err := raw.Create(dir+"/"+url.QueryEscape(u), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, srv.Addr())
			w := startWatch(t, c, svc)
			l := w.waitFor(t, 5*time.Second, "the Dubbo provider", func(l []registry.Instance) bool { return len(l) == 1 })
			got := l[0]
			if got.Service != svc || got.Protocol != "dubbo" || got.Address != "127.0.0.1:20880" {
				t.Errorf("instance: %+v", got)
			}
			want := map[string]string{
				"version": "1.0.0", "group": "g1", "application": "demo", "methods": "echo,ping",
				"side": "provider", "interface": svc, "dubbo": "2.0.2", "anyhost": "true", "timestamp": "1700000000000",
			}
			if len(got.Metadata) != len(want) {
				t.Errorf("metadata: got %v, want %v", got.Metadata, want)
			}
			for k, v := range want {
				if got.Metadata[k] != v {
					t.Errorf("metadata[%q] = %q, want %q", k, got.Metadata[k], v)
				}
			}
			// The Dubbo application goes away.
			if err := raw.Delete(dir+"/"+url.QueryEscape(u), -1); err != nil {
				t.Fatal(err)
			}
			w.waitFor(t, 5*time.Second, "no provider", func(l []registry.Instance) bool { return len(l) == 0 })
		})
	}
}

// An instance registered by Weft is a node whose decoded name a Dubbo
// consumer accepts as a provider URL.
func TestWeftInstanceIsDubboURL(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.Addr())
	r := newClient(t, srv.Addr())
	for _, tc := range []struct {
		protocol string
		md       map[string]string
	}{
		{"dubbo", map[string]string{"version": "1.0.0", "group": "g1", "meshed": "true", "methods": "echo,ping", "weight": "100", "zone": "z1"}},
		{"bolt", map[string]string{"version": "2.0", "tls": "true", "application": "mine"}},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			svc := uniq("Echo")
			inst := registry.Instance{Service: svc, Address: "10.0.0.1:12200", Protocol: tc.protocol, Metadata: tc.md}
			before := time.Now().UnixMilli()
			if err := r.Register(ctx5(t), inst); err != nil {
				t.Fatal(err)
			}
			dir := "/dubbo/" + svc + "/providers"
			names, _, err := raw.Children(dir)
			if err != nil || len(names) != 1 {
				t.Fatalf("children of %s: %v %v", dir, names, err)
			}
			_, st, err := raw.Exists(dir + "/" + names[0])
			if err != nil || st.EphemeralOwner == 0 {
				t.Errorf("node not ephemeral: %+v %v", st, err)
			}
			s, err := url.QueryUnescape(names[0])
			if err != nil {
				t.Fatal(err)
			}
			if names[0] != url.QueryEscape(s) {
				t.Errorf("node name %q is not the encoded URL %q", names[0], url.QueryEscape(s))
			}
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("node URL: %s", s)
			if u.Scheme != tc.protocol || u.Host != inst.Address || u.Path != "/"+svc {
				t.Errorf("URL %s: scheme, host:port or path", s)
			}
			// Parameters sorted by key, written raw as Dubbo does.
			var keys []string
			for _, kv := range strings.Split(u.RawQuery, "&") {
				k, _, _ := strings.Cut(kv, "=")
				keys = append(keys, k)
			}
			for i := 1; i < len(keys); i++ {
				if keys[i-1] >= keys[i] {
					t.Errorf("parameters not sorted: %v", keys)
				}
			}
			q := u.Query()
			app := tc.md["application"]
			if app == "" {
				app = "weft"
			}
			for k, v := range map[string]string{"interface": svc, "side": "provider", "application": app, "anyhost": "false"} {
				if q.Get(k) != v {
					t.Errorf("%s=%q, want %q", k, q.Get(k), v)
				}
			}
			for k, v := range tc.md {
				if q.Get(k) != v {
					t.Errorf("%s=%q, want %q", k, q.Get(k), v)
				}
			}
			if ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64); err != nil || ts < before-1000 || ts > time.Now().UnixMilli() {
				t.Errorf("timestamp=%q", q.Get("timestamp"))
			}
			if m := tc.md["methods"]; m != "" && !strings.Contains(u.RawQuery, "methods="+m) {
				t.Errorf("methods not written raw: %s", u.RawQuery)
			}
			// And it reads back as registered.
			w := startWatch(t, r, svc)
			l := w.waitFor(t, 5*time.Second, "the instance", func(l []registry.Instance) bool { return len(l) == 1 })
			if l[0].Key() != inst.Key() || l[0].Service != svc {
				t.Errorf("read back %+v", l[0])
			}
			for k, v := range tc.md {
				if l[0].Metadata[k] != v {
					t.Errorf("read back metadata %s=%q, want %q", k, l[0].Metadata[k], v)
				}
			}
		})
	}
}

// Child names that are not provider URLs are skipped, not fatal, and do
// not empty the list.
func TestGarbageSkipped(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.Addr())
	svc := uniq("Garbage")
	dir := "/dubbo/" + svc + "/providers"
	mkdirs(t, raw, dir)
	create := func(name string) {
		t.Helper()
		if _, err := raw.Create(dir+"/"+name, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	good := func(addr string) string {
		return url.QueryEscape("dubbo://" + addr + "/" + svc + "?interface=" + svc + "&version=1")
	}
	for _, name := range []string{
		"garbage",
		"%zz",
		url.QueryEscape("dubbo://127.0.0.1/" + svc),   // no port
		url.QueryEscape("dubbo://:20880/" + svc),      // no host
		url.QueryEscape("dubbo://127.0.0.1:0/" + svc), // port 0
		url.QueryEscape("dubbo://127.0.0.1:http/" + svc),
		url.QueryEscape("://127.0.0.1:1/" + svc),
		url.QueryEscape("127.0.0.1:20880"),
		good("127.0.0.1:20880"),
	} {
		create(name)
	}
	c := newClient(t, srv.Addr())
	w := startWatch(t, c, svc)
	l := w.waitFor(t, 5*time.Second, "the one provider", func(l []registry.Instance) bool { return len(l) == 1 })
	if l[0].Address != "127.0.0.1:20880" || l[0].Metadata["version"] != "1" {
		t.Errorf("got %+v", l[0])
	}
	create("more%20garbage")
	create(good("127.0.0.2:20880"))
	w.waitFor(t, 5*time.Second, "two providers", func(l []registry.Instance) bool { return len(l) == 2 })
	for _, l := range w.all() {
		if len(l) == 0 {
			t.Errorf("reported an empty list: %v", w.all())
		}
	}
}

// ZooKeeper is down when the client starts: Register fails but is
// remembered; once the server is up, the instance is registered, a later
// Register succeeds, and watchers see both.
func TestDownAtStart(t *testing.T) {
	srv := servers.PrepareZooKeeper(t) // not started
	a := newClient(t, srv.Addr())
	c := newClient(t, srv.Addr())
	svc := uniq("Late")
	w := startWatch(t, c, svc)
	i1 := registry.Instance{Service: svc, Address: "127.0.0.1:20001", Protocol: "dubbo"}
	i2 := registry.Instance{Service: svc, Address: "127.0.0.1:20002", Protocol: "dubbo"}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := a.Register(ctx, i1); !errors.Is(err, ErrNoSession) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register without ZooKeeper: %v", err)
	}
	if n := w.calls(); n != 0 {
		t.Fatalf("watcher called %d times without ZooKeeper", n)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 15*time.Second, "the remembered instance", func(l []registry.Instance) bool {
		return len(l) == 1 && l[0].Key() == i1.Key()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := a.Register(ctx5(t), i2)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.waitFor(t, 5*time.Second, "both instances", func(l []registry.Instance) bool { return len(l) == 2 })
}

// A client whose session expires (cut from the server for longer than
// its timeout) registers its instances again in its new session; while
// cut off, Register fails and its watches stay silent.
func TestSessionExpiryReregisters(t *testing.T) {
	srv := sharedServer(t)
	a, c := newClient(t, srv.Addr()), newClient(t, srv.Addr())
	svc := uniq("Expire")
	i1 := registry.Instance{Service: svc, Address: "127.0.0.1:20001", Protocol: "dubbo", Metadata: map[string]string{"version": "1"}}
	i2 := registry.Instance{Service: svc, Address: "127.0.0.1:20002", Protocol: "dubbo"}
	if err := a.Register(ctx5(t), i1); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, c, svc)
	wa := startWatch(t, a, svc)
	w.waitFor(t, 5*time.Second, "the instance", func(l []registry.Instance) bool { return len(l) == 1 })
	wa.waitFor(t, 5*time.Second, "the instance (a)", func(l []registry.Instance) bool { return len(l) == 1 })
	sid := a.conn.SessionID()

	a.cut(true)
	w.waitFor(t, testSession+5*time.Second, "the expiry", func(l []registry.Instance) bool { return len(l) == 0 })
	// Someone tidies up the empty directories meanwhile: they are made
	// again, and c's watch follows the providers node going and coming.
	raw := rawClient(t, srv.Addr())
	for _, p := range []string{"/dubbo/" + svc + "/providers", "/dubbo/" + svc} {
		if err := raw.Delete(p, -1); err != nil {
			t.Fatalf("delete %s: %v", p, err)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := a.Register(short, i2); !errors.Is(err, ErrNoSession) {
		t.Errorf("Register while cut off: %v", err)
	}
	n := wa.calls()
	if l := wa.all(); len(l[n-1]) != 1 {
		t.Errorf("a's watcher was told %v while cut off", l[n-1])
	}
	a.cut(false)
	w.waitFor(t, 10*time.Second, "both instances, registered again", func(l []registry.Instance) bool { return len(l) == 2 })
	wa.waitFor(t, 10*time.Second, "both instances (a, watching again)", func(l []registry.Instance) bool { return len(l) == 2 })
	if a.conn.SessionID() == sid {
		t.Errorf("session %x did not change", sid)
	}
	for _, l := range wa.all() {
		if len(l) == 0 {
			t.Errorf("a's watcher was told an empty list: %v", wa.all())
		}
	}
	// The new session's nodes are really this client's: Close removes them.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "none after Close", func(l []registry.Instance) bool { return len(l) == 0 })
}

// Updating an instance's metadata replaces its node in one transaction:
// watchers never see it twice or not at all.
func TestUpdateIsAtomic(t *testing.T) {
	srv := sharedServer(t)
	a, c := newClient(t, srv.Addr()), newClient(t, srv.Addr())
	svc := uniq("Update")
	w := startWatch(t, c, svc)
	inst := registry.Instance{Service: svc, Address: "127.0.0.1:20001", Protocol: "dubbo"}
	for v := 1; v <= 20; v++ {
		inst.Metadata = map[string]string{"version": strconv.Itoa(v)}
		if err := a.Register(ctx5(t), inst); err != nil {
			t.Fatal(err)
		}
	}
	w.waitFor(t, 5*time.Second, "version 20", func(l []registry.Instance) bool {
		return len(l) == 1 && l[0].Metadata["version"] == "20"
	})
	ts := ""
	for i, l := range w.all() {
		if i == 0 && len(l) == 0 {
			continue // before the first Register
		}
		if len(l) != 1 {
			t.Fatalf("list %d: %v", i, l)
		}
		if ts == "" {
			ts = l[0].Metadata["timestamp"]
		} else if l[0].Metadata["timestamp"] != ts {
			t.Errorf("timestamp changed on update: %s -> %s", ts, l[0].Metadata["timestamp"])
		}
	}
	raw := rawClient(t, srv.Addr())
	if names, _, err := raw.Children("/dubbo/" + svc + "/providers"); err != nil || len(names) != 1 {
		t.Errorf("nodes: %v %v", names, err)
	}
	if err := a.Deregister(ctx5(t), inst); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "none", func(l []registry.Instance) bool { return len(l) == 0 })
}

func TestClosed(t *testing.T) {
	srv := sharedServer(t)
	a := newClient(t, srv.Addr())
	svc := uniq("Closed")
	w := startWatch(t, a, svc)
	w.waitFor(t, 5*time.Second, "the first list", func(l []registry.Instance) bool { return len(l) == 0 })
	// Watch returns nil when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	ret := make(chan error, 1)
	go func() { ret <- a.Watch(ctx, svc, func([]registry.Instance) { cancel() }) }()
	select {
	case err := <-ret:
		if err != nil {
			t.Errorf("Watch after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.ret:
		if !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Watch returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
	inst := registry.Instance{Service: svc, Address: "127.0.0.1:1", Protocol: "dubbo"}
	if err := a.Register(ctx5(t), inst); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Register: %v", err)
	}
	if err := a.Deregister(ctx5(t), inst); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Deregister: %v", err)
	}
	if err := a.Watch(ctx5(t), svc, func([]registry.Instance) {}); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Watch: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without servers succeeded")
	}
	// An unresolvable name does not fail New (ZooKeeper may come later).
	r, err := New(Options{Servers: []string{"zk.invalid:2181"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if r.root != "/dubbo" || r.app != "weft" {
		t.Errorf("defaults: root %q app %q", r.root, r.app)
	}
	r.Close()
	for root, want := range map[string]string{"/": "", "/x/": "/x", "y": "/y"} {
		r, err := New(Options{Servers: []string{"127.0.0.1:1"}, Root: root, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if r.root != want {
			t.Errorf("root %q -> %q, want %q", root, r.root, want)
		}
		if d := r.serviceDir("a.B"); d != want+"/a.B/providers" {
			t.Errorf("dir %q", d)
		}
		r.Close()
	}
}
