package upstream

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestRebuiltClusterKeepsHealth: a cluster rebuilt by a config change with
// the same health checks starts with the old hosts' verdicts (healthy
// stays healthy while the new checker's first check is still running; an
// unhealthy one stays out), instead of every host starting unhealthy. With
// different health checks the hosts start over.
func TestRebuiltClusterKeepsHealth(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-release // the check of the rebuilt cluster is still running
		}
	}))
	defer srv.Close()
	defer close(release)
	down := "127.0.0.1:1" // nothing listens: fails its check
	m := newManager(t, Options{})
	mk := func(breaker uint32, interval time.Duration) *clusterv3.Cluster {
		return static(t, "c", addrs(srv.Listener.Addr().String(), down), withHTTPCheck("/", interval), withBreaker(breaker))
	}
	mustUpdate(t, m, mk(100, time.Hour))
	healthy := func() map[string]bool {
		out := map[string]bool{}
		for _, h := range cluster(t, m, "c").Hosts() {
			out[h.Address()] = h.Healthy()
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for healthy()[srv.Listener.Addr().String()] != true || !cluster(t, m, "c").Hosts()[1].hcChecked.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the first checks did not finish: %v", healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	hang.Store(true)
	mustUpdate(t, m, mk(200, time.Hour)) // breaker change: same checks
	if got := healthy(); !got[srv.Listener.Addr().String()] || got[down] {
		t.Fatalf("after a rebuild with the same checks: %v, want the old verdicts", got)
	}
	mustUpdate(t, m, mk(200, 2*time.Hour)) // other checks: start over
	if got := healthy(); got[srv.Listener.Addr().String()] {
		t.Fatalf("after a rebuild with different checks the host kept its verdict: %v", got)
	}
}

func withBreaker(maxConns uint32) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(maxConns)}}}
	}
}
