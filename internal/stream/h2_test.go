package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/fuzzcrash"
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
	fuzzcrash.Capture()
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

// h2cEchoUpstream serves h2c with small flow-control windows and echoes
// the request body.
func h2cEchoUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	srv := &http2.Server{MaxUploadBufferPerStream: 16 << 10, MaxUploadBufferPerConnection: 32 << 10}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
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

// TestH2FlowControlBothWays sends 2 MiB up and back through an HTTP/2
// upstream whose windows (16 KiB per stream) and Weft's own (16 KiB per
// stream toward the host) are far smaller than the body, on 4 streams
// at once: every byte must arrive, in order, in both directions.
func TestH2FlowControlBothWays(t *testing.T) {
	addr := newProxy(t, h2cEchoUpstream(t), routeAll("up"), func(cl *clusterv3.Cluster) {
		cl.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{ //nolint:staticcheck // the deprecated field is the short way here
			InitialStreamWindowSize:     wrapperspb.UInt32(65535),
			InitialConnectionWindowSize: wrapperspb.UInt32(65535),
		}
	})
	body := make([]byte, 2<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	c := h2Client()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			resp, err := c.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err == nil && !bytes.Equal(got, body) {
				err = fmt.Errorf("echo of %d bytes came back as %d different bytes", len(body), len(got))
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// fakeH2Host is a loopback connection whose far end reads the client
// preface and runs fn with a framer on the connection.
func fakeH2Host(t *testing.T, fn func(fr *http2.Framer)) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer b.Close()
		buf := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(b, buf); err != nil {
			return
		}
		fr := http2.NewFramer(b, b)
		fn(fr)
	}()
	return a
}

// TestH2ClientGoAwayRefuses: a stream above the host's GOAWAY last stream
// id fails as refused (safe to send again), and the connection takes no
// new streams.
func TestH2ClientGoAwayRefuses(t *testing.T) {
	nc := fakeH2Host(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.HeadersFrame); ok {
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			}
		}
	})
	cc := testH2CC(t, nc)
	_, err := testRoundTrip(t, cc, "GET", nil, 0)
	if !isH2Refused(err) {
		t.Fatalf("roundTrip = %v, want refused", err)
	}
	if cc.usable() {
		t.Fatal("the connection still takes streams after GOAWAY")
	}
}

// testH2CC is Weft's HTTP/2 client on nc with small windows, closed when
// the test ends.
func testH2CC(t *testing.T, nc net.Conn) *h2cc {
	t.Helper()
	cc, err := newH2CC(nc, h2ccOptions{streamWindow: 65535, connWindow: 65535, scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	return cc
}

// testHead is a request head for method on "/" with host "a".
func testHead(method string) *http1.RequestHead {
	h := new(http1.RequestHead)
	h.Method, h.Target = method, "/"
	h.Add("host", "a")
	return h
}

// testRoundTrip sends method "/" with body (n bytes, -1 unknown) on a
// stream of cc reserved for it, with 5 s to get the response head.
func testRoundTrip(t *testing.T, cc *h2cc, method string, body io.Reader, n int64) (*h2cs, error) {
	t.Helper()
	if !cc.reserve() {
		t.Fatal("the connection has no free stream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return cc.roundTrip(ctx, testHead(method), body, n)
}

// TestH2ClientHostViolations: a host whose SETTINGS or WINDOW_UPDATE break
// RFC 9113's limits gets GOAWAY with the right code, and the request fails
// at once instead of waiting. MAX_FRAME_SIZE 0 is the input a fuzzing run
// found: header blocks were split into empty CONTINUATION frames forever.
func TestH2ClientHostViolations(t *testing.T) {
	cases := []struct {
		name string
		send func(fr *http2.Framer)
		code http2.ErrCode
	}{
		{"max frame size 0", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0})
		}, http2.ErrCodeProtocol},
		{"max frame size 2^24", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24})
		}, http2.ErrCodeProtocol},
		{"initial window 2^31", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}, http2.ErrCodeFlowControl},
		{"connection window past 2^31-1", func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
			_ = fr.WriteWindowUpdate(0, 1<<31-1)
		}, http2.ErrCodeFlowControl},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			goAway := make(chan http2.ErrCode, 1)
			nc := fakeH2Host(t, func(fr *http2.Framer) {
				tc.send(fr)
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					if g, ok := f.(*http2.GoAwayFrame); ok {
						goAway <- g.ErrCode
						return
					}
				}
			})
			cc := testH2CC(t, nc)
			select {
			case code := <-goAway:
				if code != tc.code {
					t.Fatalf("GOAWAY %v, want %v", code, tc.code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no GOAWAY from Weft")
			}
			h := testHead("POST")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if cc.reserve() {
				if _, err := cc.roundTrip(ctx, h, strings.NewReader("hello"), 5); err == nil {
					t.Fatal("a request on a failed connection succeeded")
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("the request waited %v on a failed connection", d)
			}
			if cc.usable() {
				t.Fatal("the connection still takes streams")
			}
		})
	}
}

// TestH2ClientPingAck: a host's PING is acknowledged with the same data
// even when Weft has nothing else to send (the ACK waits at most
// pingAckDelay for company).
func TestH2ClientPingAck(t *testing.T) {
	acked := make(chan [8]byte, 1)
	nc := fakeH2Host(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
				// Weft is quiet now: the ACK has nothing to ride with.
				time.Sleep(20 * time.Millisecond)
				_ = fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				acked <- p.Data
				return
			}
		}
	})
	testH2CC(t, nc)
	select {
	case d := <-acked:
		if d != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
			t.Fatalf("PING ACK data %v", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no PING ACK")
	}
}

// gatedBody returns its data, then waits for gate before io.EOF.
type gatedBody struct {
	data []byte
	gate chan struct{}
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	<-b.gate
	return 0, io.EOF
}

// TestH2ClientEndStreamNegativeWindow: a host that lowers
// INITIAL_WINDOW_SIZE after the body used the window leaves it negative;
// the bare END_STREAM that follows needs no credit and goes out. (A fuzzing
// run found the client slicing the body by the negative window.)
func TestH2ClientEndStreamNegativeWindow(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	got := make(chan string, 1)
	nc := fakeH2Host(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5})
		acks, body := 0, ""
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if f.IsAck() {
					if acks++; acks == 2 {
						open()
					}
				}
			case *http2.DataFrame:
				body += string(f.Data())
				if len(body) == 5 && acks == 1 && !f.StreamEnded() {
					_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
				}
				if f.StreamEnded() {
					got <- body
					var hb bytes.Buffer
					_ = hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
				}
			}
		}
	})
	cc := testH2CC(t, nc)
	cs, err := testRoundTrip(t, cc, "POST", &gatedBody{data: []byte("hello"), gate: gate}, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	select {
	case b := <-got:
		if b != "hello" {
			t.Fatalf("host got %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("END_STREAM never reached the host")
	}
}

// FuzzH2Client feeds arbitrary bytes from a host (after its SETTINGS) to
// Weft's HTTP/2 client during a request: the request must end (response
// or error) without a panic, and closing the stream and connection must
// not hang.
func FuzzH2Client(f *testing.F) {
	fuzzcrash.Capture()
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, false, []byte{0, 0, 0, 0, 1, 'x'})
	hb.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: "0"})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	f.Add(seed.Bytes())
	seed.Reset()
	_ = fr.WriteWindowUpdate(0, 1<<30)
	_ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	_ = fr.WritePing(false, [8]byte{})
	f.Add(seed.Bytes())
	seed.Reset()
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
	_ = fr.WriteGoAway(1, http2.ErrCodeProtocol, []byte("bye"))
	f.Add(seed.Bytes())
	f.Add([]byte("\x00\x00\x05\x01\x05\x00\x00\x00\x01garbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			go func() { _, _ = io.Copy(io.Discard, b) }()
			sfr := http2.NewFramer(b, nil)
			_ = sfr.WriteSettings()
			_, _ = b.Write(in)
			time.Sleep(5 * time.Millisecond)
		}()
		cc, err := newH2CC(a, h2ccOptions{streamWindow: 65535, connWindow: 65535, scheme: "http", maxHeaderList: 16 << 10})
		if err != nil {
			return
		}
		defer cc.Close()
		if !cc.reserve() {
			return
		}
		var h http1.RequestHead
		h.Method, h.Target = "POST", "/pkg.Svc/M"
		h.Add("host", "a")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cs, err := cc.roundTrip(ctx, &h, bytes.NewReader([]byte("hello")), 5)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(cs, 1<<20))
		_ = cs.pending()
		cs.close()
	})
}
