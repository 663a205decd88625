package api

import (
	"context"
	"log/slog"
	"net"
)

// ConnHandler serves one accepted downstream connection until it ends. It
// owns the connection and closes it.
type ConnHandler interface {
	ServeConn(ctx context.Context, c net.Conn)
}

// ConnHandlerFunc adapts a function to ConnHandler.
type ConnHandlerFunc func(ctx context.Context, c net.Conn)

// ServeConn calls f.
func (f ConnHandlerFunc) ServeConn(ctx context.Context, c net.Conn) { f(ctx, c) }

// EndOfChain is the handler after a listener's last network filter: it
// closes the connection. A filter that hands connections on (as the RPC
// proxy does with bytes it does not speak) compares next with it to know
// whether anything follows.
var EndOfChain ConnHandler = endOfChain{}

type endOfChain struct{}

func (endOfChain) ServeConn(_ context.Context, c net.Conn) { _ = c.Close() }

// NetworkFilter is one link of a listener's network filter chain. A
// non-terminal filter wraps next; a terminal one (tcp_proxy, the HTTP
// connection manager) ignores it.
type NetworkFilter interface {
	Chain(next ConnHandler) ConnHandler
}

// Drainer lets long-lived handlers learn that their listener is draining.
type Drainer interface {
	// Draining is closed when the listener stops accepting; handlers finish
	// in-flight work and close idle connections.
	Draining() <-chan struct{}
}

// BuildContext is what a network filter factory may use while building.
type BuildContext interface {
	// Clusters is the live cluster manager.
	Clusters() ClusterManager
	// Logger is the component logger.
	Logger() *slog.Logger
	// Drain reports the listener's drain.
	Drain() Drainer
	// Listener names the listener being built, for stats.
	Listener() string
	// Services gives shared services by interface (metrics, access logs);
	// it sets *target when present, like errors.As.
	Service(target any) bool
}

// NetworkFilterFactory builds network filters from typed config.
type NetworkFilterFactory interface {
	Parse(cfg []byte, typeURL string) (any, error)
	Build(parsed any, bc BuildContext) (NetworkFilter, error)
}

// NetworkFilters is the registry of network filters.
var NetworkFilters = NewRegistry[NetworkFilterFactory]("network filter")

// AcceptedConn is a downstream connection with what the listener learned
// about it (for logs and filter-chain match).
type AcceptedConn interface {
	net.Conn
	// ServerName is the TLS SNI, "" for plain TCP.
	ServerName() string
}

// DrainNotifier is implemented by the connections a listener hands to its
// handler. The handler registers a hook that the listener calls once when
// it starts draining: an idle connection closes at once, a busy one closes
// after its in-flight work. Registering nil removes the hook.
type DrainNotifier interface {
	OnDrain(hook func())
}
