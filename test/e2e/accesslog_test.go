package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAccessLog: a file access log with a custom format, a JSON log and a
// status-filtered default-format log, checked for a proxied 200, an
// unrouted 404 and a connect failure.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	dead := deadPort(t)
	dir := t.TempDir()
	textLog, jsonLog, errLog := filepath.Join(dir, "text.log"), filepath.Join(dir, "json.log"), filepath.Join(dir, "errors.log")
	format := "[%START_TIME%] %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% code=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% " +
		"in=%BYTES_RECEIVED% out=%BYTES_SENT% up=%UPSTREAM_HOST% cluster=%UPSTREAM_CLUSTER% ua=\"%REQ(USER-AGENT)%\" id=%REQ(X-REQUEST-ID)%\n"
	extra := fmt.Sprintf(`
access_log:
- name: envoy.access_loggers.file
  typed_config: {"@type": %[1]s, path: %[2]q, log_format: {text_format_source: {inline_string: %[3]q}}}
- name: envoy.access_loggers.file
  typed_config:
    "@type": %[1]s
    path: %[4]q
    log_format: {json_format: {status: "%%RESPONSE_CODE%%", flags: "%%RESPONSE_FLAGS%%", upstream: "%%UPSTREAM_HOST%%", path: "%%REQ(:PATH)%%"}}
- name: envoy.access_loggers.file
  filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: unused}}}}
  typed_config: {"@type": %[1]s, path: %[5]q}
`, fileLogType, textLog, format, jsonLog, errLog)
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/ok"}
  route: {cluster: a}
- match: {prefix: "/dead"}
  route: {cluster: dead}
`, Extra: extra}, staticCluster("a", up.Port), staticCluster("dead", dead))
	hc := client()

	req, _ := http.NewRequest("POST", base+"/ok/1", strings.NewReader("twelve bytes"))
	req.Header.Set("User-Agent", "weft-e2e/1.0")
	req.Header.Set("X-Request-Id", "req-ok-1")
	r := do(t, hc, req)
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	if r := get(t, hc, base+"/nope", "X-Request-Id: req-404"); r.Status != 404 {
		t.Fatalf("status %d", r.Status)
	}
	if r := get(t, hc, base+"/dead", "X-Request-Id: req-503"); r.Status != 503 {
		t.Fatalf("status %d", r.Status)
	}

	line := waitAccessLog(t, textLog, 5*time.Second, "id=req-ok-1")
	want := fmt.Sprintf("POST /ok/1 HTTP/1.1 code=200 flags=- in=12 out=%d up=%s cluster=a ua=\"weft-e2e/1.0\" id=req-ok-1", len(r.Body), up.Addr)
	if !strings.HasSuffix(line, want) || !strings.HasPrefix(line, "[20") {
		t.Errorf("200 line:\n got %q\nwant [<time>] %q", line, want)
	}
	if ts := line[1:strings.IndexByte(line, ']')]; !strings.HasPrefix(ts, time.Now().UTC().Format("2006-01-02T")) {
		t.Errorf("START_TIME %q is not an ISO-8601 time of today", ts)
	}
	line = waitAccessLog(t, textLog, 5*time.Second, "id=req-404")
	if !strings.Contains(line, "GET /nope HTTP/1.1 code=404 flags=NR ") || !strings.Contains(line, " up=- ") {
		t.Errorf("404 line: %q", line)
	}
	line = waitAccessLog(t, textLog, 5*time.Second, "id=req-503")
	if !strings.Contains(line, "code=503 flags=UF ") || !strings.Contains(line, fmt.Sprintf(" up=127.0.0.1:%d ", dead)) || !strings.Contains(line, " cluster=dead ") {
		t.Errorf("503 line: %q", line)
	}

	// JSON: one object per line.
	waitAccessLog(t, jsonLog, 5*time.Second, "/dead")
	b, _ := os.ReadFile(jsonLog)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("json log has %d lines, want 3:\n%s", len(lines), b)
	}
	var got []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("json log line %q: %v", l, err)
		}
		got = append(got, fmt.Sprintf("%v %v %v %v", m["path"], m["status"], m["flags"], m["upstream"]))
	}
	wantJSON := []string{"/ok/1 200 - " + up.Addr, "/nope 404 NR <nil>", fmt.Sprintf("/dead 503 UF 127.0.0.1:%d", dead)}
	for i := range wantJSON {
		// Status is a JSON number; an absent upstream host is null.
		if got[i] != wantJSON[i] {
			t.Errorf("json line %d: %q, want %q", i, got[i], wantJSON[i])
		}
	}

	// The filtered log has only the two errors, in Envoy's default format.
	waitAccessLog(t, errLog, 5*time.Second, "/dead")
	b, _ = os.ReadFile(errLog)
	s := string(b)
	if strings.Count(s, "\n") != 2 || strings.Contains(s, "/ok/1") {
		t.Errorf("status_code_filter GE 400 log:\n%s", s)
	}
	if !strings.Contains(s, `"GET /nope HTTP/1.1" 404 NR `) || !strings.Contains(s, `"GET /dead HTTP/1.1" 503 UF `) {
		t.Errorf("default format lines:\n%s", s)
	}
}
