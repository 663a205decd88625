// Package servers runs real registry servers for tests: a standalone
// ZooKeeper (java and Debian's zookeeper jars) and a single-member etcd
// (/usr/bin/etcd), each on free loopback ports with its data in a
// temporary directory. The registry backends' tests and the end-to-end
// tests share this one implementation.
//
// StartZooKeeper and StartEtcd are what a test normally calls: the server
// is started and ready, its log is shown if the test fails, and it is
// killed and its directory removed when the test ends. A server that is
// not installed skips the test, or fails it when the environment variable
// CI is set (.ci/install-deps.sh installs both). NewZooKeeper and NewEtcd
// prepare a server tied to no test, for one shared by a package's tests
// (see SkipOrFatal and Close).
package servers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled is wrapped by the errors of NewZooKeeper and NewEtcd
// when the server's programs are not installed.
var ErrNotInstalled = errors.New("not installed")

// SkipOrFatal ends t for err, an error of NewZooKeeper or NewEtcd: it
// skips t if the server is not installed and the environment variable CI
// is not set, and fails it otherwise.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	t.Fatal(err)
}

// logBuffer keeps the last bytes of a server's output.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const logKeep = 256 << 10

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*logKeep {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-logKeep:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func (b *logBuffer) printf(format string, args ...any) {
	fmt.Fprintf(b, "=== %s "+format+"\n", append([]any{time.Now().Format(time.StampMilli)}, args...)...)
}

// tail is the end of a log: its last lines, at most maxBytes of them.
func tail(s string, lines, maxBytes int) string {
	s = strings.TrimRight(s, "\n")
	cut := false
	if at := len(s) - maxBytes; at > 0 {
		partial := s[at-1] != '\n'
		s, cut = s[at:], true
		if i := strings.IndexByte(s, '\n'); partial && i >= 0 {
			s = s[i+1:] // from the first whole line
		}
	}
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l, cut = l[len(l)-lines:], true
	}
	if cut {
		l = append([]string{"... (earlier lines cut)"}, l...)
	}
	return strings.Join(l, "\n")
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

// process is a server's process: at most one at a time, its output in
// log.
type process struct {
	name string
	log  logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// start runs the command; exited is closed when it ends.
func (p *process) start(dir string, args []string) (exited <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil, fmt.Errorf("%s is already running", p.name)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	cmd.SysProcAttr = procAttr()
	p.log.printf("starting %s: %s", p.name, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.log.printf("%s exited: %v", p.name, err)
		close(done)
	}()
	p.cmd, p.exited = cmd, done
	return done, nil
}

// stop ends the process, if running: with sig, then SIGKILL if it has not
// exited after grace. It reports false if it had to kill it.
func (p *process) stop(sig syscall.Signal, grace time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	cmd, done := p.cmd, p.exited
	p.cmd, p.exited = nil, nil
	p.log.printf("stopping %s (%v)", p.name, sig)
	_ = cmd.Process.Signal(sig)
	ok := true
	if sig != syscall.SIGKILL {
		select {
		case <-done:
			return true
		case <-time.After(grace):
			p.log.printf("%s ignored %v; killing it", p.name, sig)
			ok = false
			_ = cmd.Process.Kill()
		}
	}
	<-done
	return ok
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// bindFailed reports whether the last run of the server failed to bind
// one of its ports (taken between freePorts and the server binding it).
func (p *process) bindFailed() bool {
	l := p.log.String()
	if i := strings.LastIndex(l, "starting "+p.name+": "); i >= 0 {
		l = l[i:]
	}
	return strings.Contains(strings.ToLower(l), "address already in use")
}
