package servers

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func refused(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}
}

// Stop and Start keep the address and the data.
func TestZooKeeperRestart(t *testing.T) {
	t.Parallel()
	z := StartZooKeeper(t)
	addr := z.Addr()
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(Quiet{}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create("/kept", []byte("v"), zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	z.Stop()
	refused(t, addr)
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	if z.Addr() != addr {
		t.Errorf("address %s after a restart, was %s", z.Addr(), addr)
	}
	var b []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _, err = c.Get("/kept"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || string(b) != "v" {
		t.Errorf("/kept after a restart: %q %v", b, err)
	}
	if !strings.Contains(z.Logs(), "zookeeper exited") {
		t.Errorf("the log does not show the stop:\n%s", tail(z.Logs(), 20, 4<<10))
	}
}

func TestEtcdRestart(t *testing.T) {
	t.Parallel()
	e := StartEtcd(t)
	ep := e.Endpoint()
	if !strings.HasPrefix(ep, "http://127.0.0.1:") {
		t.Fatalf("endpoint %q", ep)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "kept", "v"); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	refused(t, strings.TrimPrefix(ep, "http://"))
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	if e.Endpoint() != ep {
		t.Errorf("endpoint %s after a restart, was %s", e.Endpoint(), ep)
	}
	resp, err := c.Get(ctx, "kept")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("kept after a restart: %v %v", resp, err)
	}
}

func TestTail(t *testing.T) {
	s := "a\nb\nc\n"
	if got := tail(s, 5, 100); got != "a\nb\nc" {
		t.Errorf("tail: %q", got)
	}
	if got := tail(s, 2, 100); got != "... (earlier lines cut)\nb\nc" {
		t.Errorf("tail by lines: %q", got)
	}
	if got := tail(s, 5, 3); got != "... (earlier lines cut)\nb\nc" {
		t.Errorf("tail by bytes, at a line's start: %q", got)
	}
	if got := tail(s, 5, 2); got != "... (earlier lines cut)\nc" {
		t.Errorf("tail by bytes, within a line: %q", got)
	}
}

// A port taken between picking it and the server binding it is replaced,
// as long as nobody has been told the address.
func TestPortTaken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T) (port int, start func() error, addr func() string)
	}{
		{"zookeeper", func(t *testing.T) (int, func() error, func() string) {
			z := PrepareZooKeeper(t)
			return int(z.port.Load()), z.Start, z.Addr
		}},
		{"etcd", func(t *testing.T) (int, func() error, func() string) {
			e := PrepareEtcd(t)
			_, p, _ := net.SplitHostPort(strings.TrimPrefix(e.urls.Load()[0], "http://"))
			port, _ := strconv.Atoi(p)
			return port, e.Start, e.Endpoint
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port, start, addr := tc.prepare(t)
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Skipf("port %d: %v", port, err)
			}
			defer ln.Close()
			if err := start(); err != nil {
				t.Fatal(err)
			}
			if a := addr(); strings.HasSuffix(a, ":"+strconv.Itoa(port)) {
				t.Errorf("still on the taken port: %s", a)
			}
		})
	}
}
