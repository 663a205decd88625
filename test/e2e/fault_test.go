package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// faultFilter is an envoy.filters.http.fault entry with body as its
// config (YAML flow map without @type).
func faultFilter(body string) string {
	return fmt.Sprintf(`[{name: envoy.filters.http.fault, typed_config: {"@type": %s, %s}}]`, faultType, body)
}

// fileAccessLog is an HCM access_log entry writing format to path.
func fileAccessLog(path, format string) string {
	return fmt.Sprintf(`access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": %s, path: %q, log_format: {text_format_source: {inline_string: %q}}}}]`,
		fileLogType, path, format)
}

// TestFaultAbort: abort 100% with 418; the upstream is never reached and
// the access log says FI.
func TestFaultAbort(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	log := filepath.Join(t.TempDir(), "access.log")
	w, base := startHTTPProxy(t, hcmConfig{
		Routes:  routeTo("a"),
		Filters: faultFilter(`abort: {http_status: 418, percentage: {numerator: 100, denominator: HUNDRED}}`),
		Extra:   fileAccessLog(log, "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"),
	}, staticCluster("a", up.Port))
	hc := client()
	for i := 0; i < 20; i++ {
		if r := get(t, hc, fmt.Sprintf("%s/abort/%d", base, i)); r.Status != 418 {
			t.Fatalf("request %d: status %d, want 418", i, r.Status)
		}
	}
	if up.Hits() != 0 {
		t.Errorf("aborted requests reached the upstream %d times", up.Hits())
	}
	waitAccessLog(t, log, 5*time.Second, "/abort/19 418 FI")
	if v := w.metricValue("weft_http_fault_aborts_injected_total", "listener=http"); v != 20 {
		t.Errorf("weft_http_fault_aborts_injected_total = %v, want 20", v)
	}
}

// TestFaultDelay: a fixed 200ms delay on every request.
func TestFaultDelay(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	log := filepath.Join(t.TempDir(), "access.log")
	_, base := startHTTPProxy(t, hcmConfig{
		Routes:  routeTo("a"),
		Filters: faultFilter(`delay: {fixed_delay: 0.2s, percentage: {numerator: 100}}`),
		Extra:   fileAccessLog(log, "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"),
	}, staticCluster("a", up.Port))
	hc := client()
	for i := 0; i < 3; i++ {
		start := time.Now()
		r := get(t, hc, fmt.Sprintf("%s/delay/%d", base, i))
		el := time.Since(start)
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		if el < 200*time.Millisecond || el > 1500*time.Millisecond {
			t.Errorf("request %d took %v, want >= 200ms", i, el)
		}
	}
	if up.Hits() != 3 {
		t.Errorf("upstream hits %d, want 3", up.Hits())
	}
	waitAccessLog(t, log, 5*time.Second, "/delay/2 200 DI")
}

// TestFaultHeaderControlled: faults chosen per request by the
// x-envoy-fault-* headers; requests without them pass untouched.
func TestFaultHeaderControlled(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{
		Routes: routeTo("a"),
		Filters: faultFilter(`abort: {header_abort: {}, percentage: {numerator: 100}},
			delay: {header_delay: {}, percentage: {numerator: 100}}`),
	}, staticCluster("a", up.Port))
	hc := client()

	for _, status := range []int{429, 503, 404} {
		r := get(t, hc, base+"/x", fmt.Sprintf("x-envoy-fault-abort-request: %d", status))
		if r.Status != status {
			t.Errorf("abort header %d: got %d", status, r.Status)
		}
	}
	if up.Hits() != 0 {
		t.Errorf("aborted requests reached the upstream %d times", up.Hits())
	}
	start := time.Now()
	r := get(t, hc, base+"/x")
	if r.Status != 200 || time.Since(start) > 150*time.Millisecond {
		t.Errorf("no fault header: %d in %v, want a prompt 200", r.Status, time.Since(start))
	}
	start = time.Now()
	r = get(t, hc, base+"/x", "x-envoy-fault-delay-request: 250")
	if el := time.Since(start); r.Status != 200 || el < 250*time.Millisecond {
		t.Errorf("delay header 250ms: %d after %v", r.Status, el)
	}
	// A percentage header of 0 disables the abort.
	r = get(t, hc, base+"/x", "x-envoy-fault-abort-request: 503", "x-envoy-fault-abort-request-percentage: 0")
	if r.Status != 200 {
		t.Errorf("abort at 0%%: status %d, want 200", r.Status)
	}
}

// TestHeaderMutationFilter: the header_mutation filter adds and removes
// request and response headers.
func TestHeaderMutationFilter(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	filters := fmt.Sprintf(`
- name: envoy.filters.http.header_mutation
  typed_config:
    "@type": %s
    mutations:
      request_mutations:
      - remove: x-drop-me
      - append: {header: {key: x-mutated, value: "yes"}}
      - append: {header: {key: x-overwrite, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
      - append: {header: {key: x-peer, value: "%%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%%"}}
      response_mutations:
      - remove: x-upstream
      - append: {header: {key: x-resp-mutated, value: "1"}}
`, mutationType)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a"), Filters: filters}, staticCluster("a", up.Port))
	r := get(t, client(), base+"/m", "X-Drop-Me: secret", "X-Overwrite: old", "X-Other: kept")
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	e := decodeEcho(t, r)
	for k, want := range map[string]string{"X-Mutated": "yes", "X-Overwrite": "new", "X-Other": "kept", "X-Peer": "127.0.0.1"} {
		if got := e.Header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want [%s]", k, got, want)
		}
	}
	if v, ok := e.Header["X-Drop-Me"]; ok {
		t.Errorf("x-drop-me reached the upstream: %q", v)
	}
	if got := r.Header.Get("X-Resp-Mutated"); got != "1" {
		t.Errorf("client x-resp-mutated = %q, want 1", got)
	}
	if got := r.Header.Values("X-Upstream"); len(got) != 0 {
		t.Errorf("x-upstream not removed from the response: %q", got)
	}
	// Local replies (404) go through the response mutations too.
	_, base2 := startHTTPProxy(t, hcmConfig{Routes: `[{match: {path: "/only"}, route: {cluster: a}}]`, Filters: filters}, staticCluster("a", up.Port))
	r = get(t, client(), base2+"/missing")
	if r.Status != 404 || r.Header.Get("X-Resp-Mutated") != "1" {
		t.Errorf("404 local reply: status %d x-resp-mutated %q, want 404 and 1", r.Status, r.Header.Get("X-Resp-Mutated"))
	}
}
