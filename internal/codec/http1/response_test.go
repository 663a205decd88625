package http1

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type respWant struct {
	status  int
	reason  string
	minor   int
	cl      int64
	chunked bool
	close   bool
	upgrade string
}

func checkResponse(t *testing.T, h *ResponseHead, w respWant) {
	t.Helper()
	got := respWant{h.Status, h.Reason, h.Minor, h.ContentLength, h.Chunked, h.Close, h.Upgrade}
	if got != w {
		t.Errorf("response = %+v, want %+v", got, w)
	}
}

// checkResponseRoundTrip serializes h for an HTTP/1.1 client and parses it
// again: status and end-to-end fields must survive.
func checkResponseRoundTrip(t testing.TB, h *ResponseHead) {
	t.Helper()
	out := h.AppendTo(nil, 1, false)
	var h2 ResponseHead
	if err := NewReader(bytes.NewReader(out), nil).ReadResponseHead(&h2, Limits{MaxHeaderBytes: len(out) + 1, MaxHeaders: len(h.fields) + 8}); err != nil {
		t.Fatalf("reparse of %q: %v", out, err)
	}
	if h2.Status != h.Status {
		t.Fatalf("reparse of %q: status %d, want %d", out, h2.Status, h.Status)
	}
	if got, want := endToEnd(&h2.Header), endToEnd(&h.Header); !equalPairs(got, want) {
		t.Fatalf("reparse of %q: fields %q, want %q", out, got, want)
	}
	if h.Status >= 200 && h.Status != 204 && h.Status != 304 && (h2.Chunked != h.Chunked || h2.ContentLength != h.ContentLength) {
		t.Fatalf("reparse of %q: framing %v %d, want %v %d", out, h2.Chunked, h2.ContentLength, h.Chunked, h.ContentLength)
	}
}

func TestReadResponseHeadValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want respWant
	}{
		{"go chunked", string(vector(t, "go_chunked_response.http")), respWant{200, "OK", 1, -1, true, true, ""}},
		{"go json", string(vector(t, "go_json_response.http")), respWant{200, "OK", 1, 53, false, true, ""}},
		{"no reason, no SP", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", respWant{200, "", 1, 0, false, false, ""}},
		{"empty reason", "HTTP/1.1 204 \r\n\r\n", respWant{204, "", 1, -1, false, false, ""}},
		{"reason with tab and obs-text", "HTTP/1.1 404 Not\tFound \xc3\xa9\r\n\r\n", respWant{404, "Not\tFound \xc3\xa9", 1, -1, false, false, ""}},
		{"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", respWant{200, "OK", 0, 1, false, true, ""}},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", respWant{200, "OK", 0, 1, false, false, ""}},
		{"101 upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", respWant{101, "Switching Protocols", 1, -1, false, false, "websocket"}},
		{"upgrade advertised on 200 is not an upgrade", "HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n", respWant{200, "OK", 1, 0, false, false, ""}},
		{"status 999", "HTTP/1.1 999 Custom\r\n\r\n", respWant{999, "Custom", 1, -1, false, false, ""}},
		{"same CL twice", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", respWant{200, "OK", 1, 3, false, false, ""}},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				var h ResponseHead
				if err := NewReader(m.src([]byte(tt.in)), m.pool()).ReadResponseHead(&h, Limits{}); err != nil {
					t.Fatal(err)
				}
				checkResponse(t, &h, tt.want)
				checkResponseRoundTrip(t, &h)
			})
		}
	}
}

func TestReadResponseHeadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"status below 100", "HTTP/1.1 099 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"letters in status", "HTTP/1.1 2x0 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/2", "HTTP/2 200 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"double space", "HTTP/1.1  200 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n", Limits{}, ErrMalformed},
		{"TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Limits{}, ErrMalformed},
		{"conflicting CL", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", Limits{}, ErrMalformed},
		{"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 3 4\r\n\r\n", Limits{}, ErrMalformed},
		{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", Limits{}, ErrMalformed},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", Limits{}, ErrMalformed},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", Limits{}, ErrMalformed},
		{"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"garbage", "<html>\r\n\r\n", Limits{}, ErrMalformed},
		{"too many headers", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", Limits{MaxHeaders: 1}, ErrHeaderTooLarge},
		{"too large", "HTTP/1.1 200 OK\r\nA: " + strings.Repeat("a", 200) + "\r\n\r\n", Limits{MaxHeaderBytes: 100}, ErrHeaderTooLarge},
		{"clean EOF", "", Limits{}, io.EOF},
		{"EOF in head", "HTTP/1.1 200 OK\r\n", Limits{}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				err := NewReader(m.src([]byte(tt.in)), m.pool()).ReadResponseHead(&ResponseHead{}, tt.lim)
				if !errors.Is(err, tt.want) {
					t.Fatalf("ReadResponseHead(%q) = %v, want %v", tt.in, err, tt.want)
				}
			})
		}
	}
}

func TestInterimResponses(t *testing.T) {
	in := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
	r := NewReader(strings.NewReader(in), nil)
	var h ResponseHead
	var seen []int
	for {
		if err := r.ReadResponseHead(&h, Limits{}); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, h.Status)
		if h.Status >= 200 {
			break
		}
	}
	body, err := io.ReadAll(r.Body(h.ContentLength, h.Chunked, !h.NoBody("POST")))
	if len(seen) != 3 || seen[2] != 201 || string(body) != "ok" || err != nil {
		t.Fatalf("statuses %v, body %q, err %v", seen, body, err)
	}
}

func TestNoBody(t *testing.T) {
	tests := []struct {
		method string
		status int
		want   bool
	}{
		{"GET", 200, false},
		{"HEAD", 200, true},
		{"HEAD", 404, true},
		{"GET", 100, true},
		{"GET", 101, true},
		{"GET", 103, true},
		{"GET", 204, true},
		{"POST", 204, true},
		{"GET", 205, false},
		{"GET", 304, true},
		{"GET", 301, false},
		{"CONNECT", 200, true},
		{"CONNECT", 407, false},
		{"POST", 500, false},
	}
	for _, tt := range tests {
		h := ResponseHead{Status: tt.status}
		if got := h.NoBody(tt.method); got != tt.want {
			t.Errorf("NoBody(%s %d) = %v, want %v", tt.method, tt.status, got, tt.want)
		}
	}
}

func TestResponseAppendTo(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		minor int
		close bool
		edit  func(h *ResponseHead)
		want  string
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n", 1, false, nil,
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"},
		{"close requested", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, true, nil,
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, false, nil,
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTrailer: X-T\r\n\r\n", 1, false, nil,
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"chunked to HTTP/1.0 closing", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, true, nil,
			"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
		{"chunked to HTTP/1.0 never claims keep-alive", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false, nil,
			"HTTP/1.1 200 OK\r\n\r\n"},
		{"unframed body", "HTTP/1.0 200 OK\r\nX: y\r\n\r\n", 1, true, nil,
			"HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n"},
		{"unframed body rechunked", "HTTP/1.0 200 OK\r\nX: y\r\n\r\n", 1, false,
			func(h *ResponseHead) { h.Chunked = true },
			"HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"HEAD response without length keeps the connection", "HTTP/1.1 200 OK\r\nX: y\r\n\r\n", 1, false, nil,
			"HTTP/1.1 200 OK\r\nX: y\r\n\r\n"},
		{"204 drops framing", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 1, false, nil,
			"HTTP/1.1 204 No Content\r\n\r\n"},
		{"304 keeps Content-Length", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 50\r\n\r\n", 1, false, nil,
			"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 50\r\n\r\n"},
		{"304 never chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 1, false, nil,
			"HTTP/1.1 304 Not Modified\r\n\r\n"},
		{"101 upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n", 1, false, nil,
			"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"100 continue", "HTTP/1.1 100 Continue\r\n\r\n", 1, false, nil,
			"HTTP/1.1 100 Continue\r\n\r\n"},
		{"standard reason filled in", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 1, false, nil,
			"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"},
		{"unknown code keeps empty reason", "HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n", 1, false, nil,
			"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"},
		{"Connection options dropped", "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n", 1, false, nil,
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"status set by a filter", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, false,
			func(h *ResponseHead) { h.Set(":status", "503"); h.Set("Retry-After", "1") },
			"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h ResponseHead
			if err := NewReader(strings.NewReader(tt.in), nil).ReadResponseHead(&h, Limits{}); err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(&h)
			}
			if got := h.AppendTo(nil, tt.minor, tt.close); string(got) != tt.want {
				t.Errorf("AppendTo =\n%q\nwant\n%q", got, tt.want)
			}
			checkResponseRoundTrip(t, &h)
		})
	}
}

func TestResponsePseudoHeaders(t *testing.T) {
	var h ResponseHead
	if err := NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), nil).ReadResponseHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.Get(":status"); !ok || v != "200" {
		t.Fatalf("Get(:status) = %q, %v", v, ok)
	}
	h.Set(":status", "42")  // invalid, ignored
	h.Set(":status", "abc") // invalid, ignored
	h.Add(":status", "404") // Add of a pseudo-header sets it
	h.Del(":status")        // cannot be removed
	if v, _ := h.Get(":status"); v != "404" || h.Status != 404 || h.Reason != "" {
		t.Fatalf("after Set: %q %d %q", v, h.Status, h.Reason)
	}
	h.Status = 418
	if v, _ := h.Get(":status"); v != "418" {
		t.Fatalf("Get(:status) after field change = %q", v)
	}
	if _, ok := h.Get(":path"); ok {
		t.Fatal("response answered :path")
	}
}

func TestCloseDelimited(t *testing.T) {
	tests := []struct {
		status  int
		cl      int64
		chunked bool
		minor   int
		want    bool
	}{
		{200, 5, false, 1, false},
		{200, 5, false, 0, false},
		{200, -1, true, 1, false},
		{200, -1, true, 0, true},
		{200, -1, false, 1, true},
		{204, -1, false, 1, false},
		{304, -1, false, 0, false},
		{101, -1, false, 1, false},
	}
	for _, tt := range tests {
		h := ResponseHead{Status: tt.status, ContentLength: tt.cl, Chunked: tt.chunked}
		if got := h.CloseDelimited(tt.minor); got != tt.want {
			t.Errorf("CloseDelimited(%d) of %d cl=%d chunked=%v = %v, want %v", tt.minor, tt.status, tt.cl, tt.chunked, got, tt.want)
		}
	}
}
