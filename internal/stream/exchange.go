package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/upstream"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// The codec layer. A request that is HTTP/1 on both sides keeps the
// zero-copy path of proxy.go. Every other pairing goes through exchange:
// the downstream codec (HTTP/2 server, or HTTP/1 toward an HTTP/2
// cluster) fills the request head (http1.RequestHead, which the router,
// filters and access logs already read) and a body source; the upstream
// codec (h1RoundTrip, h2RoundTrip) sends them and fills the response head
// (http1.ResponseHead) and hands back the body and trailers. A new codec
// pair (Bolt <-> Triple at a gateway) is one more downstream or upstream
// codec over the same exchange, not a special case.

// exchange is one request on its way upstream.
type exchange struct {
	s       *stream
	ctx     context.Context // the downstream stream's: ends when it does
	body    io.Reader       // the request body to stream; nil: none, or held
	held    []byte          // the whole body read ahead (replayable); nil: none
	bodyLen int64           // -1: unknown (chunked / HTTP/2 without content-length)
	h2down  bool            // the downstream speaks HTTP/2
	lb      api.LBContext
	idle    time.Duration // stream idle timeout for upstream writes
}

// upResponse is an upstream response: its head is in the stream's resp.
type upResponse struct {
	body io.Reader
	// HTTP/2: the stream (its trailers are in once body hit EOF) and the
	// stream's context.
	h2     *h2cs
	cancel context.CancelFunc
	// HTTP/1: the pooled connection, reusable when its body was read to
	// the end and it did not say close.
	uc   *upConn
	keep bool
	stop func() bool // ends the abort-on-downstream-reset hook
}

// trailer returns the response trailers (HTTP/2), after body's EOF.
func (u *upResponse) trailer() http.Header {
	if u.h2 == nil {
		return nil
	}
	u.h2.mu.Lock()
	defer u.h2.mu.Unlock()
	return u.h2.trailer
}

// pending reports whether reading the body would return at once (data
// already here, or its end known): the downstream then need not flush yet.
func (u *upResponse) pending() bool {
	if u.h2 != nil {
		return u.h2.pending()
	}
	if br, ok := u.body.(*http1.BodyReader); ok {
		return u.uc.br.Buffered() > 0 || br.Done()
	}
	return true // no body
}

// done releases the upstream connection or stream; complete says the
// body was read to its end.
func (u *upResponse) done(complete bool) {
	if u.h2 != nil {
		u.h2.close()
		u.cancel()
		return
	}
	u.stop()
	if complete && u.keep {
		u.uc.br.Release()
		u.uc.pc.Release(true)
		return
	}
	u.uc.br.Release()
	u.uc.pc.Release(false)
}

// upstreamH2 reports whether requests to cl go over HTTP/2.
func upstreamH2(cl api.Cluster, downstreamH2 bool) bool {
	if hc, ok := cl.(interface{ HTTPOptions() upstream.HTTPOptions }); ok {
		switch hc.HTTPOptions().Protocol {
		case upstream.HTTP2:
			return true
		case upstream.Downstream:
			return downstreamH2
		}
	}
	return false
}

// forward runs the tries of one request: host picks again when a config
// change took the host away, retries by the route's policy, the last
// try's response (or failure) for the client.
func (c *Config) forwardX(x *exchange, cl api.Cluster, rt *router.Route, deadline time.Time) (*upResponse, failure) {
	retries := 0
	if rt.RetryPolicy != nil {
		retries = int(rt.RetryPolicy.NumRetries)
	}
	replayable := x.body == nil
	fwd, gone := cl, 0
	for try := 0; ; try++ {
		up, res := c.tryX(x, fwd, rt, deadline, try)
		if (res == failHostGone || res == failNoHost) && gone < maxHostGone {
			cur, ok := c.Clusters.Cluster(x.s.cluster)
			if res == failHostGone || (ok && cur != fwd) {
				gone++
				if ok {
					fwd = cur
				}
				x.s.host = nil
				try--
				continue
			}
		}
		if res == okResponse {
			return up, res
		}
		if try < retries && replayable && retriable(x.s.req.Method, rt, res) && cl.TryAcquire(api.ResRetries) {
			if up != nil {
				up.done(false)
				up = nil
				x.s.hasResp = false
				x.s.resp.Reset()
			}
			if c.backOff(rt, cl, try, deadline) {
				res = failTimeout
			} else {
				x.s.host = nil
				continue
			}
		}
		if res == failRetryable {
			return up, okResponse
		}
		return nil, res
	}
}

// tryX is one try: pick a host, send the request over the cluster's
// protocol, read the response head.
func (c *Config) tryX(x *exchange, cl api.Cluster, rt *router.Route, deadline time.Time, try int) (*upResponse, failure) {
	s := x.s
	host := cl.Pick(x.lb)
	if host == nil {
		cl.Stats().NoHealthyHost.Inc()
		return nil, failNoHost
	}
	s.host = host
	host.ActiveRequests().Inc()
	defer host.ActiveRequests().Dec()
	tryDeadline := deadline
	if rt.RetryPolicy != nil && rt.RetryPolicy.PerTryTimeout > 0 {
		if d := time.Now().Add(rt.RetryPolicy.PerTryTimeout); tryDeadline.IsZero() || d.Before(tryDeadline) {
			tryDeadline = d
		}
	}
	body := x.body
	if x.held != nil {
		body = bytes.NewReader(x.held)
	}
	var up *upResponse
	var res failure
	if upstreamH2(cl, x.h2down) {
		up, res = c.h2RoundTrip(x, cl, host, body, deadline, tryDeadline)
	} else {
		up, res = c.h1RoundTrip(x, cl, host, body, tryDeadline)
	}
	if res != okResponse {
		if x.ctx.Err() != nil && res != failClient {
			// The downstream stream ended (reset, connection gone)
			// while the request was under way: nobody to answer.
			s.flag(api.FlagDownstreamReset)
			res = failClient
		}
		return nil, res
	}
	s.hasResp = true
	if rt.RetryPolicy != nil && try < int(rt.RetryPolicy.NumRetries) && rt.RetryPolicy.RetriableStatus(s.resp.Status) {
		return up, failRetryable
	}
	return up, okResponse
}

// connError maps a failure to get an upstream connection.
func connError(s *stream, err error, tryDeadline time.Time) failure {
	switch {
	case errors.Is(err, pool.ErrOverflow):
		return failOverflow
	case errors.Is(err, pool.ErrClosed):
		return failHostGone
	}
	s.failure = err.Error()
	if (network.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded)) && !tryDeadline.IsZero() && !time.Now().Before(tryDeadline) {
		return failTimeout
	}
	return failConnect
}

// hopHeaders are connection-specific fields that HTTP/2 forbids (RFC 9113
// 8.2.2) and a proxy does not forward between codecs.
var hopHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "host": true, "content-length": true,
}

// hopCanonical is hopHeaders in canonical form.
var hopCanonical = func() map[string]bool {
	m := make(map[string]bool, len(hopHeaders))
	for k := range hopHeaders {
		m[http.CanonicalHeaderKey(k)] = true
	}
	return m
}()

// h2RoundTrip sends the request over an HTTP/2 stream to host.
func (c *Config) h2RoundTrip(x *exchange, cl api.Cluster, host api.Host, body io.Reader, deadline, tryDeadline time.Time) (*upResponse, failure) {
	s := x.s
	// The stream's context bounds the whole exchange (route timeout);
	// the per-try timeout only bounds the wait for the response head.
	var ctx context.Context
	var cancel context.CancelFunc
	if deadline.IsZero() {
		ctx, cancel = context.WithCancel(x.ctx)
	} else {
		ctx, cancel = context.WithDeadline(x.ctx, deadline)
	}
	var tryTimer *time.Timer
	if !tryDeadline.Equal(deadline) {
		tryTimer = time.AfterFunc(time.Until(tryDeadline), cancel)
	}
	fail := func(f failure) (*upResponse, failure) {
		if tryTimer != nil {
			tryTimer.Stop()
		}
		cancel()
		return nil, f
	}
	p := host.Pool(ProtocolH2, c.mkH2Pool).(*h2Pool)
	cc, err := p.get(ctx)
	if err != nil {
		return fail(connError(s, err, tryDeadline))
	}
	cl.Stats().UpstreamRequests.Inc()
	host.Stats().Requests.Inc()
	s.upStart = time.Now()
	bodyLen := x.bodyLen
	if body == nil {
		bodyLen = 0
	}
	cs, err := cc.roundTrip(ctx, &s.req, body, bodyLen)
	if err != nil {
		s.failure = err.Error()
		// A host told the same deadline (grpc-timeout is forwarded) may
		// reset the stream at it a moment before Weft's own timer runs:
		// past the deadline, that is the timeout, not a reset.
		late := !deadline.IsZero() && !time.Now().Before(deadline)
		switch {
		case (ctx.Err() != nil || late) && x.ctx.Err() == nil:
			cl.Stats().UpstreamRequestTimeout.Inc()
			return fail(failTimeout)
		case x.ctx.Err() != nil:
			s.flag(api.FlagDownstreamReset)
			return fail(failClient)
		case isH2Refused(err):
			return fail(failRefused)
		}
		cl.Stats().UpstreamResets.Inc()
		return fail(failReset)
	}
	if tryTimer != nil {
		tryTimer.Stop()
	}
	resp := &s.resp
	resp.Reset()
	resp.Status = cs.status
	resp.Minor = 1
	resp.ContentLength = -1
	for _, f := range cs.fields {
		if f.Name == "content-length" {
			if n, err := strconv.ParseInt(f.Value, 10, 64); err == nil && n >= 0 {
				resp.ContentLength = n
			}
		}
		resp.Add(f.Name, f.Value)
	}
	return &upResponse{body: cs, h2: cs, cancel: cancel}, okResponse
}

// copyHeader adds the fields of src to dst (canonical keys, one backing
// array for the values), leaving out those skip names. With clone, names
// and values are copied (in one block) first: for a head whose strings
// view memory that is reused before dst is done with.
func copyHeader(dst http.Header, src *http1.Header, skip func(canonical, value string) bool, clone bool) {
	var all string
	if clone {
		n := 0
		src.Range(func(k, v string) bool { n += len(k) + len(v); return true })
		var b strings.Builder
		b.Grow(n)
		src.Range(func(k, v string) bool { b.WriteString(k); b.WriteString(v); return true })
		all = b.String()
	}
	off := 0
	vals := make([]string, 0, src.Len())
	src.Range(func(k, v string) bool {
		if clone {
			k, v = all[off:off+len(k)], all[off+len(k):off+len(k)+len(v)]
			off += len(k) + len(v)
		}
		ck := http.CanonicalHeaderKey(k) // no copy when k is canonical, as from HTTP/2
		if skip(ck, v) {
			return true
		}
		if prev, ok := dst[ck]; ok {
			dst[ck] = append(prev, v)
			return true
		}
		vals = append(vals, v)
		dst[ck] = vals[len(vals)-1 : len(vals) : len(vals)]
		return true
	})
}

// h1RoundTrip sends the request over a pooled HTTP/1.1 connection to host
// and reads the response head.
func (c *Config) h1RoundTrip(x *exchange, cl api.Cluster, host api.Host, body io.Reader, tryDeadline time.Time) (*upResponse, failure) {
	s := x.s
	p := host.Pool(Protocol, c.mkPool).(*pool.Pool)
	pc, err := p.GetIdle()
	if pc == nil && err == nil {
		ctx, cancel := context.WithCancel(x.ctx)
		if !tryDeadline.IsZero() {
			ctx, cancel = context.WithDeadline(x.ctx, tryDeadline)
		}
		pc, _, err = p.Get(ctx)
		cancel()
	}
	if err != nil {
		return nil, connError(s, err, tryDeadline)
	}
	uc := upConnOf(pc, c.BufPool)
	drop := func() { uc.br.Release(); uc.pc.Release(false) }
	cl.Stats().UpstreamRequests.Inc()
	host.Stats().Requests.Inc()
	s.upStart = time.Now()
	// HTTP/1 frames a body of unknown length as chunked.
	h := &s.req
	h.Del("te")
	chunked := body != nil && x.bodyLen < 0
	if chunked {
		h.Set("transfer-encoding", "chunked")
	} else if body != nil || x.bodyLen > 0 {
		h.Set("content-length", strconv.FormatInt(x.bodyLen, 10))
	}
	// Abort the upstream socket if the downstream stream goes away.
	stop := context.AfterFunc(x.ctx, func() { _ = pc.SetDeadline(time.Now()) })
	uc.ic.clearErrs()
	uc.ic.streaming(x.idle, time.Time{})
	bp := c.BufPool.Get()
	b := h.AppendTo((*bp)[:0])
	_, err = uc.ic.Write(b)
	*bp = b[:cap(b)]
	c.BufPool.Put(bp)
	if err == nil && body != nil {
		if chunked {
			cw := http1.NewChunkedWriter(&uc.ic)
			if _, err = io.Copy(cw, body); err == nil {
				err = cw.Close()
			}
		} else {
			_, err = io.Copy(&uc.ic, body)
		}
	}
	uc.ic.stop()
	if err != nil {
		stop()
		drop()
		s.failure = err.Error()
		if x.ctx.Err() != nil || uc.ic.writeErr == nil {
			s.flag(api.FlagDownstreamReset)
			return nil, failClient
		}
		cl.Stats().UpstreamResets.Inc()
		return nil, failReset
	}
	_ = pc.SetReadDeadline(tryDeadline)
	for {
		err = uc.br.ReadResponseHead(&s.resp, c.Limits)
		if err != nil || s.resp.Status >= 200 {
			break
		}
		s.resp.Reset()
	}
	if err != nil {
		stop()
		drop()
		s.failure = err.Error()
		if x.ctx.Err() != nil {
			s.flag(api.FlagDownstreamReset)
			return nil, failClient
		}
		return nil, headError(cl, err)
	}
	_ = pc.SetReadDeadline(time.Time{})
	resp := &s.resp
	noBody := resp.NoBody(s.req.Method)
	untilEOF := !noBody && resp.ContentLength < 0 && !resp.Chunked
	keep := !resp.Close && !untilEOF
	var br io.Reader = http.NoBody
	if !noBody {
		br = uc.br.Body(resp.ContentLength, resp.Chunked, untilEOF)
	}
	// The downstream codec frames the body itself.
	resp.Del("transfer-encoding")
	resp.Del("connection")
	resp.Del("keep-alive")
	return &upResponse{body: br, uc: uc, keep: keep, stop: stop}, okResponse
}
