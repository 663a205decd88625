package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
	"github.com/weftmesh/weft/internal/registry/etcd"
)

// backend is the registry server under test and the way to make clients
// of it.
type backend interface {
	// Describe names the server for the report.
	Describe() string
	// PID is the server's process, 0 when it runs in this process.
	PID() int
	// Port is the server's client port (to count its sockets).
	Port() int
	// Endpoint is what a client needs: the embedded server's host:port,
	// etcd's client URL.
	Endpoint() string
	// Client opens one registry client, as one sidecar would.
	Client(ctx context.Context, log *slog.Logger) (registry.Registry, error)
	// Stop ends the server and removes what it left on disk.
	Stop() error
}

// proc is a server running as a child process; its output is kept to be
// shown when it fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed when the process exited
	err  error         // Wait's, once done is closed
}

func startProc(name, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = procAttr() // killed with us if we die
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls check until it succeeds, the process exits or 30 s pass.
func (p *proc) waitReady(ctx context.Context, check func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !check() {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before answering (%v):\n%s", p.name, p.err, tail(p.out.String(), 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer after 30s:\n%s", p.name, tail(p.out.String(), 30))
		}
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL after 15 s, and waits for the exit.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM; killed", p.name)
	}
}

// httpOK reports whether GET url answers 200 with a body containing want.
func httpOK(url, want string) bool {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(want))
}

// freePorts returns n distinct ports free on 127.0.0.1 at the time.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// etcdServer is a single-member etcd on loopback with a data dir of its own.
type etcdServer struct {
	p       *proc
	dir     string
	url     string
	port    int
	version string
}

func startEtcd(ctx context.Context, bin string) (*etcdServer, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weft-bench-registry-etcd-")
	if err != nil {
		return nil, err
	}
	s := &etcdServer{dir: dir, port: ports[0], url: fmt.Sprintf("http://127.0.0.1:%d", ports[0])}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		s.version = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "etcd Version: ")
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	s.p, err = startProc("etcd", bin,
		"--name", "bench",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", s.url,
		"--advertise-client-urls", s.url,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer,
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.p.waitReady(ctx, func() bool { return httpOK(s.url+"/health", `"health":"true"`) }); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *etcdServer) Describe() string {
	return fmt.Sprintf("etcd %s (%s), one member on loopback, separate process, data dir on %s", s.version, s.p.cmd.Path, os.TempDir())
}
func (s *etcdServer) PID() int         { return s.p.cmd.Process.Pid }
func (s *etcdServer) Port() int        { return s.port }
func (s *etcdServer) Endpoint() string { return s.url }

func (s *etcdServer) Client(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
	return remote{"etcd", s.url}.Client(ctx, log)
}

func (s *etcdServer) Stop() error {
	err := s.p.stop()
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// weftRegistry is `weft registry` in a process of its own.
type weftRegistry struct {
	p     *proc
	addr  string
	port  int
	bin   string
	tmp   string // holds the binary we built, removed at Stop
	build time.Duration
}

// startWeftRegistry runs `weft registry` from bin, or from a binary built
// from ./cmd/weft when bin is "".
func startWeftRegistry(ctx context.Context, bin string) (*weftRegistry, error) {
	w := &weftRegistry{bin: bin}
	if bin == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		w.tmp, err = os.MkdirTemp("", "weft-bench-registry-bin-")
		if err != nil {
			return nil, err
		}
		w.bin = filepath.Join(w.tmp, "weft")
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", w.bin, "./cmd/weft")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(w.tmp)
			return nil, fmt.Errorf("go build ./cmd/weft: %v\n%s", err, out)
		}
		w.build = time.Since(t0)
	}
	ports, err := freePorts(1)
	if err != nil {
		w.Stop()
		return nil, err
	}
	w.port = ports[0]
	w.addr = fmt.Sprintf("127.0.0.1:%d", w.port)
	w.p, err = startProc("weft registry", w.bin, "registry", "--address", w.addr, "--log-level", "warn")
	if err != nil {
		w.Stop()
		return nil, err
	}
	if err := w.p.waitReady(ctx, func() bool { return httpOK("http://"+w.addr+"/v1/services", `"services"`) }); err != nil {
		w.Stop()
		return nil, err
	}
	return w, nil
}

func (w *weftRegistry) Describe() string {
	how := "binary given with -weft"
	if w.tmp != "" {
		how = "built from ./cmd/weft"
	}
	return fmt.Sprintf("`weft registry` (embedded registry server, %s), separate process, default session TTL", how)
}
func (w *weftRegistry) PID() int         { return w.p.cmd.Process.Pid }
func (w *weftRegistry) Port() int        { return w.port }
func (w *weftRegistry) Endpoint() string { return w.addr }

func (w *weftRegistry) Client(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
	return remote{"embedded", w.addr}.Client(ctx, log)
}

func (w *weftRegistry) Stop() error {
	var err error
	if w.p != nil {
		err = w.p.stop()
	}
	if w.tmp != "" {
		if rerr := os.RemoveAll(w.tmp); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// inProcess is embedded.NewServer served in this process (for the tests:
// its CPU and memory mix with the benchmark's).
type inProcess struct {
	srv  *embedded.Server
	addr string
	port int
	done chan error
}

func startInProcess() (*inProcess, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &inProcess{srv: embedded.NewServer(embedded.ServerOptions{Logger: slog.New(slog.DiscardHandler)}),
		addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *inProcess) Describe() string {
	return "embedded.NewServer in this process (CPU and memory mixed with the benchmark's)"
}
func (s *inProcess) PID() int         { return 0 }
func (s *inProcess) Port() int        { return s.port }
func (s *inProcess) Endpoint() string { return s.addr }
func (s *inProcess) Client(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
	return remote{"embedded", s.addr}.Client(ctx, log)
}
func (s *inProcess) Stop() error {
	err := s.srv.Close()
	if serr := <-s.done; serr != nil && err == nil {
		err = serr
	}
	return err
}

// remote is a server another process started: only Client works.
type remote struct {
	kind, endpoint string
}

func (r remote) Describe() string { return r.kind + " at " + r.endpoint }
func (r remote) PID() int         { return 0 }
func (r remote) Port() int        { return 0 }
func (r remote) Endpoint() string { return r.endpoint }
func (r remote) Stop() error      { return nil }
func (r remote) Client(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
	if r.kind == "etcd" {
		return etcd.New(ctx, etcd.Options{Endpoints: []string{r.endpoint}, Prefix: "/weft/bench", Logger: log})
	}
	if embeddedMaxIdle <= 0 {
		return embedded.New(embedded.Options{Address: r.endpoint, Logger: log}), nil
	}
	// The experiment of -embedded-max-idle: the client's own transport
	// (embedded.New's) but for the idle pool's size.
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: embeddedMaxIdle,
		IdleConnTimeout:     90 * time.Second,
	}
	reg := embedded.New(embedded.Options{Address: r.endpoint, Logger: log, HTTPClient: &http.Client{Transport: tr}})
	return closeIdle{reg, tr}, nil
}

// embeddedMaxIdle, when positive, replaces the embedded client's idle
// connection pool size (MaxIdleConnsPerHost, 64 in embedded.New).
var embeddedMaxIdle int

// closeIdle closes its transport's idle connections after the client.
type closeIdle struct {
	*embedded.Registry
	tr *http.Transport
}

func (c closeIdle) Close() error {
	err := c.Registry.Close()
	c.tr.CloseIdleConnections()
	return err
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the weft repository or pass -weft")
		}
		dir = parent
	}
}

// lockedBuffer collects output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
