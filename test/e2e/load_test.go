package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// wrkResult is what a wrk run printed.
type wrkResult struct {
	Requests   int
	Non2xx     int
	SocketErrs int
	Out        string
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func runWrk(t *testing.T, args ...string) wrkResult {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (bash .ci/install-deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	r := wrkResult{Out: string(out)}
	m := wrkRequests.FindStringSubmatch(r.Out)
	if m == nil {
		t.Fatalf("wrk output has no request count:\n%s", out)
	}
	r.Requests, _ = strconv.Atoi(m[1])
	if m := wrkNon2xx.FindStringSubmatch(r.Out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(r.Out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.SocketErrs += n
		}
	}
	return r
}

// TestLoadWrk drives weft with wrk for 3s over 50 connections: no errors,
// and weft's request counters agree with wrk and with the upstream.
func TestLoadWrk(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok, this is a small response body\n")
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))

	r := runWrk(t, "-t", "2", "-c", "50", "-d", "3s", "--timeout", "5s", base+"/load")
	t.Logf("wrk: %d requests", r.Requests)
	if r.Requests < 1000 {
		t.Errorf("only %d requests in 3s:\n%s", r.Requests, r.Out)
	}
	if r.Non2xx != 0 || r.SocketErrs != 0 {
		t.Errorf("wrk saw %d non-2xx responses and %d socket errors:\n%s", r.Non2xx, r.SocketErrs, r.Out)
	}
	// wrk stops counting at the deadline with up to one request per
	// connection still in flight; weft and the upstream finish those.
	var total, ok2xx float64
	waitFor(t, 5*time.Second, "weft's counters to settle", func() bool {
		_, body := w.Admin("/stats/prometheus")
		total = promValue(body, "weft_http_downstream_rq_total", "stat_prefix=ingress")
		ok2xx = promValue(body, "weft_http_downstream_rq_xx_total", "stat_prefix=ingress", "code_class=2xx")
		return total >= float64(r.Requests) && float64(up.Hits()) == total
	})
	if total < float64(r.Requests) || total > float64(r.Requests+60) {
		t.Errorf("weft_http_downstream_rq_total = %v, wrk counted %d", total, r.Requests)
	}
	if ok2xx != total {
		t.Errorf("2xx = %v of %v requests", ok2xx, total)
	}
	if float64(up.Hits()) != total {
		t.Errorf("upstream served %d, weft counted %v", up.Hits(), total)
	}
	if up.Conns() > 60 {
		t.Errorf("upstream accepted %d connections for 50 client connections: pooling not working", up.Conns())
	}
	if v := w.metricValue("weft_cluster_upstream_rq_total", "cluster=a"); v != total {
		t.Errorf("weft_cluster_upstream_rq_total = %v, want %v", v, total)
	}
}
