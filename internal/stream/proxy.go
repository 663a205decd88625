package stream

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// Protocol is the connection-pool key for HTTP/1 upstream connections.
const Protocol = "http1"

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// upConn is a pooled upstream connection with its response reader; the
// reader lives as long as the connection so its state survives reuse.
type upConn struct {
	pc *pool.Conn
	ic idleConn // pc as the reader and writer see it
	br *http1.Reader
}

// maxHostGone bounds the re-picks after a host left its cluster.
const maxHostGone = 3

// attempt outcomes.
type failure int

const (
	okResponse failure = iota
	failConnect
	failOverflow
	failReset          // connection broke before a response head
	failTimeout        // per-try or route timeout before a response head
	failProtocol       // upstream sent a bad response head
	failNoHost         // no healthy host
	failHostGone       // the host left its cluster (EDS, a cluster update) before we sent
	failRetryable      // a response that the retry policy wants retried
	failBadBody        // the downstream request body is malformed: 400, close
	failClient         // the downstream went away or stalled mid-body: close
	failRequestTimeout // request_timeout passed before the body was in: 408, close
	failRefused        // HTTP/2: the host refused the stream unprocessed (REFUSED_STREAM, GOAWAY)
)

// handle proxies one request; it reports whether the connection may serve
// another.
func (sc *serverConn) handle(s *stream) bool {
	cfg := sc.cfg
	req := &s.req
	defer sc.log(s)
	keep := !req.Close && sc.state.Load() != stateClosing
	bodyPending := req.ContentLength > 0 || req.Chunked
	cfg.Stats.DownstreamRqActive.Inc()
	defer cfg.Stats.DownstreamRqActive.Dec()

	for _, f := range cfg.Filters {
		if f.OnRequest(s) == api.Stop || s.replied {
			if !s.replied {
				sc.localReply(s, 500, "stopped by filter", bodyPending)
			}
			return keep && !bodyPending
		}
	}
	var rt *router.Route
	if t := cfg.Routes.Table(); t != nil {
		rt = t.Route(req)
	}
	if rt == nil {
		cfg.Stats.NoRoute.Inc()
		s.flag(api.FlagNoRoute)
		sc.localReply(s, 404, "", bodyPending)
		return keep && !bodyPending
	}
	s.route = rt
	// The route may override the stream idle timeout (0 disables it).
	s.idle = cfg.StreamIdleTimeout
	if rt.HasIdleTimeout {
		s.idle = rt.IdleTimeout
	}
	s.reqLimit = network.Deadline(s.start, cfg.RequestTimeout)
	defer sc.cfg.recordRoute(s, rt)
	if rt.DirectResponse != nil {
		cfg.Stats.RqDirectResponse.Inc()
		sc.localReply(s, rt.DirectResponse.Status, rt.DirectResponse.Body, bodyPending)
		return keep && !bodyPending
	}
	if rt.Redirect != nil {
		cfg.Stats.RqRedirect.Inc()
		sc.redirect(s, rt)
		return keep && !bodyPending
	}
	reqOps, respOps := s.pickCluster(rt)
	cl, ok := cfg.Clusters.Cluster(s.cluster)
	if !ok {
		cfg.Stats.NoCluster.Inc()
		s.flag(api.FlagNoClusterFound)
		status := rt.ClusterNotFoundStatus
		if status == 0 {
			status = 503
		}
		sc.localReply(s, status, "cluster not found", bodyPending)
		return keep && !bodyPending
	}
	if req.Upgrade != "" && !cfg.Upgrades[strings.ToLower(req.Upgrade)] {
		sc.localReply(s, 403, "upgrade not allowed", bodyPending)
		return keep && !bodyPending
	}
	sc.cfg.mutateRequest(s, sc, rt, reqOps)
	if upstreamH2(cl, false) {
		return sc.convert(s, cl, rt, respOps, keep, bodyPending)
	}

	// A body we may need to send twice (retries, mirrors) is read whole
	// into a pooled buffer when it is small enough; larger bodies stream
	// and disable retries after the first byte.
	var body *[]byte
	retries := 0
	if rt.RetryPolicy != nil {
		retries = int(rt.RetryPolicy.NumRetries)
	}
	if bodyPending && (retries > 0 || len(rt.MirrorPolicies) > 0) && !req.Chunked && req.ContentLength <= int64(cfg.RetryBufferLimit) {
		var err error
		if body, err = sc.readBody(s); err != nil {
			switch {
			case errors.Is(err, http1.ErrMalformed):
				sc.failReply(s, nil, failBadBody, true)
			case s.requestTimedOut():
				sc.failReply(s, nil, failRequestTimeout, true)
			default:
				s.flag(api.FlagDownstreamReset)
			}
			return false
		}
		defer cfg.BufPool.Put(body)
		bodyPending = false
	}
	// Only a request whose body is held (or that has none) may be sent
	// twice; a streamed body is gone once it went upstream.
	replayable := !bodyPending
	if len(rt.MirrorPolicies) > 0 && !bodyPending {
		sc.mirror(s, rt, body)
	}
	if !cl.TryAcquire(api.ResRequests) { // counts the overflow itself
		s.flag(api.FlagUpstreamOverflow)
		sc.localReply(s, 503, "upstream overflow", bodyPending)
		return keep && !bodyPending
	}
	defer cl.Release(api.ResRequests)

	deadline := network.Deadline(time.Now(), rt.Timeout)
	s.deadline = deadline
	fwd, gone := cl, 0
	for try := 0; ; try++ {
		uc, res := sc.forward(s, fwd, rt, body, &bodyPending, deadline, try)
		if (res == failHostGone || res == failNoHost) && gone < maxHostGone {
			// A config change took the host (or the whole cluster object)
			// away between the pick and the connection: nothing was sent,
			// so pick again from the cluster as it is now. Not a retry.
			cur, ok := cfg.Clusters.Cluster(s.cluster)
			if res == failHostGone || (ok && cur != fwd) {
				gone++
				if ok {
					fwd = cur
				}
				s.host = nil
				try--
				continue
			}
		}
		if res == okResponse {
			return sc.respond(s, cl, respOps, uc, keep)
		}
		if try < retries && replayable && retriable(s.req.Method, rt, res) && cl.TryAcquire(api.ResRetries) {
			if uc != nil {
				// A retried response's body is never read: its connection
				// cannot be reused, so it goes (and frees its pool slot).
				sc.dropUp(uc)
				uc = nil
				s.hasResp = false
			}
			if cfg.backOff(rt, cl, try, deadline) {
				res = failTimeout
			} else {
				s.host = nil
				continue
			}
		}
		if res == failRetryable {
			// The last try's response is what the client gets.
			return sc.respond(s, cl, respOps, uc, keep)
		}
		sc.failReply(s, cl, res, bodyPending)
		return keep && !bodyPending
	}
}

// responder is the stream as response filters and header formatters see
// it (*stream for HTTP/1, *h2stream for HTTP/2).
type responder interface {
	api.Stream
	router.VarSource
}

// upstreamResponse counts an upstream response head and runs the response
// filters and the route's response header operations on it.
func (c *Config) upstreamResponse(s *stream, as responder, cl api.Cluster, respOps *router.HeaderOps) {
	resp := &s.resp
	s.status = resp.Status
	stats.RecordClusterResponse(cl.Stats(), resp.Status)
	if resp.Status >= 500 {
		s.host.Stats().Responses5xx.Inc()
	}
	for i := len(c.Filters) - 1; i >= 0; i-- {
		c.Filters[i].OnResponse(as)
	}
	respOps.Apply(resp, as)
}

// pickCluster chooses the route's cluster (weighted or by header) into
// s.cluster and returns the header operations that apply with it.
func (s *stream) pickCluster(rt *router.Route) (reqOps, respOps *router.HeaderOps) {
	reqOps, respOps = rt.RequestHeaders, rt.ResponseHeaders
	if cw := rt.PickWeighted(rand.Uint64()); cw != nil {
		s.cluster = cw.Name
		if cw.HostRewriteLiteral != "" {
			s.req.Set(":authority", cw.HostRewriteLiteral)
		}
		return cw.RequestHeaders, cw.ResponseHeaders
	}
	s.cluster = rt.ClusterFor(&s.req, 0)
	return reqOps, respOps
}

// headError classifies an error reading an upstream response head.
func headError(cl api.Cluster, err error) failure {
	switch {
	case network.IsTimeout(err):
		cl.Stats().UpstreamRequestTimeout.Inc()
		return failTimeout
	case errors.Is(err, http1.ErrMalformed), errors.Is(err, http1.ErrHeaderTooLarge):
		return failProtocol
	}
	cl.Stats().UpstreamResets.Inc()
	return failReset
}

// downstream is the connection a request came on, as request mutation
// and header formatters see it.
type downstream interface {
	router.VarSource
	remoteIP() string
	scheme() string
}

// mutateRequest applies the route's rewrites and header operations and the
// forwarding headers.
func (c *Config) mutateRequest(s *stream, d downstream, rt *router.Route, ops *router.HeaderOps) {
	req := &s.req
	ops.Apply(req, d)
	if p := rt.RewritePath(req.Target); p != req.Target {
		req.Set(":path", p)
	}
	if rt.HostRewriteLiteral != "" {
		req.Set(":authority", rt.HostRewriteLiteral)
	} else if rt.HostRewriteHeader != "" {
		if v, ok := req.Get(rt.HostRewriteHeader); ok && v != "" {
			req.Set(":authority", v)
		}
	}
	if _, ok := req.Get("x-forwarded-proto"); !ok {
		req.Set("x-forwarded-proto", d.scheme())
	}
	if c.UseRemoteAddress {
		ip := d.remoteIP()
		if v, ok := req.Get("x-forwarded-for"); ok && v != "" {
			req.Set("x-forwarded-for", v+", "+ip)
		} else {
			req.Set("x-forwarded-for", ip)
		}
	}
	if c.GenerateID {
		if _, ok := req.Get("x-request-id"); !ok {
			req.Set("x-request-id", newRequestID())
		}
	}
	if len(rt.HashPolicies) > 0 {
		s.hashKey, s.hasHash = rt.Hash(req, d.remoteIP())
	}
}

// DownstreamRemoteAddress implements router.VarSource.
func (s *stream) DownstreamRemoteAddress() string { return s.sc.nc.RemoteAddr().String() }

// DownstreamRemoteAddress implements router.VarSource.
func (sc *serverConn) DownstreamRemoteAddress() string { return sc.nc.RemoteAddr().String() }

func (sc *serverConn) scheme() string {
	if isTLS(sc.nc) {
		return "https"
	}
	return "http"
}

// remoteIP is the downstream peer's IP, formatted once per connection.
func (sc *serverConn) remoteIP() string {
	if sc.rip == "" {
		sc.rip = remoteIP(sc.nc)
	}
	return sc.rip
}

func remoteIP(c net.Conn) string {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return h
}

// readBody reads a known-length request body into a pooled buffer.
func (sc *serverConn) readBody(s *stream) (*[]byte, error) {
	if s.req.Expect100 {
		if _, err := sc.nc.Write(continue100); err != nil {
			return nil, err
		}
		s.req.Expect100 = false
	}
	sc.dc.clearErrs()
	b := sc.cfg.BufPool.Get()
	n := int(s.req.ContentLength)
	if cap(*b) < n {
		sc.cfg.BufPool.Put(b)
		nb := make([]byte, n)
		b = &nb
	}
	*b = (*b)[:n]
	sc.dc.streaming(s.idle, s.reqLimit)
	_, err := io.ReadFull(sc.br.Body(s.req.ContentLength, false, false), *b)
	sc.dc.stop()
	if err != nil {
		sc.cfg.BufPool.Put(b)
		return nil, err
	}
	s.bytesIn = int64(n)
	return b, nil
}

// forward runs one try: pick a host, get a connection, send the request,
// read the response head.
func (sc *serverConn) forward(s *stream, cl api.Cluster, rt *router.Route, body *[]byte, bodyPending *bool, deadline time.Time, try int) (*upConn, failure) {
	host := cl.Pick(s)
	if host == nil {
		cl.Stats().NoHealthyHost.Inc()
		return nil, failNoHost
	}
	s.host = host
	host.ActiveRequests().Inc()
	defer host.ActiveRequests().Dec()
	p := host.Pool(Protocol, sc.cfg.mkPool).(*pool.Pool)

	tryDeadline := deadline
	if rt.RetryPolicy != nil && rt.RetryPolicy.PerTryTimeout > 0 {
		if d := time.Now().Add(rt.RetryPolicy.PerTryTimeout); tryDeadline.IsZero() || d.Before(tryDeadline) {
			tryDeadline = d
		}
	}
	replayable := !*bodyPending
	stale := false
again:
	pc, err := p.GetIdle()
	reused := pc != nil
	if pc == nil && err == nil {
		ctx, cancel := sc.dialContext(tryDeadline)
		pc, reused, err = p.Get(ctx)
		cancel()
	}
	if err != nil {
		if errors.Is(err, pool.ErrOverflow) {
			return nil, failOverflow
		}
		if errors.Is(err, pool.ErrClosed) {
			return nil, failHostGone
		}
		s.failure = err.Error()
		if network.IsTimeout(err) && !tryDeadline.IsZero() && time.Now().After(tryDeadline) {
			return nil, failTimeout
		}
		return nil, failConnect
	}
	uc := upConnOf(pc, sc.cfg.BufPool)
	sc.cur.Store(uc)
	s.upStart = time.Now()
	uc.ic.clearErrs()
	sc.dc.clearErrs()
	cl.Stats().UpstreamRequests.Inc()
	host.Stats().Requests.Inc()

	// Head and a small body go out in one write.
	uc.ic.streaming(s.idle, time.Time{}) // each write refreshes its deadline
	w := &sc.uw
	w.w = &uc.ic
	hb := w.grab(sc.cfg.BufPool)
	hb = s.req.AppendTo(hb)
	*w.buf = hb
	if body != nil {
		_, _ = w.Write(*body)
	}
	err = w.Flush()
	if err == nil && *bodyPending {
		if s.req.Expect100 {
			if _, err = sc.nc.Write(continue100); err != nil {
				w.release(sc.cfg.BufPool)
				sc.dropUp(uc)
				s.flag(api.FlagDownstreamReset)
				return nil, failReset
			}
		}
		var n int64
		sc.dc.streaming(s.idle, s.reqLimit)
		n, err = sc.br.Body(s.req.ContentLength, s.req.Chunked, false).CopyTo(w, s.req.Chunked)
		s.bytesIn += n
		if err == nil {
			err = w.Flush()
		}
		sc.dc.stop()
		if err == nil {
			*bodyPending = false
		} else if uc.ic.writeErr == nil {
			// The downstream side failed: a malformed body gets a 400, a
			// vanished or stalled client nothing; either way the
			// connection closes (*bodyPending stays set).
			w.release(sc.cfg.BufPool)
			sc.dropUp(uc)
			if errors.Is(err, http1.ErrMalformed) {
				s.flag(api.FlagDownstreamProtocol)
				return nil, failBadBody
			}
			if s.requestTimedOut() {
				return nil, failRequestTimeout
			}
			s.flag(api.FlagDownstreamReset)
			return nil, failClient
		}
	}
	w.release(sc.cfg.BufPool)
	uc.ic.stop()
	if err != nil {
		sc.dropUp(uc)
		if reused && replayable && !stale && isStale(err) {
			stale = true // the server closed the idle connection: once more on a fresh one
			goto again
		}
		s.failure = err.Error()
		cl.Stats().UpstreamResets.Inc()
		return nil, failReset
	}
	_ = pc.SetReadDeadline(tryDeadline)
	for {
		err = uc.br.ReadResponseHead(&s.resp, sc.cfg.Limits)
		if err != nil || s.resp.Status >= 200 || s.resp.Status == 101 {
			break
		}
		s.resp.Reset() // 1xx other than 101: dropped, we answered 100 ourselves
	}
	if err != nil {
		sc.dropUp(uc)
		if reused && replayable && !stale && isStale(err) && uc.br.Buffered() == 0 {
			stale = true
			s.resp.Reset()
			goto again
		}
		s.failure = err.Error()
		return nil, headError(cl, err)
	}
	if !tryDeadline.Equal(deadline) {
		_ = pc.SetReadDeadline(deadline)
	}
	s.hasResp = true
	if rt.RetryPolicy != nil && try < int(rt.RetryPolicy.NumRetries) && rt.RetryPolicy.RetriableStatus(s.resp.Status) {
		return uc, failRetryable
	}
	return uc, okResponse
}

// requestTimedOut reports whether the last downstream read failed because
// request_timeout passed.
func (s *stream) requestTimedOut() bool {
	return !s.reqLimit.IsZero() && network.IsTimeout(s.sc.dc.readErr) && !time.Now().Before(s.reqLimit)
}

// isStale reports whether err is what a request on a keep-alive connection
// that the server had already closed looks like: EOF or a reset before any
// response byte.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isUpstreamErr(err error, pc net.Conn) bool {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Addr != nil && pc.RemoteAddr() != nil && oe.Addr.String() == pc.RemoteAddr().String()
	}
	return false
}

// retriable applies the route's retry policy to a failed try. Only
// failures where the upstream cannot have acted (connect failure,
// overflow, an explicit retriable status) are retried for any method;
// resets and timeouts after the request went out are retried only for
// idempotent methods.
func retriable(method string, rt *router.Route, f failure) bool {
	rp := rt.RetryPolicy
	if rp == nil {
		return false
	}
	switch f {
	case failConnect, failNoHost, failHostGone:
		return rp.RetriableReset(router.ResetConnectFailure)
	case failRetryable:
		return true
	case failReset:
		return rp.RetriableReset(router.ResetOther) && idempotent(method)
	case failRefused:
		return rp.RetriableReset(router.ResetRefusedStream)
	case failTimeout:
		return rp.RetryOn&(router.Retry5xx|router.RetryGatewayError) != 0 && idempotent(method)
	}
	return false
}

func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// backOff counts a retry and waits its back-off, giving the retry budget
// back; it reports whether the deadline passed meanwhile.
func (c *Config) backOff(rt *router.Route, cl api.Cluster, try int, deadline time.Time) bool {
	c.routeStats(rt).Retries.Inc()
	cl.Stats().UpstreamRetries.Inc()
	sleepBackoff(rt.RetryPolicy, try, deadline)
	cl.Release(api.ResRetries)
	return !deadline.IsZero() && time.Now().After(deadline)
}

// sleepBackoff waits a fully jittered exponential back-off before retry
// try+1: uniform in [0, min(max, base*2^try)).
func sleepBackoff(rp *router.RetryPolicy, try int, deadline time.Time) {
	ceil := rp.BackOffBase << min(try, 16)
	if ceil > rp.BackOffMax || ceil <= 0 {
		ceil = rp.BackOffMax
	}
	var d time.Duration
	if ceil > 0 {
		d = time.Duration(rand.Int64N(int64(ceil)))
	}
	if !deadline.IsZero() {
		if left := time.Until(deadline); left < d {
			d = left
		}
	}
	if d > 0 {
		time.Sleep(d)
	}
}

// failReply answers a request that no upstream answered.
func (sc *serverConn) failReply(s *stream, cl api.Cluster, f failure, bodyPending bool) {
	switch f {
	case failNoHost:
		s.flag(api.FlagNoHealthyUpstream)
		sc.localReply(s, 503, "no healthy upstream", bodyPending)
	case failOverflow:
		s.flag(api.FlagUpstreamOverflow)
		sc.localReply(s, 503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", bodyPending)
	case failConnect, failHostGone:
		s.flag(api.FlagUpstreamConnectFailure) // Host.Dial counted the failure
		sc.localReply(s, 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", bodyPending)
	case failTimeout:
		s.flag(api.FlagUpstreamRequestTimeout)
		if s.route != nil {
			sc.cfg.routeStats(s.route).Timeouts.Inc()
		}
		sc.localReply(s, 504, "upstream request timeout", bodyPending)
	case failProtocol:
		s.flag(api.FlagUpstreamProtocol)
		sc.localReply(s, 502, "upstream protocol error", bodyPending)
	case failBadBody:
		sc.cfg.Stats.DownstreamCxProtocolError.Inc()
		sc.localReply(s, 400, "bad request: malformed body", true)
	case failRequestTimeout:
		sc.cfg.Stats.DownstreamRqTimeout.Inc()
		sc.localReply(s, 408, "request timeout", true)
	case failClient:
		// Nobody to answer.
	default:
		s.flag(api.FlagUpstreamReset)
		sc.localReply(s, 503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination", bodyPending)
	}
}

// respond streams the upstream response to the downstream.
func (sc *serverConn) respond(s *stream, cl api.Cluster, respOps *router.HeaderOps, uc *upConn, keep bool) bool {
	cfg := sc.cfg
	resp := &s.resp
	cfg.upstreamResponse(s, s, cl, respOps)
	upgrade := resp.Status == 101 && s.req.Upgrade != ""
	noBody := resp.NoBody(s.req.Method)
	untilEOF := !noBody && !upgrade && resp.ContentLength < 0 && !resp.Chunked
	upKeep := !resp.Close && !untilEOF && !upgrade
	upChunked := resp.Chunked // how the upstream frames the body; resp.Chunked becomes how we do
	chunkOut := false
	if !noBody && !upgrade {
		switch {
		case s.req.Minor == 0 && (resp.Chunked || untilEOF):
			keep = false // HTTP/1.0 client: close-delimited body
			resp.Chunked = false
		case untilEOF:
			resp.Chunked = true // re-frame a close-delimited body for HTTP/1.1
			chunkOut = true
		case resp.Chunked:
			chunkOut = true
		}
	}
	if upgrade {
		keep = false
	}
	// Every downstream write of the response (head included) refreshes
	// the stream idle deadline: a client that stops reading is cut.
	sc.dc.streaming(s.idle, time.Time{})
	defer sc.dc.stop()
	b := sc.w.grab(cfg.BufPool)
	b = resp.AppendTo(b, s.req.Minor, !keep || sc.state.Load() == stateClosing)
	*sc.w.buf = b
	s.respAt = time.Now()
	if upgrade {
		if err := sc.w.Flush(); err != nil {
			sc.dropUp(uc)
			return false
		}
		sc.tunnel(s, uc)
		return false
	}
	var err error
	var n int64
	if !noBody {
		uc.ic.streaming(s.idle, s.deadline)
		br := uc.br.Body(resp.ContentLength, upChunked && !untilEOF, untilEOF)
		if untilEOF && chunkOut {
			cw := http1.NewChunkedWriter(&sc.w)
			n, err = br.CopyTo(cw, false)
			if err == nil {
				err = cw.Close()
			}
		} else {
			n, err = br.CopyTo(&sc.w, chunkOut && !untilEOF)
		}
		// Not deferred: uc may go back to the pool below, and another
		// stream may take it before this function returns.
		uc.ic.stop()
		s.bytesOut = n
	}
	if err == nil {
		err = sc.w.Flush()
	}
	// The write buffer goes back to the pool between responses: with many
	// connections waiting on their upstreams, only the few writing hold one.
	sc.w.release(cfg.BufPool)
	if err != nil {
		sc.dropUp(uc)
		switch {
		case sc.dc.writeErr != nil && network.IsTimeout(sc.dc.writeErr):
			s.flag(api.FlagStreamIdleTimeout) // the client stopped reading
			cfg.Stats.DownstreamRqIdleTimeout.Inc()
		case sc.dc.writeErr != nil:
			s.flag(api.FlagDownstreamReset)
		case uc.ic.readErr != nil && network.IsTimeout(uc.ic.readErr):
			s.flag(api.FlagUpstreamRequestTimeout)
		default:
			s.flag(api.FlagUpstreamReset)
		}
		return false
	}
	cl.Stats().BytesReceived.Add(uint64(n))
	cfg.clusterLatency(cl.Name()).Observe(time.Since(s.upStart))
	if upKeep {
		sc.putUp(uc)
	} else {
		sc.dropUp(uc)
	}
	return keep && sc.state.Load() != stateClosing
}

// tunnel splices an upgraded (e.g. WebSocket) connection both ways until
// either side closes.
func (sc *serverConn) tunnel(s *stream, uc *upConn) {
	_ = sc.nc.SetDeadline(time.Time{})
	_ = uc.pc.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Bytes the client sent after the upgrade request come first.
		_, _ = io.Copy(uc.pc, readerOf(sc.br, sc.nc))
		closeWrite(uc.pc.Conn)
	}()
	_, _ = io.Copy(sc.nc, readerOf(uc.br, uc.pc))
	closeWrite(sc.nc)
	_ = uc.pc.Close()
	_ = sc.nc.Close()
	<-done
	sc.dropUp(uc)
}

func readerOf(br *http1.Reader, c net.Conn) io.Reader {
	if br.Buffered() == 0 {
		return c
	}
	return io.MultiReader(io.LimitReader(br.Body(int64(br.Buffered()), false, false), int64(br.Buffered())), c)
}

func closeWrite(c net.Conn) {
	type cw interface{ CloseWrite() error }
	if x, ok := c.(cw); ok {
		_ = x.CloseWrite()
		return
	}
	if x, ok := c.(interface{ Unwrap() net.Conn }); ok {
		closeWrite(x.Unwrap())
	}
}

func (sc *serverConn) redirect(s *stream, rt *router.Route) {
	loc := rt.RedirectLocation(&s.req)
	s.resp.Reset()
	sc.localReplyHeaders(s, rt.Redirect.Status, loc)
}

// localReplyHeaders sends a body-less local reply with a Location header.
func (sc *serverConn) localReplyHeaders(s *stream, status int, location string) {
	s.replied = true
	s.hasResp = true
	s.resp.Status = status
	s.resp.Minor = 1
	s.resp.ContentLength = 0
	s.resp.Set("location", location)
	s.resp.Set("server", sc.cfg.ServerName)
	s.status = status
	b := sc.w.grab(sc.cfg.BufPool)
	*sc.w.buf = s.resp.AppendTo(b, s.req.Minor, sc.state.Load() == stateClosing)
	s.respAt = time.Now()
	_ = sc.w.Flush()
}

// recordRoute counts a finished request in its route's stats.
func (c *Config) recordRoute(s *stream, rt *router.Route) {
	st := c.routeStats(rt)
	st.Requests.Inc()
	st.RecordResponse(s.status)
	st.Latency.Observe(time.Since(s.start))
}
