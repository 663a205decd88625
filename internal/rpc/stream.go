package rpc

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

// rpcStream is one request on a downstream connection, run by its own
// goroutine so that a slow request (a fault delay, a slow upstream) holds
// up no other. Pooled: reset, not reallocated, per request.
type rpcStream struct {
	sc    *serverConn
	req   api.Frame
	resp  api.Frame // the response sent (upstream or local), nil before
	start time.Time

	route    *router.Route
	rs       *stats.RouteStats // the route's stats, looked up once
	cluster  string
	host     api.Host
	status   int // HTTP-like status of the response, 0 for none
	replied  bool
	flags    accesslog.Flags
	failure  string
	hashKey  uint64
	hasHash  bool
	upstream bool // resp came from upstream (pooled frame)
	mstats   *stats.RPCMethodStats

	call  call
	timer *time.Timer
	entry accesslog.Entry
}

var streams = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &rpcStream{timer: t, call: call{done: make(chan struct{}, 1)}}
}}

func getStream(sc *serverConn, req api.Frame) *rpcStream {
	s := streams.Get().(*rpcStream)
	s.sc, s.req, s.start = sc, req, time.Now()
	return s
}

func (s *rpcStream) recycle() {
	done, t := s.call.done, s.timer
	*s = rpcStream{call: call{done: done}, timer: t}
	streams.Put(s)
}

var _ api.Stream = (*rpcStream)(nil)
var _ api.LBContext = (*rpcStream)(nil)

// Context implements api.Stream: it ends with the downstream connection.
func (s *rpcStream) Context() context.Context { return s.sc.ctx }

// Protocol implements api.Stream.
func (s *rpcStream) Protocol() string { return s.sc.codec.Name() }

// RequestHeaders implements api.Stream.
func (s *rpcStream) RequestHeaders() api.HeaderMap { return s.req.Headers() }

// ResponseHeaders implements api.Stream.
func (s *rpcStream) ResponseHeaders() api.HeaderMap {
	if s.resp == nil {
		return nil
	}
	return s.resp.Headers()
}

// SendLocalReply implements api.Stream: the status becomes the protocol's
// error response.
func (s *rpcStream) SendLocalReply(status int, body string, flag string) {
	if flag != "" {
		s.flags.Add(flag)
	}
	s.localReply(status, body)
}

// SetFlag implements api.Stream.
func (s *rpcStream) SetFlag(flag string) { s.flags.Add(flag) }

// RemoteAddr implements api.Stream.
func (s *rpcStream) RemoteAddr() net.Addr { return s.sc.nc.RemoteAddr() }

// StartTime implements api.Stream.
func (s *rpcStream) StartTime() time.Time { return s.start }

// HashKey implements api.LBContext.
func (s *rpcStream) HashKey() (uint64, bool) { return s.hashKey, s.hasHash }

// Headers implements api.LBContext.
func (s *rpcStream) Headers() api.HeaderMap { return s.req.Headers() }

// DownstreamRemoteAddress implements router.VarSource.
func (s *rpcStream) DownstreamRemoteAddress() string { return s.sc.nc.RemoteAddr().String() }

func (s *rpcStream) oneway() bool { return s.req.Kind() == api.KindOneway }

// localReply answers the request from Weft with the protocol's error
// response for an HTTP-like status. One-way requests get nothing.
func (s *rpcStream) localReply(status int, msg string) {
	if s.replied {
		return
	}
	s.replied = true
	s.status = status
	sc := s.sc
	if s.oneway() {
		return
	}
	sc.p.cfg.Stats.LocalReply.Inc()
	s.resp = sc.codec.ErrorReply(s.req, status, msg)
	for i := len(sc.p.cfg.Filters) - 1; i >= 0; i-- {
		sc.p.cfg.Filters[i].OnResponse(s)
	}
	_ = sc.w.write(sc.codec, s.resp)
}

// run proxies the request and answers it.
func (s *rpcStream) run() {
	sc := s.sc
	cfg := &sc.p.cfg
	defer s.finish()
	cfg.Stats.DownstreamRqActive.Inc()
	defer cfg.Stats.DownstreamRqActive.Dec()
	h := s.req.Headers()
	svc, _ := h.Get(":authority")
	method, _ := h.Get(":path")
	// Unrouted requests share one entry: a client cycling through made-up
	// service names must not mint a metric series each.
	s.mstats = sc.p.ms.Unrouted(sc.codec.Name())
	if s.oneway() {
		cfg.Stats.DownstreamRqOneway.Inc()
	}

	for _, f := range cfg.Filters {
		if f.OnRequest(s) == api.Stop || s.replied {
			if !s.replied {
				s.localReply(500, "stopped by filter")
			}
			return
		}
	}
	var rt *router.Route
	if t := cfg.Routes.Table(); t != nil {
		rt = t.Route(h)
	}
	if rt == nil {
		cfg.Stats.NoRoute.Inc()
		s.flags.Add(api.FlagNoRoute)
		s.localReply(404, "no route for service "+svc+" method "+method)
		return
	}
	s.route = rt
	s.mstats = sc.p.ms.Get(sc.codec.Name(), svc, method)
	rs := sc.p.routeStats(rt)
	s.rs = rs
	rs.Requests.Inc()
	if rt.DirectResponse != nil {
		s.localReply(rt.DirectResponse.Status, rt.DirectResponse.Body)
		return
	}
	if rt.Redirect != nil {
		s.localReply(500, "redirect routes do not apply to RPC")
		return
	}
	reqOps, respOps := rt.RequestHeaders, rt.ResponseHeaders
	if cw := rt.PickWeighted(rand.Uint64()); cw != nil {
		s.cluster = cw.Name
		reqOps, respOps = cw.RequestHeaders, cw.ResponseHeaders
		if cw.HostRewriteLiteral != "" {
			h.Set(":authority", cw.HostRewriteLiteral)
		}
	} else {
		s.cluster = rt.ClusterFor(h, 0)
	}
	if rt.HostRewriteLiteral != "" {
		h.Set(":authority", rt.HostRewriteLiteral)
	}
	cl, ok := cfg.Clusters.Cluster(s.cluster)
	if !ok {
		cfg.Stats.NoCluster.Inc()
		s.flags.Add(api.FlagNoClusterFound)
		status := rt.ClusterNotFoundStatus
		if status == 0 {
			status = 503
		}
		s.localReply(status, "cluster not found: "+s.cluster)
		return
	}
	reqOps.Apply(h, s)
	if len(rt.HashPolicies) > 0 {
		ip := s.DownstreamRemoteAddress()
		if i := strings.LastIndexByte(ip, ':'); i >= 0 {
			ip = ip[:i]
		}
		s.hashKey, s.hasHash = rt.Hash(h, ip)
	}
	if !cl.TryAcquire(api.ResRequests) {
		s.flags.Add(api.FlagUpstreamOverflow)
		s.localReply(503, "upstream overflow")
		return
	}
	defer cl.Release(api.ResRequests)
	s.forward(cl, rt, respOps)
}

// The outcome of one try.
type outcome uint8

const (
	gotResponse outcome = iota
	failNoHost
	failConnect
	failOverflow
	failNotSent
	failReset
	failTimeout
	failPerTryTimeout
	failDownstream
	failSent // a one-way request left
)

// forward sends the request with the route's timeout and retry policy and
// answers the downstream.
func (s *rpcStream) forward(cl api.Cluster, rt *router.Route, respOps *router.HeaderOps) {
	cfg := &s.sc.p.cfg
	timeout := rt.Timeout
	if ft := s.req.Timeout(); ft > 0 && (timeout == 0 || ft < timeout) {
		timeout = ft
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = s.start.Add(timeout)
	}
	retries := 0
	if rt.RetryPolicy != nil && !s.oneway() {
		retries = int(rt.RetryPolicy.NumRetries)
	}
	// A request that never left may go again, not counted as a retry: a
	// config change can take the host (or the whole cluster object) away
	// between the pick and the send; the next pick sees the new one.
	freeRetries := 3
	for try := 0; ; try++ {
		o := s.try(cl, rt, deadline)
		switch o {
		case gotResponse:
			code := s.sc.codec.HTTPStatus(s.resp)
			if try < retries && rt.RetryPolicy.RetriableStatus(code) && s.retry(cl, rt, try, deadline) {
				s.dropResponse()
				continue
			}
			s.respond(cl, rt, respOps)
			return
		case failSent:
			s.status = 200
			return
		case failNoHost:
			// The cluster object was replaced (a CDS update) after we
			// looked it up: pick from the new one.
			if c, ok := cfg.Clusters.Cluster(s.cluster); ok && c != cl && freeRetries > 0 {
				freeRetries--
				cl = c
				try--
				continue
			}
		case failNotSent, failPerTryTimeout:
			if o == failNotSent && freeRetries > 0 {
				freeRetries--
				if c, ok := cfg.Clusters.Cluster(s.cluster); ok {
					cl = c
				}
				try--
				continue
			}
		}
		if try < retries && s.retriable(o, rt) && s.retry(cl, rt, try, deadline) {
			continue
		}
		s.fail(cl, o)
		return
	}
}

func (s *rpcStream) retriable(o outcome, rt *router.Route) bool {
	p := rt.RetryPolicy
	switch o {
	case failConnect, failNotSent:
		return p.RetriableReset(router.ResetConnectFailure)
	case failReset:
		return p.RetriableReset(router.ResetOther)
	case failPerTryTimeout:
		return p.RetryOn&(router.Retry5xx|router.RetryGatewayError) != 0
	case failNoHost, failOverflow:
		return p.RetriableStatus(503)
	}
	return false
}

// retry takes a retry budget and waits the back-off; false when the
// breaker or the deadline says no.
func (s *rpcStream) retry(cl api.Cluster, rt *router.Route, try int, deadline time.Time) bool {
	if !cl.TryAcquire(api.ResRetries) {
		return false
	}
	defer cl.Release(api.ResRetries)
	s.rs.Retries.Inc()
	cl.Stats().UpstreamRetries.Inc()
	p := rt.RetryPolicy
	base, maxB := p.BackOffBase, p.BackOffMax
	if base <= 0 {
		base = router.DefaultRetryBackOffBase
	}
	if maxB <= 0 {
		maxB = 10 * base
	}
	d := base << min(try, 16)
	if d > maxB || d <= 0 {
		d = maxB
	}
	d = time.Duration(rand.Int64N(int64(d) + 1))
	if !deadline.IsZero() && time.Now().Add(d).After(deadline) {
		return false
	}
	s.timer.Reset(d)
	select {
	case <-s.timer.C:
	case <-s.sc.done:
		s.timer.Stop()
		return false
	}
	s.host = nil
	return true
}

// try sends the request to one host and waits for its response.
func (s *rpcStream) try(cl api.Cluster, rt *router.Route, deadline time.Time) outcome {
	sc := s.sc
	p := sc.p
	host := cl.Pick(s)
	if host == nil {
		cl.Stats().NoHealthyHost.Inc()
		return failNoHost
	}
	s.host = host
	pool, ok := host.Pool(p.poolKy[sc.codec.Name()], p.mkPool[sc.codec.Name()]).(*muxPool)
	if !ok {
		return failConnect
	}
	c, err := pool.acquire(sc.ctx)
	switch err {
	case nil:
	case errOverflow:
		return failOverflow
	case errPoolClosed:
		return failNotSent
	default:
		if sc.dead.Load() {
			return failDownstream
		}
		return failConnect
	}
	defer pool.release(c)
	host.ActiveRequests().Inc()
	defer host.ActiveRequests().Dec()
	host.Stats().Requests.Inc()
	cl.Stats().UpstreamRequests.Inc()
	if s.oneway() {
		switch _, err := c.send(s.req, nil); err {
		case nil:
			return failSent
		case errBacklog:
			return failOverflow
		}
		return failNotSent
	}
	cll := &s.call
	cll.resp, cll.err = nil, nil
	id, err := c.send(s.req, cll)
	switch err {
	case nil:
	case errBacklog:
		// The provider is not keeping up: refuse this request, keep the
		// connection for the others.
		return failOverflow
	default:
		return failNotSent
	}
	perTry := deadline
	if rp := rt.RetryPolicy; rp != nil && rp.PerTryTimeout > 0 {
		if t := time.Now().Add(rp.PerTryTimeout); perTry.IsZero() || t.Before(perTry) {
			perTry = t
		}
	}
	var expired <-chan time.Time
	if !perTry.IsZero() {
		s.timer.Reset(time.Until(perTry))
		expired = s.timer.C
		defer s.timer.Stop()
	}
	select {
	case <-cll.done:
	case <-expired:
		if c.forget(id, cll) {
			if perTry.Equal(deadline) {
				return failTimeout
			}
			return failPerTryTimeout
		}
		<-cll.done // the answer raced the timer: take it
	case <-sc.done:
		if c.forget(id, cll) {
			return failDownstream
		}
		<-cll.done
	}
	if cll.err != nil {
		p.cfg.Stats.UpstreamRqReset.Inc()
		return failReset
	}
	s.resp, s.upstream = cll.resp, true
	cll.resp = nil
	return gotResponse
}

// dropResponse recycles a response that will not be sent (retried).
func (s *rpcStream) dropResponse() {
	if s.resp != nil && s.upstream {
		s.sc.frame.Put(s.resp)
	}
	s.resp, s.upstream = nil, false
}

// respond sends the upstream response downstream under the request's id.
func (s *rpcStream) respond(cl api.Cluster, rt *router.Route, respOps *router.HeaderOps) {
	sc := s.sc
	s.status = sc.codec.HTTPStatus(s.resp)
	stats.RecordClusterResponse(cl.Stats(), s.status)
	if s.status >= 500 && s.host != nil {
		s.host.Stats().Responses5xx.Inc()
	}
	respOps.Apply(s.resp.Headers(), s)
	for i := len(sc.p.cfg.Filters) - 1; i >= 0; i-- {
		sc.p.cfg.Filters[i].OnResponse(s)
	}
	s.replied = true
	s.resp.SetRequestID(s.req.RequestID())
	_ = sc.w.write(sc.codec, s.resp)
}

// fail answers a try that got no response.
func (s *rpcStream) fail(cl api.Cluster, o outcome) {
	switch o {
	case failNoHost:
		s.flags.Add(api.FlagNoHealthyUpstream)
		s.localReply(503, "no healthy upstream")
	case failConnect, failNotSent:
		s.flags.Add(api.FlagUpstreamConnectFailure)
		s.failure = "connection failure"
		s.localReply(503, "upstream connect error")
	case failOverflow:
		s.flags.Add(api.FlagUpstreamOverflow)
		cl.Stats().Overflow.Inc()
		s.localReply(503, "upstream connection overflow")
	case failReset:
		s.flags.Add(api.FlagUpstreamReset)
		s.failure = "connection termination"
		cl.Stats().UpstreamResets.Inc()
		s.localReply(502, "upstream connection closed before the response")
	case failTimeout, failPerTryTimeout:
		s.flags.Add(api.FlagUpstreamRequestTimeout)
		s.sc.p.cfg.Stats.DownstreamRqTimeout.Inc()
		cl.Stats().UpstreamRequestTimeout.Inc()
		if s.rs != nil {
			s.rs.Timeouts.Inc()
		}
		s.localReply(504, "upstream request timeout")
	case failDownstream:
		s.flags.Add(api.FlagDownstreamReset)
		s.replied = true
	}
}

// finish records the request, mirrors it, and gives everything back.
func (s *rpcStream) finish() {
	sc := s.sc
	p := sc.p
	cfg := &p.cfg
	d := time.Since(s.start)
	cfg.Stats.DownstreamRq.Inc()
	cfg.Stats.DownstreamRqTime.Observe(d)
	if m := s.mstats; m != nil {
		m.Requests.Inc()
		m.Latency.Observe(d)
		switch {
		case s.resp != nil:
			m.Status(s.resp.Status()).Inc()
			if s.status != 200 {
				m.Errors.Inc()
			}
		case s.status != 200:
			m.Errors.Inc()
		}
	}
	if s.route != nil {
		rs := s.rs
		rs.RecordResponse(s.status)
		rs.Latency.Observe(d)
		if s.cluster != "" && s.host != nil {
			p.clusterLatency(s.cluster).Observe(d)
		}
	}
	if len(cfg.AccessLogs) > 0 {
		s.log(d)
	}
	if s.route != nil && len(s.route.MirrorPolicies) > 0 && !sc.dead.Load() {
		s.mirror()
	}
	s.dropResponse()
	sc.frame.Put(s.req)
	<-sc.sem
	sc.reqs.Done()
	s.recycle()
}

func (s *rpcStream) log(d time.Duration) {
	sc := s.sc
	e := &s.entry
	*e = accesslog.Entry{
		Start:           s.start,
		Duration:        d,
		Protocol:        sc.codec.Name(),
		Status:          s.status,
		Flags:           s.flags.String(),
		UpstreamCluster: s.cluster,
		Downstream:      sc.nc.RemoteAddr(),
		DownstreamLocal: sc.nc.LocalAddr(),
		UpstreamFailure: s.failure,
		ReqHeaders:      s.req.Headers(),
	}
	if s.resp != nil {
		e.RespHeaders = s.resp.Headers()
	}
	if s.host != nil {
		e.UpstreamHost = s.host.Address()
	}
	if s.route != nil {
		e.RouteName = s.route.Name
	}
	for _, l := range sc.p.cfg.AccessLogs {
		l.Log(e)
	}
}

// mirrorTimeout bounds how long a mirrored request's id stays reserved.
const mirrorTimeout = 30 * time.Second

// mirror sends a copy of the request to each sampled shadow cluster, after
// the real response left, and drops the shadow's answer.
func (s *rpcStream) mirror() {
	sc := s.sc
	p := sc.p
	for i := range s.route.MirrorPolicies {
		m := &s.route.MirrorPolicies[i]
		if !m.Sample(rand.Uint64()) {
			continue
		}
		name := m.Cluster
		if m.ClusterHeader != "" {
			name, _ = s.req.Headers().Get(m.ClusterHeader)
		}
		cl, ok := p.cfg.Clusters.Cluster(name)
		if !ok {
			continue
		}
		host := cl.Pick(s)
		if host == nil {
			continue
		}
		pool, ok := host.Pool(p.poolKy[sc.codec.Name()], p.mkPool[sc.codec.Name()]).(*muxPool)
		if !ok {
			continue
		}
		c, err := pool.acquire(sc.ctx)
		if err != nil {
			continue
		}
		if s.oneway() {
			_, _ = c.send(s.req, nil)
		} else if id, err := c.send(s.req, shadowCall); err == nil {
			time.AfterFunc(mirrorTimeout, func() { c.forget(id, shadowCall) })
		}
		pool.release(c)
	}
}
