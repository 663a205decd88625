package stream

import (
	"context"
	"net"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/router"
)

// stream is one request/response exchange on a server connection. It is a
// field of serverConn and is reset, not reallocated, for every request.
type stream struct {
	sc    *serverConn
	start time.Time
	req   http1.RequestHead
	resp  http1.ResponseHead

	route    *router.Route
	cluster  string
	host     api.Host
	flags    accesslog.Flags
	hasResp  bool
	replied  bool // a local reply was sent
	status   int
	bytesIn  int64
	bytesOut int64
	respAt   time.Time
	failure  string
	deadline time.Time     // the route timeout's deadline for the upstream response
	upStart  time.Time     // when the last try got its upstream connection
	idle     time.Duration // stream idle timeout in force (route may override)
	reqLimit time.Time     // request_timeout deadline for reading the request, zero: none
	hashKey  uint64
	hasHash  bool
	entry    accesslog.Entry
}

var _ api.Stream = (*stream)(nil)
var _ api.LBContext = (*stream)(nil)

func (s *stream) reset(start time.Time) {
	s.start = start
	s.req.Reset()
	s.resp.Reset()
	s.route = nil
	s.cluster = ""
	s.host = nil
	s.flags.Reset()
	s.hasResp = false
	s.replied = false
	s.status = 0
	s.bytesIn, s.bytesOut = 0, 0
	s.respAt = time.Time{}
	s.failure = ""
	s.hasHash = false
	s.deadline = time.Time{}
}

func (s *stream) headStarted() bool { return s.req.Method != "" }

// Context implements api.Stream.
func (s *stream) Context() context.Context { return s.sc.ctx }

// Protocol implements api.Stream.
func (s *stream) Protocol() string {
	if s.req.Minor == 0 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// RequestHeaders implements api.Stream.
func (s *stream) RequestHeaders() api.HeaderMap { return &s.req }

// ResponseHeaders implements api.Stream.
func (s *stream) ResponseHeaders() api.HeaderMap {
	if !s.hasResp {
		return nil
	}
	return &s.resp
}

// SendLocalReply implements api.Stream.
func (s *stream) SendLocalReply(status int, body string, flag string) {
	if flag != "" {
		s.flag(flag)
	}
	s.sc.localReply(s, status, body, false)
}

// SetFlag implements api.Stream.
func (s *stream) SetFlag(flag string) { s.flag(flag) }

// RemoteAddr implements api.Stream.
func (s *stream) RemoteAddr() net.Addr { return s.sc.nc.RemoteAddr() }

// StartTime implements api.Stream.
func (s *stream) StartTime() time.Time { return s.start }

// HashKey implements api.LBContext.
func (s *stream) HashKey() (uint64, bool) { return s.hashKey, s.hasHash }

// Headers implements api.LBContext.
func (s *stream) Headers() api.HeaderMap { return &s.req }

func (s *stream) flag(f string) { s.flags.Add(f) }

func (s *stream) flagString() string { return s.flags.String() }

// localReply answers the downstream from Weft itself. closeConn forces
// Connection: close (protocol errors, unread request bodies).
func (sc *serverConn) localReply(s *stream, status int, body string, closeConn bool) {
	if s.replied || s.respAt != (time.Time{}) {
		return
	}
	s.replied = true
	s.hasResp = true
	s.resp.Reset()
	s.resp.Status = status
	s.resp.Minor = 1
	s.resp.ContentLength = int64(len(body))
	if body != "" {
		s.resp.Set("content-type", "text/plain")
	}
	s.resp.Set("server", sc.cfg.ServerName)
	s.status = status
	for i := len(sc.cfg.Filters) - 1; i >= 0; i-- {
		sc.cfg.Filters[i].OnResponse(s)
	}
	minor := s.req.Minor
	if s.req.Method == "" {
		minor = 1
	}
	b := sc.w.grab(sc.cfg.BufPool)
	b = s.resp.AppendTo(b, minor, closeConn || sc.state.Load() == stateClosing)
	*sc.w.buf = b
	if s.req.Method != "HEAD" {
		_, _ = sc.w.Write([]byte(body))
	}
	s.respAt = time.Now()
	_ = sc.nc.SetWriteDeadline(network.Deadline(s.respAt, sc.cfg.StreamIdleTimeout))
	_ = sc.w.Flush()
	s.bytesOut += int64(len(body))
}

// log records the stream in stats and access logs.
func (sc *serverConn) log(s *stream) {
	sc.cfg.Stats.DownstreamRqHTTP1.Inc()
	sc.countBytes()
	sc.cfg.record(s, sc.nc, s.Protocol())
}

// record counts a finished stream of any downstream codec and writes its
// access log entries.
func (c *Config) record(s *stream, nc net.Conn, protocol string) {
	st := c.Stats
	st.DownstreamRq.Inc()
	if s.respAt != (time.Time{}) {
		st.DownstreamRqCompleted.Inc()
	}
	st.RecordResponse(s.status)
	d := time.Since(s.start)
	st.DownstreamRqTime.Observe(d)
	if len(c.AccessLogs) == 0 {
		return
	}
	e := &s.entry
	*e = accesslog.Entry{
		Start:           s.start,
		Duration:        d,
		Protocol:        protocol,
		Status:          s.status,
		Flags:           s.flagString(),
		BytesReceived:   uint64(s.bytesIn),
		BytesSent:       uint64(s.bytesOut),
		UpstreamCluster: s.cluster,
		Downstream:      nc.RemoteAddr(),
		DownstreamLocal: nc.LocalAddr(),
		UpstreamFailure: s.failure,
	}
	if s.headStarted() {
		e.ReqHeaders = &s.req
	}
	if s.hasResp {
		e.RespHeaders = &s.resp
	}
	if !s.respAt.IsZero() {
		e.ResponseDuration = s.respAt.Sub(s.start)
	}
	if s.host != nil {
		e.UpstreamHost = s.host.Address()
	}
	if s.route != nil {
		e.RouteName = s.route.Name
	}
	for _, l := range c.AccessLogs {
		l.Log(e)
	}
}
