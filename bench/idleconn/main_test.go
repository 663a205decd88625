package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunHoldsConnections runs the whole measurement against an in-process
// keep-alive server, measuring this test process itself.
func TestRunHoldsConnections(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("hello"))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	tests := []struct {
		name    string
		n       int
		sources int
	}{
		{"one source", 20, 1},
		{"spread over sources", 30, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := config{
				addr: ln.Addr().String(), n: tt.n, pid: os.Getpid(), wait: 10 * time.Millisecond,
				concurrency: 4, sources: tt.sources, perSource: 20000, path: "/", host: "bench",
				timeout: 5 * time.Second,
			}
			if err := run(c, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			want := "alive=" + strconv.Itoa(tt.n) + " "
			if !strings.Contains(out.String(), "RESULT ") || !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		c    config
	}{
		{"no addr", config{n: 1, pid: 1, concurrency: 1}},
		{"no pid", config{addr: "127.0.0.1:1", n: 1, concurrency: 1}},
		{"zero n", config{addr: "127.0.0.1:1", pid: 1, concurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.c, &bytes.Buffer{}); err == nil {
				t.Error("run succeeded, want an error")
			}
		})
	}
}
