package etcd

import (
	"bytes"
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
	"testing"
	"time"
)

// etcdBinary is where the Debian package etcd-server installs etcd.
const etcdBinary = "/usr/bin/etcd"

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

// etcdServer is a single-member etcd on loopback with its own data dir,
// stopped at the end of the test; its log is shown when the test fails.
type etcdServer struct {
	bin       string
	dir       string
	clientURL string
	peerURL   string
	log       *lockedBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
}

// newEtcd prepares a server (ports and data dir) without starting it.
func newEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin := etcdBinary
	if _, err := os.Stat(bin); err != nil {
		if p, lerr := exec.LookPath("etcd"); lerr == nil {
			bin = p
		} else if os.Getenv("CI") != "" {
			t.Fatalf("etcd is not installed (%v); .ci/install-deps.sh installs it", err)
		} else {
			t.Skipf("etcd is not installed (%v); .ci/install-deps.sh installs it", err)
		}
	}
	ports := freePorts(t, 2)
	s := &etcdServer{
		bin:       bin,
		dir:       filepath.Join(t.TempDir(), "etcd"),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		log:       &lockedBuffer{},
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("etcd log (%s):\n%s", s.clientURL, tail(s.log.String(), 150))
		}
	})
	return s
}

// startEtcd starts a new server and waits until it answers.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	s := newEtcd(t)
	s.start(t)
	return s
}

// freePorts returns n distinct ports free on 127.0.0.1 at the time.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// start runs etcd (on the same ports and data dir every time) and waits
// until it answers.
func (s *etcdServer) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(s.bin,
		"--name", "t",
		"--data-dir", s.dir,
		"--listen-client-urls", s.clientURL,
		"--advertise-client-urls", s.clientURL,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "t="+s.peerURL,
		"--logger", "zap", "--log-outputs", "stderr",
	)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = procAttr()
	fmt.Fprintf(s.log, "=== %s starting etcd\n", time.Now().Format(time.StampMilli))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(s.log, "=== %s etcd exited: %v\n", time.Now().Format(time.StampMilli), err)
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(s.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("etcd exited before answering:\n%s", tail(s.log.String(), 50))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd does not answer at %s: %v", s.clientURL, err)
		}
	}
}

// stop ends etcd with SIGTERM (SIGKILL if it lingers) and waits for it.
func (s *etcdServer) stop(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	fmt.Fprintf(s.log, "=== %s stopping etcd\n", time.Now().Format(time.StampMilli))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Errorf("etcd ignored SIGTERM; killing it")
		_ = cmd.Process.Kill()
		<-done
	}
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
