package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1S", time.Second, true},
		{"250m", 250 * time.Millisecond, true},
		{"3H", 3 * time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"10u", 10 * time.Microsecond, true},
		{"99999999n", 99999999, true},
		{"123456789S", 0, false}, // more than 8 digits
		{"1", 0, false},
		{"S", 0, false},
		{"1x", 0, false},
		{"-1S", 0, false},
		{"", 0, false},
	} {
		got, ok := parseGRPCTimeout(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestGRPCStatusFor(t *testing.T) {
	flags := func(f ...string) *accesslog.Flags {
		var fl accesslog.Flags
		for _, x := range f {
			fl.Add(x)
		}
		return &fl
	}
	for _, c := range []struct {
		status int
		flags  *accesslog.Flags
		want   int
	}{
		{503, flags("UH"), grpcUnavailable},
		{503, flags("UF"), grpcUnavailable},
		{503, flags("UO"), grpcResourceExhausted},
		{504, flags("UT"), grpcDeadlineExceeded},
		{404, flags("NR"), grpcUnimplemented},
		{403, flags(), grpcPermissionDenied},
		{401, flags(), grpcUnauthenticated},
		{429, flags(), grpcResourceExhausted},
		{400, flags(), grpcInternal},
		{200, flags(), grpcOK},
		{418, flags(), grpcUnknown},
	} {
		if got := grpcStatusFor(c.status, c.flags); got != c.want {
			t.Errorf("grpcStatusFor(%d, %s) = %d, want %d", c.status, c.flags.String(), got, c.want)
		}
	}
}

func TestGRPCEncodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"no route":     "no route",
		"100%":         "100%25",
		"caf\u00e9":    "caf%C3%A9",
		"line\nbreak":  "line%0Abreak",
		"":             "",
		"~ tilde ok ~": "~ tilde ok ~",
	} {
		if got := grpcEncodeMessage(in); got != want {
			t.Errorf("grpcEncodeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// h2Client is an h2c (prior knowledge) client.
func h2Client() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}, Timeout: 10 * time.Second}
}

func TestH2ToH1Upstream(t *testing.T) {
	addr := newProxy(t, fixedUpstream(t), routeAll("up"))
	c := h2Client()
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("got %s %d %q, want HTTP/2 200 hello", resp.Proto, resp.StatusCode, b)
		}
	}
}

// TestH2RapidReset opens streams and resets each at once: the connection
// is closed once most of its streams were reset before their response.
func TestH2RapidReset(t *testing.T) {
	addr := newProxy(t, silentUpstream(t), routeAll("up"))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, clientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() { // drain what the server sends so its writes never block
		_, _ = io.Copy(io.Discard, nc)
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	closed := false
	for i := 0; i < 20*DefaultMaxPrematureResets && !closed; i++ {
		id := uint32(2*i + 1)
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			closed = true
			break
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			closed = true
		}
	}
	if !closed {
		// Writes may still have succeeded into the socket buffer: the
		// close shows on the next ones.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if err := fr.WritePing(false, [8]byte{}); err != nil {
				closed = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !closed {
		t.Fatal("the connection survived a rapid-reset flood")
	}
}

// silentUpstream accepts connections and reads them, never answering.
func silentUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// fuzzConfig is a connection manager that answers every request itself.
func fuzzConfig(tb testing.TB) *Config {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}},
		}},
	}}}
	t, err := router.Compile(rc)
	if err != nil {
		tb.Fatal(err)
	}
	st := stats.NewStore()
	return New(Config{Routes: NewStaticRoutes(t), Store: st, Stats: st.HTTP("fuzz"), Codec: CodecHTTP2})
}

// FuzzH2Conn feeds arbitrary bytes after the client preface to an HTTP/2
// connection: whatever arrives, the connection must end (no hang, no
// panic) once the client goes away.
func FuzzH2Conn(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/p"}, {"content-type", "application/grpc"}, {"grpc-timeout", "1S"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, true, []byte{0, 0, 0, 0, 1, 'x'})
	f.Add(seed.Bytes())
	seed.Reset()
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	_ = fr.WriteWindowUpdate(0, 1)
	_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	f.Add([]byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage"))
	cfg := fuzzConfig(f)
	// Loopback TCP rather than net.Pipe: the kernel buffers what the
	// client writes, as a real peer's socket would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			cfg.ServeConn(context.Background(), server)
			close(done)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(client, clientPreface)
		_, _ = client.Write(in)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the connection did not end after the client closed (input %q)", strings.ToValidUTF8(string(in), "?"))
		}
	})
}

// BenchmarkH2Proxy measures one HTTP/2 request (h2c client, one
// connection) through the proxy to an HTTP/1 upstream, all in one process.
func BenchmarkH2Proxy(b *testing.B) {
	addr := newProxy(b, fixedUpstream(b), routeAll("up"))
	c := h2Client()
	url := "http://" + addr + "/bench"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
}

// h2cUpstream serves h2c (prior knowledge) with a fixed 5-byte body.
func h2cUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	srv := &http2.Server{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("content-type", "application/grpc")
		_, _ = w.Write([]byte("hello"))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
		}
	}()
	return ln.Addr().String()
}

// BenchmarkH2ProxyH2 is BenchmarkH2Proxy to an HTTP/2 upstream: the
// shape of a gRPC unary call (POST, small body, trailers).
func BenchmarkH2ProxyH2(b *testing.B) {
	addr := newProxy(b, h2cUpstream(b), routeAll("up"), func(cl *clusterv3.Cluster) {
		cl.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{} //nolint:staticcheck // the deprecated field is the short way here
	})
	c := h2Client()
	url := "http://" + addr + "/pkg.Svc/Method"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, strings.NewReader("\x00\x00\x00\x00\x01x"))
			req.Header.Set("content-type", "application/grpc")
			req.Header.Set("te", "trailers")
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.Trailer.Get("grpc-status") != "0" {
				b.Fatalf("trailers %v", resp.Trailer)
			}
		}
	})
}

func TestRequestTimeout(t *testing.T) {
	for _, c := range []struct {
		hdr  [][2]string
		want time.Duration
		ok   bool
	}{
		{[][2]string{{"grpc-timeout", "2S"}}, 2 * time.Second, true},
		{[][2]string{{"grpc-timeout", "2S"}, {"tri-service-timeout", "100"}}, 2 * time.Second, true},
		{[][2]string{{"tri-service-timeout", "100"}}, 100 * time.Millisecond, true},
		{[][2]string{{"Triple-Timeout-Ms", "250"}}, 250 * time.Millisecond, true},
		{[][2]string{{"tri-service-timeout", "soon"}}, 0, false},
		{[][2]string{{"grpc-timeout", "bad"}}, 0, false},
		{nil, 0, false},
	} {
		var h http1.RequestHead
		for _, kv := range c.hdr {
			h.Add(kv[0], kv[1])
		}
		got, ok := requestTimeout(&h)
		if got != c.want || ok != c.ok {
			t.Errorf("%v: %v %v, want %v %v", c.hdr, got, ok, c.want, c.ok)
		}
	}
}
