package e2e

// Protocol conversion: HTTP/2 clients (curl, h2load, Go) to HTTP/1.1
// upstreams and HTTP/1.1 clients to HTTP/2 upstreams, in plaintext and
// over TLS, and use_downstream_protocol_config.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// bigOrEcho serves n deterministic bytes (and a trailer) at /big; anything
// else is echoed.
func bigOrEcho(n int) http.Handler {
	echo := echoHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			echo.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Trailer", "X-Body-Done")
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, io.LimitReader(newPRNG(uint64(n)), int64(n)))
		w.Header().Set("X-Body-Done", "yes")
	})
}

// prngSHA is the SHA-256 of bigOrEcho's n-byte body.
func prngSHA(n int) string {
	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(newPRNG(uint64(n)), int64(n)))
	return hex.EncodeToString(h.Sum(nil))
}

func TestH2ConversionH2ClientToH1Upstream(t *testing.T) {
	t.Parallel()
	const big = 3 << 20
	up := newUpstream(t, "h1", bigOrEcho(big))
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("up")}, staticCluster("up", up.Port))
	file, sum := randomFile(t, 1<<20)

	out, stderr := curl(t, "-v", "--http2-prior-knowledge", "-X", "POST", "--data-binary", "@"+file,
		"-H", "Content-Type: application/octet-stream", "-H", "X-Test: h2-to-h1", base+"/echo/path?q=1&r=%20")
	if !strings.Contains(stderr, "< HTTP/2 200") {
		t.Errorf("curl did not get an HTTP/2 200:\n%s", tail(stderr, 3000))
	}
	e := decodeEcho(t, response{Status: 200, Body: out})
	if e.Method != "POST" || e.Path != "/echo/path?q=1&r=%20" || e.BodyLen != 1<<20 || e.BodySHA256 != sum {
		t.Errorf("upstream saw %s %s body %d bytes sha %s; want POST /echo/path?q=1&r=%%20, 1 MiB sha %s",
			e.Method, e.Path, e.BodyLen, e.BodySHA256, sum)
	}
	if got := strings.Join(e.Header["X-Test"], ","); got != "h2-to-h1" {
		t.Errorf("X-Test at the upstream = %q", got)
	}
	if e.Host == "" {
		t.Errorf("upstream saw no Host (from :authority)")
	}

	// A large response streams back intact.
	out, _ = curl(t, "--http2-prior-knowledge", base+"/big")
	if len(out) != big || sha256Hex([]byte(out)) != prngSHA(big) {
		t.Errorf("3 MiB response over HTTP/2: got %d bytes (sha mismatch: %v)", len(out), sha256Hex([]byte(out)) != prngSHA(big))
	}
	// Go's HTTP/2 client too, with many concurrent streams on one connection.
	c := h2cClient(strings.TrimPrefix(base, "http://"))
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			code, body, err := h2Get(c, base+fmt.Sprintf("/echo/%d", i))
			if err == nil && (code != 200 || !strings.Contains(body, fmt.Sprintf(`"path":"/echo/%d"`, i))) {
				err = fmt.Errorf("stream %d: %d %s", i, code, body)
			}
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestH2ConversionH1ClientToH2Upstream(t *testing.T) {
	t.Parallel()
	const big = 8 << 20
	up := newUpstream(t, "h2only", h2Only(bigOrEcho(big)), withH2c)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("up")}, h2Cluster("up", up.Port))
	file, sum := randomFile(t, 1<<20)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"content-length", nil},
		{"chunked", []string{"-H", "Transfer-Encoding: chunked"}},
	} {
		args := append([]string{"-i", "--http1.1", "-X", "POST", "--data-binary", "@" + file, "-H", "X-Test: h1-to-h2"}, tc.args...)
		out, _ := curl(t, append(args, base+"/echo")...)
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200") {
			t.Errorf("%s: response %s", tc.name, tail(out, 2000))
			continue
		}
		e := decodeEcho(t, response{Status: 200, Body: body})
		if e.BodyLen != 1<<20 || e.BodySHA256 != sum || strings.Join(e.Header["X-Test"], ",") != "h1-to-h2" {
			t.Errorf("%s: upstream got %d bytes sha %s X-Test %v; want 1 MiB sha %s", tc.name, e.BodyLen, e.BodySHA256, e.Header["X-Test"], sum)
		}
	}
	// The 8 MiB response (with trailers from the HTTP/2 upstream) arrives
	// intact over HTTP/1.1; the trailers may be dropped or sent chunked.
	out, _ := curl(t, "--http1.1", base+"/big")
	if len(out) != big || sha256Hex([]byte(out)) != prngSHA(big) {
		t.Errorf("8 MiB response over HTTP/1.1: got %d bytes, sha match %v", len(out), sha256Hex([]byte(out)) == prngSHA(big))
	}
	if up.Hits() < 3 {
		t.Errorf("upstream served %d requests, want 3", up.Hits())
	}
}

func TestH2ConversionTLSALPN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA("h2 alpn ca")
	caFile := ca.WriteFile(dir, "ca")
	up := newUpstream(t, "h1", nil)
	w := startWeft(t, bootstrap(t, []M{
		h2TLSListener(t, dir, "tls", ca.Leaf("weft.test"), hcmConfig{Routes: routeTo("up")}),
	}, staticCluster("up", up.Port)))
	_, port, _ := net.SplitHostPort(w.Listener("tls"))
	resolve := "weft.test:" + port + ":127.0.0.1"
	file, sum := randomFile(t, 256<<10)

	out, stderr := curl(t, "-v", "--http2", "--cacert", caFile, "--resolve", resolve,
		"--data-binary", "@"+file, "https://weft.test:"+port+"/tls/h2")
	if !strings.Contains(stderr, "ALPN: server accepted h2") || !strings.Contains(stderr, "< HTTP/2 200") {
		t.Errorf("curl --http2 over TLS did not negotiate h2:\n%s", tail(stderr, 3000))
	}
	e := decodeEcho(t, response{Status: 200, Body: out})
	if e.Path != "/tls/h2" || e.BodySHA256 != sum {
		t.Errorf("upstream saw %s with body sha %s, want /tls/h2 and %s", e.Path, e.BodySHA256, sum)
	}
	// A client offering only http/1.1 still gets HTTP/1.1 on the same port.
	_, stderr = curl(t, "-v", "--http1.1", "--cacert", caFile, "--resolve", resolve, "https://weft.test:"+port+"/tls/h1")
	if !strings.Contains(stderr, "< HTTP/1.1 200") {
		t.Errorf("curl --http1.1 over TLS:\n%s", tail(stderr, 3000))
	}
}

func TestH2ConversionH2load(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("h2load"); err != nil {
		t.Skip("h2load not installed (Debian nghttp2-client)")
	}
	up := newUpstream(t, "h1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("up")}, staticCluster("up", up.Port))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "h2load", "-n", "2000", "-c", "4", "-m", "10", base+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`).FindStringSubmatch(string(out))
	if m == nil || m[1] != "2000" || m[2] != "2000" || m[3] != "0" || m[4] != "0" || m[5] != "0" {
		t.Errorf("h2load: want 2000 succeeded, 0 failed:\n%s", out)
	}
	if !strings.Contains(string(out), "status codes: 2000 2xx") {
		t.Errorf("h2load: want 2000 2xx:\n%s", out)
	}
	if !strings.Contains(string(out), "Application protocol: h2c") {
		t.Errorf("h2load did not speak h2c:\n%s", out)
	}
}

func TestH2ConversionUseDownstreamProtocol(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "both", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, r.Proto)
	}), withH2c)
	_, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("up")}, downstreamProtoCluster("up", up.Port))
	addr := strings.TrimPrefix(base, "http://")

	code, body, err := h2Get(h2cClient(addr), base+"/from-h2")
	if err != nil || code != 200 || body != "HTTP/2.0" {
		t.Errorf("HTTP/2 client: %d %q %v; want the upstream to see HTTP/2.0", code, body, err)
	}
	r := get(t, client(), base+"/from-h1")
	if r.Status != 200 || r.Body != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 client: %d %q; want the upstream to see HTTP/1.1", r.Status, r.Body)
	}
	out, _ := curl(t, "--http2-prior-knowledge", base+"/from-curl-h2")
	if out != "HTTP/2.0" {
		t.Errorf("curl --http2-prior-knowledge: upstream saw %q, want HTTP/2.0", out)
	}
}
