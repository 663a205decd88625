package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/router"
)

// h2stream is one HTTP/2 stream: the protocol-neutral stream state shared
// with HTTP/1 (head, route, flags, counters) plus the net/http view the
// HTTP/2 server gives.
type h2stream struct {
	stream
	hc    *h2conn
	w     http.ResponseWriter
	r     *http.Request
	rc    *http.ResponseController
	grpc  bool
	wrote bool      // the response head went out
	trail int       // gRPC status from the response (-1: none seen)
	wdl   time.Time // the write deadline set last
	// cloneHead: the response head's strings must be copied for the
	// server (they view a reused buffer).
	cloneHead bool
}

var _ api.Stream = (*h2stream)(nil)

func (s *h2stream) begin(hc *h2conn, w http.ResponseWriter, r *http.Request) {
	s.stream.reset(time.Now())
	s.hashKey, s.hasHash = 0, false
	s.idle = hc.cfg.StreamIdleTimeout
	s.hc, s.w, s.r = hc, w, r
	s.rc = http.NewResponseController(w)
	s.wrote = false
	s.trail = -1
	s.wdl = time.Time{}
	s.cloneHead = false
	req := &s.req
	req.Method = r.Method
	req.Target = r.RequestURI
	req.Minor = 1
	req.ContentLength = r.ContentLength
	req.Add("host", r.Host)
	for k, vv := range r.Header {
		for _, v := range vv {
			req.Add(k, v)
		}
	}
	ct, _ := req.Get("content-type")
	s.grpc = isGRPC(ct)
}

func (s *h2stream) end() {
	s.hc, s.w, s.r, s.rc = nil, nil, nil, nil
	s.host, s.route = nil, nil
	// Reset, not Release: the pooled stream keeps its header slices.
	s.req.Reset()
	s.resp.Reset()
}

// Context implements api.Stream.
func (s *h2stream) Context() context.Context { return s.r.Context() }

// Protocol implements api.Stream.
func (s *h2stream) Protocol() string { return "HTTP/2" }

// RemoteAddr implements api.Stream.
func (s *h2stream) RemoteAddr() net.Addr { return s.hc.nc.RemoteAddr() }

// DownstreamRemoteAddress implements router.VarSource.
func (s *h2stream) DownstreamRemoteAddress() string { return s.hc.DownstreamRemoteAddress() }

// SendLocalReply implements api.Stream.
func (s *h2stream) SendLocalReply(status int, body string, flag string) {
	if flag != "" {
		s.flag(flag)
	}
	s.localReply(status, body, "")
}

// localReply answers from Weft itself; a gRPC request gets a trailers-only
// response carrying the gRPC status that matches (grpcStatus overrides the
// mapping from the HTTP status).
func (s *h2stream) localReply(status int, body string, grpcMsg string) {
	if s.replied || s.wrote {
		return
	}
	cfg := s.hc.cfg
	s.replied = true
	s.hasResp = true
	s.resp.Reset()
	s.resp.Status = status
	s.status = status
	if s.grpc {
		code := grpcStatusFor(status, &s.flags)
		if grpcMsg == "" {
			grpcMsg = body
		}
		s.resp.Status = 200
		s.resp.Set("content-type", "application/grpc")
		s.resp.Set("grpc-status", itoa(code))
		if grpcMsg != "" {
			s.resp.Set("grpc-message", grpcEncodeMessage(grpcMsg))
		}
		s.trail = code
		body = ""
	} else if body != "" {
		s.resp.Set("content-type", "text/plain")
	}
	s.resp.Set("server", cfg.ServerName)
	for i := len(cfg.Filters) - 1; i >= 0; i-- {
		cfg.Filters[i].OnResponse(s)
	}
	s.writeHead()
	if body != "" && s.req.Method != "HEAD" {
		n, _ := io.WriteString(s.w, body)
		s.bytesOut += int64(n)
	}
}

// skipResponseHop leaves out the connection-specific fields of a response
// (its content-length stays: the HTTP/2 server checks the body by it).
func skipResponseHop(ck, _ string) bool { return hopCanonical[ck] && ck != "Content-Length" }

// writeHead sends s.resp as the response head.
func (s *h2stream) writeHead() {
	copyHeader(s.w.Header(), &s.resp.Header, skipResponseHop, s.cloneHead)
	if s.status == 0 {
		s.status = s.resp.Status
	}
	s.respAt = time.Now()
	s.wrote = true
	s.extendWrite(s.respAt)
	s.w.WriteHeader(s.resp.Status)
}

// prematureLifetime: a stream the client resets sooner than this counts
// toward the rapid-reset limit (Envoy's
// premature_reset_min_stream_lifetime_seconds).
const prematureLifetime = time.Second

// serveH2Stream proxies one HTTP/2 stream.
func (c *Config) serveH2Stream(s *h2stream) {
	st := c.Stats
	st.DownstreamRqActive.Inc()
	defer func() {
		st.DownstreamRqActive.Dec()
		if s.r.Context().Err() != nil && time.Since(s.start) < prematureLifetime {
			s.hc.prematureReset()
		}
		st.DownstreamRqHTTP2.Inc()
		c.recordGRPC(s)
		c.record(&s.stream, s.hc.nc, "HTTP/2")
	}()
	req := &s.req
	if c.Limits.MaxHeaders > 0 && req.Len() > c.Limits.MaxHeaders+1 { // +1: host
		s.flag(api.FlagDownstreamProtocol)
		st.DownstreamCxProtocolError.Inc()
		s.localReply(431, "request header fields too large", "")
		return
	}
	for _, f := range c.Filters {
		if f.OnRequest(s) == api.Stop || s.replied {
			if !s.replied {
				s.localReply(500, "stopped by filter", "")
			}
			return
		}
	}
	var rt *router.Route
	if t := c.Routes.Table(); t != nil {
		rt = t.Route(c.routeView(s))
	}
	if rt == nil {
		st.NoRoute.Inc()
		s.flag(api.FlagNoRoute)
		s.localReply(404, "", "no route for "+req.Target)
		return
	}
	s.route = rt
	if rt.HasIdleTimeout {
		s.idle = rt.IdleTimeout
	}
	defer c.recordRoute(&s.stream, rt)
	if rt.DirectResponse != nil {
		st.RqDirectResponse.Inc()
		s.localReply(rt.DirectResponse.Status, rt.DirectResponse.Body, "")
		return
	}
	if rt.Redirect != nil {
		st.RqRedirect.Inc()
		s.replied, s.hasResp = true, true
		s.resp.Reset()
		s.resp.Status = rt.Redirect.Status
		s.status = s.resp.Status
		s.resp.Set("location", rt.RedirectLocation(req))
		s.resp.Set("server", c.ServerName)
		s.writeHead()
		return
	}
	reqOps, respOps := s.pickCluster(rt)
	cl, ok := c.Clusters.Cluster(s.cluster)
	if !ok {
		st.NoCluster.Inc()
		s.flag(api.FlagNoClusterFound)
		status := rt.ClusterNotFoundStatus
		if status == 0 {
			status = 503
		}
		s.localReply(status, "cluster not found", "")
		return
	}
	c.mutateRequest(&s.stream, s.hc, rt, reqOps)

	// The route timeout, shortened by the client's grpc-timeout.
	deadline := network.Deadline(s.start, rt.Timeout)
	if s.grpc {
		if d, ok := requestTimeout(req); ok {
			if g := s.start.Add(d); deadline.IsZero() || g.Before(deadline) {
				deadline = g
			}
		}
	}
	s.deadline = deadline
	x := &exchange{s: &s.stream, ctx: s.r.Context(), bodyLen: s.r.ContentLength, h2down: true, lb: s, idle: s.idle}
	if s.r.Body != nil && s.r.Body != http.NoBody && s.r.ContentLength != 0 {
		b := &h2Body{r: s.r.Body, rc: s.rc, idle: s.idle}
		defer func() { s.bytesIn += b.close() }()
		x.body = b
	}
	// A small body is held so that retries can send it again.
	if x.body != nil && (rt.RetryPolicy != nil && rt.RetryPolicy.NumRetries > 0 || len(rt.MirrorPolicies) > 0) &&
		s.r.ContentLength > 0 && s.r.ContentLength <= int64(c.RetryBufferLimit) {
		b := make([]byte, s.r.ContentLength)
		if _, err := io.ReadFull(x.body, b); err != nil {
			s.flag(api.FlagDownstreamReset)
			return
		}
		x.body, x.held = nil, b
	}
	if len(rt.MirrorPolicies) > 0 && x.body == nil {
		c.mirrorX(&s.stream, rt, x.held, true)
	}
	if !cl.TryAcquire(api.ResRequests) {
		s.flag(api.FlagUpstreamOverflow)
		s.localReply(503, "upstream overflow", "")
		return
	}
	defer cl.Release(api.ResRequests)
	up, res := c.forwardX(x, cl, rt, deadline)
	if res != okResponse {
		s.h2FailReply(res)
		return
	}
	c.h2Respond(s, cl, respOps, up)
}

// h2Body is the request body as the upstream codec reads it: each read
// refreshes the stream idle deadline. An HTTP/2 upstream's transport may
// still be reading it after the response came back and the handler
// returned (its request-body writer runs on its own goroutine), so it
// holds its own references, never the pooled stream's, and a closed
// body reads EOF without touching the finished stream.
type h2Body struct {
	mu       sync.Mutex
	closed   bool
	r        io.Reader
	rc       *http.ResponseController
	idle     time.Duration
	deadline time.Time // the read deadline set last
	n        atomic.Int64
}

func (b *h2Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, io.EOF
	}
	if now := time.Now(); b.idle > 0 && movesDeadline(b.deadline, now, b.idle) {
		b.deadline = now.Add(b.idle)
		_ = b.rc.SetReadDeadline(b.deadline)
	}
	b.mu.Unlock()
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// close ends the body for whoever still reads it; the handler calls it
// before it returns.
func (b *h2Body) close() int64 {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.n.Load()
}

// extendWrite pushes the stream's write deadline to now + the stream idle
// timeout. Each change is a message to the connection's serve loop, so the
// deadline moves only once a quarter of the timeout has passed: the idle
// bound then holds within 25%.
func (s *h2stream) extendWrite(now time.Time) {
	if s.idle > 0 && movesDeadline(s.wdl, now, s.idle) {
		s.wdl = now.Add(s.idle)
		_ = s.rc.SetWriteDeadline(s.wdl)
	}
}

// movesDeadline reports whether a deadline last set to last is due to be
// pushed to now+idle.
func movesDeadline(last, now time.Time, idle time.Duration) bool {
	return last.IsZero() || now.Add(idle).Sub(last) > idle/4
}

// h2FailReply answers a request that no upstream answered.
func (s *h2stream) h2FailReply(f failure) {
	c := s.hc.cfg
	switch f {
	case failNoHost:
		s.flag(api.FlagNoHealthyUpstream)
		s.localReply(503, "no healthy upstream", "")
	case failOverflow:
		s.flag(api.FlagUpstreamOverflow)
		s.localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", "")
	case failConnect, failHostGone:
		s.flag(api.FlagUpstreamConnectFailure)
		s.localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", "")
	case failTimeout:
		s.flag(api.FlagUpstreamRequestTimeout)
		if s.route != nil {
			c.routeStats(s.route).Timeouts.Inc()
		}
		s.localReply(504, "upstream request timeout", "")
	case failProtocol:
		s.flag(api.FlagUpstreamProtocol)
		s.localReply(502, "upstream protocol error", "")
	case failClient:
		s.flag(api.FlagDownstreamReset) // nobody to answer
	default:
		s.flag(api.FlagUpstreamReset)
		s.localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination", "")
	}
}

// h2Respond streams the upstream response to the HTTP/2 client: head,
// body (each chunk flushed as it arrives, so gRPC streams stay live and
// a client that stops reading holds the upstream back through flow
// control), then trailers.
func (c *Config) h2Respond(s *h2stream, cl api.Cluster, respOps *router.HeaderOps, up *upResponse) {
	resp := &s.resp
	c.upstreamResponse(&s.stream, s, cl, respOps)
	if v, ok := resp.Get("grpc-status"); ok {
		s.trail = atoiDefault(v, -1)
	}
	// An HTTP/1 response head's strings view the stream's own header
	// buffer, which the next stream reuses, while the server encodes the
	// head only when it writes it (maybe after the handler returned):
	// such a head goes to the server as copies.
	s.cloneHead = up.h2 == nil
	s.writeHead()
	bp := c.BufPool.Get()
	buf := (*bp)[:cap(*bp)]
	var n int64
	var err error
	var werr error
	for {
		var m int
		m, err = up.body.Read(buf)
		if m > 0 {
			s.extendWrite(time.Now())
			// Flush only when the next read would wait: what follows at
			// once (more data, the end, trailers) goes out with this.
			if _, werr = s.w.Write(buf[:m]); werr == nil && !up.pending() {
				werr = s.rc.Flush()
			}
			n += int64(m)
			if werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.BufPool.Put(bp)
	s.bytesOut = n
	complete := errors.Is(err, io.EOF) && werr == nil

	if complete {
		h := s.w.Header()
		for k, vv := range up.trailer() {
			h[http.TrailerPrefix+k] = vv
			if strings.EqualFold(k, "grpc-status") && len(vv) > 0 {
				s.trail = atoiDefault(vv[0], -1)
			}
		}
	}
	up.done(complete)
	cl.Stats().BytesReceived.Add(uint64(n))
	if complete {
		c.clusterLatency(cl.Name()).Observe(time.Since(s.upStart))
		return
	}
	switch {
	case werr != nil && s.r.Context().Err() != nil:
		s.flag(api.FlagDownstreamReset)
	case werr != nil:
		s.flag(api.FlagStreamIdleTimeout) // the client stopped reading
		c.Stats.DownstreamRqIdleTimeout.Inc()
	case s.grpc && !s.deadline.IsZero() && !time.Now().Before(s.deadline):
		// The deadline passed mid-stream: the client gets the gRPC status
		// that says so, in trailers, rather than a reset.
		s.flag(api.FlagUpstreamRequestTimeout)
		h := s.w.Header()
		h[http.TrailerPrefix+"Grpc-Status"] = []string{itoa(grpcDeadlineExceeded)}
		h[http.TrailerPrefix+"Grpc-Message"] = []string{"upstream request timeout"}
		s.trail = grpcDeadlineExceeded
		return
	default:
		s.flag(api.FlagUpstreamReset)
	}
	// Anything else cuts the stream (RST_STREAM), not the connection.
	panic(http.ErrAbortHandler)
}
