package e2e

// Helpers shared by the HTTP/2 and gRPC tests: h2c and TLS upstreams,
// HTTP/2 clusters and listeners, HTTP/2 clients, a gRPC interop server and
// a raw HTTP/2 frame client for misbehaviour tests.

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

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// h2ProtoOptsType is the cluster's typed_extension_protocol_options key
// and type for upstream HTTP protocol selection.
const h2ProtoOptsType = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// h2Cluster is staticCluster speaking HTTP/2 upstream (h2c in plaintext,
// h2 over TLS) through explicit_http_config.
func h2Cluster(name string, ports ...int) M {
	c := staticCluster(name, ports...)
	c["typed_extension_protocol_options"] = M{h2ProtoOptsType: M{
		"@type":                "type.googleapis.com/" + h2ProtoOptsType,
		"explicit_http_config": M{"http2_protocol_options": M{}},
	}}
	return c
}

// downstreamProtoCluster is staticCluster with use_downstream_protocol_config.
func downstreamProtoCluster(name string, ports ...int) M {
	c := staticCluster(name, ports...)
	c["typed_extension_protocol_options"] = M{h2ProtoOptsType: M{
		"@type":                          "type.googleapis.com/" + h2ProtoOptsType,
		"use_downstream_protocol_config": M{},
	}}
	return c
}

// h2ServerSocket is serverSocket with ALPN h2 then http/1.1.
func h2ServerSocket(dir, name string, leaf tlstest.Leaf) M {
	s := serverSocket(dir, name, leaf, "")
	s["typed_config"].(M)["common_tls_context"].(M)["alpn_protocols"] = []any{"h2", "http/1.1"}
	return s
}

// h2TLSListener is a listener terminating TLS (ALPN h2, http/1.1) with one
// HTTP connection manager.
func h2TLSListener(t *testing.T, dir, name string, leaf tlstest.Leaf, h hcmConfig) M {
	t.Helper()
	l := httpListener(t, name, h)
	l["filter_chains"].([]any)[0].(M)["transport_socket"] = h2ServerSocket(dir, name, leaf)
	return l
}

// withH2c makes a newUpstream server also speak h2c (HTTP/2 by prior
// knowledge), next to HTTP/1.1.
func withH2c(s *http.Server) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s.Protocols = p
	s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
}

// h2Only wraps h so that anything but HTTP/2 gets 505.
func h2Only(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// h2cTransport is an HTTP/2 client transport speaking h2c by prior
// knowledge; every request goes to addr.
func h2cTransport(addr string) *http2.Transport {
	return &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		ReadIdleTimeout: 10 * time.Second,
	}
}

// h2cClient is an http.Client over h2cTransport.
func h2cClient(addr string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: h2cTransport(addr)}
}

// grpcServer is a grpc-go server on loopback serving the interop
// TestService.
type grpcServer struct {
	Port int
	srv  *grpc.Server
}

// startGRPCServer serves interop.NewTestServer on a fresh loopback port;
// creds non-nil serves TLS.
func startGRPCServer(t *testing.T, creds credentials.TransportCredentials) *grpcServer {
	t.Helper()
	ln := freeListener(t)
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return &grpcServer{Port: ln.Addr().(*net.TCPAddr).Port, srv: s}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return p
}

// h2Raw is a hand-driven HTTP/2 client connection: the test writes frames
// itself (including invalid ones) and reads what the server sends.
type h2Raw struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	// serverSettings are the settings of the server's first SETTINGS frame.
	serverSettings map[http2.SettingID]uint32
}

// dialH2Raw connects to addr and writes the client preface; unless
// noSettings, it also sends an empty SETTINGS frame and reads the server's
// SETTINGS.
func dialH2Raw(t *testing.T, addr string, noSettings bool) *h2Raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &h2Raw{t: t, conn: c, serverSettings: map[http2.SettingID]uint32{}}
	r.fr = http2.NewFramer(c, c)
	r.fr.AllowIllegalWrites = true // the tests send invalid frames on purpose
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 1 << 20
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatalf("writing preface: %v", err)
	}
	if noSettings {
		return r
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatalf("writing SETTINGS: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := r.fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("server's first frame is %v, want SETTINGS", f.Header())
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error {
		r.serverSettings[s.ID] = s.Val
		return nil
	})
	if err := r.fr.WriteSettingsAck(); err != nil {
		t.Fatalf("writing SETTINGS ack: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return r
}

// headerBlock hpack-encodes a request for path plus extra fields given as
// name, value pairs.
func (r *h2Raw) headerBlock(method, path string, extra ...string) []byte {
	r.hbuf.Reset()
	fields := []string{":method", method, ":scheme", "http", ":authority", "weft.test", ":path", path}
	fields = append(fields, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), r.hbuf.Bytes()...)
}

// request writes a HEADERS frame (and CONTINUATION frames if the block is
// larger than 16 KiB) opening stream id.
func (r *h2Raw) request(id uint32, method, path string, endStream bool, extra ...string) error {
	block := r.headerBlock(method, path, extra...)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	const max = 16384
	first := block
	if len(first) > max {
		first = block[:max]
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first,
		EndStream: endStream, EndHeaders: len(block) <= max}); err != nil {
		return err
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), max)
		if err := r.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// h2Event is one frame the server sent, reduced to what tests check.
type h2Event struct {
	Type      http2.FrameType
	StreamID  uint32
	Status    string // :status of a HEADERS frame
	EndStream bool
	DataLen   int
	ErrCode   http2.ErrCode // RST_STREAM and GOAWAY
	LastID    uint32        // GOAWAY
	Err       error         // set on the last event: why reading stopped
}

func (e h2Event) String() string {
	if e.Err != nil {
		return "read error: " + e.Err.Error()
	}
	s := fmt.Sprintf("%v stream=%d", e.Type, e.StreamID)
	switch e.Type {
	case http2.FrameHeaders:
		s += " :status=" + e.Status
	case http2.FrameData:
		s += fmt.Sprintf(" len=%d", e.DataLen)
	case http2.FrameRSTStream:
		s += " " + e.ErrCode.String()
	case http2.FrameGoAway:
		s += fmt.Sprintf(" %v last=%d", e.ErrCode, e.LastID)
	}
	if e.EndStream {
		s += " END_STREAM"
	}
	return s
}

// readEvents reads frames in a goroutine and sends them on the returned
// channel (closed after the event carrying the read error). It answers
// PINGs and refills flow-control windows unless noWindowUpdates.
func (r *h2Raw) readEvents(noWindowUpdates bool) <-chan h2Event {
	ch := make(chan h2Event, 4096)
	go func() {
		defer close(ch)
		for {
			f, err := r.fr.ReadFrame()
			if err != nil {
				ch <- h2Event{Err: err}
				return
			}
			ev := h2Event{Type: f.Header().Type, StreamID: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				ev.Status = f.PseudoValue("status")
				ev.EndStream = f.StreamEnded()
			case *http2.DataFrame:
				ev.DataLen = len(f.Data())
				ev.EndStream = f.StreamEnded()
				if n := uint32(len(f.Data())); n > 0 && !noWindowUpdates {
					r.wmu.Lock()
					_ = r.fr.WriteWindowUpdate(0, n)
					if !f.StreamEnded() {
						_ = r.fr.WriteWindowUpdate(f.StreamID, n)
					}
					r.wmu.Unlock()
				}
			case *http2.RSTStreamFrame:
				ev.ErrCode = f.ErrCode
			case *http2.GoAwayFrame:
				ev.ErrCode, ev.LastID = f.ErrCode, f.LastStreamID
			case *http2.PingFrame:
				if !f.IsAck() {
					r.wmu.Lock()
					_ = r.fr.WritePing(true, f.Data)
					r.wmu.Unlock()
				}
			case *http2.SettingsFrame:
				if !f.IsAck() {
					r.wmu.Lock()
					_ = r.fr.WriteSettingsAck()
					r.wmu.Unlock()
				}
			}
			select {
			case ch <- ev:
			default: // nobody is keeping up; drop rather than block reading
			}
		}
	}()
	return ch
}

// waitEvent receives events until match returns true, the stream ends or
// d passes; it returns the matching event and every event seen.
func waitEvent(ch <-chan h2Event, d time.Duration, match func(h2Event) bool) (h2Event, []h2Event, bool) {
	var seen []h2Event
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return h2Event{}, seen, false
			}
			seen = append(seen, ev)
			if match(ev) {
				return ev, seen, true
			}
		case <-timer.C:
			return h2Event{}, seen, false
		}
	}
}

// eventsString renders events for a failure message, capped.
func eventsString(evs []h2Event) string {
	var b strings.Builder
	for i, e := range evs {
		if i == 40 {
			fmt.Fprintf(&b, "  ... %d more\n", len(evs)-i)
			break
		}
		fmt.Fprintf(&b, "  %v\n", e)
	}
	return b.String()
}

// isGoAway matches a GOAWAY frame.
func isGoAway(e h2Event) bool { return e.Type == http2.FrameGoAway }

// h2Get does one GET through an HTTP/2 client and returns status and body.
func h2Get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.ProtoMajor != 2 {
		err = fmt.Errorf("response over %s, want HTTP/2", resp.Proto)
	}
	return resp.StatusCode, string(b), err
}

// weftStacks is weft's goroutine profile (debug=1) cut to the stacks
// mentioning substr, for failure messages.
func weftStacks(w *Weft, substr string) string {
	_, body := w.Admin("/debug/pprof/goroutine?debug=1")
	var b strings.Builder
	for _, st := range strings.Split(body, "\n\n") {
		if strings.Contains(st, substr) && b.Len() < 12000 {
			b.WriteString(st + "\n\n")
		}
	}
	return b.String()
}
