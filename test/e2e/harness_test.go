// Package e2e starts the real weft binary between real upstreams and real
// clients on loopback. Every test gets its own ports (from :0) and stops
// its processes in t.Cleanup.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// weftBin is the binary built once by TestMain.
var weftBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin = filepath.Join(dir, "weft")
	args := []string{"build", "-o", weftBin}
	if os.Getenv("WEFT_E2E_RACE") != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/weftmesh/weft/cmd/weft")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building weft:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Weft is one running weft process.
type Weft struct {
	t         *testing.T
	cmd       *exec.Cmd
	Dir       string
	AdminAddr string
	stderr    *syncBuffer
	exited    chan struct{}
	exitErr   error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// render executes a config template with data.
func render(t *testing.T, tmpl string, data any) string {
	t.Helper()
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, data); err != nil {
		t.Fatalf("template: %v", err)
	}
	return b.String()
}

// startWeft writes cfg (a bootstrap; admin and listener ports may be 0)
// and starts weft on it, waiting until the admin server answers /ready.
func startWeft(t *testing.T, cfg string, extra ...string) *Weft {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "weft.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "admin.addr")
	args := append([]string{"start", "-c", path, "--admin-address-path", addrFile, "--log-level", "debug"}, extra...)
	w := &Weft{t: t, Dir: dir, stderr: &syncBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(weftBin, args...)
	w.cmd.Stdout = w.stderr
	w.cmd.Stderr = w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.exitErr = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		w.Stop()
		// A weft built with WEFT_E2E_RACE=1 reports races on its stderr.
		if strings.Contains(w.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector fired inside weft")
		}
		if t.Failed() {
			t.Logf("weft output:\n%s", w.stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-w.exited:
			t.Fatalf("weft exited early: %v\n%s", w.exitErr, w.stderr.String())
		default:
		}
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			w.AdminAddr = strings.TrimSpace(string(b))
			if code, _ := httpGet("http://" + w.AdminAddr + "/ready"); code == 200 {
				return w
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("weft did not become ready:\n%s", w.stderr.String())
	return nil
}

// Output is what weft printed so far.
func (w *Weft) Output() string { return w.stderr.String() }

// Signal sends sig to the process.
func (w *Weft) Signal(sig os.Signal) { _ = w.cmd.Process.Signal(sig) }

// Wait waits for exit up to d and reports whether it exited.
func (w *Weft) Wait(d time.Duration) bool {
	select {
	case <-w.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop terminates the process (SIGTERM, then SIGKILL).
func (w *Weft) Stop() {
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if !w.Wait(10 * time.Second) {
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

// Listener returns the bound address of the named listener, from the
// admin /listeners page.
func (w *Weft) Listener(name string) string {
	w.t.Helper()
	code, body := httpGet("http://" + w.AdminAddr + "/listeners?format=json")
	if code != 200 {
		w.t.Fatalf("/listeners: %d %s", code, body)
	}
	var ls []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		w.t.Fatalf("/listeners: %v: %s", err, body)
	}
	for _, l := range ls {
		if l.Name == name {
			return l.Address
		}
	}
	w.t.Fatalf("no listener %q in %s", name, body)
	return ""
}

// Admin GETs an admin path.
func (w *Weft) Admin(path string) (int, string) {
	return httpGet("http://" + w.AdminAddr + path)
}

// Metric returns the value of the first Prometheus sample whose line
// starts with prefix (name plus labels as printed), or -1.
func (w *Weft) Metric(prefix string) float64 {
	_, body := w.Admin("/stats/prometheus")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &v)
			return v
		}
	}
	return -1
}

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// freeListener returns a listener on a fresh loopback port.
func freeListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// upstream is a real HTTP/1.1 server on loopback.
type upstream struct {
	URL  string
	Port int
	srv  *http.Server
}

func startUpstream(t *testing.T, h http.Handler) *upstream {
	t.Helper()
	ln := freeListener(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &upstream{URL: "http://" + ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, srv: srv}
}

// waitFor polls cond every 20ms until it is true or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
