package accesslog

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// headers is a small api.HeaderMap for tests; Get does not allocate.
type headers [][2]string

func (h *headers) Get(k string) (string, bool) {
	for _, kv := range *h {
		if strings.EqualFold(kv[0], k) {
			return kv[1], true
		}
	}
	return "", false
}
func (h *headers) Set(k, v string) { h.Del(k); h.Add(k, v) }
func (h *headers) Add(k, v string) { *h = append(*h, [2]string{k, v}) }
func (h *headers) Del(k string) {
	out := (*h)[:0]
	for _, kv := range *h {
		if !strings.EqualFold(kv[0], k) {
			out = append(out, kv)
		}
	}
	*h = out
}
func (h *headers) Range(fn func(k, v string) bool) {
	for _, kv := range *h {
		if !strings.HasPrefix(kv[0], ":") && !fn(kv[0], kv[1]) {
			return
		}
	}
}

func testEntry() *Entry {
	req := &headers{
		{":method", "GET"}, {":path", "/api/v1/items?id=7"}, {":authority", "example.test"},
		{"x-forwarded-for", "127.0.0.9"}, {"user-agent", "curl/8.5.0"}, {"x-request-id", "req-123"},
	}
	resp := &headers{{":status", "200"}, {"x-envoy-upstream-service-time", "11"}, {"content-type", "text/plain"}}
	return &Entry{
		Start:            time.Date(2024, 3, 5, 7, 8, 9, 123456789, time.UTC),
		Duration:         15700 * time.Microsecond,
		ResponseDuration: 12 * time.Millisecond,
		Protocol:         "HTTP/1.1",
		ReqHeaders:       req,
		RespHeaders:      resp,
		Status:           200,
		BytesReceived:    12,
		BytesSent:        345,
		UpstreamHost:     "127.0.0.1:8080",
		UpstreamCluster:  "backend",
		RouteName:        "items",
		Downstream:       &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 54321},
		DownstreamLocal:  &net.TCPAddr{IP: net.IPv6loopback, Port: 10000},
	}
}

func TestFormatText(t *testing.T) {
	full := testEntry()
	empty := &Entry{}
	local := testEntry()
	local.Start = time.Date(2024, 3, 5, 8, 8, 9, 5000000, time.FixedZone("CET", 3600))
	local.Flags = "UH,UF"
	local.Protocol = "http2"
	local.ResponseDuration = 0
	local.UpstreamHost = ""
	local.UpstreamFailure = "connection refused"
	local.ReqHeaders.Set("user-agent", "evil\nline")
	local.ReqHeaders.Set("x-envoy-original-path", "/orig")

	tests := []struct {
		name   string
		format string
		entry  *Entry
		want   string
	}{
		{"default", DefaultFormat, full,
			`[2024-03-05T07:08:09.123Z] "GET /api/v1/items?id=7 HTTP/1.1" 200 - 12 345 15 11 "127.0.0.9" "curl/8.5.0" "req-123" "example.test" "127.0.0.1:8080"` + "\n"},
		{"default empty entry", DefaultFormat, empty,
			`[-] "- - -" 0 - 0 0 0 - "-" "-" "-" "-" "-"` + "\n"},
		{"default local reply", DefaultFormat, local,
			`[2024-03-05T07:08:09.005Z] "GET /orig HTTP/2" 200 UH,UF 12 345 15 11 "127.0.0.9" "evil\x0aline" "req-123" "example.test" "-"` + "\n"},
		{"literal only", "hello", full, "hello"},
		{"percent escape", "100%% %RESPONSE_CODE%", full, "100% 200"},
		{"header truncation", "%REQ(USER-AGENT):4%|%REQ(:PATH):1000%", full, "curl|/api/v1/items?id=7"},
		{"header fallback", "%REQ(X-MISSING?:AUTHORITY)%", full, "example.test"},
		{"header case", "%REQ(:method)% %RESP(Content-Type)%", full, "GET text/plain"},
		{"missing header", "%REQ(X-NOPE)% %RESP(X-NOPE)%", full, "- -"},
		{"nil headers", "%REQ(:PATH)%", empty, "-"},
		{"path without query", "%REQ_WITHOUT_QUERY(:PATH)%", full, "/api/v1/items"},
		{"addresses", "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", full,
			"127.0.0.1:54321 127.0.0.1 [::1]:10000 ::1"},
		{"unix address", "%DOWNSTREAM_LOCAL_ADDRESS%", &Entry{DownstreamLocal: &net.UnixAddr{Name: "/tmp/s", Net: "unix"}}, "/tmp/s"},
		{"nil typed address", "%DOWNSTREAM_REMOTE_ADDRESS%", &Entry{Downstream: (*net.TCPAddr)(nil)}, "-"},
		{"upstream", "%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %ROUTE_NAME% %UPSTREAM_TRANSPORT_FAILURE_REASON%", full, "127.0.0.1:8080 backend items -"},
		{"failure reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON% %RESPONSE_FLAGS%", local, "connection refused UH,UF"},
		{"durations", "%DURATION% %RESPONSE_DURATION%", full, "15 12"},
		{"no response duration", "%RESPONSE_DURATION%", local, "-"},
		{"bytes", "%BYTES_RECEIVED%/%BYTES_SENT%", full, "12/345"},
		{"protocol names", "%PROTOCOL%", &Entry{Protocol: "bolt"}, "bolt"},
		{"start time custom", "%START_TIME(%Y/%m/%d %H:%M:%S %z)%", full, "2024/03/05 07:08:09 +0000"},
		{"start time fractions", "%START_TIME(%s.%3f|%6f|%f|%E6S|%E*S|%E*f)%", full,
			"1709622489.123|123456|123456789|09.123456|09.123456789|123456789"},
		{"start time names", "%START_TIME(%a %A %b %B %e %j %I%p %y %F %T %Z %%)%", full,
			"Tue Tuesday Mar March  5 065 07AM 24 2024-03-05 07:08:09 UTC %"},
		{"start time local converted to UTC", "%START_TIME%", local, "2024-03-05T07:08:09.005Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.format)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if got := string(f.Append(nil, tt.entry)); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		format string
		want   string
	}{
		{"%FOO%", "unknown operator FOO"},
		{"ok %NOT_AN_OP(x)% ok", "unknown operator NOT_AN_OP"},
		{"%REQ%", "needs a header name"},
		{"%REQ()%", "invalid header name"},
		{"%REQ(A?B?C)%", "at most one alternative"},
		{"%REQ(X-A", "unterminated"},
		{"%REQ(X):0%", "invalid length"},
		{"%REQ(X):%", "invalid length"},
		{"%DURATION(x)%", "takes no arguments"},
		{"%DURATION:3%", "takes no length"},
		{"%RESPONSE_CODE", "missing closing"},
		{"100%", "expected a command operator"},
		{"% x", "expected a command operator"},
		{"%START_TIME(%Q)%", "unsupported conversion %Q"},
		{"%START_TIME(%E3X)%", "unsupported conversion %E3X"},
		{"%START_TIME(%3)%", "must be followed by f"},
		{"%START_TIME(%)%", "ends with %"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.format)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%q) = %v, want error containing %q", tt.format, err, tt.want)
		}
	}
}

func TestFormatJSON(t *testing.T) {
	f, err := CompileJSON(map[string]string{
		"start":     "%START_TIME%",
		"method":    "%REQ(:METHOD)%",
		"status":    "%RESPONSE_CODE%",
		"duration":  "%DURATION%",
		"resp_time": "%RESPONSE_DURATION%",
		"upstream":  "%UPSTREAM_HOST%",
		"ua":        "%REQ(USER-AGENT)%",
		"mixed":     `%REQ(:METHOD)% "%REQ(:PATH)%" %REQ(X-NOPE)%`,
		"literal":   "weft",
	})
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry()
	e.ResponseDuration = 0
	e.ReqHeaders.Set("user-agent", "a\"b\\c\n\x01\xff")
	got := string(f.Append(nil, e))
	want := `{"duration":15,"literal":"weft","method":"GET","mixed":"GET \"/api/v1/items?id=7\" -","resp_time":null,` +
		`"start":"2024-03-05T07:08:09.123Z","status":200,"ua":"a\"b\\c\n\u0001\ufffd","upstream":"127.0.0.1:8080"}` + "\n"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Errorf("invalid JSON %s", got)
	}
	if !f.IsJSON() || f.String() != "json_format" {
		t.Errorf("IsJSON/String = %v/%q", f.IsJSON(), f.String())
	}

	f.omitEmpty = true
	got = string(f.Append(nil, &Entry{}))
	want = `{"duration":0,"literal":"weft","mixed":" \"\" ","status":0}` + "\n"
	if got != want {
		t.Errorf("omit empty: got %s want %s", got, want)
	}

	if _, err := CompileJSON(map[string]string{"bad": "%NOPE%"}); err == nil || !strings.Contains(err.Error(), "json_format.bad") || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("CompileJSON error = %v", err)
	}
}

func TestFormatOmitEmptyText(t *testing.T) {
	f, err := Compile("[%UPSTREAM_HOST%]")
	if err != nil {
		t.Fatal(err)
	}
	f.omitEmpty = true
	if got := string(f.Append(nil, &Entry{})); got != "[]" {
		t.Errorf("got %q", got)
	}
}

func TestFormatAllocs(t *testing.T) {
	f, err := Compile(DefaultFormat)
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry()
	e.Flags = "UH"
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(1000, func() { buf = f.Append(buf[:0], e) }); n != 0 {
		t.Errorf("text Append allocates %v times, want 0", n)
	}
	all, err := Compile("%START_TIME(%s %E*S %z)% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %RESPONSE_DURATION% %ROUTE_NAME% %UPSTREAM_CLUSTER% %REQ_WITHOUT_QUERY(:PATH)%")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { buf = all.Append(buf[:0], e) }); n != 0 {
		t.Errorf("operators allocate %v times, want 0", n)
	}
}

func BenchmarkFormatDefault(b *testing.B) {
	f, err := Compile(DefaultFormat)
	if err != nil {
		b.Fatal(err)
	}
	e := testEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkFormatJSON(b *testing.B) {
	f, err := CompileJSON(map[string]string{
		"start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
		"bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%",
		"upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
		"user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%", "authority": "%REQ(:AUTHORITY)%",
		"upstream_host": "%UPSTREAM_HOST%",
	})
	if err != nil {
		b.Fatal(err)
	}
	e := testEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}
