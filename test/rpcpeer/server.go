package rpcpeer

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// ServerOptions configures a Server.
type ServerOptions struct {
	Name  string        // added to every response as header/attachment "x-served-by"
	Delay time.Duration // delay every response by this much (timers, not a blocked reader)
}

// ServerStats counts what a Server has seen.
type ServerStats struct {
	Requests   uint64 // two-way requests
	Oneways    uint64
	Heartbeats uint64
	Accepted   uint64 // connections
	Open       int64  // connections open now
}

// Server is an echo server for one protocol. See Serve.
type Server struct {
	p    Protocol
	opts ServerOptions
	ln   net.Listener
	wg   sync.WaitGroup // accept loop, readers, armed timers

	mu     sync.Mutex
	conns  map[*serverConn]struct{}
	closed bool

	stall                                   atomic.Bool
	requests, oneways, heartbeats, accepted atomic.Uint64
	open                                    atomic.Int64

	lastMu    sync.Mutex
	lastBolt  []byte      // raw header map of the last Bolt request
	lastDubbo map[any]any // attachments of the last Dubbo request
	lastSet   bool

	busyBolt []byte // hessian string content of a Bolt busy reply
}

const (
	servedByKey = "x-served-by"
	sleepKey    = "x-sleep-ms"
	busyMethod  = "busy"
	busyMessage = "rpcpeer: server thread pool busy"
)

// Serve listens on addr (e.g. "127.0.0.1:0") and answers protocol p:
//
//   - a request is echoed: Bolt status SUCCESS, class SofaResponse, the
//     request's header entries plus "x-served-by", the request content;
//     Dubbo status 20, body type 4, the first argument unchanged, the
//     request's string attachments plus "x-served-by" (sorted by key);
//   - method "busy" gets Bolt status 4 / Dubbo status 100 and a message;
//   - a reply waits Delay plus the request's "x-sleep-ms" header or
//     attachment, on a timer;
//   - heartbeats are answered, one-way requests counted only;
//   - while stalled (SetStall) nothing is answered;
//   - a malformed frame closes its connection.
func Serve(p Protocol, addr string, o ServerOptions) (*Server, error) {
	if err := checkProtocol(p); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{p: p, opts: o, ln: ln, conns: make(map[*serverConn]struct{})}
	s.busyBolt, _ = withEncoder(nil, func(e *hessian.Encoder) error { return e.Encode(busyMessage) })
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close closes the listener and every connection and waits for the
// server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for sc := range s.conns {
		sc.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// KillConns closes every accepted connection abruptly (SO_LINGER 0, so the
// peer sees a reset) and keeps listening.
func (s *Server) KillConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conns {
		if tc, ok := sc.conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		sc.conn.Close()
	}
}

// SetStall makes the server, while on, read and count requests but answer
// nothing, heartbeats included.
func (s *Server) SetStall(on bool) { s.stall.Store(on) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Requests:   s.requests.Load(),
		Oneways:    s.oneways.Load(),
		Heartbeats: s.heartbeats.Load(),
		Accepted:   s.accepted.Load(),
		Open:       s.open.Load(),
	}
}

// LastRequestHeaders returns the header map (Bolt) or attachments (Dubbo,
// non-string values formatted) of the most recent request, one-way
// included; nil before the first.
func (s *Server) LastRequestHeaders() map[string]string {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if !s.lastSet {
		return nil
	}
	var m map[string]string
	if s.p == Bolt {
		m = boltHeaderMap(s.lastBolt)
	} else {
		m = attachmentText(s.lastDubbo, false)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		sc := &serverConn{s: s, conn: conn, timers: make(map[*delayedReply]struct{})}
		sc.w.init(conn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		s.open.Add(1)
		go sc.serve()
	}
}

// serverConn is one accepted connection.
type serverConn struct {
	s    *Server
	conn net.Conn
	w    batchWriter

	mu     sync.Mutex
	closed bool
	timers map[*delayedReply]struct{}
}

// delayedReply is a reply waiting for its timer.
type delayedReply struct {
	sc    *serverConn
	frame []byte
	t     *time.Timer
}

func (sc *serverConn) serve() {
	s := sc.s
	defer func() {
		sc.conn.Close()
		sc.mu.Lock()
		sc.closed = true
		for d := range sc.timers {
			if d.t.Stop() {
				s.wg.Done()
			}
		}
		clear(sc.timers)
		sc.mu.Unlock()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		s.open.Add(-1)
		s.wg.Done()
	}()
	fr := newFrameReader(s.p, sc.conn)
	for {
		b, err := fr.next()
		if err != nil {
			return
		}
		if s.p == Bolt {
			err = sc.handleBolt(b)
		} else {
			err = sc.handleDubbo(b)
		}
		if err != nil {
			return
		}
	}
}

// reply sends the frame fn appends, after d (on a timer) when d > 0.
func (sc *serverConn) reply(d time.Duration, fn func(dst []byte) []byte) error {
	if d <= 0 {
		return sc.w.write(fn, false)
	}
	dr := &delayedReply{sc: sc, frame: fn(nil)}
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return nil
	}
	sc.s.wg.Add(1)
	sc.timers[dr] = struct{}{}
	dr.t = time.AfterFunc(d, dr.fire)
	sc.mu.Unlock()
	return nil
}

func (dr *delayedReply) fire() {
	sc := dr.sc
	defer sc.s.wg.Done()
	sc.mu.Lock()
	_, ok := sc.timers[dr]
	delete(sc.timers, dr)
	sc.mu.Unlock()
	if ok && !sc.s.stall.Load() {
		sc.w.writeBytes(dr.frame, false)
	}
}

func (s *Server) rememberBolt(h []byte) {
	s.lastMu.Lock()
	s.lastBolt = append(s.lastBolt[:0], h...)
	s.lastSet = true
	s.lastMu.Unlock()
}

func (s *Server) rememberDubbo(att map[any]any) {
	s.lastMu.Lock()
	s.lastDubbo = att
	s.lastSet = true
	s.lastMu.Unlock()
}

func (sc *serverConn) handleBolt(b []byte) error {
	s := sc.s
	var v boltView
	if err := parseBolt(b, &v); err != nil {
		return err
	}
	switch {
	case v.typ == boltTypeResponse:
		return malformed("bolt response sent to the server")
	case v.cmd == boltCmdHeartbeat:
		s.heartbeats.Add(1)
		if s.stall.Load() {
			return nil
		}
		return sc.w.write(func(dst []byte) []byte { return appendBoltHeartbeatReply(dst, &v) }, false)
	case v.typ == boltTypeOneway:
		s.rememberBolt(v.header)
		s.oneways.Add(1)
		return nil
	}
	s.rememberBolt(v.header)
	s.requests.Add(1)
	if s.stall.Load() {
		return nil
	}
	delay := s.opts.Delay
	if ms, ok := boltHeaderGet(v.header, sleepKey); ok {
		delay += sleepHeader(ms)
	}
	extra := [1]KV{{servedByKey, s.opts.Name}}
	if m, _ := boltHeaderGet(v.header, "sofa_head_method_name"); string(m) == busyMethod {
		return sc.reply(delay, func(dst []byte) []byte {
			return appendBoltReply(dst, &v, BoltServerThreadpoolBusy, stringClass, nil, extra[:], s.busyBolt)
		})
	}
	hdr := withoutBoltKey(v.header, servedByKey)
	if len(hdr)+8+len(servedByKey)+len(s.opts.Name) > 0xffff {
		return sc.reply(delay, func(dst []byte) []byte {
			return appendBoltReply(dst, &v, BoltServerException, stringClass, nil, extra[:], nil)
		})
	}
	return sc.reply(delay, func(dst []byte) []byte {
		return appendBoltReply(dst, &v, BoltSuccess, SofaResponseClass, hdr, extra[:], v.content)
	})
}

func (sc *serverConn) handleDubbo(b []byte) error {
	s := sc.s
	var v dubboView
	if err := parseDubbo(b, &v); err != nil {
		return err
	}
	if v.flags&dubboFlagRequest == 0 {
		return malformed("dubbo response sent to the server")
	}
	twoWay := v.flags&dubboFlagTwoWay != 0
	serial := v.flags & dubboSerialMask
	if v.flags&dubboFlagEvent != 0 {
		s.heartbeats.Add(1)
		if s.stall.Load() || !twoWay {
			return nil
		}
		return sc.w.write(func(dst []byte) []byte { return appendDubboHeartbeatReply(dst, &v) }, false)
	}
	if serial != dubboSerialHessian {
		if !twoWay {
			s.oneways.Add(1)
			return nil
		}
		s.requests.Add(1)
		if s.stall.Load() {
			return nil
		}
		return sc.w.write(func(dst []byte) []byte {
			return appendDubboError(dst, serial, DubboBadRequest, v.id, "rpcpeer: only hessian2 is served")
		}, false)
	}
	inv, att, err := parseDubboInvocation(v.body)
	if err != nil {
		return err
	}
	s.rememberDubbo(att)
	if !twoWay {
		s.oneways.Add(1)
		return nil
	}
	s.requests.Add(1)
	if s.stall.Load() {
		return nil
	}
	delay := s.opts.Delay
	if ms, ok := att[sleepKey].(string); ok {
		delay += sleepHeader([]byte(ms))
	}
	if inv.Method == busyMethod {
		return sc.reply(delay, func(dst []byte) []byte {
			return appendDubboError(dst, serial, DubboThreadpoolExhausted, v.id, busyMessage)
		})
	}
	out := make([]KV, 0, len(att)+1)
	for k, val := range att {
		ks, ok1 := k.(string)
		vs, ok2 := val.(string)
		if ok1 && ok2 && ks != servedByKey {
			out = append(out, KV{ks, vs})
		}
	}
	out = append(out, KV{servedByKey, s.opts.Name})
	slices.SortFunc(out, func(a, b KV) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	typ, value := int32(DubboResponseNullWithAttachments), any(nil)
	if len(inv.Args) > 0 && inv.Args[0] != nil {
		typ, value = DubboResponseValueWithAttachments, inv.Args[0]
	}
	frame, err := appendDubboValue(nil, serial, v.id, typ, value, out)
	if err != nil {
		frame = appendDubboError(nil, serial, DubboServerError, v.id, "rpcpeer: cannot encode the reply: "+err.Error())
	}
	return sc.reply(delay, func(dst []byte) []byte { return append(dst, frame...) })
}
