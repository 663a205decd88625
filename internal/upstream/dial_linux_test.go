//go:build linux

package upstream

import (
	"context"
	"net"
	"syscall"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestHostDial(t *testing.T) {
	addr := echoServer(t)
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs(addr), func(c *clusterv3.Cluster) {
		c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
			KeepaliveTime: wrapperspb.UInt32(7), KeepaliveInterval: wrapperspb.UInt32(3), KeepaliveProbes: wrapperspb.UInt32(4),
		}}
	}))
	c := cluster(t, m, "c")
	h := c.Pick(nil)
	conn, err := h.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats().UpstreamConnTotal.Value() != 1 || c.Stats().UpstreamConnActive.Value() != 1 ||
		h.Stats().ConnTotal.Value() != 1 || h.Stats().ConnActive.Value() != 1 {
		t.Error("connection not counted")
	}
	tc := conn.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn)
	for _, opt := range []struct {
		level, name, want int
		what              string
	}{
		{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1, "TCP_NODELAY"},
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 7, "TCP_KEEPIDLE"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 3, "TCP_KEEPINTVL"},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 4, "TCP_KEEPCNT"},
	} {
		if got := sockopt(t, tc, opt.level, opt.name); got != opt.want {
			t.Errorf("%s = %d, want %d", opt.what, got, opt.want)
		}
	}
	conn.Close()
	conn.Close()
	if c.Stats().UpstreamConnActive.Value() != 0 || h.Stats().ConnActive.Value() != 0 {
		t.Errorf("active after close: cluster %d host %d", c.Stats().UpstreamConnActive.Value(), h.Stats().ConnActive.Value())
	}
}

func sockopt(t *testing.T, c *net.TCPConn, level, name int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, name) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}
