package stream

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/router"
)

// h1Body is an HTTP/1 request body as an upstream codec reads it, under
// the stream idle and request timeouts, counted. An HTTP/2 upstream's
// transport reads it on its own goroutine and may still be in a read when
// the response is done: close stops it (cutting a blocked read with a
// past deadline) and waits, so the connection's reader is never shared
// with the next request or a closing connection.
type h1Body struct {
	sc  *serverConn
	s   *stream
	br  *http1.BodyReader
	err error // the read error, other than EOF

	mu      sync.Mutex
	cond    sync.Cond
	closed  bool
	reading bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.reading = true
	b.mu.Unlock()
	b.sc.dc.readStreaming(b.s.idle, b.s.reqLimit)
	n, err := b.br.Read(p)
	b.sc.dc.readStop()
	b.s.bytesIn += int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	b.mu.Lock()
	b.reading = false
	b.cond.Broadcast()
	b.mu.Unlock()
	return n, err
}

func (b *h1Body) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.reading {
		_ = b.sc.nc.SetReadDeadline(time.Now())
		for b.reading {
			b.cond.Wait()
		}
	}
}

// convert proxies an HTTP/1 request to a cluster that speaks HTTP/2
// (P7): the exchange carries it, and the response comes back as HTTP/1.1
// (content-length when the upstream gave one, else chunked; trailers are
// dropped). It reports whether the connection may serve another request.
func (sc *serverConn) convert(s *stream, cl api.Cluster, rt *router.Route, respOps *router.HeaderOps, keep, bodyPending bool) bool {
	cfg := sc.cfg
	req := &s.req
	if req.Upgrade != "" {
		sc.localReply(s, 403, "upgrade not allowed to an HTTP/2 cluster", bodyPending)
		return keep && !bodyPending
	}
	x := &exchange{s: s, ctx: sc.ctx, lb: s, idle: s.idle}
	var body *h1Body
	if bodyPending {
		if req.Expect100 {
			if _, err := sc.nc.Write(continue100); err != nil {
				s.flag(api.FlagDownstreamReset)
				return false
			}
			req.Expect100 = false
		}
		sc.dc.clearErrs()
		body = &h1Body{sc: sc, s: s, br: sc.br.Body(req.ContentLength, req.Chunked, false)}
		body.cond.L = &body.mu
		defer body.close()
		x.body, x.bodyLen = body, req.ContentLength
		if req.Chunked {
			x.bodyLen = -1
		}
		if rt.RetryPolicy != nil && rt.RetryPolicy.NumRetries > 0 && !req.Chunked && req.ContentLength <= int64(cfg.RetryBufferLimit) {
			b := make([]byte, req.ContentLength)
			if _, err := io.ReadFull(body, b); err != nil {
				if errors.Is(err, http1.ErrMalformed) {
					sc.failReply(s, nil, failBadBody, true)
				}
				s.flag(api.FlagDownstreamReset)
				return false
			}
			x.body, x.held = nil, b
			bodyPending = false
		}
	}
	// A request is over on the downstream side once its body is read.
	// (Only once the upstream codec stopped reading the body: close first.)
	pending := func() bool {
		if body != nil {
			body.close()
		}
		return bodyPending && (body == nil || !body.br.Done())
	}
	if !cl.TryAcquire(api.ResRequests) {
		s.flag(api.FlagUpstreamOverflow)
		sc.localReply(s, 503, "upstream overflow", pending())
		return keep && !pending()
	}
	defer cl.Release(api.ResRequests)
	deadline := network.Deadline(time.Now(), rt.Timeout)
	s.deadline = deadline
	up, res := cfg.forwardX(x, cl, rt, deadline)
	if res != okResponse {
		if body != nil {
			body.close()
		}
		if body != nil && body.err != nil {
			// The downstream side failed: a malformed body gets a 400, a
			// vanished or stalled client nothing.
			switch {
			case errors.Is(body.err, http1.ErrMalformed):
				s.flag(api.FlagDownstreamProtocol)
				res = failBadBody
			case s.requestTimedOut():
				res = failRequestTimeout
			default:
				s.flag(api.FlagDownstreamReset)
				res = failClient
			}
			sc.failReply(s, cl, res, true)
			return false
		}
		sc.failReply(s, cl, res, pending())
		return keep && !pending() && res != failClient
	}
	resp := &s.resp
	cfg.upstreamResponse(s, s, cl, respOps)
	noBody := resp.NoBody(req.Method)
	resp.Chunked = false
	if !noBody && resp.ContentLength < 0 {
		if req.Minor == 0 {
			keep = false // HTTP/1.0: the close ends the body
		} else {
			resp.Chunked = true
		}
	}
	sc.dc.writeStreaming(s.idle, time.Time{})
	defer sc.dc.writeStop()
	b := sc.w.grab(cfg.BufPool)
	*sc.w.buf = resp.AppendTo(b, req.Minor, !keep || sc.state.Load() == stateClosing)
	s.respAt = time.Now()
	var n int64
	var err error
	if !noBody {
		if resp.Chunked {
			cw := http1.NewChunkedWriter(&sc.w)
			if n, err = io.Copy(cw, up.body); err == nil {
				err = cw.Close()
			}
		} else {
			n, err = io.Copy(&sc.w, up.body)
		}
	}
	if err == nil {
		err = sc.w.Flush()
	}
	sc.w.release(cfg.BufPool)
	s.bytesOut = n
	up.done(err == nil)
	cl.Stats().BytesReceived.Add(uint64(n))
	if err != nil {
		switch {
		case sc.dc.writeErr != nil && network.IsTimeout(sc.dc.writeErr):
			s.flag(api.FlagStreamIdleTimeout)
			cfg.Stats.DownstreamRqIdleTimeout.Inc()
		case sc.dc.writeErr != nil:
			s.flag(api.FlagDownstreamReset)
		default:
			s.flag(api.FlagUpstreamReset)
		}
		return false
	}
	cfg.clusterLatency(cl.Name()).Observe(time.Since(s.upStart))
	// An HTTP/2 upstream may answer before it read the whole body: what
	// is left unread means this connection cannot serve another request.
	return keep && !pending() && sc.state.Load() != stateClosing
}
