package zk

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// A standalone ZooKeeper for the tests, on loopback, with its data in a
// temporary directory. It runs QuorumPeerMain directly (what zkServer.sh
// start-foreground runs) with the jars of the distribution:
//
//   - $ZOOKEEPER_HOME/lib/* (Apache's tarball), if ZOOKEEPER_HOME is set;
//   - else /usr/share/java/zookeeper.jar (Debian's zookeeper package, a
//     dependency of zookeeperd), whose manifest lists its dependencies,
//     plus slf4j-simple.jar when present so that the log goes to stderr;
//   - or ZK_CLASSPATH, used as is.
//
// java is $JAVA_HOME/bin/java or the one on PATH.

var errNotInstalled = errors.New("zookeeper (java and its jars) not installed")

func zkCommand() (java string, classpath string, err error) {
	java = "java"
	if h := os.Getenv("JAVA_HOME"); h != "" {
		java = filepath.Join(h, "bin", "java")
	}
	if java, err = exec.LookPath(java); err != nil {
		return "", "", fmt.Errorf("%w: %v", errNotInstalled, err)
	}
	if cp := os.Getenv("ZK_CLASSPATH"); cp != "" {
		return java, cp, nil
	}
	if h := os.Getenv("ZOOKEEPER_HOME"); h != "" {
		if m, _ := filepath.Glob(filepath.Join(h, "lib", "zookeeper-*.jar")); len(m) > 0 {
			return java, filepath.Join(h, "lib", "*"), nil
		}
	}
	for _, dir := range []string{"/usr/share/java", "/usr/share/zookeeper/lib"} {
		jar := filepath.Join(dir, "zookeeper.jar")
		if _, err := os.Stat(jar); err != nil {
			continue
		}
		cp := []string{jar}
		if _, err := os.Stat(filepath.Join(dir, "slf4j-simple.jar")); err == nil {
			cp = append(cp, filepath.Join(dir, "slf4j-simple.jar"))
		}
		return java, strings.Join(cp, string(os.PathListSeparator)), nil
	}
	return "", "", fmt.Errorf("%w: no zookeeper.jar (set ZOOKEEPER_HOME or ZK_CLASSPATH)", errNotInstalled)
}

// logBuffer keeps the last bytes of the server's output.
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

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}

type zkServer struct {
	java, classpath string
	dir             string
	port            int
	log             logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newZKServer prepares (does not start) a server on a free port, or on
// port if not 0.
func newZKServer(port int) (*zkServer, error) {
	java, cp, err := zkCommand()
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "weft-zk-test-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
minSessionTimeout=1000
maxSessionTimeout=60000
maxClientCnxns=0
forceSync=no
4lw.commands.whitelist=srvr
`, filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &zkServer{java: java, classpath: cp, dir: dir, port: port}, nil
}

func (s *zkServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server and waits until a client gets a session.
func (s *zkServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("zookeeper already running")
	}
	cmd := exec.Command(s.java,
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-cp", s.classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain",
		filepath.Join(s.dir, "zoo.cfg"))
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	fmt.Fprintf(&s.log, "=== %s: starting zookeeper on %s: %s\n", time.Now().Format(time.TimeOnly), s.addr(), strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	if err := waitReady(s.addr(), exited, 60*time.Second); err != nil {
		s.stopLocked()
		return fmt.Errorf("zookeeper on %s: %w\n%s", s.addr(), err, s.log.tail(8<<10))
	}
	return nil
}

// stop kills the server (as a crash would: its data stays).
func (s *zkServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *zkServer) stopLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	fmt.Fprintf(&s.log, "=== %s: zookeeper stopped\n", time.Now().Format(time.TimeOnly))
	s.cmd, s.exited = nil, nil
}

func (s *zkServer) remove() {
	s.stop()
	os.RemoveAll(s.dir)
}

// serving reports whether the server at addr answers "srvr" with its
// statistics (not "not currently serving requests").
func serving(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	b, _ := io.ReadAll(c)
	return strings.Contains(string(b), "Mode: standalone")
}

// waitReady waits until a client gets a session with the server at addr.
func waitReady(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.After(limit)
	// First until it serves (the "srvr" four-letter command, allowed in
	// zoo.cfg): the client pauses a second after a failed attempt.
	for !serving(addr) {
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-deadline:
			return fmt.Errorf("not serving after %v", limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// A server that is starting may leave a connection unanswered: the
	// handshake limit has the client try again.
	d := &dialer{handshake: 500 * time.Millisecond}
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithDialer(d.dial), zk.WithLogger(quiet{}), zk.WithLogInfo(false))
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		if c.State() == zk.StateHasSession {
			if _, _, err := c.Exists("/"); err == nil {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-deadline:
			return fmt.Errorf("no session after %v", limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// The server shared by the tests of this package, started on first use.
var shared struct {
	once  sync.Once
	srv   *zkServer
	err   error
	start time.Duration
}

// sharedServer returns the shared server, starting it if need be. Without
// ZooKeeper installed the test is skipped, or fails when $CI is set.
func sharedServer(t *testing.T) *zkServer {
	t.Helper()
	shared.once.Do(func() {
		srv, err := newZKServer(0)
		if err != nil {
			shared.err = err
			return
		}
		t0 := time.Now()
		if err := srv.start(); err != nil {
			srv.remove()
			shared.err = err
			return
		}
		shared.start = time.Since(t0)
		shared.srv = srv
	})
	if shared.err != nil {
		if errors.Is(shared.err, errNotInstalled) && os.Getenv("CI") == "" {
			t.Skip(shared.err)
		}
		t.Fatal(shared.err)
	}
	srv := shared.srv
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zookeeper %s log (tail):\n%s", srv.addr(), srv.log.tail(32<<10))
		}
	})
	return srv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		if testing.Verbose() {
			fmt.Printf("zookeeper started in %v\n", shared.start.Round(time.Millisecond))
		}
		if os.Getenv("WEFT_ZK_TEST_LOGS") != "" {
			fmt.Printf("zookeeper log:\n%s", shared.srv.log.tail(logKeep))
		}
		shared.srv.remove()
	}
	os.Exit(code)
}
