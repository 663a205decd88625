package servers

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// A standalone ZooKeeper on loopback, with its data in a temporary
// directory. It runs QuorumPeerMain directly (what zkServer.sh
// start-foreground runs) with the jars of the distribution:
//
//   - $ZOOKEEPER_HOME/lib/* (Apache's tarball), if ZOOKEEPER_HOME is set;
//   - else /usr/share/java/zookeeper.jar (Debian's zookeeper package, a
//     dependency of zookeeperd), whose manifest lists its dependencies,
//     plus slf4j-simple.jar when present so that the log goes to stderr;
//   - or ZK_CLASSPATH, used as is.
//
// java is $JAVA_HOME/bin/java or the one on PATH.
type ZooKeeper struct {
	java, classpath string
	dir             string
	port            atomic.Int32
	seen            atomic.Bool // Addr was called: the port stays
	proc            process

	mu    sync.Mutex // serializes Start and Stop
	start time.Duration
}

func zkCommand() (java string, classpath string, err error) {
	java = "java"
	if h := os.Getenv("JAVA_HOME"); h != "" {
		java = filepath.Join(h, "bin", "java")
	}
	if java, err = exec.LookPath(java); err != nil {
		return "", "", fmt.Errorf("zookeeper: java %w (%v)", ErrNotInstalled, err)
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
	return "", "", fmt.Errorf("zookeeper %w: no zookeeper.jar (install zookeeperd, or set ZOOKEEPER_HOME or ZK_CLASSPATH)", ErrNotInstalled)
}

// NewZooKeeper prepares (does not start) a server on a free port, tied to
// no test: Close it. Its error wraps ErrNotInstalled when java or the
// jars are missing.
func NewZooKeeper() (*ZooKeeper, error) {
	java, cp, err := zkCommand()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weft-zk-test-")
	if err != nil {
		return nil, err
	}
	z := &ZooKeeper{java: java, classpath: cp, dir: dir, proc: process{name: "zookeeper"}}
	if err := z.configure(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return z, nil
}

// configure picks a free port and writes zoo.cfg.
func (z *ZooKeeper) configure() error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	z.port.Store(int32(ports[0]))
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
`, filepath.Join(z.dir, "data"), ports[0])
	return os.WriteFile(filepath.Join(z.dir, "zoo.cfg"), []byte(cfg), 0o644)
}

// PrepareZooKeeper is NewZooKeeper for one test: skipped or failed (see
// SkipOrFatal) without ZooKeeper, its log shown if t fails, closed when t
// ends. It is not started.
func PrepareZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	z, err := NewZooKeeper()
	if err != nil {
		SkipOrFatal(t, err)
	}
	z.LogOnFailure(t) // after Close (cleanups run last first): the log ends with the kill
	t.Cleanup(z.Close)
	return z
}

// StartZooKeeper is PrepareZooKeeper, started.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	z := PrepareZooKeeper(t)
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	return z
}

// Addr is the client address, "127.0.0.1:port".
func (z *ZooKeeper) Addr() string {
	z.seen.Store(true)
	return z.addr()
}

func (z *ZooKeeper) addr() string { return "127.0.0.1:" + strconv.Itoa(int(z.port.Load())) }

// Logs is the server's output (the last few hundred KiB), with a line
// for each start and stop.
func (z *ZooKeeper) Logs() string { return z.proc.log.String() }

// StartupTime is how long the last Start took.
func (z *ZooKeeper) StartupTime() time.Duration {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.start
}

// Start runs the server (on the same port and data every time) and waits
// until a client gets a session. If its port was taken meanwhile by
// someone else and nobody has asked for its address yet (StartZooKeeper),
// it moves to another one.
func (z *ZooKeeper) Start() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	t0 := time.Now()
	for try := 1; ; try++ {
		err := z.startLocked()
		if err == nil {
			z.start = time.Since(t0)
			return nil
		}
		if z.seen.Load() || try == 3 || !z.proc.bindFailed() {
			return err
		}
		z.proc.log.printf("port %d taken; trying another", z.port.Load())
		if err := z.configure(); err != nil {
			return err
		}
	}
}

func (z *ZooKeeper) startLocked() error {
	args := []string{z.java,
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-cp", z.classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain",
		filepath.Join(z.dir, "zoo.cfg")}
	exited, err := z.proc.start(z.dir, args)
	if err != nil {
		return err
	}
	if err := zkReady(z.addr(), exited, 60*time.Second); err != nil {
		z.proc.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("zookeeper on %s: %w\n%s", z.addr(), err, tail(z.Logs(), 60, 8<<10))
	}
	return nil
}

// Stop kills the server, as a crash would: its data stays, Start starts
// it again. Sessions survive if it is back within their timeout.
func (z *ZooKeeper) Stop() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.proc.stop(syscall.SIGKILL, 0)
}

// Close stops the server and removes its directory.
func (z *ZooKeeper) Close() {
	z.Stop()
	os.RemoveAll(z.dir)
}

// zkServing reports whether the server at addr answers "srvr" with its
// statistics (not "not currently serving requests").
func zkServing(addr string) bool {
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

// zkReady waits until a client gets a session with the server at addr.
func zkReady(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.After(limit)
	// First until it serves (the "srvr" four-letter command, allowed in
	// zoo.cfg): the client pauses a second after a failed attempt.
	for !zkServing(addr) {
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-deadline:
			return fmt.Errorf("not serving after %v", limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// A server that is starting may accept a connection and never answer
	// the client's connect request (the client would wait over 20s): the
	// dialer closes a connection that has not answered in 500ms, and the
	// client tries again.
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithDialer(handshakeDial(500*time.Millisecond)),
		zk.WithLogger(Quiet{}), zk.WithLogInfo(false))
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

// handshakeDial is a ZooKeeper client dialer whose connections close if
// nothing is read from them within d.
func handshakeDial(d time.Duration) zk.Dialer {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout(network, address, timeout)
		if err != nil {
			return nil, err
		}
		hc := &handshakeConn{Conn: c}
		hc.timer = time.AfterFunc(d, func() { c.Close() })
		return hc, nil
	}
}

type handshakeConn struct {
	net.Conn
	timer *time.Timer
	once  sync.Once
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { c.timer.Stop() })
	}
	return n, err
}

func (c *handshakeConn) Close() error {
	c.once.Do(func() { c.timer.Stop() })
	return c.Conn.Close()
}

// Quiet is a ZooKeeper client logger that drops everything, for raw
// clients in tests (zk.WithLogger(servers.Quiet{})).
type Quiet struct{}

// Printf does nothing.
func (Quiet) Printf(string, ...any) {}

// LogOnFailure shows the tail of the server's log if t fails (a server
// tied to t by Prepare* or Start* does this already).
func (z *ZooKeeper) LogOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zookeeper %s log (tail):\n%s", z.addr(), tail(z.Logs(), 150, 32<<10))
		}
	})
}
