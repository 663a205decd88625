// Package fault is the envoy.filters.http.fault stream filter: it delays
// or aborts a configured share of requests (D2/D3 fault injection), on
// every L7 protocol since it only reads the unified stream.
package fault

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

// Name is the filter's registered name.
const Name = "envoy.filters.http.fault"

// TypeURL is its typed_config type.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"

// Request headers that drive header-controlled faults, as in Envoy.
const (
	HeaderDelay        = "x-envoy-fault-delay-request"
	HeaderDelayPercent = "x-envoy-fault-delay-request-percentage"
	HeaderAbort        = "x-envoy-fault-abort-request"
	HeaderAbortPercent = "x-envoy-fault-abort-request-percentage"
)

func init() { api.StreamFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

var _ api.StreamFilterFactory = factory{}

// Config is the parsed, validated fault config.
type Config struct {
	Delay           time.Duration
	DelayFromHdr    bool
	DelayPerMillion uint64 // share of requests, in parts per million
	HasDelay        bool
	AbortStatus     int
	AbortFromHdr    bool
	AbortPerMillion uint64
	HasAbort        bool
	AbortBody       string
	Headers         router.HeaderMatchers
	MaxActive       int64 // 0 = unlimited
}

// Parse implements api.StreamFilterFactory.
func (factory) Parse(b []byte, _ string) (any, error) {
	pb := &faultv3.HTTPFault{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := pb.ValidateAll(); err != nil {
		return nil, err
	}
	c := &Config{}
	if d := pb.GetDelay(); d != nil {
		c.HasDelay = true
		c.DelayPerMillion = perMillion(d.GetPercentage())
		switch {
		case d.GetFixedDelay() != nil:
			c.Delay = d.GetFixedDelay().AsDuration()
		case d.GetHeaderDelay() != nil:
			c.DelayFromHdr = true
		default:
			return nil, fmt.Errorf("delay: fixed_delay or header_delay is required")
		}
	}
	if a := pb.GetAbort(); a != nil {
		c.HasAbort = true
		c.AbortPerMillion = perMillion(a.GetPercentage())
		c.AbortBody = a.GetResponseBody()
		switch {
		case a.GetHttpStatus() != 0:
			c.AbortStatus = int(a.GetHttpStatus())
		case a.GetHeaderAbort() != nil:
			c.AbortFromHdr = true
		case a.GetGrpcStatus() != 0:
			return nil, fmt.Errorf("abort.grpc_status: not supported on HTTP/1 yet")
		default:
			return nil, fmt.Errorf("abort: http_status or header_abort is required")
		}
	}
	if pb.GetUpstreamCluster() != "" || len(pb.GetDownstreamNodes()) > 0 {
		return nil, fmt.Errorf("upstream_cluster/downstream_nodes: not supported")
	}
	if pb.GetResponseRateLimit() != nil {
		return nil, fmt.Errorf("response_rate_limit: not supported")
	}
	hm, err := router.CompileHeaderMatchers(pb.GetHeaders())
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	c.Headers = hm
	if m := pb.GetMaxActiveFaults(); m != nil {
		c.MaxActive = int64(m.GetValue())
	}
	return c, nil
}

// perMillion converts a FractionalPercent to parts per million; an unset
// percentage means every request.
func perMillion(p *typev3.FractionalPercent) uint64 {
	if p == nil {
		return 1_000_000
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return min(n, 1_000_000)
}

// Build implements api.StreamFilterFactory.
func (factory) Build(parsed any, bc api.BuildContext) (api.StreamFilter, error) {
	f := &Filter{cfg: parsed.(*Config)}
	var store *stats.Store
	if bc != nil && bc.Service(&store) {
		f.delays = store.Counter("weft_http_fault_delays_injected_total", "Requests delayed by the fault filter.", "listener", bc.Listener())
		f.aborts = store.Counter("weft_http_fault_aborts_injected_total", "Requests aborted by the fault filter.", "listener", bc.Listener())
	} else {
		f.delays, f.aborts = &api.Counter{}, &api.Counter{}
	}
	return f, nil
}

// Filter injects the configured faults.
type Filter struct {
	cfg    *Config
	active atomic.Int64
	delays *api.Counter
	aborts *api.Counter
}

var _ api.StreamFilter = (*Filter)(nil)

func sample(perMillion uint64) bool {
	return perMillion >= 1_000_000 || rand.Uint64N(1_000_000) < perMillion
}

// OnRequest implements api.StreamFilter.
func (f *Filter) OnRequest(s api.Stream) api.Status {
	c := f.cfg
	h := s.RequestHeaders()
	if len(c.Headers) > 0 && !c.Headers.Match(h) {
		return api.Continue
	}
	if c.MaxActive > 0 {
		if f.active.Add(1) > c.MaxActive {
			f.active.Add(-1)
			return api.Continue
		}
		defer f.active.Add(-1)
	}
	if c.HasDelay {
		d, pm := c.Delay, c.DelayPerMillion
		if c.DelayFromHdr {
			d = headerMillis(h, HeaderDelay)
			pm = headerPercent(h, HeaderDelayPercent, pm)
		}
		if d > 0 && sample(pm) {
			f.delays.Inc()
			s.SetFlag(api.FlagFaultDelay)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-s.Context().Done():
				t.Stop()
				return api.Stop
			}
		}
	}
	if c.HasAbort {
		status, pm := c.AbortStatus, c.AbortPerMillion
		if c.AbortFromHdr {
			status = int(headerMillis(h, HeaderAbort) / time.Millisecond)
			pm = headerPercent(h, HeaderAbortPercent, pm)
		}
		if status >= 200 && status < 600 && sample(pm) {
			f.aborts.Inc()
			body := c.AbortBody
			if body == "" {
				body = "fault filter abort"
			}
			s.SendLocalReply(status, body, api.FlagFaultAbort)
			return api.Stop
		}
	}
	return api.Continue
}

// OnResponse implements api.StreamFilter.
func (f *Filter) OnResponse(api.Stream) api.Status { return api.Continue }

// headerMillis reads a non-negative integer header (milliseconds, or a
// status code read the same way).
func headerMillis(h api.HeaderMap, key string) time.Duration {
	v, ok := h.Get(key)
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

// headerPercent lets a request lower (never raise) the configured share.
func headerPercent(h api.HeaderMap, key string, max uint64) uint64 {
	v, ok := h.Get(key)
	if !ok {
		return max
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return max
	}
	return min(n*10_000, max)
}
