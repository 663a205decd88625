package http1

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// reqWant is what a parsed request should hold; fields nil means unchecked.
type reqWant struct {
	method, target string
	minor          int
	cl             int64
	chunked        bool
	close          bool
	upgrade        string
	expect100      bool
	host           string
	fields         [][2]string
}

func checkRequest(t *testing.T, h *RequestHead, w reqWant) {
	t.Helper()
	if h.Method != w.method || h.Target != w.target || h.Minor != w.minor {
		t.Errorf("start line = %q %q 1.%d, want %q %q 1.%d", h.Method, h.Target, h.Minor, w.method, w.target, w.minor)
	}
	if h.ContentLength != w.cl || h.Chunked != w.chunked || h.Close != w.close {
		t.Errorf("CL=%d chunked=%v close=%v, want %d %v %v", h.ContentLength, h.Chunked, h.Close, w.cl, w.chunked, w.close)
	}
	if h.Upgrade != w.upgrade || h.Expect100 != w.expect100 {
		t.Errorf("upgrade=%q expect100=%v, want %q %v", h.Upgrade, h.Expect100, w.upgrade, w.expect100)
	}
	if got := h.Host(); got != w.host {
		t.Errorf("Host() = %q, want %q", got, w.host)
	}
	if w.fields != nil {
		if got := fields(&h.Header); !equalPairs(got, w.fields) {
			t.Errorf("fields = %q, want %q", got, w.fields)
		}
	}
}

func TestReadRequestHeadVectors(t *testing.T) {
	tests := []struct {
		file string
		want reqWant
	}{
		{"curl_get.http", reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "127.0.0.1:33155",
			fields: [][2]string{{"Host", "127.0.0.1:33155"}, {"User-Agent", "curl/7.88.1"}, {"Accept", "*/*"}}}},
		{"curl_get_headers.http", reqWant{method: "GET", target: "/api/v1/users?id=12345&fields=name,email", minor: 1, cl: -1, host: "127.0.0.1:56573"}},
		{"wrk_get.http", reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "127.0.0.1:43431",
			fields: [][2]string{{"Host", "127.0.0.1:43431"}}}},
		{"curl_http10.http", reqWant{method: "GET", target: "/legacy", minor: 0, cl: -1, close: true, host: "127.0.0.1:37713"}},
		{"curl_post_chunked.http", reqWant{method: "POST", target: "/upload", minor: 1, cl: -1, chunked: true, host: "127.0.0.1:54055"}},
		{"curl_post_expect.http", reqWant{method: "POST", target: "/items", minor: 1, cl: 29, expect100: true, host: "127.0.0.1:60809"}},
		{"curl_websocket.http", reqWant{method: "GET", target: "/ws", minor: 1, cl: -1, upgrade: "websocket", host: "127.0.0.1:46159"}},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.file+"/"+m.name, func(t *testing.T) {
				r := NewReader(m.src(vector(t, tt.file)), m.pool())
				var h RequestHead
				if err := r.ReadRequestHead(&h, Limits{}); err != nil {
					t.Fatal(err)
				}
				checkRequest(t, &h, tt.want)
				checkRequestRoundTrip(t, &h)
			})
		}
	}
}

func TestReadRequestHeadValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want reqWant
	}{
		{"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "a", fields: [][2]string{{"Host", "a"}}}},
		{"leading CRLFs skipped", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "a"}},
		{"same Content-Length twice", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
			reqWant{method: "POST", target: "/x", minor: 1, cl: 5, host: "a"}},
		{"Content-Length leading zeros", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
			reqWant{method: "POST", target: "/x", minor: 1, cl: 7, host: "a"}},
		{"max int64 Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
			reqWant{method: "POST", target: "/x", minor: 1, cl: 1<<63 - 1, host: "a"}},
		{"chunked any case", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n",
			reqWant{method: "POST", target: "/x", minor: 1, cl: -1, chunked: true, host: "a"}},
		{"chunked with empty list elements", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
			reqWant{method: "POST", target: "/x", minor: 1, cl: -1, chunked: true, host: "a"}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 0, cl: -1}},
		{"HTTP/1.0 no Host", "GET / HTTP/1.0\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 0, cl: -1, close: true, fields: [][2]string{}}},
		{"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, close: true, host: "a"}},
		{"upgrade needs Connection upgrade", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "a"}},
		{"upgrade ignored in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 0, cl: -1, close: true, host: "a"}},
		{"upgrade h2c", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, upgrade: "h2c", host: "a"}},
		{"expect any case", "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
			reqWant{method: "PUT", target: "/x", minor: 1, cl: 1, expect100: true, host: "a"}},
		{"expect ignored in HTTP/1.0", "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
			reqWant{method: "PUT", target: "/x", minor: 0, cl: 1, close: true}},
		{"OWS trimmed, empty value, obs-text", "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v 1 \t\r\nX-B:\r\nX-C: caf\xc3\xa9\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "a",
				fields: [][2]string{{"Host", "a"}, {"X-A", "v 1"}, {"X-B", ""}, {"X-C", "caf\xc3\xa9"}}}},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: ""}},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			reqWant{method: "GET", target: "/", minor: 1, cl: -1, host: "[::1]:8080"}},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "OPTIONS", target: "*", minor: 1, cl: -1, host: "a"}},
		{"CONNECT authority", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			reqWant{method: "CONNECT", target: "example.com:443", minor: 1, cl: -1, host: "example.com:443"}},
		{"absolute form", "GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
			reqWant{method: "GET", target: "http://example.com/x?y", minor: 1, cl: -1, host: "example.com"}},
		{"absolute form authority wins over Host", "GET HTTP://Example.com:80?q HTTP/1.1\r\nHost: other\r\nX: 1\r\n\r\n",
			reqWant{method: "GET", target: "HTTP://Example.com:80?q", minor: 1, cl: -1, host: "Example.com:80",
				fields: [][2]string{{"Host", "Example.com:80"}, {"X", "1"}}}},
		{"absolute form adds Host", "GET https://example.com HTTP/1.0\r\nX: 1\r\n\r\n",
			reqWant{method: "GET", target: "https://example.com", minor: 0, cl: -1, close: true, host: "example.com",
				fields: [][2]string{{"X", "1"}, {"Host", "example.com"}}}},
		{"absolute form same Host kept as sent", "GET http://a/ HTTP/1.1\r\nHost: A\r\n\r\n",
			reqWant{method: "GET", target: "http://a/", minor: 1, cl: -1, host: "A"}},
		{"extension method", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "PROPFIND", target: "/d", minor: 1, cl: -1, host: "a"}},
		{"obs-text in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "GET", target: "/caf\xc3\xa9", minor: 1, cl: -1, host: "a"}},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				r := NewReader(m.src([]byte(tt.in)), m.pool())
				var h RequestHead
				if err := r.ReadRequestHead(&h, Limits{}); err != nil {
					t.Fatal(err)
				}
				checkRequest(t, &h, tt.want)
				checkRequestRoundTrip(t, &h)
				if err := r.ReadRequestHead(&h, Limits{}); err != io.EOF {
					t.Fatalf("after the only request: %v, want io.EOF", err)
				}
			})
		}
	}
}

func TestReadRequestHeadErrors(t *testing.T) {
	long := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 100) + "\r\n\r\n"
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		// Framing: request smuggling vectors.
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length non-digit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", Limits{}, ErrMalformed},
		{"Content-Length huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", Limits{}, ErrMalformed},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Limits{}, ErrMalformed},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Limits{}, ErrMalformed},
		{"TE chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Limits{}, ErrMalformed},
		{"TE gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", Limits{}, ErrMalformed},
		{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", Limits{}, ErrMalformed},
		{"TE with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", Limits{}, ErrMalformed},
		{"TE with vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \vchunked\r\n\r\n", Limits{}, ErrMalformed},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", Limits{}, ErrMalformed},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", Limits{}, ErrMalformed},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Limits{}, ErrMalformed},
		{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", Limits{}, ErrMalformed},
		{"fold first line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", Limits{}, ErrMalformed},
		// Line endings.
		{"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", Limits{}, ErrMalformed},
		{"bare LF in field", "GET / HTTP/1.1\r\nHost: a\n\r\n", Limits{}, ErrMalformed},
		{"bare LF at end", "GET / HTTP/1.1\r\nHost: a\r\n\n", Limits{}, ErrMalformed},
		{"bare LF before request", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR before request", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", Limits{}, ErrMalformed},
		{"CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR ends head", "GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", Limits{}, ErrMalformed},
		// Tokens and control characters.
		{"bad method char", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"bad header name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", Limits{}, ErrMalformed},
		{"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", Limits{}, ErrMalformed},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", Limits{}, ErrMalformed},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", Limits{}, ErrMalformed},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", Limits{}, ErrMalformed},
		{"ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[1m\r\n\r\n", Limits{}, ErrMalformed},
		{"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n", Limits{}, ErrMalformed},
		// Request line.
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"control in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"no version", "GET /\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/0.9 style", "GET / \r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Limits{}, ErrMalformed},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"userinfo in absolute target", "GET http://user:pw@a/ HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"bad authority in absolute target", "GET http://a^b/ HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"CONNECT origin form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", Limits{}, ErrMalformed},
		// Host.
		{"missing Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", Limits{}, ErrMalformed},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Limits{}, ErrMalformed},
		{"duplicate Host HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", Limits{}, ErrMalformed},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Limits{}, ErrMalformed},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Limits{}, ErrMalformed},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Limits{}, ErrMalformed},
		// Limits.
		{"head too large", long, Limits{MaxHeaderBytes: 64}, ErrHeaderTooLarge},
		{"head one byte over", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Limits{MaxHeaderBytes: 26}, ErrHeaderTooLarge},
		{"incomplete head at limit", "GET / HTTP/1.1\r\nHost: a\r\nX: yyyyyyyyyyyyyyyyyyyyyy", Limits{MaxHeaderBytes: 30}, ErrHeaderTooLarge},
		{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", Limits{MaxHeaders: 2}, ErrHeaderTooLarge},
		{"endless empty lines", strings.Repeat("\r\n", 100), Limits{MaxHeaderBytes: 64}, ErrHeaderTooLarge},
		// Connection ends.
		{"EOF in head", "GET / HTTP/1.1\r\nHost: a\r\n", Limits{}, io.ErrUnexpectedEOF},
		{"EOF in request line", "G", Limits{}, io.ErrUnexpectedEOF},
		{"clean EOF", "", Limits{}, io.EOF},
		{"EOF after empty lines", "\r\n\r\n", Limits{}, io.EOF},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				r := NewReader(m.src([]byte(tt.in)), m.pool())
				var h RequestHead
				err := r.ReadRequestHead(&h, tt.lim)
				if !errors.Is(err, tt.want) {
					t.Fatalf("ReadRequestHead(%q) = %v, want %v", tt.in, err, tt.want)
				}
			})
		}
	}
	// The exact limit is allowed.
	in := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	if err := NewReader(strings.NewReader(in), nil).ReadRequestHead(&RequestHead{}, Limits{MaxHeaderBytes: len(in)}); err != nil {
		t.Errorf("head of exactly MaxHeaderBytes: %v", err)
	}
}

func TestReadRequestHeadSourceError(t *testing.T) {
	for _, m := range readModes {
		t.Run(m.name, func(t *testing.T) {
			src := &errAfter{data: []byte("GET / HTTP/1.1\r\nHo"), err: os.ErrDeadlineExceeded}
			r := NewReader(m.src(nil), m.pool())
			r.Reset(src)
			err := r.ReadRequestHead(&RequestHead{}, Limits{})
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want os.ErrDeadlineExceeded", err)
			}
		})
	}
}

func TestPipelinedRequests(t *testing.T) {
	in := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n" +
		"\r\n" + // stray CRLF after a body, skipped
		"GET /4 HTTP/1.0\r\n\r\n"
	want := []struct{ target, body string }{{"/1", ""}, {"/2", "hello"}, {"/3", "abc"}, {"/4", ""}}
	for _, m := range readModes {
		t.Run(m.name, func(t *testing.T) {
			r := NewReader(m.src([]byte(in)), m.pool())
			var h RequestHead
			for _, w := range want {
				if err := r.ReadRequestHead(&h, Limits{}); err != nil {
					t.Fatalf("request %s: %v", w.target, err)
				}
				if h.Target != w.target {
					t.Fatalf("target = %q, want %q", h.Target, w.target)
				}
				body, err := io.ReadAll(r.Body(h.ContentLength, h.Chunked, false))
				if err != nil || string(body) != w.body {
					t.Fatalf("body of %s = %q, %v; want %q", w.target, body, err, w.body)
				}
			}
			if err := r.ReadRequestHead(&h, Limits{}); err != io.EOF {
				t.Fatalf("after last request: %v, want io.EOF", err)
			}
		})
	}
}

func TestRequestPseudoHeaders(t *testing.T) {
	var h RequestHead
	if err := NewReader(strings.NewReader("GET /a?b HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"), nil).ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	get := func(k string) string {
		v, ok := h.Get(k)
		if !ok {
			return "<none>"
		}
		return v
	}
	for k, want := range map[string]string{":method": "GET", ":path": "/a?b", ":authority": "example.com", ":scheme": "http", ":other": "<none>", "x-a": "1", "X-B": "<none>"} {
		if got := get(k); got != want {
			t.Errorf("Get(%q) = %q, want %q", k, got, want)
		}
	}
	h.Set(":method", "POST")
	h.Set(":path", "/new")
	h.Set(":authority", "upstream:8080")
	h.Add(":scheme", "https")      // ignored
	h.Set(":path", "/bad path")    // invalid, ignored
	h.Set(":method", "BAD METHOD") // invalid, ignored
	h.Set(":bogus", "x")           // not stored
	if h.Method != "POST" || h.Target != "/new" || h.Host() != "upstream:8080" || get(":scheme") != "http" {
		t.Errorf("after Set: %q %q %q %q", h.Method, h.Target, h.Host(), get(":scheme"))
	}
	var keys []string
	h.Range(func(k, v string) bool { keys = append(keys, k); return true })
	if strings.Join(keys, ",") != "Host,X-A" {
		t.Errorf("Range keys = %q, want Host,X-A", keys)
	}
	h.Del(":authority")
	if _, ok := h.Get(":authority"); ok {
		t.Error(":authority survived Del")
	}
	h.Del(":method")
	if h.Method != "POST" {
		t.Error("Del(:method) changed Method")
	}
}

func TestHeaderMap(t *testing.T) {
	var h Header
	h.Add("Accept", "a")
	h.Add("X-Dup", "1")
	h.Add("Cookie", "c")
	h.Add("x-dup", "2")
	h.Set("X-DUP", "3")
	if got, want := fields(&h), [][2]string{{"Accept", "a"}, {"X-Dup", "3"}, {"Cookie", "c"}}; !equalPairs(got, want) {
		t.Fatalf("after Set: %q, want %q", got, want)
	}
	h.Set("New", "n")
	h.Add("Bad Name", "x")
	h.Add("X-Inject", "a\r\nEvil: 1")
	h.Set("X-Nul", "a\x00")
	h.Add(":path", "/")
	h.Del("accept")
	if got, want := fields(&h), [][2]string{{"X-Dup", "3"}, {"Cookie", "c"}, {"New", "n"}}; !equalPairs(got, want) {
		t.Fatalf("after Del and invalid adds: %q, want %q", got, want)
	}
	if v, ok := h.Get("cookie"); !ok || v != "c" {
		t.Fatalf("Get(cookie) = %q, %v", v, ok)
	}
	n := 0
	h.Range(func(k, v string) bool { n++; return false })
	if n != 1 || h.Len() != 3 {
		t.Fatalf("Range stopped after %d, Len %d", n, h.Len())
	}
}

func TestRequestAppendTo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		edit func(h *RequestHead)
		want string
	}{
		{"hop-by-hop dropped, framing regenerated",
			"POST /x HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\nX-Secret: s\r\nTE: trailers\r\nTrailer: X-T\r\nExpect: 100-continue\r\nproxy-connection: keep-alive\r\nTransfer-Encoding: chunked\r\nx-Keep: Case\r\n\r\n",
			nil,
			"POST /x HTTP/1.1\r\nHost: a\r\nx-Keep: Case\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"content length",
			"PUT /x HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\n\r\n", nil,
			"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"},
		{"Connection cannot drop Host",
			"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n", nil,
			"GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"upgrade",
			"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n", nil,
			"GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"HTTP/1.0 without Host gets an empty one",
			"GET /x HTTP/1.0\r\nA: b\r\n\r\n", nil,
			"GET /x HTTP/1.1\r\nA: b\r\nHost: \r\n\r\n"},
		{"absolute form authority",
			"GET http://example.com:81/x?q HTTP/1.0\r\n\r\n", nil,
			"GET http://example.com:81/x?q HTTP/1.1\r\nHost: example.com:81\r\n\r\n"},
		{"edited by a filter",
			"GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n",
			func(h *RequestHead) {
				h.Set(":path", "/y")
				h.Set(":authority", "b")
				h.Set("X-A", "2")
				h.Add("X-Forwarded-For", "127.0.0.1")
				h.ContentLength = 0
			},
			"GET /y HTTP/1.1\r\nHost: b\r\nX-A: 2\r\nX-Forwarded-For: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h RequestHead
			if err := NewReader(strings.NewReader(tt.in), nil).ReadRequestHead(&h, Limits{}); err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(&h)
			}
			buf := []byte("prefix")
			got := h.AppendTo(buf)
			if string(got) != "prefix"+tt.want {
				t.Errorf("AppendTo =\n%q\nwant\n%q", got, "prefix"+tt.want)
			}
			checkRequestRoundTrip(t, &h)
		})
	}
}

func TestRequestHeadReuse(t *testing.T) {
	// Reading a second head into the same RequestHead reuses its buffers;
	// interned methods stay valid, other strings change with the buffer.
	in := "GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /second HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n"
	r := NewReader(strings.NewReader(in), nil)
	var h RequestHead
	if err := r.ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	m := h.Method
	if err := r.ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	if m != "GET" || h.Method != "POST" || h.Target != "/second" || h.Host() != "b" || h.ContentLength != 0 {
		t.Fatalf("second head: %q %q %q %d (first method %q)", h.Method, h.Target, h.Host(), h.ContentLength, m)
	}
	if !bytes.HasPrefix(h.raw, []byte("POST")) {
		t.Fatalf("raw = %q", h.raw)
	}
}
