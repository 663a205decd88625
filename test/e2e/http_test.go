package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPGetPost sends a GET and a Content-Length POST with curl and
// checks what the upstream saw.
func TestHTTPGetPost(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))

	body, code := curlCode(t, base+"/hello/world?x=1&y=two")
	if code != 200 {
		t.Fatalf("GET status %d, body %s", code, body)
	}
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("GET body: %v: %s", err, body)
	}
	if e.Method != "GET" || e.Path != "/hello/world?x=1&y=two" || e.BodyLen != 0 {
		t.Errorf("upstream saw %s %s with %d body bytes", e.Method, e.Path, e.BodyLen)
	}
	if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "http" {
		t.Errorf("x-forwarded-proto = %q, want http", got)
	}
	if len(e.Header["X-Request-Id"]) != 1 {
		t.Errorf("x-request-id not generated: %v", e.Header)
	}

	file, sum := randomFile(t, 300<<10)
	body, code = curlCode(t, "-X", "POST", "--data-binary", "@"+file, "-H", "Content-Type: application/octet-stream", base+"/upload")
	if code != 200 {
		t.Fatalf("POST status %d, body %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("POST body: %v: %s", err, body)
	}
	if e.Method != "POST" || e.ContentLength != 300<<10 || e.BodyLen != 300<<10 || e.BodySHA256 != sum {
		t.Errorf("upstream saw %s content-length %d, %d bytes sha %s; want POST %d bytes sha %s",
			e.Method, e.ContentLength, e.BodyLen, e.BodySHA256, 300<<10, sum)
	}
	if len(e.TransferEncoding) != 0 {
		t.Errorf("a Content-Length body arrived with transfer-encoding %v", e.TransferEncoding)
	}
}

// TestHTTPChunkedUpload uploads a chunked body with curl, both through a
// streaming route and through one that buffers for retries.
func TestHTTPChunkedUpload(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/retry"}
  route: {cluster: a, retry_policy: {retry_on: "5xx", num_retries: 2}}
- match: {prefix: "/"}
  route: {cluster: a}
`}, staticCluster("a", up.Port))

	for _, size := range []int{1, 70 << 10, 2 << 20} {
		file, sum := randomFile(t, size)
		for _, path := range []string{"/stream", "/retry"} {
			t.Run(fmt.Sprintf("%s/%d", path, size), func(t *testing.T) {
				body, code := curlCode(t, "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+file, base+path)
				if code != 200 {
					t.Fatalf("status %d, body %s", code, body)
				}
				var e echoed
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				if e.BodyLen != int64(size) || e.BodySHA256 != sum {
					t.Errorf("upstream got %d bytes sha %s, want %d sha %s", e.BodyLen, e.BodySHA256, size, sum)
				}
				if len(e.TransferEncoding) != 1 || e.TransferEncoding[0] != "chunked" {
					t.Errorf("upstream transfer-encoding %v, want [chunked]", e.TransferEncoding)
				}
			})
		}
	}
}

// TestHTTPChunkedResponse streams a 5 MB chunked response through weft
// and checks it arrives whole and still chunked.
func TestHTTPChunkedResponse(t *testing.T) {
	t.Parallel()
	const size = 5 << 20
	payload := make([]byte, size)
	_, _ = newPRNG(7).Read(payload)
	want := sha256Hex(payload)
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		for off := 0; off < size; {
			n := min(size-off, 7919+off%65536) // odd chunk sizes
			_, _ = w.Write(payload[off : off+n])
			f.Flush()
			off += n
		}
	}))
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))

	dir := t.TempDir()
	out := filepath.Join(dir, "body")
	hdrs := filepath.Join(dir, "headers")
	curl(t, "-o", out, "-D", hdrs, base+"/big")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != size || sha256Hex(b) != want {
		t.Fatalf("got %d bytes sha %s, want %d sha %s", len(b), sha256Hex(b), size, want)
	}
	h, _ := os.ReadFile(hdrs)
	if !strings.Contains(strings.ToLower(string(h)), "transfer-encoding: chunked") {
		t.Errorf("response not chunked:\n%s", h)
	}

	// The same through Go's client, twice on one connection: the chunked
	// framing must end exactly where the body ends.
	c := client()
	for i := 0; i < 2; i++ {
		r := get(t, c, base+"/big")
		if r.Status != 200 || len(r.Body) != size || sha256Hex([]byte(r.Body)) != want {
			t.Fatalf("try %d: status %d, %d bytes", i, r.Status, len(r.Body))
		}
	}
}

// TestHTTPKeepAlive checks downstream connection reuse (curl with two
// URLs) and upstream connection pooling (accepted connections counted).
func TestHTTPKeepAlive(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))

	_, stderr := curl(t, "-v", "-o", "/dev/null", "-o", "/dev/null", base+"/one", base+"/two")
	if !strings.Contains(stderr, "Re-using existing connection") && !strings.Contains(stderr, "Reusing existing") {
		t.Errorf("curl did not reuse the connection:\n%s", stderr)
	}
	if n := strings.Count(stderr, "Connected to"); n != 1 {
		t.Errorf("curl connected %d times, want 1:\n%s", n, stderr)
	}
	if up.Hits() != 2 {
		t.Errorf("upstream hits = %d, want 2", up.Hits())
	}

	// 50 sequential requests on one client connection use one upstream
	// connection (plus the one curl's requests already opened, which the
	// pool reuses too).
	c := client()
	for i := 0; i < 50; i++ {
		if r := get(t, c, base+"/seq"); r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
	}
	if n := up.Conns(); n != 1 {
		t.Errorf("upstream accepted %d connections for 52 sequential requests, want 1", n)
	}
}

// TestHTTPExpectContinue uploads with Expect: 100-continue and checks the
// interim response and the body.
func TestHTTPExpectContinue(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/retry"}
  route: {cluster: a, retry_policy: {retry_on: "5xx", num_retries: 1}}
- match: {prefix: "/"}
  route: {cluster: a}
`}, staticCluster("a", up.Port))
	for _, tc := range []struct{ path, size string }{{"/stream", "big"}, {"/retry", "small"}} {
		t.Run(tc.path, func(t *testing.T) {
			n := 3 << 20
			if tc.size == "small" {
				n = 20 << 10 // fits the retry buffer
			}
			file, sum := randomFile(t, n)
			out, stderr := curl(t, "-v", "-H", "Expect: 100-continue", "--expect100-timeout", "10",
				"--data-binary", "@"+file, "-w", "\n%{http_code}", base+tc.path)
			i := strings.LastIndexByte(out, '\n')
			body, code := out[:i], out[i+1:]
			if !strings.Contains(stderr, "HTTP/1.1 100 Continue") {
				t.Errorf("no 100 Continue seen:\n%s", stderr)
			}
			if code != "200" {
				t.Fatalf("status %s: %s", code, body)
			}
			var e echoed
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatal(err)
			}
			if e.BodyLen != int64(n) || e.BodySHA256 != sum {
				t.Errorf("upstream got %d bytes sha %s, want %d sha %s", e.BodyLen, e.BodySHA256, n, sum)
			}
		})
	}
}

// TestHTTPBodilessResponses checks HEAD, 204 and 304 on one raw
// keep-alive connection: none may carry a body, and the next response on
// the connection must parse.
func TestHTTPBodilessResponses(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			_, _ = io.WriteString(w, "hello world")
		}
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))

	// curl's view of HEAD.
	out, _ := curl(t, "-I", base+"/head")
	if !strings.Contains(strings.ToLower(out), "content-length: 11") {
		t.Errorf("HEAD lost content-length:\n%s", out)
	}

	conn, err := net.DialTimeout("tcp", w.Listener("http"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	steps := []struct {
		method, path string
		status       int
		bodyLen      int
	}{
		{"HEAD", "/head", 200, 0},
		{"GET", "/204", 204, 0},
		{"GET", "/304", 304, 0},
		{"GET", "/after", 200, 11},
		{"HEAD", "/head", 200, 0},
		{"GET", "/after", 200, 11},
	}
	for _, s := range steps {
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: test\r\n\r\n", s.method, s.path)
		req, _ := http.NewRequest(s.method, "http://test"+s.path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", s.method, s.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s body: %v", s.method, s.path, err)
		}
		if resp.StatusCode != s.status || len(b) != s.bodyLen {
			t.Errorf("%s %s: status %d with %d body bytes, want %d with %d", s.method, s.path, resp.StatusCode, len(b), s.status, s.bodyLen)
		}
		if s.method == "HEAD" && resp.Header.Get("Content-Length") != "11" {
			t.Errorf("HEAD content-length %q, want 11", resp.Header.Get("Content-Length"))
		}
		if s.status == 204 || s.status == 304 {
			if te := resp.TransferEncoding; len(te) > 0 {
				t.Errorf("%d response has transfer-encoding %v", s.status, te)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != "0" {
				t.Errorf("%d response has content-length %s", s.status, cl)
			}
		}
	}
	// Nothing stray may follow the last response.
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _ := br.Peek(1); len(n) > 0 {
		rest, _ := br.Peek(br.Buffered())
		t.Errorf("stray bytes after the last response: %q", rest)
	}
}

// TestHTTPLargeHeadersAndManyRequests sends requests with many headers on
// one connection with Go's client, checking each is echoed intact.
func TestHTTPHeadersIntact(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	c := client()
	hdrs := []string{}
	for i := 0; i < 40; i++ {
		hdrs = append(hdrs, "X-Test-"+strconv.Itoa(i)+": value-"+strconv.Itoa(i)+strings.Repeat("v", i*10))
	}
	r := get(t, c, base+"/h", hdrs...)
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	e := decodeEcho(t, r)
	for i := 0; i < 40; i++ {
		want := "value-" + strconv.Itoa(i) + strings.Repeat("v", i*10)
		if got := e.Header["X-Test-"+strconv.Itoa(i)]; len(got) != 1 || got[0] != want {
			t.Errorf("X-Test-%d = %q, want %q", i, got, want)
		}
	}
}

// TestHTTPUpstreamClosesConnections: upstreams that close connections —
// with Connection: close, or by their idle timeout between requests —
// must not make weft fail a request on a stale pooled connection.
func TestHTTPUpstreamClosesConnections(t *testing.T) {
	t.Parallel()
	closer := newUpstream(t, "closer", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}))
	var idleClosed atomic.Int64
	idler := newUpstream(t, "idler", nil, func(s *http.Server) {
		s.IdleTimeout = 50 * time.Millisecond
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				idleClosed.Add(1)
			}
		}
	})
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/closer"}
  route: {cluster: closer}
- match: {prefix: "/idler"}
  route: {cluster: idler}
`}, staticCluster("closer", closer.Port), staticCluster("idler", idler.Port))
	hc := client()

	for i := 0; i < 20; i++ {
		if r := get(t, hc, base+"/closer"); r.Status != 200 || r.Body != "bye" {
			t.Fatalf("closer request %d: %d %q", i, r.Status, r.Body)
		}
	}
	if closer.Conns() != 20 {
		t.Errorf("closer accepted %d connections for 20 requests, want 20", closer.Conns())
	}
	for i := 0; i < 5; i++ {
		if r := get(t, hc, base+"/idler"); r.Status != 200 {
			t.Fatalf("idler request %d: %d %s", i, r.Status, r.Body)
		}
		n := int64(i + 1)
		waitFor(t, 5*time.Second, "the upstream to close the idle pooled connection", func() bool {
			return idleClosed.Load() >= n
		})
	}
}

// TestHTTP10Client: an HTTP/1.0 client gets a chunked upstream response
// un-chunked and delimited by the connection close.
func TestHTTP10Client(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
		}
	}))
	w, _ := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	conn, err := net.DialTimeout("tcp", w.Listener("http"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ten HTTP/1.0\r\nHost: x\r\n\r\n")
	raw, err := io.ReadAll(conn) // until weft closes
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.") || !strings.Contains(head, " 200 ") {
		t.Fatalf("status line: %q", head)
	}
	if strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Errorf("chunked response to an HTTP/1.0 client:\n%s", head)
	}
	var want strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if body != want.String() {
		t.Errorf("body: %d bytes %.60q, want %d bytes; head:\n%s", len(body), body, want.Len(), head)
	}
}

// TestHTTPCloseDelimitedUpstream: an upstream that ends its body by
// closing the connection (no Content-Length, not chunked) is re-framed
// chunked for an HTTP/1.1 client, whose connection stays usable.
func TestHTTPCloseDelimitedUpstream(t *testing.T) {
	t.Parallel()
	want := strings.Repeat("close-delimited body\n", 5000)
	port, _ := tcpServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		_, _ = io.WriteString(c, want[:1000])
		_, _ = io.WriteString(c, want[1000:])
	})
	w, _ := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", port))
	conn, err := net.DialTimeout("tcp", w.Listener("http"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		fmt.Fprintf(conn, "GET /cd HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != want {
			t.Fatalf("request %d: %d bytes, %v", i, len(b), err)
		}
		if len(resp.TransferEncoding) != 1 || resp.Close {
			t.Errorf("request %d: transfer-encoding %v close %v, want chunked keep-alive", i, resp.TransferEncoding, resp.Close)
		}
	}
}
