package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream"
)

// protocol is what every instance of the benchmark speaks.
const protocol = "bolt"

// consumer is the registry path of one consumer sidecar, as the mesh
// agent (internal/mesh/agent.go) runs it for its subscriptions: one
// registry client, one upstream.Manager (the egress side's) with one EDS
// cluster per subscribed service created with Upsert one subscription at
// a time, and one Watch per service whose callback filters the protocol,
// sorts, builds the ClusterLoadAssignment and calls UpdateEndpoints under
// an agent-wide lock, then logs the change at info. What the agent does
// besides (listeners, SDK API, route tables) is left out.
type consumer struct {
	id       int
	services []string
	want     int // endpoints per cluster when everything is published
	reg      registry.Registry
	cm       *upstream.Manager
	log      *slog.Logger // the agent's "providers changed" line
	tr       *tracker     // nil: nothing is timed per instance
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	updates  atomic.Int64 // UpdateEndpoints calls
	refused  atomic.Int64 // UpdateEndpoints errors

	mu      sync.Mutex // the agent's a.mu
	known   []bool     // per service: the registry answered once
	knownN  int
	knownCh chan struct{} // closed when every service was answered
	full    []time.Time   // per service: when its cluster first had want hosts
	fullN   int
	fullCh  chan struct{} // closed when every cluster had want hosts
}

// newConsumer builds a consumer sidecar and subscribes it to services.
// agentLog sends the agent's per-change info line to a text handler that
// discards it (the formatting is paid, the writing is not).
func newConsumer(ctx context.Context, b backend, id int, services []string, want int, tr *tracker, clientLog *slog.Logger, agentLog bool) (*consumer, error) {
	reg, err := b.Client(ctx, clientLog)
	if err != nil {
		return nil, err
	}
	lg := slog.New(slog.DiscardHandler)
	if agentLog {
		lg = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	lg = lg.With("component", "mesh")
	c := &consumer{
		id: id, services: services, want: want, reg: reg, tr: tr, log: lg,
		cm:      upstream.NewManager(upstream.Options{Logger: lg, Stats: stats.NewStore()}),
		known:   make([]bool, len(services)),
		knownCh: make(chan struct{}),
		full:    make([]time.Time, len(services)),
		fullCh:  make(chan struct{}),
	}
	if len(services) == 0 {
		close(c.knownCh)
		close(c.fullCh)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	for i, name := range services {
		c.mu.Lock()
		err := c.cm.Upsert([]*clusterv3.Cluster{edsCluster(name)}, nil)
		c.mu.Unlock()
		if err != nil {
			c.close()
			return nil, fmt.Errorf("consumer %d: cluster %s: %w", id, name, err)
		}
		c.wg.Go(func() {
			_ = reg.Watch(wctx, name, func(list []registry.Instance) { c.onProviders(i, list) })
		})
	}
	return c, nil
}

// onProviders is the agent's onProviders for service i.
func (c *consumer) onProviders(i int, list []registry.Instance) {
	name := c.services[i]
	var mine []registry.Instance
	for _, in := range list {
		if in.Protocol == protocol {
			mine = append(mine, in)
		}
	}
	registry.Sort(mine)
	c.mu.Lock()
	err := c.cm.UpdateEndpoints(name, cla(name, mine))
	var hosts []*upstream.Host
	if cl := c.cm.Get(name); cl != nil {
		hosts = cl.Hosts()
	}
	now := time.Now()
	c.updates.Add(1)
	if err != nil {
		c.refused.Add(1)
		c.log.Warn("mesh: endpoint update refused", "service", name, "err", err)
	}
	c.log.Info("providers changed", "service", name, "protocol", protocol, "count", len(mine))
	if !c.known[i] {
		c.known[i] = true
		if c.knownN++; c.knownN == len(c.services) {
			close(c.knownCh)
		}
	}
	if len(hosts) >= c.want && c.full[i].IsZero() {
		c.full[i] = now
		if c.fullN++; c.fullN == len(c.services) {
			close(c.fullCh)
		}
	}
	c.mu.Unlock()
	if c.tr != nil {
		c.tr.observe(c.id, i, hosts, now)
	}
}

// hostCount is the number of hosts in every cluster together.
func (c *consumer) hostCount() int {
	n := 0
	for _, name := range c.services {
		if cl := c.cm.Get(name); cl != nil {
			n += len(cl.Hosts())
		}
	}
	return n
}

// close ends the watches and the registry client, then the manager.
func (c *consumer) close() error {
	c.cancel()
	err := c.reg.Close()
	c.wg.Wait()
	c.cm.Close()
	return err
}

// edsCluster is the cluster the agent creates for a subscription.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(time.Second),
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

// cla is the endpoint assignment the agent builds from a provider list:
// every provider with an IP address, its metadata under "envoy.lb".
func cla(name string, list []registry.Instance) *endpointv3.ClusterLoadAssignment {
	eps := make([]*endpointv3.LbEndpoint, 0, len(list))
	for _, in := range list {
		host, p, err := net.SplitHostPort(in.Address)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || net.ParseIP(host) == nil {
			continue
		}
		ep := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
			}}},
		}}}
		if len(in.Metadata) > 0 {
			fields := make(map[string]any, len(in.Metadata))
			for k, v := range in.Metadata {
				fields[k] = v
			}
			if st, err := structpb.NewStruct(fields); err == nil {
				ep.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.lb": st}}
			}
		}
		eps = append(eps, ep)
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// tracker times instances from their publication (or removal) until every
// consumer's cluster shows it (or no longer does).
type tracker struct {
	consumers int
	svc       []svcTrack
}

type svcTrack struct {
	mu   sync.Mutex
	inst []*instTrack
}

// instTrack is one instance being waited for.
type instTrack struct {
	addr    string
	present bool // waiting for it to appear (else to disappear)
	start   time.Time
	seen    []bool // per consumer
	count   int
	last    time.Time     // when the last consumer saw it
	done    chan struct{} // closed when count reaches the consumers
}

func newTracker(consumers, services int) *tracker {
	return &tracker{consumers: consumers, svc: make([]svcTrack, services)}
}

// start begins waiting for addr to appear in (present) or leave every
// consumer's cluster of service svc; its clock starts now.
func (t *tracker) start(svc int, addr string, present bool) *instTrack {
	it := &instTrack{addr: addr, present: present, seen: make([]bool, t.consumers), done: make(chan struct{})}
	s := &t.svc[svc]
	s.mu.Lock()
	s.inst = append(s.inst, it)
	it.start = time.Now()
	s.mu.Unlock()
	return it
}

// stop forgets it.
func (t *tracker) stop(svc int, it *instTrack) {
	s := &t.svc[svc]
	s.mu.Lock()
	for i, x := range s.inst {
		if x == it {
			s.inst = append(s.inst[:i], s.inst[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
}

// observe records what consumer c's cluster of service svc holds at now.
func (t *tracker) observe(c, svc int, hosts []*upstream.Host, now time.Time) {
	s := &t.svc[svc]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.inst {
		if it.seen[c] {
			continue
		}
		in := false
		for _, h := range hosts {
			if h.Address() == it.addr {
				in = true
				break
			}
		}
		if in != it.present {
			continue
		}
		it.seen[c] = true
		if it.count++; it.count == t.consumers {
			it.last = now
			close(it.done)
		}
	}
}

// latency is how long it took, false while some consumer has not seen it.
func (it *instTrack) latency() (time.Duration, bool) {
	select {
	case <-it.done:
		return it.last.Sub(it.start), true
	default:
		return 0, false
	}
}
