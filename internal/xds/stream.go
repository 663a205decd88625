package xds

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// wildcardName subscribes a delta stream to every resource of a type.
// SotW streams send no names instead, as Envoy does: go-control-plane's ADS
// cache never answers an SotW request that names "*".
const wildcardName = "*"

// pending is what the client has to tell the server about one type. The
// stream turns it into a request when it can send; a newer pending for the
// same type replaces the older one, so the queue holds at most one entry
// per type however slowly the server reads.
type pending struct {
	typeURL   string
	wildcard  bool
	names     []string         // wanted names, sorted (non-wildcard types)
	version   string           // SotW: the last accepted version_info
	nonce     string           // the response answered; "" for none
	errDetail *statuspb.Status // set for a NACK
	initial   map[string]string
}

// outbox is the per-stream queue between the core goroutine, which decides
// what to say, and the stream goroutine, which may be blocked in Send.
type outbox struct {
	mu    sync.Mutex
	order []string
	m     map[string]*pending
	wake  chan struct{}
}

func newOutbox() *outbox {
	return &outbox{m: map[string]*pending{}, wake: make(chan struct{}, 1)}
}

func (o *outbox) put(p *pending) {
	o.mu.Lock()
	if old, ok := o.m[p.typeURL]; ok {
		// What the replaced entry had to say must still reach the server:
		// a subscription change must not swallow an ACK, a NACK or the
		// initial versions of the connection.
		switch {
		case p.nonce == "":
			p.nonce, p.errDetail = old.nonce, old.errDetail
		case p.nonce == old.nonce && p.errDetail == nil:
			p.errDetail = old.errDetail
		}
		if p.initial == nil {
			p.initial = old.initial
		}
	} else {
		o.order = append(o.order, p.typeURL)
	}
	o.m[p.typeURL] = p
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) take() []*pending {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*pending, 0, len(o.order))
	for _, t := range o.order {
		out = append(out, o.m[t])
	}
	o.order = o.order[:0]
	clear(o.m)
	return out
}

func (o *outbox) reset() {
	o.mu.Lock()
	o.order = o.order[:0]
	clear(o.m)
	o.mu.Unlock()
}

// conv tracks, for one connection, what the server has been told: which
// types were requested and (delta) which names are subscribed.
type conv struct {
	delta    bool
	started  map[string]bool
	sent     map[string][]string
	nodeSent bool
}

// request turns a pending entry into the next request, or nil when there
// is nothing to say. The first request of a non-wildcard type must name
// something: an empty one would be a legacy wildcard subscription.
func (cv *conv) request(p *pending) proto.Message {
	first := !cv.started[p.typeURL]
	if first && !p.wildcard && len(p.names) == 0 {
		return nil
	}
	if !cv.delta {
		cv.started[p.typeURL] = true
		r := &discoveryv3.DiscoveryRequest{
			VersionInfo:   p.version,
			TypeUrl:       p.typeURL,
			ResponseNonce: p.nonce,
			ErrorDetail:   p.errDetail,
		}
		if !p.wildcard {
			r.ResourceNames = p.names
		}
		return r
	}
	r := &discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:       p.typeURL,
		ResponseNonce: p.nonce,
		ErrorDetail:   p.errDetail,
	}
	switch {
	case first:
		cv.started[p.typeURL] = true
		r.InitialResourceVersions = p.initial
		if p.wildcard {
			r.ResourceNamesSubscribe = []string{wildcardName}
		} else {
			r.ResourceNamesSubscribe = p.names
			cv.sent[p.typeURL] = p.names
		}
	case !p.wildcard:
		old := cv.sent[p.typeURL]
		for _, n := range p.names {
			if !slices.Contains(old, n) {
				r.ResourceNamesSubscribe = append(r.ResourceNamesSubscribe, n)
			}
		}
		for _, n := range old {
			if !slices.Contains(p.names, n) {
				r.ResourceNamesUnsubscribe = append(r.ResourceNamesUnsubscribe, n)
			}
		}
		cv.sent[p.typeURL] = p.names
		if p.nonce == "" && len(r.ResourceNamesSubscribe)+len(r.ResourceNamesUnsubscribe) == 0 {
			return nil
		}
	case p.nonce == "":
		return nil
	}
	return r
}

// transport is one open gRPC stream of either protocol.
type transport interface {
	send(proto.Message) error
	recv() (proto.Message, error)
}

type sotwTransport struct {
	s grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
}

func (t sotwTransport) send(m proto.Message) error {
	return t.s.Send(m.(*discoveryv3.DiscoveryRequest))
}
func (t sotwTransport) recv() (proto.Message, error) {
	m, err := t.s.Recv()
	if err != nil {
		return nil, err
	}
	return m, nil
}

type deltaTransport struct {
	s grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
}

func (t deltaTransport) send(m proto.Message) error {
	return t.s.Send(m.(*discoveryv3.DeltaDiscoveryRequest))
}
func (t deltaTransport) recv() (proto.Message, error) {
	m, err := t.s.Recv()
	if err != nil {
		return nil, err
	}
	return m, nil
}

// stream is one xDS gRPC stream: the ADS stream, or the per-type stream of
// one type. It reconnects until the client is closed.
type stream struct {
	c     *Client
	src   *Source
	ads   bool
	types []string
	label string
	out   *outbox

	cc *grpc.ClientConn // set before the stream goroutine starts

	// Owned by the core goroutine.
	started bool
	live    bool
	gen     int

	failing atomic.Bool // a failure was logged and no response came since
}

// open starts the RPC matching the stream's protocol and type.
func (s *stream) open(ctx context.Context) (transport, error) {
	cc := s.cc
	if s.src.Delta {
		var (
			st  grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
			err error
		)
		switch {
		case s.ads:
			st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
		case s.types[0] == resource.ListenerType:
			st, err = listenerservice.NewListenerDiscoveryServiceClient(cc).DeltaListeners(ctx)
		case s.types[0] == resource.RouteType:
			st, err = routeservice.NewRouteDiscoveryServiceClient(cc).DeltaRoutes(ctx)
		case s.types[0] == resource.ClusterType:
			st, err = clusterservice.NewClusterDiscoveryServiceClient(cc).DeltaClusters(ctx)
		case s.types[0] == resource.EndpointType:
			st, err = endpointservice.NewEndpointDiscoveryServiceClient(cc).DeltaEndpoints(ctx)
		default:
			st, err = secretservice.NewSecretDiscoveryServiceClient(cc).DeltaSecrets(ctx)
		}
		if err != nil {
			return nil, err
		}
		return deltaTransport{st}, nil
	}
	var (
		st  grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
		err error
	)
	switch {
	case s.ads:
		st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	case s.types[0] == resource.ListenerType:
		st, err = listenerservice.NewListenerDiscoveryServiceClient(cc).StreamListeners(ctx)
	case s.types[0] == resource.RouteType:
		st, err = routeservice.NewRouteDiscoveryServiceClient(cc).StreamRoutes(ctx)
	case s.types[0] == resource.ClusterType:
		st, err = clusterservice.NewClusterDiscoveryServiceClient(cc).StreamClusters(ctx)
	case s.types[0] == resource.EndpointType:
		st, err = endpointservice.NewEndpointDiscoveryServiceClient(cc).StreamEndpoints(ctx)
	default:
		st, err = secretservice.NewSecretDiscoveryServiceClient(cc).StreamSecrets(ctx)
	}
	if err != nil {
		return nil, err
	}
	return sotwTransport{st}, nil
}

// run keeps the stream up until ctx ends, backing off between attempts.
func (s *stream) run(ctx context.Context) {
	defer s.c.streamWG.Done()
	attempt := 0
	gen := 0
	for {
		gen++
		healthy, err := s.once(ctx, gen)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			attempt = 0
		}
		// One warning per failure streak: a server that is down for an
		// hour must not fill the log.
		if !s.failing.Swap(true) {
			s.c.log.Warn("xds: stream failed; the applied configuration stays in use", "stream", s.label, "server", s.src.Target, "error", err)
		} else {
			s.c.log.Debug("xds: stream failed again", "stream", s.label, "server", s.src.Target, "error", err)
		}
		t := time.NewTimer(backoffDelay(s.c.cfg.Backoff.Base, s.c.cfg.Backoff.Max, attempt))
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// once runs one connection of the stream. healthy reports that the server
// answered at least once, which resets the back-off.
func (s *stream) once(ctx context.Context, gen int) (healthy bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if md := s.src.Metadata[:len(s.src.Metadata)&^1]; len(md) > 0 {
		// An odd trailing key is dropped: gRPC panics on it.
		sctx = metadata.AppendToOutgoingContext(sctx, md...)
	}
	t, err := s.open(sctx)
	if err != nil {
		return false, err
	}
	ready := make(chan struct{})
	if !s.c.post(ctx, event{kind: evConnected, s: s, gen: gen, ready: ready}) {
		return false, ctx.Err()
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return false, ctx.Err()
	}

	var got atomic.Bool
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := t.recv()
			if err != nil {
				recvDone <- err
				return
			}
			if !got.Swap(true) && s.failing.Swap(false) {
				s.c.log.Info("xds: stream recovered", "stream", s.label, "server", s.src.Target)
			}
			if !s.c.post(sctx, event{kind: evResponse, s: s, gen: gen, msg: m}) {
				recvDone <- sctx.Err()
				return
			}
		}
	}()
	defer func() {
		s.c.post(ctx, event{kind: evDisconnected, s: s, gen: gen})
	}()

	cv := &conv{delta: s.src.Delta, started: map[string]bool{}, sent: map[string][]string{}}
	for {
		select {
		case <-s.out.wake:
			for _, p := range s.out.take() {
				m := cv.request(p)
				if m == nil {
					continue
				}
				if !cv.nodeSent {
					// The node goes in the first request only; servers
					// remember it for the stream.
					cv.nodeSent = true
					switch r := m.(type) {
					case *discoveryv3.DiscoveryRequest:
						r.Node = s.c.cfg.Node
					case *discoveryv3.DeltaDiscoveryRequest:
						r.Node = s.c.cfg.Node
					}
				}
				if err := t.send(m); err != nil {
					// Send reports io.EOF for a broken stream; Recv has
					// the reason.
					if !errors.Is(err, io.EOF) {
						cancel()
					}
					if rerr := <-recvDone; errors.Is(err, io.EOF) {
						err = rerr
					}
					return got.Load(), err
				}
			}
		case err := <-recvDone:
			return got.Load(), err
		case <-ctx.Done():
			cancel()
			<-recvDone
			return got.Load(), ctx.Err()
		}
	}
}

// backoffDelay is exponential with equal jitter: half the step is fixed,
// half random, so that proxies restarted together do not reconnect in
// lockstep.
func backoffDelay(base, maxDelay time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
