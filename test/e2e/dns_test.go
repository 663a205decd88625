package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStrictDNSLocalhost: a STRICT_DNS cluster naming "localhost"
// resolves and serves traffic; /clusters shows the resolved host.
func TestStrictDNSLocalhost(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "dns", nil)
	cluster := ym(t, fmt.Sprintf(`
name: dns
type: STRICT_DNS
connect_timeout: 1s
dns_refresh_rate: 1s
dns_lookup_family: V4_ONLY
load_assignment:
  cluster_name: dns
  endpoints:
  - lb_endpoints:
    - endpoint: {address: {socket_address: {address: localhost, port_value: %d}}}
`, up.Port))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("dns")}, cluster)

	// The first resolution may land just after /ready.
	var r response
	hc := client()
	waitFor(t, 5*time.Second, "a 200 through the DNS cluster", func() bool {
		r = get(t, hc, base+"/dns")
		return r.Status == 200
	})
	if r.Header.Get("X-Upstream") != "dns" {
		t.Errorf("answered by %q", r.Header.Get("X-Upstream"))
	}
	for i := 0; i < 10; i++ {
		if r := get(t, hc, base+"/dns"); r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
	}
	_, body := w.Admin("/clusters?format=json")
	var cs []struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Hosts []struct {
			Address  string `json:"address"`
			Hostname string `json:"hostname"`
		} `json:"host_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &cs); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(cs) != 1 || cs[0].Type != "STRICT_DNS" || len(cs[0].Hosts) == 0 {
		t.Fatalf("/clusters: %s", body)
	}
	want := fmt.Sprintf("127.0.0.1:%d", up.Port)
	if h := cs[0].Hosts[0]; h.Address != want || !strings.Contains(h.Hostname, "localhost") {
		t.Errorf("host %+v, want address %s hostname localhost", h, want)
	}
}
