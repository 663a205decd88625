// Command provider is a dubbo-go v3 provider speaking the Dubbo 2 protocol
// (hessian2) without a registry. It serves com.weftmesh.interop.Greeter
// (version 1.0.0, group g1) and echoes x-* request attachments back as
// response attachments, adding x-provider: dubbo-go.
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

// echoFilter replaces the response attachments with the request's string x-*
// attachments plus x-provider. (dubbo-go's ProxyInvoker would otherwise echo
// every request attachment, framework keys and local/remote addresses included.)
type echoFilter struct{}

func (echoFilter) Invoke(ctx context.Context, invoker base.Invoker, inv base.Invocation) result.Result {
	return invoker.Invoke(ctx, inv)
}

func (echoFilter) OnResponse(_ context.Context, res result.Result, _ base.Invoker, inv base.Invocation) result.Result {
	out := make(map[string]any)
	for k, v := range inv.Attachments() {
		if s, ok := v.(string); ok && strings.HasPrefix(k, interop.EchoPrefix) {
			out[k] = s
		}
	}
	out[interop.ProviderKey] = interop.ProviderValue
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
	flag.Parse()
	interop.QuietLogs(*logLevel)
	if err := run(*addr, *raw); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

func run(addr string, raw bool) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return fmt.Errorf("bad port in -addr %q", addr)
	}

	extension.SetFilter(echoFilterName, func() filter.Filter { return echoFilter{} })

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
	if raw {
		filters = constant.DefaultServiceFilters
	}

	srv, err := server.NewServer(
		server.SetServerApplication(app),
		server.WithServerProtocol(
			protocol.WithDubbo(),
			protocol.WithIp(host),
			protocol.WithPort(port),
		),
		server.SetServerShutdown(shutdown),
	)
	if err != nil {
		return err
	}
	if err := srv.Register(&Greeter{}, nil,
		server.WithInterface(interop.Interface),
		server.WithVersion(interop.Version),
		server.WithGroup(interop.Group),
		server.WithSerialization(constant.Hessian2Serialization),
		server.WithFilter(filters),
		server.WithNotRegister(),
	); err != nil {
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
