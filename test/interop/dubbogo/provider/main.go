// Command provider is a dubbo-go v3 provider without a registry. By default
// it speaks the Dubbo 2 protocol (hessian2); with -protocol tri it speaks
// Triple (gRPC over h2c, protobuf). It serves com.weftmesh.interop.Greeter
// (version 1.0.0, group g1 unless -version/-group say otherwise) and echoes
// x-* request attachments back as response attachments, adding
// x-provider: dubbo-go (and x-provider-id: ID with -id).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/common/extension"
	"dubbo.apache.org/dubbo-go/v3/filter"
	"dubbo.apache.org/dubbo-go/v3/global"
	"dubbo.apache.org/dubbo-go/v3/graceful_shutdown"
	"dubbo.apache.org/dubbo-go/v3/protocol"
	"dubbo.apache.org/dubbo-go/v3/protocol/base"
	"dubbo.apache.org/dubbo-go/v3/protocol/result"
	"dubbo.apache.org/dubbo-go/v3/server"

	"github.com/weftmesh/weft/test/interop/dubbogo/internal/interop"
)

// echoFilterName is the provider-side filter that sets the response attachments.
const echoFilterName = "weft-interop-echo"

// dubboVersionKey is the attachment dubbo-go's codec reads to decide whether a
// response may carry attachments (request's Dubbo version >= 2.0.2).
const dubboVersionKey = "dubbo"

// Greeter is the service implementation.
type Greeter struct{}

// SayHello returns "hello " + name. ctx carries the request attachments.
func (*Greeter) SayHello(ctx context.Context, name string) (string, error) {
	// The ctx attachment map is the invocation's attachment map, which
	// dubbo-go's ProxyInvoker also uses as the result's attachment map: with
	// -raw-attachments (no echo filter) this is how x-provider gets sent.
	if atts, ok := ctx.Value(constant.AttachmentKey).(map[string]any); ok {
		atts[interop.ProviderKey] = interop.ProviderValue
	}
	return "hello " + name, nil
}

// Fail always returns an error (sent as a Dubbo exception response).
func (*Greeter) Fail(ctx context.Context, name string) (string, error) {
	return "", fmt.Errorf("interop: Fail called with %q", name)
}

// TriGreeter is the Triple (protobuf) implementation of the Greeter.
type TriGreeter struct{}

// SayHello returns "hello " + name.
func (*TriGreeter) SayHello(_ context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("hello " + req.GetValue()), nil
}

// Fail always returns an error (sent as a gRPC error status).
func (*TriGreeter) Fail(_ context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return nil, fmt.Errorf("interop: Fail called with %q", req.GetValue())
}

// echoFilter replaces the response attachments with the request's string x-*
// attachments plus x-provider. (dubbo-go's ProxyInvoker would otherwise echo
// every request attachment, framework keys and local/remote addresses included.)
type echoFilter struct {
	id string // x-provider-id value, if not empty
}

func (f echoFilter) Invoke(ctx context.Context, invoker base.Invoker, inv base.Invocation) result.Result {
	return invoker.Invoke(ctx, inv)
}

func (f echoFilter) OnResponse(_ context.Context, res result.Result, _ base.Invoker, inv base.Invocation) result.Result {
	out := make(map[string]any)
	for k, v := range inv.Attachments() {
		if !strings.HasPrefix(k, interop.EchoPrefix) {
			continue
		}
		switch v := v.(type) {
		case string: // dubbo
			out[k] = v
		case []string: // triple: the request headers
			if len(v) > 0 {
				out[k] = v[0]
			}
		}
	}
	out[interop.ProviderKey] = interop.ProviderValue
	if f.id != "" {
		out[interop.ProviderIDKey] = f.id
	}
	if v, ok := inv.Attachments()[dubboVersionKey].(string); ok && v != "" {
		out[dubboVersionKey] = v
	}
	res.SetAttachments(out)
	return res
}

func main() {
	addr := flag.String("addr", "127.0.0.1:20880", "listen address host:port")
	raw := flag.Bool("raw-attachments", false, "no echo filter: send dubbo-go's default response attachments (every request attachment, framework keys included)")
	logLevel := flag.String("log-level", "error", "dubbo-go log level (debug, info, warn, error)")
	proto := flag.String("protocol", "dubbo", "dubbo (Dubbo 2, hessian2) or tri (Triple, protobuf)")
	version := flag.String("version", interop.Version, "service version")
	group := flag.String("group", interop.Group, "service group")
	id := flag.String("id", "", "provider instance name, sent back as the x-provider-id response attachment")
	flag.Parse()
	interop.QuietLogs(*logLevel)
	if *proto != "dubbo" && *proto != "tri" {
		fmt.Fprintf(os.Stderr, "provider: -protocol %q: want dubbo or tri\n", *proto)
		os.Exit(2)
	}
	if err := run(options{addr: *addr, raw: *raw, proto: *proto, version: *version, group: *group, id: *id}); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

type options struct {
	addr, proto, version, group, id string
	raw                             bool
}

func run(o options) error {
	addr := o.addr
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return fmt.Errorf("bad port in -addr %q", addr)
	}

	extension.SetFilter(echoFilterName, func() filter.Filter { return echoFilter{id: o.id} })

	shutdown := global.DefaultShutdownConfig()
	noSignal := false
	shutdown.InternalSignal = &noSignal // we handle SIGTERM/SIGINT ourselves
	shutdown.Timeout = "2s"
	shutdown.StepTimeout = "200ms"
	shutdown.NotifyTimeout = "200ms"
	shutdown.ConsumerUpdateWaitTime = "10ms"
	shutdown.OfflineRequestWindowTimeout = "10ms"

	// dubbo-go would otherwise export its MetadataService with the dubbo
	// protocol on the same port but on all interfaces, which collides with
	// the 127.0.0.1 listener; no registry is used, so skip it.
	app := global.DefaultApplicationConfig()
	app.Name = "weft-interop-provider"
	app.MetadataType = constant.RemoteMetadataStorageType

	// getty panics on a bind error: check the port first for a clear message.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.Close()

	// The echo filter goes first (outermost) so that its OnResponse runs last
	// and decides the final response attachments.
	filters := echoFilterName + "," + constant.DefaultServiceFilters
	if o.raw {
		filters = constant.DefaultServiceFilters
	}

	protoOpt := protocol.WithDubbo()
	if o.proto == "tri" {
		protoOpt = protocol.WithTriple()
	}
	srv, err := server.NewServer(
		server.SetServerApplication(app),
		server.WithServerProtocol(
			protoOpt,
			protocol.WithIp(host),
			protocol.WithPort(port),
		),
		server.SetServerShutdown(shutdown),
	)
	if err != nil {
		return err
	}
	svcOpts := []server.ServiceOption{
		server.WithInterface(interop.Interface),
		server.WithVersion(o.version),
		server.WithGroup(o.group),
		server.WithFilter(filters),
		server.WithNotRegister(),
	}
	if o.proto == "tri" {
		// IDL mode: the hand-written ServiceInfo, protobuf serialization.
		err = srv.Register(&TriGreeter{}, &interop.GreeterServiceInfo,
			append(svcOpts, server.WithSerialization(constant.ProtobufSerialization))...)
	} else {
		err = srv.Register(&Greeter{}, nil,
			append(svcOpts, server.WithSerialization(constant.Hessian2Serialization))...)
	}
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeContext(ctx) }()

	// Serve blocks, so wait until the port accepts connections before READY.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-serveErr:
			return fmt.Errorf("serve: %v", err)
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("provider did not start listening on %s", addr)
		}
	}
	fmt.Println("READY")

	select {
	case <-ctx.Done():
		// ServeContext starts the graceful shutdown; give it a moment.
		select {
		case <-graceful_shutdown.Done():
		case <-time.After(2 * time.Second):
		}
		return nil
	case err := <-serveErr:
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("serve: %v", err)
	}
}
