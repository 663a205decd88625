package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec passes gRPC messages as bytes, so a test server can answer any
// service and method without generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

// startNamedGRPC serves every gRPC method on addr: the reply is
// "<name> <full method>: <request>", with a response header and trailer
// naming the server.
func startNamedGRPC(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(ss)
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		_ = ss.SetHeader(metadata.Pairs("x-server", name))
		ss.SetTrailer(metadata.Pairs("x-server-trailer", name))
		out := []byte(fmt.Sprintf("%s %s: %s (tri-service-version=%s)", name, m, in, strings.Join(md.Get("tri-service-version"), ",")))
		return ss.SendMsg(&out)
	}))
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
}

// callRaw invokes method on target with a raw payload and extra metadata.
func callRaw(t *testing.T, target, method, payload string, md ...string) (string, metadata.MD, metadata.MD, error) {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	in := []byte(payload)
	var out []byte
	var hdr, trl metadata.MD
	err = cc.Invoke(ctx, method, &in, &out, grpc.Header(&hdr), grpc.Trailer(&trl))
	return string(out), hdr, trl, err
}

// TestHTTP2Example runs examples/http2/grpc-sidecar.yaml unchanged: gRPC to
// an HTTP/2 cluster and HTTP/2 to HTTP/1.1 on one port, Triple routed on
// the service and version on another.
func TestHTTP2Example(t *testing.T) {
	for _, a := range []string{"127.0.0.1:10080", "127.0.0.1:10090", "127.0.0.1:9901", "127.0.0.1:8080", "127.0.0.1:50051", "127.0.0.1:50052"} {
		if ln, err := net.Listen("tcp", a); err != nil {
			t.Skipf("the example's fixed address %s is taken: %v", a, err)
		} else {
			_ = ln.Close()
		}
	}
	startNamedGRPC(t, "127.0.0.1:50051", "v1")
	startNamedGRPC(t, "127.0.0.1:50052", "v2")
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "web %s %s %d", r.Proto, r.URL.Path, len(b))
	})}
	wl, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = web.Serve(wl) }()
	t.Cleanup(func() { _ = web.Close() })

	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "http2", "grpc-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w := startWeft(t, string(b))

	// HTTP/2 (prior knowledge) to the HTTP/1.1 app, and HTTP/1.1 itself.
	out, _ := curl(t, "-s", "--http2-prior-knowledge", "--data-binary", "hello", "http://127.0.0.1:10080/page")
	if out != "web HTTP/1.1 /page 5" {
		t.Fatalf("h2c to the HTTP/1.1 app: %q", out)
	}
	out, _ = curl(t, "-s", "--http1.1", "http://127.0.0.1:10080/page")
	if out != "web HTTP/1.1 /page 0" {
		t.Fatalf("HTTP/1.1: %q", out)
	}

	// gRPC through the HTTP/2 cluster, headers and trailers intact.
	reply, hdr, trl, err := callRaw(t, "127.0.0.1:10080", "/demo.Echo/Say", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reply, "v1 /demo.Echo/Say: hi") || strings.Join(hdr.Get("x-server"), "") != "v1" || strings.Join(trl.Get("x-server-trailer"), "") != "v1" {
		t.Fatalf("gRPC reply %q header %v trailer %v", reply, hdr, trl)
	}

	// Triple: the service picks the virtual host, tri-service-version the
	// route.
	const greeter = "/org.apache.dubbo.sample.Greeter/SayHello"
	reply, _, _, err = callRaw(t, "127.0.0.1:10090", greeter, "a", "tri-service-version", "2.0.0", "tri-consumer-appname", "test")
	if err != nil || !strings.HasPrefix(reply, "v2 "+greeter) {
		t.Fatalf("Triple 2.0.0: %q %v, want v2", reply, err)
	}
	reply, _, _, err = callRaw(t, "127.0.0.1:10090", greeter, "b", "tri-service-version", "1.0.0")
	if err != nil || !strings.HasPrefix(reply, "v1 "+greeter) {
		t.Fatalf("Triple 1.0.0: %q %v, want v1", reply, err)
	}
	// An unknown service has no virtual host: UNIMPLEMENTED from Weft.
	_, _, _, err = callRaw(t, "127.0.0.1:10090", "/org.apache.dubbo.sample.Other/SayHello", "c", "tri-service-version", "1.0.0")
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown Triple service: %v, want Unimplemented", err)
	}
	// Per-method metrics, as Triple.
	waitFor(t, 10*time.Second, "Triple method metrics", func() bool {
		return w.metricValue("weft_rpc_method_responses_total", "protocol=triple", "service=org.apache.dubbo.sample.Greeter", "method=SayHello", "status=0") >= 2
	})
}
