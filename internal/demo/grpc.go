package demo

// The gRPC part of the demo: a gRPC server in the demo process serving
// grpc.testing.TestService (grpc-go's interop test service: UnaryCall
// echoes, StreamingOutputCall streams a few messages) and the standard
// health service, behind sidecar-grpc, whose cluster speaks HTTP/2 (h2c)
// to it. The frontend sidecar routes the gRPC paths to sidecar-grpc over
// HTTP/2 as well, and a gRPC caller in the demo process calls UnaryCall
// through the frontend sidecar's HTTP listener (h2c by prior knowledge:
// codec_type AUTO sees the client preface). Header and trailer naming the
// instance come back through both sidecars.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstats "google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Names of the gRPC part.
const (
	grpcApp         = "grpc-test" // the gRPC server's instance name (served-by)
	sidecarGRPC     = "sidecar-grpc"
	grpcTestService = "grpc.testing.TestService"
	grpcHealthSvc   = "grpc.health.v1.Health"
	grpcUnaryMethod = "UnaryCall"

	// grpcStreamMessages is how many messages StreamingOutputCall sends
	// when the request asks for none in particular.
	grpcStreamMessages = 3
	// grpcMaxMessages and grpcMaxPayload bound what one
	// StreamingOutputCall may ask for.
	grpcMaxMessages = 100
	grpcMaxPayload  = 64 << 10
)

// grpcServer is the sample gRPC server on a loopback port.
type grpcServer struct {
	srv    *grpc.Server
	ln     net.Listener
	served chan error
}

func (s *grpcServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the server at once (the sidecars in front have drained by
// then) and waits for Serve to return.
func (s *grpcServer) Close() {
	s.srv.Stop()
	<-s.served
}

// startGRPCServer serves TestService as instance name and the health
// service (SERVING overall and for TestService) on a free loopback port.
func startGRPCServer(name string) (*grpcServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testService{name: name})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(grpcTestService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	s := &grpcServer{srv: srv, ln: ln, served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(ln) }()
	return s, nil
}

// testService implements UnaryCall and StreamingOutputCall of
// grpc.testing.TestService; the other methods answer UNIMPLEMENTED.
type testService struct {
	testpb.UnimplementedTestServiceServer
	name string
}

// UnaryCall echoes the request's payload, with a served-by header and
// trailer naming the instance.
func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := grpc.SetHeader(ctx, metadata.Pairs(servedBy, s.name)); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs(servedBy, s.name)); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload(), ServerId: s.name, Hostname: s.name}, nil
}

// StreamingOutputCall sends one message per response parameter (a payload
// of its size), or grpcStreamMessages small ones when there are none,
// with the same header and trailer as UnaryCall.
func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	params := req.GetResponseParameters()
	if len(params) > grpcMaxMessages {
		return status.Errorf(codes.InvalidArgument, "at most %d response parameters", grpcMaxMessages)
	}
	if len(params) == 0 {
		for i := 0; i < grpcStreamMessages; i++ {
			params = append(params, &testpb.ResponseParameters{Size: int32(len(s.name) + 8)})
		}
	}
	if err := stream.SetHeader(metadata.Pairs(servedBy, s.name)); err != nil {
		return err
	}
	stream.SetTrailer(metadata.Pairs(servedBy, s.name))
	for i, p := range params {
		if p.GetSize() < 0 || p.GetSize() > grpcMaxPayload {
			return status.Errorf(codes.InvalidArgument, "response size %d: out of 0..%d", p.GetSize(), grpcMaxPayload)
		}
		if d := p.GetIntervalUs(); d > 0 {
			select {
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			case <-time.After(time.Duration(min(d, 1_000_000)) * time.Microsecond):
			}
		}
		body := []byte(fmt.Sprintf("%s #%d ", s.name, i+1))
		for len(body) < int(p.GetSize()) {
			body = append(body, '.')
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body[:p.GetSize()]}}); err != nil {
			return err
		}
	}
	return nil
}

// grpcCaller calls TestService.UnaryCall("grpc #N") at rps calls per
// second through target (the frontend sidecar's HTTP listener, h2c), each
// call with a deadline of rpcTimeout, recording into c. A call counts as
// ok when the payload came back and the served-by header and trailer
// name the same instance.
type grpcCaller struct {
	c      *caller
	target string
}

func newGRPCCaller(target string, rps int) *grpcCaller {
	return &grpcCaller{
		c:      newCaller(grpcTestService+"/"+grpcUnaryMethod, target+" (sidecar-frontend, h2c) -> "+sidecarGRPC, rps, nil, nil),
		target: target,
	}
}

// connCounter counts the connections a client makes in Connects.
type connCounter struct{ c *caller }

func (h connCounter) TagRPC(ctx context.Context, _ *grpcstats.RPCTagInfo) context.Context {
	return ctx
}
func (h connCounter) HandleRPC(context.Context, grpcstats.RPCStats) {}
func (h connCounter) TagConn(ctx context.Context, _ *grpcstats.ConnTagInfo) context.Context {
	return ctx
}
func (h connCounter) HandleConn(_ context.Context, s grpcstats.ConnStats) {
	if _, ok := s.(*grpcstats.ConnBegin); ok {
		h.c.mu.Lock()
		h.c.st.Connects++
		h.c.mu.Unlock()
	}
}

// dialGRPC is a client of target over h2c.
func dialGRPC(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
}

// run calls until ctx ends; calls in flight then are not failures.
func (g *grpcCaller) run(ctx context.Context) {
	if g.c.rps <= 0 {
		return
	}
	cc, err := dialGRPC(g.target, grpc.WithStatsHandler(connCounter{g.c}))
	if err != nil {
		g.c.connError(err)
		return
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(time.Second / time.Duration(g.c.rps))
	defer t.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq++
		wg.Add(1)
		go func(seq uint64) {
			defer wg.Done()
			text, by, err := unaryCall(ctx, client, "grpc #"+strconv.FormatUint(seq, 10))
			if err != nil && ctx.Err() != nil {
				return // stopping
			}
			g.c.result(text, by, err)
		}(seq)
	}
}

// unaryCall calls UnaryCall with arg and checks the answer: the payload
// echoed, and a served-by header and trailer that agree. It returns what
// /rpc shows and the instance that answered.
func unaryCall(ctx context.Context, client testpb.TestServiceClient, arg string) (text, by string, err error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	var hdr, trl metadata.MD
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(arg)}},
		grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		s := status.Convert(err)
		return "", "", fmt.Errorf("grpc status %d %s: %s", s.Code(), s.Code(), s.Message())
	}
	if got := string(resp.GetPayload().GetBody()); got != arg {
		return "", "", fmt.Errorf("grpc: sent %q, got back %q", arg, got)
	}
	h, tr := hdr.Get(servedBy), trl.Get(servedBy)
	switch {
	case len(h) != 1:
		return "", "", fmt.Errorf("grpc: served-by header %q (want one)", h)
	case len(tr) != 1:
		return "", "", fmt.Errorf("grpc: served-by trailer %q (want one; header %q)", tr, h[0])
	case h[0] != tr[0]:
		return "", "", errors.New("grpc: the served-by header and trailer differ: " + h[0] + ", " + tr[0])
	}
	return fmt.Sprintf("%s/%s -> %q (served-by %s, header and trailer)", grpcTestService, grpcUnaryMethod, arg, h[0]), h[0], nil
}
