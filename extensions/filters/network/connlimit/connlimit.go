// Package connlimit is envoy.filters.network.connection_limit: a per
// filter-chain cap on concurrent downstream connections (D1 listener
// limits). Connections over the cap are closed, after an optional delay
// that slows down reconnect storms.
package connlimit

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	clv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/stats"
)

// Name is the filter's registered name.
const Name = "envoy.filters.network.connection_limit"

// TypeURL is its typed_config type.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"

func init() { api.NetworkFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

var _ api.NetworkFilterFactory = factory{}

type config struct {
	statPrefix string
	max        int64
	delay      time.Duration
}

// Parse implements api.NetworkFilterFactory.
func (factory) Parse(b []byte, _ string) (any, error) {
	pb := &clv3.ConnectionLimit{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := pb.ValidateAll(); err != nil {
		return nil, err
	}
	if pb.GetMaxConnections() == nil {
		return nil, fmt.Errorf("max_connections: must be set")
	}
	return &config{statPrefix: pb.GetStatPrefix(), max: int64(pb.GetMaxConnections().GetValue()), delay: pb.GetDelay().AsDuration()}, nil
}

// Build implements api.NetworkFilterFactory.
func (factory) Build(parsed any, bc api.BuildContext) (api.NetworkFilter, error) {
	c := parsed.(*config)
	f := &filter{cfg: c}
	var store *stats.Store
	if bc.Service(&store) {
		f.limited = store.Counter("weft_connection_limit_limited_connections_total", "Connections closed by the connection limit.", "stat_prefix", c.statPrefix)
		f.active = store.Gauge("weft_connection_limit_active_connections", "Connections counted by the connection limit.", "stat_prefix", c.statPrefix)
	} else {
		f.limited, f.active = &api.Counter{}, &api.Gauge{}
	}
	return f, nil
}

type filter struct {
	cfg     *config
	n       atomic.Int64
	limited *api.Counter
	active  *api.Gauge
}

// Chain implements api.NetworkFilter.
func (f *filter) Chain(next api.ConnHandler) api.ConnHandler {
	return api.ConnHandlerFunc(func(ctx context.Context, c net.Conn) {
		if f.n.Add(1) > f.cfg.max {
			f.n.Add(-1)
			f.limited.Inc()
			if f.cfg.delay > 0 {
				t := time.NewTimer(f.cfg.delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			_ = c.Close()
			return
		}
		f.active.Inc()
		defer func() { f.n.Add(-1); f.active.Dec() }()
		next.ServeConn(ctx, c)
	})
}
