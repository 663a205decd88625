package zk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// hostList hands the configured servers to the ZooKeeper client in turn,
// unresolved: the dialer resolves a name each time it connects, so a name
// that does not resolve yet (ZooKeeper not deployed yet) fails a
// connection attempt rather than New. (The client's default provider
// resolves every name once, up front, and fails when one does not.)
type hostList struct {
	mu      sync.Mutex
	servers []string
	next    int // index of the server Next returns
	tried   int // servers tried since the last success (or the start)
}

func (h *hostList) Init(servers []string) error {
	if len(servers) == 0 {
		return errors.New("zk: no servers")
	}
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("zk: server %q: %w", s, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append([]string(nil), servers...)
	return nil
}

func (h *hostList) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

// Next returns the server to try; retryStart reports that every server
// has been tried since the last success, and the client then pauses.
func (h *hostList) Next() (server string, retryStart bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	server = h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	retryStart = h.tried >= len(h.servers)
	if retryStart {
		h.tried = 0
	}
	h.tried++
	return server, retryStart
}

func (h *hostList) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tried = 0
}

// dialer opens the client's TCP connections. It bounds the connection
// handshake: the client waits for the server's answer to its connect
// request for ten times 2/3 of the session timeout (over a minute by
// default), and a server that is starting may accept a connection and
// then never answer nor close it (seen with ZooKeeper 3.8). It can also
// cut the connection, for tests that need a client to vanish without a
// word to the server.
type dialer struct {
	handshake time.Duration // the server must answer within (0: no limit)

	mu      sync.Mutex
	blocked bool
	conn    net.Conn
}

var errBlocked = errors.New("zk: connections blocked (test hook)")

func (d *dialer) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	blocked := d.blocked
	d.mu.Unlock()
	if blocked {
		return nil, errBlocked
	}
	nd := net.Dialer{Timeout: timeout}
	c, err := nd.Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.blocked {
		c.Close()
		return nil, errBlocked
	}
	if d.handshake > 0 {
		hc := &handshakeConn{Conn: c}
		hc.timer = time.AfterFunc(d.handshake, func() { c.Close() })
		c = hc
	}
	d.conn = c
	return c, nil
}

// handshakeConn closes the connection if nothing is read from it in time.
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

// block cuts the current connection and refuses new ones (block true),
// or lets the client connect again (false).
func (d *dialer) block(b bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blocked = b
	if b && d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

// zkLogger passes the ZooKeeper client's own messages (one per failed
// connection attempt while the server is away) to slog at debug level:
// the registry logs the state changes that matter itself.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("zookeeper client: " + fmt.Sprintf(format, args...))
	}
}
