package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/registrytest"
)

var quiet = slog.New(slog.DiscardHandler)

// testServer runs a Server on a real loopback listener and can stop it
// and start a new (empty) one on the same address.
type testServer struct {
	t    *testing.T
	opts ServerOptions
	addr string

	mu   sync.Mutex
	srv  *Server
	done chan struct{}
}

func startServer(t *testing.T, o ServerOptions) *testServer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	ts := &testServer{t: t, opts: o, addr: "127.0.0.1:0"}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

// start listens on ts.addr (retrying a moment if the port is still busy)
// and serves a new Server.
func (ts *testServer) start() {
	ts.t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", ts.addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		ts.t.Fatalf("listen %s: %v", ts.addr, err)
	}
	srv := NewServer(ts.opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil {
			ts.t.Errorf("Serve: %v", err)
		}
	}()
	ts.mu.Lock()
	ts.addr, ts.srv, ts.done = ln.Addr().String(), srv, done
	ts.mu.Unlock()
}

func (ts *testServer) stop() {
	ts.mu.Lock()
	srv, done := ts.srv, ts.done
	ts.srv = nil
	ts.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Close(); err != nil {
		ts.t.Errorf("Close: %v", err)
	}
	<-done
}

func (ts *testServer) client(t *testing.T) *Registry {
	t.Helper()
	r := New(Options{Address: ts.addr, Logger: quiet})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestConformance(t *testing.T) {
	const ttl = time.Second
	ts := startServer(t, ServerOptions{SessionTTL: ttl})
	registrytest.Run(t, registrytest.Backend{
		New: func(t *testing.T) registry.Registry { return ts.client(t) },
		Crash: func(t *testing.T, r registry.Registry) {
			r.(*Registry).crash()
		},
		Expiry: ttl + time.Second,
		Outage: func(t *testing.T) func() {
			ts.stop()
			return ts.start
		},
	})
}

// api is a raw HTTP client of a test server.
type api struct {
	t    *testing.T
	base string
}

func newAPI(t *testing.T, ts *testServer) *api { return &api{t: t, base: "http://" + ts.addr} }

// do sends a request and returns the status and the decoded JSON body.
func (a *api) do(method, path, sid string, body string) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if sid != "" {
		req.Header.Set(SessionHeader, sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	var m map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			a.t.Fatalf("%s %s: answer is not JSON: %q", method, path, data)
		}
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNoContent && (m["error"] == nil || m["error"] == "") {
		a.t.Errorf("%s %s: %d without an error message: %q", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, m
}

func (a *api) session() string {
	a.t.Helper()
	st, m := a.do(http.MethodPost, "/v1/sessions", "", "")
	if st != http.StatusCreated {
		a.t.Fatalf("create session: %d %v", st, m)
	}
	return m["id"].(string)
}

func (a *api) register(sid, service, addr string) uint64 {
	a.t.Helper()
	body := fmt.Sprintf(`{"service":%q,"address":%q,"protocol":"dubbo"}`, service, addr)
	st, m := a.do(http.MethodPut, "/v1/services/"+service+"/instances", sid, body)
	if st != http.StatusOK {
		a.t.Fatalf("register: %d %v", st, m)
	}
	return uint64(m["revision"].(float64))
}

func (a *api) get(service, query string) (uint64, []any) {
	a.t.Helper()
	st, m := a.do(http.MethodGet, "/v1/services/"+service+query, "", "")
	if st != http.StatusOK {
		a.t.Fatalf("get %s: %d %v", service, st, m)
	}
	return uint64(m["revision"].(float64)), m["instances"].([]any)
}

func TestHTTPErrors(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 10 * time.Second})
	a := newAPI(t, ts)
	sid := a.session()
	const p = "/v1/services/com.foo.Echo/instances"
	for _, c := range []struct {
		name, method, path, sid, body string
		status                        int
		msg                           string
	}{
		{"bad JSON", "PUT", p, sid, `{"service":`, 400, "bad JSON"},
		{"not JSON", "PUT", p, sid, "\x00\xff\xfe garbage", 400, "bad JSON"},
		{"wrong type", "PUT", p, sid, `{"service":1}`, 400, "bad JSON"},
		{"empty body", "PUT", p, sid, ``, 400, "empty body"},
		{"trailing data", "PUT", p, sid, `{"service":"com.foo.Echo","address":"1.2.3.4:5","protocol":"dubbo"} {}`, 400, "trailing"},
		{"bad address", "PUT", p, sid, `{"service":"com.foo.Echo","address":"nowhere","protocol":"dubbo"}`, 400, "bad address"},
		{"no protocol", "PUT", p, sid, `{"service":"com.foo.Echo","address":"1.2.3.4:5"}`, 400, "bad protocol"},
		{"other service", "PUT", p, sid, `{"service":"com.foo.Other","address":"1.2.3.4:5","protocol":"dubbo"}`, 400, "does not match"},
		{"no session", "PUT", p, "", `{"service":"com.foo.Echo","address":"1.2.3.4:5","protocol":"dubbo"}`, 400, "missing session"},
		{"unknown session", "PUT", p, "nope", `{"service":"com.foo.Echo","address":"1.2.3.4:5","protocol":"dubbo"}`, 404, "unknown or expired session"},
		{"oversized", "PUT", p, sid, `{"service":"com.foo.Echo","address":"1.2.3.4:5","protocol":"dubbo","metadata":{"x":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, "larger than"},
		{"heartbeat unknown", "PUT", "/v1/sessions/nope", "", "", 404, "unknown or expired session"},
		{"delete unknown", "DELETE", "/v1/sessions/nope", "", "", 404, "unknown or expired session"},
		{"deregister unknown session", "DELETE", p + "/dubbo:%2F%2F1.2.3.4:5", "nope", "", 404, "unknown or expired session"},
		{"no such path", "GET", "/v2/whatever", "", "", 404, "no such endpoint"},
		{"no such path 2", "GET", "/v1/services/a/b/c/d/e", "", "", 404, "no such endpoint"},
		{"bad service", "GET", "/v1/services/a%20b", "", "", 400, "bad service"},
		{"method", "POST", "/v1/services", "", "", 405, "not allowed"},
		{"bad index", "GET", "/v1/services/com.foo.Echo?index=-1", "", "", 400, "bad index"},
		{"bad wait", "GET", "/v1/services/com.foo.Echo?index=0&wait=soon", "", "", 400, "bad wait"},
	} {
		st, m := a.do(c.method, c.path, c.sid, c.body)
		if st != c.status {
			t.Errorf("%s: status %d, want %d (%v)", c.name, st, c.status, m)
			continue
		}
		if msg, _ := m["error"].(string); !strings.Contains(msg, c.msg) {
			t.Errorf("%s: error %q, want it to mention %q", c.name, msg, c.msg)
		}
	}
	if st, m := a.do(http.MethodPost, "/v1/sessions", "", strings.Repeat("x", 70<<10)); st != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized session body: %d %v", st, m)
	}
	// Nothing of the above got in.
	if rev, l := a.get("com.foo.Echo", ""); rev != 0 || len(l) != 0 {
		t.Errorf("after bad requests: revision %d, instances %v", rev, l)
	}
}

func TestHTTPRegisterDeregister(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 10 * time.Second})
	a := newAPI(t, ts)
	s1, s2 := a.session(), a.session()
	r1 := a.register(s1, "com.foo.Echo", "10.0.0.1:20880")
	// The same again is no change; the session may also come as ?session=.
	st, m := a.do(http.MethodPut, "/v1/services/com.foo.Echo/instances?session="+s1, "", `{"address":"10.0.0.1:20880","protocol":"dubbo"}`)
	if st != http.StatusOK || uint64(m["revision"].(float64)) != r1 {
		t.Errorf("re-register: %d %v, want revision %d", st, m, r1)
	}
	a.register(s1, "com.foo.Echo", "10.0.0.2:20880")
	a.register(s2, "com.foo.Other", "10.0.0.3:20880")
	st, m = a.do(http.MethodGet, "/v1/services", "", "")
	got, _ := json.Marshal(m["services"])
	if st != http.StatusOK || !strings.Contains(string(got), `"instances":2,`) || !strings.Contains(string(got), `"service":"com.foo.Other"`) {
		t.Errorf("list: %d %s", st, got)
	}
	key := "/v1/services/com.foo.Echo/instances/" + url.PathEscape("dubbo://10.0.0.2:20880")
	if st, m := a.do(http.MethodDelete, key, s2, ""); st != http.StatusConflict {
		t.Errorf("deregister by another session: %d %v", st, m)
	}
	if st, m := a.do(http.MethodDelete, key, s1, ""); st != http.StatusOK {
		t.Errorf("deregister: %d %v", st, m)
	}
	if st, m := a.do(http.MethodDelete, key, s1, ""); st != http.StatusOK {
		t.Errorf("deregister again: %d %v", st, m)
	}
	if _, l := a.get("com.foo.Echo", ""); len(l) != 1 {
		t.Errorf("after deregister: %v", l)
	}
	// Deleting a session removes its instances at once.
	if st, _ := a.do(http.MethodDelete, "/v1/sessions/"+s1, "", ""); st != http.StatusNoContent {
		t.Errorf("delete session: %d", st)
	}
	if _, l := a.get("com.foo.Echo", ""); len(l) != 0 {
		t.Errorf("after the session ended: %v", l)
	}
	if _, l := a.get("com.foo.Other", ""); len(l) != 1 {
		t.Errorf("other session's instance: %v", l)
	}
}

func TestHTTPSessionExpiry(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 300 * time.Millisecond})
	a := newAPI(t, ts)
	live, dead := a.session(), a.session()
	a.register(live, "com.foo.Live", "10.0.0.1:1")
	a.register(dead, "com.foo.Dead", "10.0.0.1:1")
	for i := 0; i < 10; i++ { // a second of heartbeats
		time.Sleep(100 * time.Millisecond)
		if st, m := a.do(http.MethodPut, "/v1/sessions/"+live, "", ""); st != http.StatusOK || m["ttl_ms"].(float64) != 300 {
			t.Fatalf("heartbeat: %d %v", st, m)
		}
	}
	if _, l := a.get("com.foo.Live", ""); len(l) != 1 {
		t.Errorf("heartbeated session lost its instance: %v", l)
	}
	if _, l := a.get("com.foo.Dead", ""); len(l) != 0 {
		t.Errorf("expired session kept its instance: %v", l)
	}
	if st, _ := a.do(http.MethodPut, "/v1/sessions/"+dead, "", ""); st != http.StatusNotFound {
		t.Errorf("heartbeat of an expired session: %d", st)
	}
}

func TestHTTPLongPoll(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 10 * time.Second})
	a := newAPI(t, ts)
	sid := a.session()
	rev0, _ := a.get("com.foo.Poll", "")

	// A change wakes a waiting poll.
	type answer struct {
		rev uint64
		n   int
		d   time.Duration
	}
	ch := make(chan answer, 1)
	go func() {
		start := time.Now()
		rev, l := a.get("com.foo.Poll", fmt.Sprintf("?index=%d&wait=10s", rev0))
		ch <- answer{rev, len(l), time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond)
	rev1 := a.register(sid, "com.foo.Poll", "10.0.0.1:1")
	select {
	case got := <-ch:
		if got.rev != rev1 || got.n != 1 || got.d > 5*time.Second {
			t.Errorf("woken poll: %+v, want revision %d, 1 instance", got, rev1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the poll was not woken by the change")
	}

	// Nothing changes: the poll waits and answers the same revision.
	start := time.Now()
	rev, l := a.get("com.foo.Poll", fmt.Sprintf("?index=%d&wait=300ms", rev1))
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second || rev != rev1 || len(l) != 1 {
		t.Errorf("timed out poll: %v revision %d (want %d) %d instances", d, rev, rev1, len(l))
	}
	// Another service's changes do not wake it.
	go func() {
		time.Sleep(50 * time.Millisecond)
		a.register(sid, "com.foo.Unrelated", "10.0.0.1:1")
	}()
	start = time.Now()
	if rev, _ := a.get("com.foo.Poll", fmt.Sprintf("?index=%d&wait=300ms", rev1)); rev != rev1 || time.Since(start) < 250*time.Millisecond {
		t.Errorf("woken by another service: revision %d after %v", rev, time.Since(start))
	}
	// An index the server never handed out (a client of a previous
	// server) is answered at once.
	start = time.Now()
	if rev, _ := a.get("com.foo.Poll", fmt.Sprintf("?index=%d&wait=10s", rev1+100)); rev != rev1 || time.Since(start) > 2*time.Second {
		t.Errorf("future index: revision %d after %v", rev, time.Since(start))
	}
	if d, err := parseWait("10m"); err != nil || d != MaxWait {
		t.Errorf("parseWait(10m) = %v, %v; want the cap", d, err)
	}
}

// A restarted server holds the answer to a client of the previous one
// until its clients had a session TTL to register again.
func TestHTTPRestartSettles(t *testing.T) {
	const ttl = 500 * time.Millisecond
	ts := startServer(t, ServerOptions{SessionTTL: ttl})
	ts.stop()
	start := time.Now()
	ts.start()
	a := newAPI(t, ts)
	if _, l := a.get("com.foo.S", "?index=3&epoch=previous"); len(l) != 0 {
		t.Fatal(l)
	}
	if d := time.Since(start); d < ttl-50*time.Millisecond {
		t.Errorf("a restarted server answered a previous server's client after %v, before its TTL %v", d, ttl)
	}
	start = time.Now()
	a.get("com.foo.S", "")
	if d := time.Since(start); d > ttl/2 {
		t.Errorf("a fresh client waited %v", d)
	}
	// Past that, a poll that names another server's epoch is answered at
	// once, even when the revision happens to be the one it knew.
	start = time.Now()
	if rev, _ := a.get("com.foo.S", "?index=0&wait=10s&epoch=previous"); rev != 0 || time.Since(start) > ttl/2 {
		t.Errorf("other epoch: revision %d after %v", rev, time.Since(start))
	}
	// With the server's own epoch it waits.
	_, m := a.do(http.MethodGet, "/v1/services/com.foo.S", "", "")
	start = time.Now()
	a.get("com.foo.S", "?index=0&wait=200ms&epoch="+m["epoch"].(string))
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("own epoch: answered after %v, before the wait", d)
	}
}

func TestLimits(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 10 * time.Second, MaxServices: 2, MaxInstancesPerService: 2})
	a := newAPI(t, ts)
	sid := a.session()
	a.register(sid, "s1", "10.0.0.1:1")
	a.register(sid, "s1", "10.0.0.2:1")
	a.register(sid, "s2", "10.0.0.1:1")
	if st, m := a.do(http.MethodPut, "/v1/services/s1/instances", sid, `{"address":"10.0.0.3:1","protocol":"dubbo"}`); st != http.StatusInsufficientStorage {
		t.Errorf("third instance: %d %v", st, m)
	}
	if st, m := a.do(http.MethodPut, "/v1/services/s3/instances", sid, `{"address":"10.0.0.3:1","protocol":"dubbo"}`); st != http.StatusInsufficientStorage {
		t.Errorf("third service: %d %v", st, m)
	}
	a.register(sid, "s1", "10.0.0.2:1") // replacing is fine at the limit
	if st, _ := a.do(http.MethodDelete, "/v1/services/s2/instances/"+url.PathEscape("dubbo://10.0.0.1:1"), sid, ""); st != http.StatusOK {
		t.Fatal(st)
	}
	a.register(sid, "s3", "10.0.0.3:1") // room again
}

func TestClientWithoutServer(t *testing.T) {
	// A free port, then nothing on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := New(Options{Address: addr, Logger: quiet})
	t.Cleanup(func() { _ = r.Close() })
	i := registry.Instance{Service: "com.foo.Early", Address: "10.0.0.1:1", Protocol: "dubbo"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Register(ctx, i); err == nil {
		t.Fatal("Register succeeded with no server")
	}
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	calls := make(chan []registry.Instance, 16)
	go func() { _ = r.Watch(wctx, "com.foo.Early", func(l []registry.Instance) { calls <- l }) }()
	time.Sleep(300 * time.Millisecond)
	if len(calls) != 0 {
		t.Fatal("Watch reported a list with no server")
	}
	ts := &testServer{t: t, opts: ServerOptions{SessionTTL: time.Second, Logger: quiet}, addr: addr}
	ts.start()
	t.Cleanup(ts.stop)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-calls:
			if len(l) == 1 && l[0].Key() == i.Key() {
				return
			}
		case <-deadline:
			t.Fatal("the instance registered before the server started never showed")
		}
	}
}

func TestCloseRemovesAtOnceAndErrClosed(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: time.Minute})
	a := newAPI(t, ts)
	r := ts.client(t)
	ctx := context.Background()
	i := registry.Instance{Service: "com.foo.Close", Address: "10.0.0.1:1", Protocol: "dubbo"}
	if err := r.Register(ctx, i); err != nil {
		t.Fatal(err)
	}
	watchErr := make(chan error, 1)
	go func() { watchErr <- r.Watch(ctx, "com.foo.Close", func([]registry.Instance) {}) }()
	if _, l := a.get("com.foo.Close", ""); len(l) != 1 {
		t.Fatal(l)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, l := a.get("com.foo.Close", ""); len(l) != 0 {
		t.Errorf("after Close: %v", l)
	}
	select {
	case err := <-watchErr:
		if !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Watch after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Watch did not return at Close")
	}
	if err := r.Register(ctx, i); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Register after Close: %v", err)
	}
	if err := r.Deregister(ctx, i); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Deregister after Close: %v", err)
	}
	if err := r.Watch(ctx, "com.foo.Close", func([]registry.Instance) {}); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Watch after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// One client watching a thousand services works, and cancelling the
// watches leaves no goroutine behind.
func TestThousandWatches(t *testing.T) {
	ts := startServer(t, ServerOptions{SessionTTL: 2 * time.Second})
	a, c := ts.client(t), ts.client(t)
	const n = 1000
	svc := func(i int) string { return fmt.Sprintf("com.foo.W%d", i) }
	ctx := context.Background()
	if err := a.Register(ctx, registry.Instance{Service: svc(0), Address: "10.0.0.1:1", Protocol: "dubbo"}); err != nil {
		t.Fatal(err)
	}
	settle := func() {
		a.own.CloseIdleConnections()
		c.own.CloseIdleConnections()
	}
	settle()
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := make([]int, n) // instances last reported per service
	first := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reported := false
			_ = c.Watch(wctx, svc(i), func(l []registry.Instance) {
				mu.Lock()
				seen[i] = len(l)
				mu.Unlock()
				if !reported {
					reported = true
					first <- struct{}{}
				}
			})
		}()
	}
	timeout := time.After(30 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-first:
		case <-timeout:
			t.Fatalf("%d of %d watches answered", i, n)
		}
	}
	for i := 1; i < n; i++ {
		if err := a.Register(ctx, registry.Instance{Service: svc(i), Address: "10.0.0.1:1", Protocol: "dubbo"}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		missing := 0
		for _, k := range seen {
			if k != 1 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d services not reported with their instance", missing)
		}
	}

	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch calls did not return after their context ended")
	}
	var now int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		settle()
		if now = runtime.NumGoroutine(); now <= base+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, %d before the watches\n%s", now, base, buf[:runtime.Stack(buf, true)])
		}
	}
}

// A restarted (empty) server holds its answers to the watchers of the
// previous one until its providers had a session TTL to register again:
// the watchers never see the list emptied on the way.
func TestRestartKeepsWatchersWhole(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	ts := startServer(t, ServerOptions{SessionTTL: ttl})
	h := newAPI(t, ts)
	provide := func() { // a provider that re-registers when the test says
		sid := h.session()
		h.register(sid, "com.foo.R", "10.0.0.1:1")
		h.register(sid, "com.foo.R", "10.0.0.2:1")
	}
	provide()
	c := ts.client(t)
	var mu sync.Mutex
	var lists [][]registry.Instance
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = c.Watch(wctx, "com.foo.R", func(l []registry.Instance) {
			mu.Lock()
			lists = append(lists, l)
			mu.Unlock()
		})
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(lists)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no first list")
		}
	}
	// The watcher retries 0.1, 0.3, 0.7 and 1.5s into the outage: its
	// first question to the new server comes about 0.2s after the
	// restart, before the providers are back at 0.7s.
	ts.stop()
	time.Sleep(1300 * time.Millisecond)
	ts.start()
	time.Sleep(700 * time.Millisecond)
	provide()
	time.Sleep(ttl)
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lists {
		if len(l) != 2 {
			t.Errorf("the watcher was told %v across the restart", l)
		}
	}
}
