package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/registrytest"
	"github.com/weftmesh/weft/internal/registry/registrytest/servers"
)

// suiteTTL is the lease TTL of the conformance suite's clients (etcd's
// minimum with its default election timeout).
const suiteTTL = 2 * time.Second

func newClient(t *testing.T, s *servers.Etcd, ttl time.Duration) *Registry {
	t.Helper()
	r, err := New(context.Background(), Options{Endpoints: []string{s.Endpoint()}, TTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// mustStart starts s again (on its ports, with its data).
func mustStart(t *testing.T, s *servers.Etcd) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

// rawClient is a plain etcd client, to look behind the registry's back.
func rawClient(t *testing.T, s *servers.Etcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	registrytest.Run(t, registrytest.Backend{
		New:    func(t *testing.T) registry.Registry { return newClient(t, s, suiteTTL) },
		Crash:  func(t *testing.T, r registry.Registry) { r.(*Registry).crashForTest() },
		Expiry: suiteTTL + 2*time.Second,
		Outage: func(t *testing.T) func() {
			s.Stop()
			return func() { mustStart(t, s) }
		},
	})
}

// recorder records what a Watch reported.
type recorder struct {
	mu    sync.Mutex
	lists [][]registry.Instance
	ch    chan struct{}
	done  chan error // Watch's result
}

func record(t *testing.T, ctx context.Context, r *Registry, service string) *recorder {
	t.Helper()
	w := &recorder{ch: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		w.done <- r.Watch(ctx, service, func(l []registry.Instance) {
			w.mu.Lock()
			w.lists = append(w.lists, cloneList(l))
			w.mu.Unlock()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		})
	}()
	return w
}

func (w *recorder) all() [][]registry.Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]registry.Instance(nil), w.lists...)
}

func (w *recorder) waitFor(t *testing.T, d time.Duration, what string, ok func([]registry.Instance) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		if all := w.all(); len(all) > 0 && ok(all[len(all)-1]) {
			return
		}
		select {
		case <-w.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; reported: %v", what, w.all())
		}
	}
}

func keys(l []registry.Instance) string {
	var s []string
	for _, i := range l {
		s = append(s, i.Key())
	}
	return fmt.Sprint(s)
}

func is(want ...registry.Instance) func([]registry.Instance) bool {
	w := cloneList(want)
	registry.Sort(w)
	return func(l []registry.Instance) bool { return registry.Equal(l, w) }
}

func inst(service, addr string, md ...string) registry.Instance {
	m := map[string]string{}
	for i := 0; i+1 < len(md); i += 2 {
		m[md[i]] = md[i+1]
	}
	return registry.Instance{Service: service, Address: addr, Protocol: "dubbo", Metadata: m}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Values that are not instances of the service under their own key are
// ignored, whether found by the first read or by the watch, and never
// hide the good ones.
func TestGarbageIgnored(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	raw := rawClient(t, s)
	r := newClient(t, s, 5*time.Second)
	svc := "com.weft.Garbage"
	pfx := DefaultPrefix + "/" + svc + "/"
	put := func(k, v string) {
		t.Helper()
		if _, err := raw.Put(ctxT(t, 5*time.Second), k, v); err != nil {
			t.Fatal(err)
		}
	}
	good1 := inst(svc, "127.0.0.1:1", "version", "1.0")
	good2 := inst(svc, "127.0.0.1:2", "version", "2.0")
	if err := r.Register(ctxT(t, 5*time.Second), good1); err != nil {
		t.Fatal(err)
	}
	put(pfx+"dubbo/127.0.0.1:9", "not json")
	put(pfx+"dubbo/127.0.0.1:8", `{"service":"com.weft.Other","address":"127.0.0.1:8","protocol":"dubbo"}`)
	put(pfx+"dubbo/127.0.0.1:7", `{"service":"`+svc+`","address":"127.0.0.1:6","protocol":"dubbo"}`)
	put(pfx+"dubbo/127.0.0.1:5", `{"service":"`+svc+`","address":"nowhere","protocol":"dubbo"}`)
	put(pfx+"junk", `{}`)
	put(pfx+"dubbo/127.0.0.1:4", `null`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, r, svc)
	w.waitFor(t, 5*time.Second, "the good instance", is(good1))

	// Through the watch now.
	put(pfx+"dubbo/127.0.0.1:3", "{bad")
	if err := r.Register(ctxT(t, 5*time.Second), good2); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "both good instances", is(good1, good2))
	// A good key overwritten with garbage is no longer an instance.
	put(pfx+"dubbo/127.0.0.1:2", `{"service":`)
	w.waitFor(t, 5*time.Second, "the first good instance", is(good1))
	for _, l := range w.all() {
		for _, i := range l {
			if i.Key() != good1.Key() && i.Key() != good2.Key() {
				t.Errorf("garbage reported: %v", keys(l))
			}
		}
		if len(l) == 0 {
			t.Errorf("an empty list was reported: %v", w.all())
		}
	}
	cancel()
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("Watch returned %v when its context ended, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

// A client made while etcd is down works once etcd is up, and registers
// what it was asked to register meanwhile.
func TestEtcdDownAtNew(t *testing.T) {
	t.Parallel()
	s := servers.PrepareEtcd(t) // not started
	start := time.Now()
	r := newClient(t, s, suiteTTL)
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v with etcd down", d)
	}
	svc := "com.weft.Late"
	i1, i2 := inst(svc, "127.0.0.1:1"), inst(svc, "127.0.0.1:2")
	if err := r.Register(ctxT(t, time.Second), i1); err == nil {
		t.Fatal("Register succeeded with etcd down")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, r, svc)
	time.Sleep(500 * time.Millisecond)
	if all := w.all(); len(all) != 0 {
		t.Fatalf("Watch reported %v with etcd down", all)
	}

	mustStart(t, s)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := r.Register(ctxT(t, 5*time.Second), i2)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Register once etcd is up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// i1 was remembered and registered with the session.
	w.waitFor(t, 20*time.Second, "both instances", is(i1, i2))
}

// Close revokes the lease: another client sees the instances go at once,
// not after the TTL.
func TestCloseRevokes(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	const ttl = 60 * time.Second
	a, c := newClient(t, s, ttl), newClient(t, s, ttl)
	svc := "com.weft.Close"
	i1, i2 := inst(svc, "127.0.0.1:1"), inst(svc, "127.0.0.1:2")
	for _, i := range []registry.Instance{i1, i2} {
		if err := a.Register(ctxT(t, 5*time.Second), i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, c, svc)
	w.waitFor(t, 5*time.Second, "both instances", is(i1, i2))
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "none after Close", is())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("instances went %v after Close", d)
	}
	if n := len(w.all()); n != 2 {
		t.Errorf("want the two instances to go in one change, got %v", w.all())
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Register(ctxT(t, time.Second), i1); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Register after Close: %v, want ErrClosed", err)
	}
	if err := a.Deregister(ctxT(t, time.Second), i1); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Deregister after Close: %v, want ErrClosed", err)
	}
	if err := a.Watch(ctxT(t, time.Second), svc, func([]registry.Instance) {}); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}

// Close ends the client's watches with ErrClosed.
func TestCloseEndsWatch(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	r := newClient(t, s, suiteTTL)
	w := record(t, context.Background(), r, "com.weft.Closing")
	w.waitFor(t, 5*time.Second, "the empty list", is())
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Watch returned %v at Close, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return at Close")
	}
}

// A lease lost behind the client's back (revoked here; expired in an
// outage) is replaced and everything registered is put again.
func TestLeaseLostReregisters(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	raw := rawClient(t, s)
	a, c := newClient(t, s, 3*time.Second), newClient(t, s, suiteTTL)
	svc := "com.weft.Relet"
	i1, i2 := inst(svc, "127.0.0.1:1", "version", "1.0"), inst(svc, "127.0.0.1:2")
	for _, i := range []registry.Instance{i1, i2} {
		if err := a.Register(ctxT(t, 5*time.Second), i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, c, svc)
	w.waitFor(t, 5*time.Second, "both instances", is(i1, i2))

	k := a.key(i1)
	resp, err := raw.Get(ctxT(t, 5*time.Second), k)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("get %s: %v %v", k, resp, err)
	}
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := raw.Revoke(ctxT(t, 5*time.Second), old); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "none once the lease is revoked", is())
	w.waitFor(t, 10*time.Second, "both instances under the new lease", is(i1, i2))
	resp, err = raw.Get(ctxT(t, 5*time.Second), k)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 || clientv3.LeaseID(resp.Kvs[0].Lease) == old {
		t.Fatalf("get %s after the revocation: %v %v", k, resp, err)
	}
}

// Deregister leaves alone an instance another client registered since
// (the key under the other client's lease).
func TestDeregisterOnlyOwn(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	a, b, c := newClient(t, s, suiteTTL), newClient(t, s, suiteTTL), newClient(t, s, suiteTTL)
	svc := "com.weft.Own"
	i := inst(svc, "127.0.0.1:1", "by", "a")
	if err := a.Register(ctxT(t, 5*time.Second), i); err != nil {
		t.Fatal(err)
	}
	ib := inst(svc, "127.0.0.1:1", "by", "b")
	if err := b.Register(ctxT(t, 5*time.Second), ib); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, c, svc)
	w.waitFor(t, 5*time.Second, "b's instance", is(ib))
	if err := a.Deregister(ctxT(t, 5*time.Second), i); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctxT(t, 5*time.Second), inst(svc, "127.0.0.1:2")); err != nil {
		t.Fatal(err) // a later change, to be sure the watcher saw the deregistration's effect
	}
	w.waitFor(t, 5*time.Second, "b's instances", is(ib, inst(svc, "127.0.0.1:2")))
	if err := b.Deregister(ctxT(t, 5*time.Second), ib); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 5*time.Second, "b's second instance", is(inst(svc, "127.0.0.1:2")))
}

func TestOptions(t *testing.T) {
	if _, err := New(context.Background(), Options{}); err == nil {
		t.Error("New without endpoints succeeded")
	}
	r, err := New(context.Background(), Options{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/x/", TTL: 1500 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.prefix != "/x" || r.ttl != 2 || r.timeout != DefaultDialTimeout {
		t.Errorf("prefix %q ttl %d timeout %v", r.prefix, r.ttl, r.timeout)
	}
	if got := r.key(inst("com.Foo", "10.0.0.1:20880")); got != "/x/com.Foo/dubbo/10.0.0.1:20880" {
		t.Errorf("key %q", got)
	}
	if err := r.Watch(context.Background(), "a/b", func([]registry.Instance) {}); err == nil {
		t.Error("Watch of a bad service name accepted")
	}
	if err := r.Register(context.Background(), registry.Instance{Service: "x", Address: "bad", Protocol: "dubbo"}); err == nil {
		t.Error("Register of a bad instance accepted")
	}
}

// After an outage longer than the TTL the client puts its instances again
// under a new lease, and they stay: etcd restores the old lease with a
// fresh TTL when it restarts, so an instance merely surviving the restart
// proves nothing until that lease has expired too.
func TestOutageReregisters(t *testing.T) {
	t.Parallel()
	s := servers.StartEtcd(t)
	raw := rawClient(t, s)
	a, c := newClient(t, s, suiteTTL), newClient(t, s, suiteTTL)
	svc := "com.weft.Outage"
	i1 := inst(svc, "127.0.0.1:1", "version", "1.0")
	if err := a.Register(ctxT(t, 5*time.Second), i1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := record(t, ctx, c, svc)
	w.waitFor(t, 5*time.Second, "the instance", is(i1))
	k := a.key(i1)
	resp, err := raw.Get(ctxT(t, 5*time.Second), k)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", k, resp, err)
	}
	old := resp.Kvs[0].Lease

	before := len(w.all())
	s.Stop()
	time.Sleep(suiteTTL + 2*time.Second)
	if n := len(w.all()); n != before {
		t.Fatalf("the watcher was called during the outage: %v", w.all())
	}
	mustStart(t, s)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := raw.Get(ctxT(t, 5*time.Second), k)
		if err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not put again under a new lease: %v %v", k, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Past the restored old lease's expiry, and the new one is kept alive.
	time.Sleep(2*suiteTTL + time.Second)
	w.waitFor(t, time.Second, "the instance, still", is(i1))
	if resp, err := raw.Get(ctxT(t, 5*time.Second), k); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("%s gone: %v %v", k, resp, err)
	}
}

// lockedBuffer collects output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// testLogger collects the client's log, shown when the test fails.
func testLogger(t *testing.T) *slog.Logger {
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", tail(buf.String(), 150))
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
