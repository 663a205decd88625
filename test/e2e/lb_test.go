package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestLBRoundRobin: 300 sequential requests over three hosts, 100 each
// give or take a few.
func TestLBRoundRobin(t *testing.T) {
	t.Parallel()
	ups := []*testUpstream{newUpstream(t, "a", nil), newUpstream(t, "b", nil), newUpstream(t, "c", nil)}
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("rr")},
		with(t, staticCluster("rr", ups[0].Port, ups[1].Port, ups[2].Port), `lb_policy: ROUND_ROBIN`))
	hc := client()
	seq := ""
	for i := 0; i < 300; i++ {
		r := get(t, hc, base+"/rr")
		if r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
		if i < 6 {
			seq += r.Header.Get("X-Upstream")
		}
	}
	for _, u := range ups {
		if h := u.Hits(); h < 95 || h > 105 {
			t.Errorf("host %s got %d of 300, want ~100", u.Name, h)
		}
	}
	// Round robin cycles: the first three picks are three different hosts
	// and the cycle repeats.
	if len(seq) != 6 || seq[0] == seq[1] || seq[1] == seq[2] || seq[0] == seq[2] || seq[:3] != seq[3:] {
		t.Errorf("pick order %q is not a cycle over the three hosts", seq)
	}
}

// TestLBRingHash: a header hash policy keeps each user on one host, and
// different users spread over several hosts.
func TestLBRingHash(t *testing.T) {
	t.Parallel()
	ups := []*testUpstream{newUpstream(t, "a", nil), newUpstream(t, "b", nil), newUpstream(t, "c", nil)}
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/"}
  route: {cluster: rh, hash_policy: [{header: {header_name: x-user}}]}
`}, with(t, staticCluster("rh", ups[0].Port, ups[1].Port, ups[2].Port), `lb_policy: RING_HASH`))
	hc := client()
	used := map[string]int{}
	for u := 0; u < 30; u++ {
		first := ""
		for i := 0; i < 5; i++ {
			r := get(t, hc, base+"/rh", fmt.Sprintf("X-User: user-%d", u))
			if r.Status != 200 {
				t.Fatalf("status %d", r.Status)
			}
			host := r.Header.Get("X-Upstream")
			if i == 0 {
				first = host
				used[host]++
			} else if host != first {
				t.Errorf("user-%d moved from %s to %s", u, first, host)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("30 users all hashed to %v", used)
	}
	t.Logf("users per host: %v", used)
}

// TestLBLeastRequest: one host holds its requests; least-request sends new
// requests to the idle hosts, where round robin would give it a third.
func TestLBLeastRequest(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	slow := newUpstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.wait(20 * time.Second)
		_, _ = io.WriteString(w, "slow")
	}))
	f1, f2 := newUpstream(t, "f1", nil), newUpstream(t, "f2", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("lr")},
		with(t, staticCluster("lr", slow.Port, f1.Port, f2.Port), `{lb_policy: LEAST_REQUEST, least_request_lb_config: {choice_count: 4}}`))

	hc := client()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer g.open()
	const n = 60
	for i := 0; i < n; i++ {
		before := slow.Hits() + f1.Hits() + f2.Hits()
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			resp, err := hc.Get(base + "/lr")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		// Wait until this request reached a host: it either finished
		// (fast host) or is parked on the slow one.
		deadline := time.Now().Add(5 * time.Second)
		for slow.Hits()+f1.Hits()+f2.Hits() == before {
			if time.Now().After(deadline) {
				t.Fatalf("request %d reached no host", i)
			}
			select {
			case <-done:
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	t.Logf("slow %d, f1 %d, f2 %d", slow.Hits(), f1.Hits(), f2.Hits())
	if slow.Hits() > 6 {
		t.Errorf("the busy host got %d of %d requests; least-request should avoid it", slow.Hits(), n)
	}
	if f1.Hits() < 10 || f2.Hits() < 10 {
		t.Errorf("idle hosts got %d and %d; want both used", f1.Hits(), f2.Hits())
	}
}
