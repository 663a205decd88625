package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Triple (Dubbo 3) through weft's rpc_proxy. The peers are the dubbo-go
// interop programs run with -protocol tri: an IDL-mode Triple Greeter whose
// messages are google.protobuf.StringValue, so on the wire it is plain gRPC
// (POST /com.weftmesh.interop.Greeter/SayHello, application/grpc+proto) and
// grpc-go can stand on either side.

const (
	tripleGreeter  = "com.weftmesh.interop.Greeter"
	tripleSayHello = "/" + tripleGreeter + "/SayHello"
)

// tripleReport is the consumer's JSON line.
type tripleReport struct {
	OK              int              `json:"ok"`
	Failed          int              `json:"failed"`
	AttachmentsOK   int              `json:"attachments_ok"`
	FailCallErrored bool             `json:"fail_call_errored"`
	FirstError      string           `json:"first_error"`
	FirstCode       string           `json:"first_code"`
	Providers       map[string]int64 `json:"providers"`
}

// runTripleConsumer runs the dubbo-go consumer with -protocol tri against
// addr and returns its report. A non-zero exit is normal when calls fail
// on purpose, so only an unreadable report fails the test.
func runTripleConsumer(t *testing.T, addr string, args ...string) tripleReport {
	t.Helper()
	_, consumerBin := dubbogoPeers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"-protocol", "tri", "-addr", addr, "-timeout", "10s", "-log-level", "error"}, args...)
	cmd := exec.CommandContext(ctx, consumerBin, full...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var rep tripleReport
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("consumer %v: output %q: %v (exit: %v)\n%s", args, out, jerr, err, stderr.String())
	}
	t.Logf("consumer %v: %+v (exit: %v)", args, rep, err)
	return rep
}

// tripleH2Cluster is a static cluster whose upstream connections speak HTTP/2
// (h2c), as Triple upstreams must.
func tripleH2Cluster(t *testing.T, name string, port int) M {
	t.Helper()
	return with(t, staticCluster(name, port), `{typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {
	  "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions,
	  explicit_http_config: {http2_protocol_options: {}}}}}`)
}

// tripleWaitMetric polls a weft metric until it reaches at least want.
func tripleWaitMetric(t *testing.T, w *Weft, want float64, name string, labels ...string) {
	t.Helper()
	var last float64
	deadline := time.Now().Add(15 * time.Second)
	for {
		if w.Wait(0) {
			t.Errorf("%s{%s}: weft has exited", name, strings.Join(labels, ","))
			return
		}
		last = w.metricValue(name, labels...)
		if last >= want {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body := w.Admin("/stats/prometheus")
	var rpcLines []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "weft_rpc_") {
			rpcLines = append(rpcLines, l)
		}
	}
	t.Errorf("%s{%s} = %v, want >= %v; weft_rpc_* samples:\n%s", name, strings.Join(labels, ","), last, want, strings.Join(rpcLines, "\n"))
}

// TestTripleRouting: two dubbo-go Triple providers (1.0.0/g1 and
// 2.0.0/g2) behind one weft rpc_proxy listener speaking only Triple. Routes
// pick the cluster by the version and group weft reads from
// tri-service-version / tri-service-group; each consumer must be answered
// by the right provider (its x-provider-id response attachment), with its
// x-* attachments echoed back; a version/group no route matches, and an
// unknown service, get gRPC UNIMPLEMENTED; the method metrics count the
// calls under protocol="triple".
func TestTripleRouting(t *testing.T) {
	t.Parallel()
	p1 := startDubbogoProvider(t, "-protocol", "tri", "-id", "p1", "-version", "1.0.0", "-group", "g1")
	p2 := startDubbogoProvider(t, "-protocol", "tri", "-id", "p2", "-version", "2.0.0", "-group", "g2")

	w, addr := startRPCSidecar(t, rpcConfig{StatPrefix: "tri", Protocols: []string{"triple"},
		VirtualHosts: `[{name: greeter, domains: ["` + tripleGreeter + `"], routes: [
		  {match: {prefix: "", headers: [{name: version, string_match: {exact: "1.0.0"}}]}, route: {cluster: v1, timeout: 15s}},
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: g2}}]}, route: {cluster: v2, timeout: 15s}}]}]`},
		tripleH2Cluster(t, "v1", portOf(t, p1)), tripleH2Cluster(t, "v2", portOf(t, p2)))

	const n = 50
	for _, tc := range []struct{ version, group, provider string }{
		{"1.0.0", "g1", "p1"},
		{"2.0.0", "g2", "p2"},
	} {
		rep := runTripleConsumer(t, addr, "-n", fmt.Sprint(n), "-c", "4", "-version", tc.version, "-group", tc.group)
		if rep.OK != n || rep.Failed != 0 || rep.AttachmentsOK != n || !rep.FailCallErrored {
			t.Errorf("%s/%s through weft: %+v, want %d calls ok with their attachments echoed and Fail erroring", tc.version, tc.group, rep, n)
		}
		if rep.Providers[tc.provider] != n || len(rep.Providers) != 1 {
			t.Errorf("%s/%s: answered by %v, want all %d by %s", tc.version, tc.group, rep.Providers, n, tc.provider)
		}
	}

	// No route for 3.0.0/g3, and no virtual host for an unknown service:
	// weft answers UNIMPLEMENTED itself.
	for _, args := range [][]string{
		{"-version", "3.0.0", "-group", "g3"},
		{"-interface", "com.weftmesh.interop.Unknown"},
	} {
		rep := runTripleConsumer(t, addr, append([]string{"-n", "2", "-c", "1"}, args...)...)
		if rep.OK != 0 || rep.Failed != 2 {
			t.Errorf("%v: %+v, want both calls to fail", args, rep)
		}
		if rep.FirstCode != "unimplemented" {
			t.Errorf("%v: first error %q (code %q), want Triple code unimplemented", args, rep.FirstError, rep.FirstCode)
		}
	}

	base := []string{"stat_prefix=tri", "protocol=triple", "service=" + tripleGreeter}
	tripleWaitMetric(t, w, 2*n, "weft_rpc_method_requests_total", append(base, "method=SayHello")...)
	tripleWaitMetric(t, w, 2*n, "weft_rpc_method_responses_total", append(base, "method=SayHello", "status=0")...)
	tripleWaitMetric(t, w, 2, "weft_rpc_method_requests_total", append(base, "method=Fail")...)
}

// TestTripleBesideDubbo: one rpc_proxy port with protocols [dubbo, triple]
// carries a Dubbo 2 consumer to a Dubbo 2 provider and a Triple consumer to
// a Triple provider of the same service, told apart by group.
func TestTripleBesideDubbo(t *testing.T) {
	t.Parallel()
	dubboProv := startDubbogoProvider(t) // dubbo, 1.0.0/g1
	triProv := startDubbogoProvider(t, "-protocol", "tri", "-id", "tri", "-version", "2.0.0", "-group", "g2")

	w, addr := startRPCSidecar(t, rpcConfig{StatPrefix: "mixed", Protocols: []string{"dubbo", "triple"},
		VirtualHosts: `[{name: greeter, domains: ["` + tripleGreeter + `"], routes: [
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: g1}}]}, route: {cluster: dubbo, timeout: 15s}},
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: g2}}]}, route: {cluster: tri, timeout: 15s}}]}]`},
		staticCluster("dubbo", portOf(t, dubboProv)), tripleH2Cluster(t, "tri", portOf(t, triProv)))

	const n = 50
	_, consumerBin := dubbogoPeers(t)
	var wg sync.WaitGroup
	wg.Add(1)
	var dubboOut []byte
	var dubboErr error
	go func() { // the Dubbo 2 consumer runs at the same time as the Triple one
		defer wg.Done()
		dubboOut, dubboErr = exec.Command(consumerBin, "-addr", addr, "-n", fmt.Sprint(n), "-c", "4", "-timeout", "10s", "-log-level", "error").Output()
	}()
	rep := runTripleConsumer(t, addr, "-n", fmt.Sprint(n), "-c", "4", "-version", "2.0.0", "-group", "g2")
	wg.Wait()
	if rep.OK != n || rep.Failed != 0 || rep.AttachmentsOK != n || !rep.FailCallErrored || rep.Providers["tri"] != n {
		t.Errorf("Triple consumer on the shared port: %+v", rep)
	}
	var dub tripleReport
	if err := json.Unmarshal(dubboOut, &dub); err != nil {
		t.Fatalf("dubbo consumer output %q: %v (exit: %v)", dubboOut, err, dubboErr)
	}
	if dubboErr != nil || dub.OK != n || dub.AttachmentsOK != n || !dub.FailCallErrored {
		t.Errorf("Dubbo consumer on the shared port: %+v (exit: %v)", dub, dubboErr)
	}
	tripleWaitMetric(t, w, n, "weft_rpc_method_requests_total", "stat_prefix=mixed", "protocol=triple", "service="+tripleGreeter, "method=SayHello")
	tripleWaitMetric(t, w, n, "weft_rpc_method_requests_total", "stat_prefix=mixed", "protocol=dubbo", "service="+tripleGreeter, "method=SayHello")
}

// tripleGRPCGreeter is a plain grpc-go server for the Greeter, registered with a
// hand-written ServiceDesc (StringValue in and out). It echoes x-* request
// metadata back as trailers, as the dubbo-go provider does, counts requests
// and keeps the metadata of the latest SayHello.
type tripleGRPCGreeter struct {
	mu        sync.Mutex
	calls     int
	lastHello map[string][]string // metadata of the latest SayHello
}

func (g *tripleGRPCGreeter) record(ctx context.Context, hello bool) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	g.mu.Lock()
	g.calls++
	if hello {
		g.lastHello = map[string][]string(md.Copy())
	}
	g.mu.Unlock()
	return md
}

// last is the metadata of the latest SayHello request.
func (g *tripleGRPCGreeter) last() metadata.MD {
	g.mu.Lock()
	defer g.mu.Unlock()
	return metadata.MD(g.lastHello)
}

func (g *tripleGRPCGreeter) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func (g *tripleGRPCGreeter) sayHello(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	md := g.record(ctx, true)
	tr := metadata.Pairs("x-provider", "grpc-go", "x-provider-id", "grpc-go")
	for k, v := range md {
		if strings.HasPrefix(k, "x-") && len(v) > 0 {
			tr.Set(k, v[0])
		}
	}
	_ = grpc.SetTrailer(ctx, tr)
	return wrapperspb.String("hello " + req.GetValue()), nil
}

func (g *tripleGRPCGreeter) fail(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	g.record(ctx, false)
	return nil, status.Errorf(codes.FailedPrecondition, "grpc-go: Fail called with %q", req.GetValue())
}

func tripleUnaryHandler(f func(*tripleGRPCGreeter, context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return f(srv.(*tripleGRPCGreeter), ctx, in)
	}
}

func startTripleGRPCGreeter(t *testing.T) (*tripleGRPCGreeter, string) {
	t.Helper()
	g := &tripleGRPCGreeter{}
	s := grpc.NewServer()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: tripleGreeter,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "SayHello", Handler: tripleUnaryHandler((*tripleGRPCGreeter).sayHello)},
			{MethodName: "Fail", Handler: tripleUnaryHandler((*tripleGRPCGreeter).fail)},
		},
	}, g)
	ln := freeListener(t)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return g, ln.Addr().String()
}

// TestTripleGRPCInterop: weft passes Triple and plain gRPC interchangeably.
// One Triple-only listener routes group g2 to a dubbo-go Triple provider
// and group gg to a plain grpc-go server:
//   - a grpc-go client (tri-service-* metadata) calls the dubbo-go provider;
//   - the dubbo-go Triple consumer calls the grpc-go server, which must see
//     the tri-service-* headers and the x-* attachments;
//   - a grpc-go client with no tri- metadata, routed by its own group
//     header, is counted as protocol="grpc";
//   - an unknown service and an unrouted group come back as
//     codes.Unimplemented from weft; a method the grpc-go server lacks
//     gets the server's own early trailers-only Unimplemented, 200 times,
//     and weft must survive it.
func TestTripleGRPCInterop(t *testing.T) {
	t.Parallel()
	dgProv := startDubbogoProvider(t, "-protocol", "tri", "-id", "p2", "-version", "2.0.0", "-group", "g2")
	gg, ggAddr := startTripleGRPCGreeter(t)

	w, addr := startRPCSidecar(t, rpcConfig{StatPrefix: "interop", Protocols: []string{"triple"},
		VirtualHosts: `[{name: greeter, domains: ["` + tripleGreeter + `"], routes: [
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: g2}}]}, route: {cluster: dubbogo, timeout: 15s}},
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: gg}}]}, route: {cluster: grpcgo, timeout: 15s}}]}]`},
		tripleH2Cluster(t, "dubbogo", portOf(t, dgProv)), tripleH2Cluster(t, "grpcgo", portOf(t, ggAddr)))

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	call := func(path string, md metadata.MD, name string) (string, metadata.MD, metadata.MD, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		ctx = metadata.NewOutgoingContext(ctx, md)
		var hdr, trl metadata.MD
		out := new(wrapperspb.StringValue)
		err := cc.Invoke(ctx, path, wrapperspb.String(name), out, grpc.Header(&hdr), grpc.Trailer(&trl))
		return out.GetValue(), hdr, trl, err
	}

	// 1. grpc-go client -> weft -> dubbo-go Triple provider.
	t.Run("grpc-go to dubbo-go", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			trace := fmt.Sprintf("grpc-trace-%d", i)
			reply, hdr, trl, err := call(tripleSayHello, metadata.Pairs(
				"tri-service-version", "2.0.0", "tri-service-group", "g2", "x-trace-id", trace), "grpc-go")
			if err != nil {
				t.Fatalf("call %d: %v (header %v, trailer %v)", i, err, hdr, trl)
			}
			if reply != "hello grpc-go" {
				t.Errorf("call %d: reply %q, want %q", i, reply, "hello grpc-go")
			}
			if got := trl.Get("x-provider-id"); len(got) != 1 || got[0] != "p2" {
				t.Errorf("call %d: x-provider-id trailer %v, want [p2] (header %v, trailer %v)", i, got, hdr, trl)
			}
			if got := trl.Get("x-trace-id"); len(got) != 1 || got[0] != trace {
				t.Errorf("call %d: x-trace-id trailer %v, want [%s] (header %v, trailer %v)", i, got, trace, hdr, trl)
			}
		}
		// The provider's Fail error arrives as a gRPC status, not a transport error.
		_, _, _, err := call("/"+tripleGreeter+"/Fail", metadata.Pairs(
			"tri-service-version", "2.0.0", "tri-service-group", "g2"), "boom")
		if s, ok := status.FromError(err); err == nil || !ok || s.Code() == codes.Unavailable || s.Code() == codes.Unimplemented || !strings.Contains(s.Message(), "boom") {
			t.Errorf("Fail through weft: %v, want the provider's error status naming \"boom\"", err)
		}
	})

	// 2. dubbo-go Triple consumer -> weft -> grpc-go server.
	t.Run("dubbo-go to grpc-go", func(t *testing.T) {
		const n = 20
		before := gg.count()
		rep := runTripleConsumer(t, addr, "-n", fmt.Sprint(n), "-c", "2", "-version", "1.0.0", "-group", "gg", "-expect-provider", "grpc-go")
		if rep.OK != n || rep.Failed != 0 || rep.AttachmentsOK != n || !rep.FailCallErrored || rep.Providers["grpc-go"] != n {
			t.Errorf("dubbo-go consumer to grpc-go server through weft: %+v", rep)
		}
		if got := gg.count() - before; got < n+1 {
			t.Errorf("grpc-go server saw %d requests, want >= %d", got, n+1)
		}
		md := gg.last()
		for k, want := range map[string]string{"tri-service-group": "gg", "tri-service-version": "1.0.0", "x-load-test": "1"} {
			if got := md.Get(k); len(got) != 1 || got[0] != want {
				t.Errorf("grpc-go server got %s = %v, want [%s]; metadata %v", k, got, want, map[string][]string(md))
			}
		}
		if got := md.Get("x-trace-id"); len(got) != 1 || !strings.HasPrefix(got[0], "trace-") {
			t.Errorf("grpc-go server got x-trace-id = %v; metadata %v", got, map[string][]string(md))
		}
	})

	// 3. plain gRPC (no tri- metadata), routed by its own group header.
	t.Run("plain gRPC", func(t *testing.T) {
		reply, _, trl, err := call(tripleSayHello, metadata.Pairs("group", "gg", "x-trace-id", "plain"), "plain")
		if err != nil {
			t.Fatalf("plain gRPC call: %v", err)
		}
		if reply != "hello plain" || len(trl.Get("x-trace-id")) != 1 || trl.Get("x-trace-id")[0] != "plain" {
			t.Errorf("plain gRPC call: reply %q trailer %v", reply, trl)
		}
		if md := gg.last(); len(md.Get("group")) != 1 || md.Get("group")[0] != "gg" {
			t.Errorf("grpc-go server metadata %v, want group=gg", map[string][]string(md))
		}
	})

	base := []string{"stat_prefix=interop", "service=" + tripleGreeter, "method=SayHello"}
	tripleWaitMetric(t, w, 25, "weft_rpc_method_requests_total", append(base, "protocol=triple")...)
	tripleWaitMetric(t, w, 1, "weft_rpc_method_requests_total", append(base, "protocol=grpc")...)
	tripleWaitMetric(t, w, 1, "weft_rpc_method_responses_total", append(base, "protocol=grpc", "status=0")...)

	// 4. What weft cannot route is answered with UNIMPLEMENTED.
	t.Run("unroutable", func(t *testing.T) {
		for _, tc := range []struct {
			what, path string
			md         metadata.MD
		}{
			{"unknown service", "/com.weftmesh.interop.Unknown/SayHello", metadata.Pairs("tri-service-group", "g2")},
			{"no route for the group", tripleSayHello, metadata.Pairs("tri-service-group", "nope")},
		} {
			_, hdr, trl, err := call(tc.path, tc.md, "x")
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("%s: %v (code %v), want Unimplemented (header %v, trailer %v)", tc.what, err, status.Code(err), hdr, trl)
			}
		}
	})

	// 5. The upstream answers before the request's end.
	t.Run("early upstream reply", func(t *testing.T) {
		// A method the grpc-go server does not have: it answers
		// trailers-only Unimplemented right after the request headers,
		// before reading the request body. Repeated, since a proxy that
		// mishandles a reply arriving before the request's end fails only
		// now and then.
		for i := 0; i < 200; i++ {
			_, hdr, trl, err := call("/"+tripleGreeter+"/Missing", metadata.Pairs("group", "gg"), "x")
			if status.Code(err) != codes.Unimplemented {
				t.Fatalf("missing method, call %d: %v, want Unimplemented (header %v, trailer %v; weft exited: %v)",
					i, err, hdr, trl, w.Wait(0))
			}
		}
		if w.Wait(100 * time.Millisecond) {
			t.Fatal("weft exited after the upstream's early trailers-only replies")
		}
	})
}
