package e2e

import (
	"testing"
	"time"
)

// TestGCHeapFloor: with `weft start --gc-heap-floor-mib` the GC percent
// the Go runtime itself reports (go_gc_gogc_percent on /stats/prometheus)
// rises above 100 once the process has collected under traffic; without
// the flag it stays 100.
func TestGCHeapFloor(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	start := func(extra ...string) *Weft {
		cfg := bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("a")})}, staticCluster("a", up.Port))
		return startWeft(t, cfg, extra...)
	}
	plain := start()
	floor := start("--gc-heap-floor-mib", "512")
	c := client()
	traffic := func(w *Weft) {
		for range 50 {
			if r := get(t, c, "http://"+w.Listener("http")+"/"); r.Status != 200 {
				t.Fatalf("status %d", r.Status)
			}
		}
	}
	const gogc = "go_gc_gogc_percent "
	// Requests and scrapes make garbage; a few MiB of it starts a
	// collection, after which the floor sets the percent.
	waitFor(t, 60*time.Second, "a GC percent above 100 with a 512 MiB floor", func() bool {
		traffic(floor)
		return floor.Metric(gogc) > 100
	})
	for range 10 {
		traffic(plain)
	}
	if p := plain.Metric(gogc); p != 100 {
		t.Fatalf("GC percent %v without a floor, want 100", p)
	}
}
