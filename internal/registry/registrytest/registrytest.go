// Package registrytest is the conformance suite every registry backend
// runs against a real server: the same behaviour from the embedded, etcd
// and ZooKeeper backends, tested once.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// Backend describes a backend under test.
type Backend struct {
	// New returns a new client (its own session) of the running server.
	New func(t *testing.T) registry.Registry
	// Crash kills a client without deregistering anything (its session
	// then expires on the server), as a sidecar that dies does.
	Crash func(t *testing.T, r registry.Registry)
	// Expiry bounds how long a crashed client's instances survive.
	Expiry time.Duration
	// Outage stops the server and returns a function that starts it again
	// on the same address, with or without its data (an embedded registry
	// loses it; its clients register again). nil: not supported.
	Outage func(t *testing.T) (restart func())
}

// watcher records what a Watch reported.
type watcher struct {
	mu    sync.Mutex
	lists [][]registry.Instance
	ch    chan struct{}
}

func watch(t *testing.T, r registry.Registry, service string) *watcher {
	t.Helper()
	w := &watcher{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		err := r.Watch(ctx, service, func(l []registry.Instance) {
			cp := append([]registry.Instance(nil), l...)
			registry.Sort(cp)
			w.mu.Lock()
			w.lists = append(w.lists, cp)
			w.mu.Unlock()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		})
		if err != nil && ctx.Err() == nil && !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Watch(%s) returned early: %v", service, err)
		}
	}()
	return w
}

func (w *watcher) last() ([]registry.Instance, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lists) == 0 {
		return nil, false
	}
	return w.lists[len(w.lists)-1], true
}

// waitFor waits until the last reported list satisfies ok.
func (w *watcher) waitFor(t *testing.T, d time.Duration, what string, ok func([]registry.Instance) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		if l, seen := w.last(); seen && ok(l) {
			return
		}
		select {
		case <-w.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			l, _ := w.last()
			t.Fatalf("timed out waiting for %s; last list: %v", what, l)
		}
	}
}

func keys(l []registry.Instance) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += ","
		}
		s += x.Key()
	}
	return s
}

func inst(service, addr string, md ...string) registry.Instance {
	m := map[string]string{}
	for i := 0; i+1 < len(md); i += 2 {
		m[md[i]] = md[i+1]
	}
	return registry.Instance{Service: service, Address: addr, Protocol: "dubbo", Metadata: m}
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Run runs the suite. Service names are unique per run, so a shared
// server may hold leftovers of other runs.
func Run(t *testing.T, b Backend) {
	prefix := fmt.Sprintf("com.weft.test%d.", time.Now().UnixNano())
	t.Run("RegisterWatchDeregister", func(t *testing.T) {
		svc := prefix + "Echo"
		a, c := b.New(t), b.New(t)
		w := watch(t, c, svc)
		w.waitFor(t, 5*time.Second, "the first (empty) list", func(l []registry.Instance) bool { return len(l) == 0 })
		i1 := inst(svc, "127.0.0.1:20001", "version", "1.0", "group", "g1", "meshed", "true")
		i2 := inst(svc, "127.0.0.2:20001", "version", "2.0")
		for _, i := range []registry.Instance{i1, i2} {
			if err := a.Register(ctx5(t), i); err != nil {
				t.Fatal(err)
			}
		}
		w.waitFor(t, 5*time.Second, "two instances", func(l []registry.Instance) bool { return len(l) == 2 })
		l, _ := w.last()
		if l[0].Metadata["version"] != "1.0" || l[0].Metadata["group"] != "g1" || l[0].Metadata["meshed"] != "true" || l[0].Protocol != "dubbo" || l[0].Service != svc {
			t.Errorf("instance round trip: %+v", l[0])
		}
		if err := a.Deregister(ctx5(t), i2); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, 5*time.Second, "one instance", func(l []registry.Instance) bool { return keys(l) == i1.Key() })
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, 5*time.Second, "none after Close", func(l []registry.Instance) bool { return len(l) == 0 })
		if err := a.Register(ctx5(t), i1); !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Register after Close: %v, want registry.ErrClosed", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
	})
	t.Run("DuplicateAndUpdate", func(t *testing.T) {
		svc := prefix + "Dup"
		a, c := b.New(t), b.New(t)
		w := watch(t, c, svc)
		i := inst(svc, "127.0.0.1:20002", "version", "1.0")
		for n := 0; n < 3; n++ {
			if err := a.Register(ctx5(t), i); err != nil {
				t.Fatal(err)
			}
		}
		w.waitFor(t, 5*time.Second, "one instance", func(l []registry.Instance) bool { return len(l) == 1 })
		i.Metadata = map[string]string{"version": "1.1"}
		if err := a.Register(ctx5(t), i); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, 5*time.Second, "the new metadata", func(l []registry.Instance) bool {
			return len(l) == 1 && l[0].Metadata["version"] == "1.1"
		})
	})
	t.Run("BadInstance", func(t *testing.T) {
		a := b.New(t)
		for _, i := range []registry.Instance{
			{Service: "", Address: "127.0.0.1:1", Protocol: "dubbo"},
			{Service: "a/b", Address: "127.0.0.1:1", Protocol: "dubbo"},
			{Service: prefix + "X", Address: "nowhere", Protocol: "dubbo"},
			{Service: prefix + "X", Address: "127.0.0.1:1", Protocol: ""},
		} {
			if err := a.Register(ctx5(t), i); err == nil {
				t.Errorf("Register(%+v) accepted", i)
			}
		}
	})
	t.Run("CrashedClientExpires", func(t *testing.T) {
		if b.Crash == nil {
			t.Skip("backend has no crash hook")
		}
		svc := prefix + "Crash"
		a, c := b.New(t), b.New(t)
		w := watch(t, c, svc)
		if err := a.Register(ctx5(t), inst(svc, "127.0.0.1:20003")); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, 5*time.Second, "the instance", func(l []registry.Instance) bool { return len(l) == 1 })
		b.Crash(t, a)
		w.waitFor(t, b.Expiry+5*time.Second, "the dead client's instance to expire", func(l []registry.Instance) bool { return len(l) == 0 })
	})
	t.Run("ManyServices", func(t *testing.T) {
		a, c := b.New(t), b.New(t)
		const n = 200
		ws := make([]*watcher, n)
		for i := range ws {
			svc := fmt.Sprintf("%sMany%d", prefix, i)
			ws[i] = watch(t, c, svc)
			if err := a.Register(ctx5(t), inst(svc, fmt.Sprintf("127.0.0.1:%d", 21000+i))); err != nil {
				t.Fatal(err)
			}
		}
		for i, w := range ws {
			w.waitFor(t, 10*time.Second, fmt.Sprintf("service %d", i), func(l []registry.Instance) bool { return len(l) == 1 })
		}
	})
	t.Run("OutageKeepsListAndReregisters", func(t *testing.T) {
		if b.Outage == nil {
			t.Skip("backend has no outage hook")
		}
		svc := prefix + "Outage"
		a, c := b.New(t), b.New(t)
		w := watch(t, c, svc)
		i1 := inst(svc, "127.0.0.1:20004")
		if err := a.Register(ctx5(t), i1); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, 5*time.Second, "the instance", func(l []registry.Instance) bool { return len(l) == 1 })
		w.mu.Lock()
		reports := len(w.lists)
		w.mu.Unlock()
		var restarted sync.Once
		start := b.Outage(t)
		restart := func() { restarted.Do(start) }
		t.Cleanup(restart) // never leave the server down for later tests
		time.Sleep(b.Expiry + time.Second)
		w.mu.Lock()
		during := w.lists[reports:]
		w.mu.Unlock()
		if len(during) > 0 {
			t.Fatalf("during the outage the watcher was told %v: it must not be called, the last list stands", during)
		}
		restart()
		// The registration comes back (re-registered by a's session or
		// kept by the server) and new changes flow again.
		i2 := inst(svc, "127.0.0.1:20005")
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := a.Register(ctx5(t), i2)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register after the outage: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		w.waitFor(t, 20*time.Second, "both instances after the outage", func(l []registry.Instance) bool { return len(l) == 2 })
		// Both stay: the first was registered again by a's session, not
		// merely left over from before the outage until it expires.
		time.Sleep(b.Expiry + time.Second)
		if l, _ := w.last(); len(l) != 2 {
			t.Fatalf("after the outage, once the old session had time to expire: %v", l)
		}
	})
}
