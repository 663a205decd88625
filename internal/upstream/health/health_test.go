package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func httpCheck(path string, mods ...func(*corev3.HealthCheck)) *corev3.HealthCheck {
	hc := &corev3.HealthCheck{
		Timeout:            durationpb.New(time.Second),
		Interval:           durationpb.New(10 * time.Millisecond),
		UnhealthyThreshold: wrapperspb.UInt32(2),
		HealthyThreshold:   wrapperspb.UInt32(2),
		HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
			Path: path,
		}},
	}
	for _, m := range mods {
		m(hc)
	}
	return hc
}

func tcpCheck(send string, receive ...string) *corev3.HealthCheck {
	t := &corev3.HealthCheck_TcpHealthCheck{}
	if send != "" {
		t.Send = &corev3.HealthCheck_Payload{Payload: &corev3.HealthCheck_Payload_Text{Text: send}}
	}
	for _, r := range receive {
		t.Receive = append(t.Receive, &corev3.HealthCheck_Payload{Payload: &corev3.HealthCheck_Payload_Text{Text: r}})
	}
	return &corev3.HealthCheck{
		Timeout:            durationpb.New(time.Second),
		Interval:           durationpb.New(time.Second),
		UnhealthyThreshold: wrapperspb.UInt32(1),
		HealthyThreshold:   wrapperspb.UInt32(1),
		HealthChecker:      &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: t},
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		hc      *corev3.HealthCheck
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "http defaults", hc: httpCheck("/healthz"), check: func(t *testing.T, c Config) {
			if c.HTTP.Host != "backend" || len(c.HTTP.Expected) != 1 || c.HTTP.Expected[0] != (StatusRange{200, 300}) {
				t.Errorf("got %+v", c.HTTP)
			}
		}},
		{name: "no path", hc: httpCheck(""), wantErr: "http_health_check.path: required"},
		{name: "relative path", hc: httpCheck("x"), wantErr: "http_health_check.path: \"x\" must start with /"},
		{name: "header injection", hc: httpCheck("/a\r\nX: y"), wantErr: "http_health_check.path"},
		{name: "bad status range", hc: httpCheck("/", func(hc *corev3.HealthCheck) {
			hc.GetHttpHealthCheck().ExpectedStatuses = []*typev3.Int64Range{{Start: 200, End: 201}, {Start: 300, End: 200}}
		}), wantErr: "http_health_check.expected_statuses[1]"},
		{name: "no timeout", hc: httpCheck("/", func(hc *corev3.HealthCheck) { hc.Timeout = nil }), wantErr: "timeout: required"},
		{name: "zero interval", hc: httpCheck("/", func(hc *corev3.HealthCheck) { hc.Interval = durationpb.New(0) }), wantErr: "interval: must be positive"},
		{name: "no threshold", hc: httpCheck("/", func(hc *corev3.HealthCheck) { hc.HealthyThreshold = nil }), wantErr: "healthy_threshold: required"},
		{name: "grpc", hc: &corev3.HealthCheck{
			Timeout: durationpb.New(time.Second), Interval: durationpb.New(time.Second),
			UnhealthyThreshold: wrapperspb.UInt32(1), HealthyThreshold: wrapperspb.UInt32(1),
			HealthChecker: &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}},
		}, wantErr: "grpc_health_check: not supported"},
		{name: "tcp bad hex", hc: tcpCheck("zz"), wantErr: "tcp_health_check.send.text: not hex"},
		{name: "tcp receive", hc: tcpCheck("70696e67", "706f6e67"), check: func(t *testing.T, c Config) {
			if string(c.TCP.Send) != "ping" || string(c.TCP.Receive[0]) != "pong" {
				t.Errorf("got %+v", c.TCP)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.hc, "backend")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

var dialer = (&net.Dialer{}).DialContext

func mustParse(t *testing.T, hc *corev3.HealthCheck) *Config {
	t.Helper()
	c, err := Parse(hc, "backend")
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	var mu sync.Mutex
	var lastHost, lastConn, lastPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastHost, lastConn, lastPath = r.Host, r.Header.Get("Connection"), r.URL.Path
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	tests := []struct {
		name    string
		hc      *corev3.HealthCheck
		status  int32
		wantErr string
	}{
		{"200", httpCheck("/healthz"), 200, ""},
		{"204 in default range", httpCheck("/healthz"), 204, ""},
		{"503", httpCheck("/healthz"), 503, "http status 503"},
		{"expected 503", httpCheck("/healthz", func(hc *corev3.HealthCheck) {
			hc.GetHttpHealthCheck().ExpectedStatuses = []*typev3.Int64Range{{Start: 503, End: 504}}
		}), 503, ""},
		{"expected excludes 200", httpCheck("/healthz", func(hc *corev3.HealthCheck) {
			hc.GetHttpHealthCheck().ExpectedStatuses = []*typev3.Int64Range{{Start: 503, End: 504}}
		}), 200, "http status 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status.Store(tt.status)
			err := mustParse(t, tt.hc).Check(context.Background(), dialer, addr)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if lastHost != "backend" || lastConn != "close" || lastPath != "/healthz" {
		t.Errorf("request host=%q connection=%q path=%q", lastHost, lastConn, lastPath)
	}
}

// rawServer answers every connection with handle.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRawChecks(t *testing.T) {
	reply := func(s string) func(net.Conn) {
		return func(c net.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1024))
			io.WriteString(c, s)
		}
	}
	tests := []struct {
		name    string
		hc      *corev3.HealthCheck
		addr    string
		wantErr string
	}{
		{"tcp connect", tcpCheck(""), rawServer(t, func(net.Conn) {}), ""},
		{"tcp refused", tcpCheck(""), closedPort(t), "connect: connection refused"},
		{"tcp ping pong", tcpCheck("70696e67", "706f", "6e67"), rawServer(t, reply("xxpongyy")), ""},
		{"tcp wrong order", tcpCheck("70696e67", "6e67", "706f"), rawServer(t, reply("pong")), "receive: expected bytes not found before EOF"},
		{"http garbage", httpCheck("/"), rawServer(t, reply("SSH-2.0-OpenSSH\r\n")), `malformed status line "SSH-2.0-OpenSSH"`},
		{"http short", httpCheck("/"), rawServer(t, reply("HTTP/1.1 20")), "read status line: EOF"},
		{"http bad code", httpCheck("/"), rawServer(t, reply("HTTP/1.1 2x0 OK\r\n")), "malformed status line"},
		{"http 10", httpCheck("/"), rawServer(t, reply("HTTP/1.0 200\r\n")), ""},
		{"http timeout", httpCheck("/", func(hc *corev3.HealthCheck) { hc.Timeout = durationpb.New(50 * time.Millisecond) }),
			rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }), "timeout after 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustParse(t, tt.hc).Check(context.Background(), dialer, tt.addr)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestThresholds(t *testing.T) {
	fail := errors.New("x")
	tests := []struct {
		name      string
		unhealthy uint32
		healthy   uint32
		results   []error
		want      []bool // verdict after each
	}{
		{"first pass is healthy at once", 3, 3, []error{nil}, []bool{true}},
		{"first fail stays unhealthy", 1, 1, []error{fail, nil}, []bool{false, true}},
		{"unhealthy after 2", 2, 1, []error{nil, fail, fail, fail}, []bool{true, true, false, false}},
		{"healthy after 3", 1, 3, []error{nil, fail, nil, nil, nil}, []bool{true, false, false, false, true}},
		{"fail streak reset by pass", 2, 1, []error{nil, fail, nil, fail, nil}, []bool{true, true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var th Thresholds
			th.Init(&Config{UnhealthyThreshold: tt.unhealthy, HealthyThreshold: tt.healthy})
			for i, r := range tt.results {
				if got := th.Observe(r); got.Healthy != tt.want[i] {
					t.Fatalf("after result %d: healthy=%v, want %v", i, got.Healthy, tt.want[i])
				}
			}
		})
	}
}

func TestRunFlips(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	c := mustParse(t, httpCheck("/"))
	results := make(chan Result, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, c, dialer, srv.Listener.Addr().String(), func(r Result) {
			if r.Changed {
				results <- r
			}
		})
	}()
	next := func() Result {
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no health change")
		}
		return Result{}
	}
	if r := next(); !r.Healthy {
		t.Fatalf("first verdict %+v", r)
	}
	status.Store(500)
	if r := next(); r.Healthy || r.Err == nil || r.Err.Error() != "http status 500" {
		t.Fatalf("after failures %+v", r)
	}
	status.Store(200)
	if r := next(); !r.Healthy {
		t.Fatalf("after recovery %+v", r)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func FuzzStatusCode(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\n", "HTTP/1.0 503\n", "HTTP/1.1 20", "", "HTTP/2 200", "HTTP/1.1 9999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		code, err := statusCode(line)
		if err == nil && (code < 0 || code > 999) {
			t.Fatalf("code %d from %q", code, line)
		}
	})
}
