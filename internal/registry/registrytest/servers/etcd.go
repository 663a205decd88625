package servers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// etcdBinary is where the Debian package etcd-server installs etcd.
const etcdBinary = "/usr/bin/etcd"

// Etcd is a single-member etcd on loopback with its own data directory.
type Etcd struct {
	bin  string
	dir  string
	urls atomic.Pointer[[2]string] // client URL, peer URL
	seen atomic.Bool               // Endpoint was called: the ports stay
	proc process
	t    testing.TB // told when etcd ignores SIGTERM (nil: not tied to a test)

	mu      sync.Mutex // serializes Start and Stop
	started bool
}

// NewEtcd prepares (does not start) a server on free ports, tied to no
// test: Close it. Its error wraps ErrNotInstalled when etcd is missing.
func NewEtcd() (*Etcd, error) {
	bin := etcdBinary
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("etcd")
		if lerr != nil {
			return nil, fmt.Errorf("etcd %w (%v); .ci/install-deps.sh installs it", ErrNotInstalled, err)
		}
		bin = p
	}
	dir, err := os.MkdirTemp("", "weft-etcd-test-")
	if err != nil {
		return nil, err
	}
	e := &Etcd{bin: bin, dir: dir, proc: process{name: "etcd"}}
	if err := e.pickPorts(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

func (e *Etcd) pickPorts() error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	e.urls.Store(&[2]string{
		fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	})
	return nil
}

// PrepareEtcd is NewEtcd for one test: skipped or failed (see
// SkipOrFatal) without etcd, its log shown if t fails, closed when t
// ends. It is not started.
func PrepareEtcd(t testing.TB) *Etcd {
	t.Helper()
	e, err := NewEtcd()
	if err != nil {
		SkipOrFatal(t, err)
	}
	e.t = t
	e.LogOnFailure(t) // after Close (cleanups run last first): the log ends with the kill
	t.Cleanup(e.Close)
	return e
}

// StartEtcd is PrepareEtcd, started.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	e := PrepareEtcd(t)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

// Endpoint is the client URL, "http://127.0.0.1:port".
func (e *Etcd) Endpoint() string {
	e.seen.Store(true)
	return e.urls.Load()[0]
}

// Logs is the server's output (the last few hundred KiB), with a line
// for each start and stop.
func (e *Etcd) Logs() string { return e.proc.log.String() }

// Start runs etcd (on the same ports and data every time) and waits until
// it answers. If a port was taken meanwhile by someone else and nobody
// has asked for the endpoint yet (StartEtcd), it moves to other ones.
func (e *Etcd) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for try := 1; ; try++ {
		err := e.startLocked()
		if err == nil {
			e.started = true
			return nil
		}
		if e.started || e.seen.Load() || try == 3 || !e.proc.bindFailed() {
			return err
		}
		e.proc.log.printf("ports taken; trying others")
		if err := e.pickPorts(); err != nil {
			return err
		}
		// A member's data names its peer URL: start afresh.
		os.RemoveAll(filepath.Join(e.dir, "data"))
	}
}

func (e *Etcd) startLocked() error {
	u := e.urls.Load()
	client, peer := u[0], u[1]
	exited, err := e.proc.start(e.dir, []string{e.bin,
		"--name", "t",
		"--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "t=" + peer,
		"--logger", "zap", "--log-outputs", "stderr",
	})
	if err != nil {
		return err
	}
	if err := etcdReady(client, exited, 30*time.Second); err != nil {
		e.proc.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("etcd at %s: %w\n%s", client, err, tail(e.Logs(), 50, 16<<10))
	}
	return nil
}

func etcdReady(url string, exited <-chan struct{}, limit time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.After(limit)
	for {
		resp, err := hc.Get(url + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("/health: %d %s", resp.StatusCode, body)
		}
		select {
		case <-exited:
			return errors.New("etcd exited before answering")
		case <-deadline:
			return fmt.Errorf("no answer after %v: %v", limit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends etcd with SIGTERM (SIGKILL if it lingers, which fails the
// test it is tied to) and waits for it. Its data stays: Start starts it
// again.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.proc.stop(syscall.SIGTERM, 15*time.Second) && e.t != nil {
		e.t.Errorf("etcd ignored SIGTERM; killed it")
	}
}

// Close kills etcd and removes its directory.
func (e *Etcd) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.proc.stop(syscall.SIGKILL, 0)
	os.RemoveAll(e.dir)
}

// LogOnFailure shows the tail of the server's log if t fails (a server
// tied to t by Prepare* or Start* does this already).
func (e *Etcd) LogOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcd %s log (tail):\n%s", e.urls.Load()[0], tail(e.Logs(), 150, 32<<10))
		}
	})
}
