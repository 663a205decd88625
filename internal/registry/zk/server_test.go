package zk

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/registry/registrytest/servers"
)

// The ZooKeeper shared by the tests of this package, started on first use
// and removed by TestMain.
var shared struct {
	once sync.Once
	srv  *servers.ZooKeeper
	err  error
}

// sharedServer returns the shared server, starting it if need be. Without
// ZooKeeper installed the test is skipped, or fails when $CI is set.
func sharedServer(t *testing.T) *servers.ZooKeeper {
	t.Helper()
	shared.once.Do(func() {
		srv, err := servers.NewZooKeeper()
		if err == nil {
			if err = srv.Start(); err != nil {
				srv.Close()
			}
		}
		shared.srv, shared.err = srv, err
	})
	if shared.err != nil {
		servers.SkipOrFatal(t, shared.err)
	}
	shared.srv.LogOnFailure(t)
	return shared.srv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srv := shared.srv; srv != nil && shared.err == nil {
		if testing.Verbose() {
			fmt.Printf("zookeeper started in %v\n", srv.StartupTime().Round(time.Millisecond))
		}
		if os.Getenv("WEFT_ZK_TEST_LOGS") != "" {
			fmt.Printf("zookeeper log:\n%s", srv.Logs())
		}
		srv.Close()
	}
	os.Exit(code)
}

// logBuffer keeps the last bytes written to it (a client's log).
const logKeep = 256 << 10

type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

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
