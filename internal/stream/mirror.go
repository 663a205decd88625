package stream

import (
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// mirrorTimeout bounds a shadow request; its result is never waited for.
const mirrorTimeout = 5 * time.Second

// mirror sends a copy of the request to each sampled mirror cluster (G7).
// The copy's Host gets Envoy's "-shadow" suffix; the response is read and
// discarded, and nothing about it reaches the client.
func (sc *serverConn) mirror(s *stream, rt *router.Route, body *[]byte) {
	sc.cfg.mirrorTargets(s, rt, func(cl api.Cluster, _, shadow string) {
		host := strings.Clone(s.req.Host())
		s.req.Set(":authority", shadow)
		head := s.req.AppendTo(nil)
		s.req.Set(":authority", host)
		var bd []byte
		if body != nil {
			bd = append([]byte(nil), *body...)
		}
		go sc.cfg.sendMirror(cl, head, bd)
	})
}

// mirrorTargets calls fn for each mirror policy of rt that samples this
// request and names a known cluster, with the shadow Host to send.
func (c *Config) mirrorTargets(s *stream, rt *router.Route, fn func(cl api.Cluster, name, shadow string)) {
	for i := range rt.MirrorPolicies {
		m := &rt.MirrorPolicies[i]
		if !m.Sample(rand.Uint64()) {
			continue
		}
		name := m.Cluster
		if m.ClusterHeader != "" {
			name, _ = s.req.Get(m.ClusterHeader)
		}
		cl, ok := c.Clusters.Cluster(name)
		if !ok {
			continue
		}
		shadow := s.req.Host()
		if m.HostRewriteLiteral != "" {
			shadow = m.HostRewriteLiteral
		}
		if !m.DisableShadowHostSuffixAppend {
			shadow = shadowHost(shadow)
		}
		fn(cl, name, shadow)
	}
}

func shadowHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i > 0 && !strings.Contains(h[i:], "]") {
		return h[:i] + "-shadow" + h[i:]
	}
	return h + "-shadow"
}

func (c *Config) sendMirror(cl api.Cluster, head, body []byte) {
	host := cl.Pick(nil)
	if host == nil {
		cl.Stats().NoHealthyHost.Inc()
		return
	}
	if !cl.TryAcquire(api.ResRequests) {
		return
	}
	defer cl.Release(api.ResRequests)
	ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
	defer cancel()
	p := host.Pool(Protocol, c.mkPool).(*pool.Pool)
	pc, _, err := p.Get(ctx)
	if err != nil {
		return // a failed dial counts itself; an overflow is not a connect failure
	}
	uc := upConnOf(pc, c.BufPool)
	cl.Stats().UpstreamRequests.Inc()
	dl, _ := ctx.Deadline()
	_ = pc.SetDeadline(dl)
	if _, err = pc.Write(append(head, body...)); err != nil {
		uc.br.Release()
		p.Put(pc, false)
		return
	}
	var resp http1.ResponseHead
	for {
		resp.Reset()
		if err = uc.br.ReadResponseHead(&resp, c.Limits); err != nil || resp.Status >= 200 {
			break
		}
	}
	if err == nil && !resp.NoBody("") {
		untilEOF := resp.ContentLength < 0 && !resp.Chunked
		_, err = uc.br.Body(resp.ContentLength, resp.Chunked, untilEOF).CopyTo(io.Discard, false)
		if untilEOF {
			err = io.EOF
		}
	}
	if err == nil {
		stats.RecordClusterResponse(cl.Stats(), resp.Status)
	}
	uc.br.Release()
	_ = pc.SetDeadline(time.Time{})
	p.Put(pc, err == nil && !resp.Close)
}

// mirrorX is mirror for the exchange path (an HTTP/2 downstream): the
// shadow request goes over the mirror cluster's own protocol. Only a
// request whose body is held (or that has none) is mirrored.
func (c *Config) mirrorX(s *stream, rt *router.Route, held []byte, h2down bool) {
	c.mirrorTargets(s, rt, func(cl api.Cluster, name, shadow string) {
		ms := &stream{start: time.Now(), cluster: name}
		ms.req.Method, ms.req.Target, ms.req.Minor, ms.req.ContentLength = s.req.Method, s.req.Target, 1, s.req.ContentLength
		s.req.Range(func(k, v string) bool {
			ms.req.Add(strings.Clone(k), strings.Clone(v))
			return true
		})
		ms.req.Set(":authority", shadow)
		go c.sendMirrorX(cl, ms, held, h2down)
	})
}

func (c *Config) sendMirrorX(cl api.Cluster, s *stream, body []byte, h2down bool) {
	if !cl.TryAcquire(api.ResRequests) {
		return
	}
	defer cl.Release(api.ResRequests)
	ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
	defer cancel()
	x := &exchange{s: s, ctx: ctx, held: body, bodyLen: int64(len(body)), h2down: h2down, idle: mirrorTimeout}
	if body == nil {
		x.held, x.bodyLen = []byte{}, 0
	}
	dl, _ := ctx.Deadline()
	up, res := c.tryX(x, cl, &router.Route{}, dl, 0)
	if res != okResponse {
		return
	}
	_, err := io.Copy(io.Discard, up.body)
	up.done(err == nil)
	if err == nil {
		stats.RecordClusterResponse(cl.Stats(), s.resp.Status)
	}
}
