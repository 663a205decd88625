package e2e

// gRPC interop cases (google.golang.org/grpc/interop) through weft: a
// grpc-go client dials weft, weft proxies over HTTP/2 to a grpc-go server
// running the interop TestService. The interop Do* functions end the
// process on failure (grpclog Fatal), so each case runs in a child
// process: this test binary re-executed with -test.run=^TestGRPCInteropChild$.

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// Environment of a TestGRPCInteropChild process.
const (
	interopEnvCase   = "WEFT_E2E_GRPC_INTEROP_CASE"
	interopEnvTarget = "WEFT_E2E_GRPC_INTEROP_TARGET"
	interopEnvCA     = "WEFT_E2E_GRPC_INTEROP_CA"  // PEM file; set for TLS
	interopEnvSNI    = "WEFT_E2E_GRPC_INTEROP_SNI" // server name to verify
)

// interopCases are the interop test cases run through weft, by name.
var interopCases = map[string]func(context.Context, *grpc.ClientConn){
	"EmptyUnaryCall": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"LargeUnaryCall": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"ClientStreaming": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"ServerStreaming": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"PingPong": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"EmptyStream": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"TimeoutOnSleepingServer": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"CancelAfterBegin": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"CancelAfterFirstResponse": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"CustomMetadata": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"StatusCodeAndMessage": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"SpecialStatusMessage": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(cc))
	},
	"UnimplementedMethod": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoUnimplementedMethod(ctx, cc)
	},
	"UnimplementedService": func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	},
}

// allInteropCases is interopCases' names in a fixed order.
var allInteropCases = []string{
	"EmptyUnaryCall", "LargeUnaryCall", "ClientStreaming", "ServerStreaming", "PingPong",
	"EmptyStream", "TimeoutOnSleepingServer", "CancelAfterBegin", "CancelAfterFirstResponse",
	"CustomMetadata", "StatusCodeAndMessage", "SpecialStatusMessage", "UnimplementedMethod",
	"UnimplementedService",
}

// TestGRPCInteropChild runs one interop case (from the environment) and
// is skipped otherwise; a failing case exits the process non-zero.
func TestGRPCInteropChild(t *testing.T) {
	name := os.Getenv(interopEnvCase)
	if name == "" {
		t.Skip("run by TestGRPCInterop in a child process")
	}
	do, ok := interopCases[name]
	if !ok {
		t.Fatalf("unknown interop case %q", name)
	}
	creds := insecure.NewCredentials()
	if caFile := os.Getenv(interopEnvCA); caFile != "" {
		c, err := credentials.NewClientTLSFromFile(caFile, os.Getenv(interopEnvSNI))
		if err != nil {
			t.Fatal(err)
		}
		creds = c
	}
	cc, err := grpc.NewClient("passthrough:///"+os.Getenv(interopEnvTarget), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	do(ctx, cc)
	fmt.Println("INTEROP CASE PASSED:", name)
}

// runInteropCase runs one case in a child process against target.
func runInteropCase(t *testing.T, name, target, caFile, sni string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestGRPCInteropChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(),
		interopEnvCase+"="+name, interopEnvTarget+"="+target, interopEnvCA+"="+caFile, interopEnvSNI+"="+sni)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "INTEROP CASE PASSED: "+name) {
		t.Errorf("interop case %s via %s failed: %v\n%s", name, target, err, tail(string(out), 6000))
	}
}

func TestGRPCInterop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA("grpc interop ca")
	caFile := ca.WriteFile(dir, "ca")

	plain := startGRPCServer(t, nil)
	upTLS := startGRPCServer(t, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Leaf("grpc.upstream.test").TLS()},
	}))
	tlsCluster := h2Cluster("interop_tls", upTLS.Port)
	tlsCluster["transport_socket"] = M{"name": tlsSocketName, "typed_config": M{"@type": upTLSType,
		"sni": "grpc.upstream.test",
		"common_tls_context": M{
			"validation_context": M{"trusted_ca": M{"filename": caFile}},
		}}}
	w := startWeft(t, bootstrap(t, []M{
		httpListener(t, "grpc", hcmConfig{Routes: routeTo("interop")}),
		h2TLSListener(t, dir, "grpc_tls", ca.Leaf("weft.test"), hcmConfig{Routes: routeTo("interop")}),
		httpListener(t, "grpc_up_tls", hcmConfig{Routes: routeTo("interop_tls")}),
	}, h2Cluster("interop", plain.Port), tlsCluster))

	t.Run("h2c", func(t *testing.T) {
		target := w.Listener("grpc")
		for _, name := range allInteropCases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runInteropCase(t, name, target, "", "")
			})
		}
	})
	t.Run("downstream_tls", func(t *testing.T) {
		target := w.Listener("grpc_tls")
		for _, name := range []string{"EmptyUnaryCall", "PingPong", "ServerStreaming", "CustomMetadata"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runInteropCase(t, name, target, caFile, "weft.test")
			})
		}
	})
	t.Run("upstream_tls", func(t *testing.T) {
		target := w.Listener("grpc_up_tls")
		for _, name := range []string{"EmptyUnaryCall", "PingPong"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runInteropCase(t, name, target, "", "")
			})
		}
	})
	biAlive(t, w)
}
