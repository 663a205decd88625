package demo

// The RPC half of the demo: a Bolt provider and a Dubbo provider, each a
// tiny server written with Weft's own codecs, and a Bolt caller and a Dubbo
// caller that call them through the frontend sidecar's RPC egress, each
// over one pipelined connection. The registry part (mesh.go) reuses the
// Bolt provider and caller for its catalog service.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/bolt"
	"github.com/weftmesh/weft/internal/codec/dubbo"
)

// The sample RPC services.
const (
	echoService     = "com.weftmesh.demo.EchoService" // Bolt
	echoVersion     = "1.0"
	echoMethod      = "echo"
	greetingService = "com.weftmesh.demo.GreetingService" // Dubbo
	greetingMethod  = "greet"

	servedBy = "served-by" // response header / attachment naming the provider

	// Class names a SOFARPC peer puts on its frames; the demo's content is
	// a plain hessian2 string, which the proxy forwards untouched.
	sofaRequestClass  = "com.alipay.sofa.rpc.core.request.SofaRequest"
	sofaResponseClass = "com.alipay.sofa.rpc.core.response.SofaResponse"

	dubboVersion = "2.0.2" // the Dubbo protocol version the caller speaks

	// Dubbo response body types (the first value of an OK response body).
	dubboRespException         = 0
	dubboRespValue             = 1
	dubboRespNull              = 2
	dubboRespExceptionWithAtts = 3
	dubboRespValueWithAtts     = 4
	dubboRespNullWithAtts      = 5
)

// rpcTimeout is the timeout the callers put on their requests; the proxy
// answers a request that takes longer with the protocol's timeout error.
const rpcTimeout = 2 * time.Second

// callGiveUp is how long a caller waits for any answer (a reply or the
// proxy's error) before it counts the call as failed.
const callGiveUp = rpcTimeout + time.Second

// frameLoop reads c until it fails, handing each complete frame to each
// (which returns the bytes the frame used, api.ErrNeedMore for an
// incomplete one, or an error that ends the loop), and calls flush after
// every read so that the answers to pipelined requests leave together.
func frameLoop(c net.Conn, each func(b []byte) (int, error), flush func() error) error {
	buf := make([]byte, 0, 8<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, rerr := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		off := 0
		for off < len(buf) {
			used, err := each(buf[off:])
			if errors.Is(err, api.ErrNeedMore) {
				break
			}
			if err != nil {
				return err
			}
			off += used
		}
		buf = buf[:copy(buf, buf[off:])]
		if flush != nil {
			if err := flush(); err != nil {
				return err
			}
		}
		if rerr != nil {
			return rerr
		}
	}
}

// tcpServer is a sample RPC provider on a loopback port: one goroutine per
// connection running serve. Close closes the listener and every connection
// and waits for the goroutines.
type tcpServer struct {
	ln    net.Listener
	serve func(net.Conn)
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startTCPServer(serve func(net.Conn)) (*tcpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &tcpServer{ln: ln, serve: serve, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *tcpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *tcpServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil { // closed
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.serve(c)
		}()
	}
}

// Close stops the server and waits for its goroutines.
func (s *tcpServer) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// boltEcho serves service (com.weftmesh.demo.EchoService,
// com.weftmesh.demo.CatalogService) over Bolt as provider name: a request's
// content comes back unchanged, whatever the method, with a served-by
// header; heartbeats are answered; other services get NO_PROCESSOR.
func boltEcho(service, name string) func(net.Conn) {
	return func(c net.Conn) {
		codec := &bolt.Codec{}
		var req, resp bolt.Frame
		var out []byte
		each := func(b []byte) (int, error) {
			n, err := bolt.Decode(&req, b, codec.Limits)
			if err != nil {
				return n, err
			}
			var reply api.Frame
			switch req.Kind() {
			case api.KindHeartbeat:
				reply = codec.HeartbeatReply(&req)
			case api.KindRequest:
				if svc, _ := req.Headers().Get(":authority"); svc != service {
					reply = codec.ErrorReply(&req, 404, "no service "+svc)
					break
				}
				resp.Reset()
				resp.Proto, resp.Ver1, resp.Switch = req.Proto, req.Ver1, req.Switch
				resp.Type, resp.CmdCode, resp.Ver2 = bolt.TypeResponse, bolt.CmdResponse, 1
				resp.ID, resp.Codec, resp.RespStatus = req.ID, req.Codec, bolt.StatusSuccess
				resp.ClassName = []byte(sofaResponseClass)
				resp.Header.Set(servedBy, name)
				resp.Content = req.Content
				reply = &resp
			default:
				return n, nil // one-way calls and stray responses need no answer
			}
			out, err = codec.Encode(out, reply)
			return n, err
		}
		_ = frameLoop(c, each, func() error { return flush(c, &out) })
	}
}

// dubboGreeting serves com.weftmesh.demo.GreetingService over Dubbo:
// greet(name) answers "hello <name>" with a served-by attachment;
// heartbeats are answered; anything else gets SERVICE_NOT_FOUND or
// BAD_REQUEST.
func dubboGreeting(name string) func(net.Conn) {
	return func(c net.Conn) {
		codec := dubbo.Codec{}
		var req dubbo.Frame
		var out []byte
		each := func(b []byte) (int, error) {
			n, err := codec.Decode(&req, b)
			if err != nil && n == 0 {
				return 0, err // incomplete, or a header that is not Dubbo
			}
			var reply api.Frame
			switch {
			case err != nil: // a whole frame whose body does not parse
				if req.Kind() != api.KindRequest {
					return n, nil
				}
				reply = codec.ErrorReply(&req, 400, err.Error())
			case req.Kind() == api.KindHeartbeat:
				reply = codec.HeartbeatReply(&req)
			case req.Kind() != api.KindRequest:
				return n, nil // one-way calls, events, stray responses
			case req.Path != greetingService || req.Method != greetingMethod:
				reply = codec.ErrorReply(&req, 404, "no service "+req.Path+"."+req.Method)
			default:
				body, gerr := greet(&req, name)
				if gerr != nil {
					reply = codec.ErrorReply(&req, 400, gerr.Error())
					break
				}
				reply = &dubbo.Frame{Flags: dubbo.SerializationHessian2, StatusCode: dubbo.StatusOK, ID: req.ID, Body: body}
			}
			out, err = codec.Encode(out, reply)
			return n, err
		}
		_ = frameLoop(c, each, func() error { return flush(c, &out) })
	}
}

// greet reads greet's one string argument and returns the response body:
// the type "value with attachments", the value, the attachments.
func greet(req *dubbo.Frame, name string) ([]byte, error) {
	// The codec has already walked and bounded this body, so the library
	// (which trusts length prefixes) only sees well-formed hessian2.
	d := hessian.NewDecoder(req.Body)
	var arg any
	for i := 0; i < 6; i++ { // version, path, service version, method, types, argument
		v, err := d.Decode()
		if err != nil {
			return nil, fmt.Errorf("greet: reading the request: %w", err)
		}
		arg = v
	}
	who, ok := arg.(string)
	if !ok {
		return nil, fmt.Errorf("greet: the argument is %T, not a string", arg)
	}
	e := hessian.NewEncoder()
	for _, v := range []any{int32(dubboRespValueWithAtts), "hello " + who, map[string]any{servedBy: name, "dubbo": dubboVersion}} {
		if err := e.Encode(v); err != nil {
			return nil, err
		}
	}
	return e.Buffer(), nil
}

// flush writes and empties *out.
func flush(c net.Conn, out *[]byte) error {
	if len(*out) == 0 {
		return nil
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Write(*out)
	*out = (*out)[:0]
	return err
}

// rpcReply is what a caller's protocol makes of one frame from the proxy.
type rpcReply struct {
	response bool   // a response to request id
	id       uint32 // its id
	text     string // what the provider answered
	by       string // the provider that answered (its served-by)
	err      error  // the failure the response reports
	answer   []byte // bytes to send back (a heartbeat reply)
}

// rpcProtocol is the protocol half of a caller.
type rpcProtocol interface {
	// appendRequest appends call number seq under id to dst.
	appendRequest(dst []byte, id uint32, seq uint64) ([]byte, error)
	// decode reads one frame from b (api.ErrNeedMore if incomplete).
	decode(b []byte) (int, rpcReply, error)
}

// boltCaller calls service.method(arg + "N"), e.g.
// EchoService.echo("ping #N"), naming app as the target application.
type boltCaller struct {
	service, version, method, arg, app string

	codec bolt.Codec
	req   bolt.Frame
	resp  bolt.Frame
}

// echoCaller is the Bolt caller of the RPC part.
func echoCaller() rpcProtocol {
	return &boltCaller{service: echoService, version: echoVersion, method: echoMethod, arg: "ping #", app: "demo-frontend"}
}

func (p *boltCaller) appendRequest(dst []byte, id uint32, seq uint64) ([]byte, error) {
	e := hessian.NewEncoder()
	if err := e.Encode(p.arg + strconv.FormatUint(seq, 10)); err != nil {
		return dst, err
	}
	f := &p.req
	f.Reset()
	f.Proto, f.Type, f.CmdCode, f.Ver2 = bolt.ProtoV1, bolt.TypeRequest, bolt.CmdRequest, 1
	f.ID, f.Codec, f.TimeoutMs = id, bolt.CodecHessian2, int32(rpcTimeout/time.Millisecond)
	f.ClassName = []byte(sofaRequestClass)
	h := f.Headers() // writes both service keys, as SOFARPC does
	h.Set(bolt.KeyService, p.service+":"+p.version)
	h.Set(":path", p.method)
	if p.app != "" {
		h.Set(bolt.KeyTargetApp, p.app)
	}
	f.Content = e.Buffer()
	return p.codec.Encode(dst, f)
}

func (p *boltCaller) decode(b []byte) (int, rpcReply, error) {
	f := &p.resp
	n, err := bolt.Decode(f, b, p.codec.Limits)
	if err != nil {
		return n, rpcReply{}, err
	}
	switch f.Kind() {
	case api.KindHeartbeat:
		out, err := p.codec.Encode(nil, p.codec.HeartbeatReply(f))
		return n, rpcReply{answer: out}, err
	case api.KindResponse:
	default:
		return n, rpcReply{}, nil
	}
	r := rpcReply{response: true, id: f.ID}
	v, derr := hessian.NewDecoder(f.Content).Decode()
	if f.RespStatus != bolt.StatusSuccess {
		msg, _ := v.(string)
		r.err = fmt.Errorf("bolt status %s: %s", bolt.StatusText(f.RespStatus), msg)
		return n, r, nil
	}
	s, ok := v.(string)
	if derr != nil || !ok {
		r.err = fmt.Errorf("bolt: unexpected content (%T, %v)", v, derr)
		return n, r, nil
	}
	by, _ := f.Headers().Get(servedBy)
	r.by = strings.Clone(by) // the frame's storage is reused by the next Decode
	r.text = fmt.Sprintf("%s.%s -> %q (served-by %s)", p.service, p.method, s, r.by)
	return n, r, nil
}

// dubboCaller calls GreetingService.greet("demo #N").
type dubboCaller struct {
	codec dubbo.Codec
	resp  dubbo.Frame
}

func (p *dubboCaller) appendRequest(dst []byte, id uint32, seq uint64) ([]byte, error) {
	e := hessian.NewEncoder()
	atts := map[string]any{
		"path": greetingService, "interface": greetingService,
		"timeout": strconv.Itoa(int(rpcTimeout / time.Millisecond)),
	}
	for _, v := range []any{dubboVersion, greetingService, "", greetingMethod, "Ljava/lang/String;",
		"demo #" + strconv.FormatUint(seq, 10), atts} {
		if err := e.Encode(v); err != nil {
			return dst, err
		}
	}
	f := &dubbo.Frame{Flags: dubbo.FlagRequest | dubbo.FlagTwoWay | dubbo.SerializationHessian2, ID: int64(id), Body: e.Buffer()}
	return p.codec.Encode(dst, f)
}

func (p *dubboCaller) decode(b []byte) (int, rpcReply, error) {
	f := &p.resp
	n, err := p.codec.Decode(f, b)
	if err != nil && n == 0 {
		return n, rpcReply{}, err
	}
	switch f.Kind() {
	case api.KindHeartbeat:
		out, err := p.codec.Encode(nil, p.codec.HeartbeatReply(f))
		return n, rpcReply{answer: out}, err
	case api.KindResponse:
	default:
		return n, rpcReply{}, nil
	}
	r := rpcReply{response: true, id: uint32(f.ID)}
	d := hessian.NewDecoder(f.Body)
	if f.StatusCode != dubbo.StatusOK {
		msg, _ := d.Decode()
		r.err = fmt.Errorf("dubbo status %d: %v", f.StatusCode, msg)
		return n, r, nil
	}
	typ, err := d.Decode()
	if err != nil {
		r.err = fmt.Errorf("dubbo: response body: %w", err)
		return n, r, nil
	}
	t, _ := typ.(int32)
	var value any
	switch t {
	case dubboRespValue, dubboRespValueWithAtts, dubboRespException, dubboRespExceptionWithAtts:
		if value, err = d.Decode(); err != nil {
			r.err = fmt.Errorf("dubbo: response value: %w", err)
			return n, r, nil
		}
	case dubboRespNull, dubboRespNullWithAtts:
	default:
		r.err = fmt.Errorf("dubbo: unknown response type %v", typ)
		return n, r, nil
	}
	by := "?"
	if t == dubboRespValueWithAtts || t == dubboRespNullWithAtts || t == dubboRespExceptionWithAtts {
		if atts, err := d.Decode(); err == nil {
			if m, ok := atts.(map[any]any); ok {
				by = fmt.Sprint(m[servedBy])
			}
		}
	}
	if t == dubboRespException || t == dubboRespExceptionWithAtts {
		r.err = fmt.Errorf("dubbo: the provider threw %v", value)
		return n, r, nil
	}
	r.by = by
	r.text = fmt.Sprintf("%s.%s -> %q (served-by %s)", greetingService, greetingMethod, value, by)
	return n, r, nil
}

// callerStats is what /rpc and /mesh show of one caller.
type callerStats struct {
	Service   string `json:"service"`
	Via       string `json:"via"`
	OK        uint64 `json:"ok"`
	Failed    uint64 `json:"failed"`
	Last      string `json:"last"`
	LastError string `json:"last_error,omitempty"`
	Connects  uint64 `json:"connects"`
	// ServedBy counts the successful calls per provider that answered.
	ServedBy map[string]uint64 `json:"served_by,omitempty"`
}

// redialAfter is how long a caller leaves an address alone after its
// connection failed or could not be made.
const redialAfter = 500 * time.Millisecond

// caller sends rps calls per second, round robin over the addresses
// targets returns (asked again before every call), each address over one
// pipelined connection matching replies by id; a connection that drops is
// dialed again. Until targets first returns an address the caller waits;
// after that a call with no address to go to fails.
type caller struct {
	rps     int
	mk      func() rpcProtocol
	targets func() []string

	mu sync.Mutex
	st callerStats
}

// newCaller makes a caller of service; via describes where its calls go.
func newCaller(service, via string, rps int, mk func() rpcProtocol, targets func() []string) *caller {
	return &caller{rps: rps, mk: mk, targets: targets, st: callerStats{Service: service, Via: via}}
}

// to is the targets of a caller with one fixed address.
func to(addr string) func() []string {
	return func() []string { return []string{addr} }
}

func (c *caller) stats() callerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	if c.st.ServedBy != nil {
		st.ServedBy = make(map[string]uint64, len(c.st.ServedBy))
		for k, v := range c.st.ServedBy {
			st.ServedBy[k] = v
		}
	}
	return st
}

func (c *caller) result(text, by string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.st.Failed++
		c.st.LastError = err.Error()
		return
	}
	c.st.OK++
	c.st.Last = text
	if by != "" {
		if c.st.ServedBy == nil {
			c.st.ServedBy = map[string]uint64{}
		}
		c.st.ServedBy[by]++
	}
}

func (c *caller) connError(err error) {
	c.mu.Lock()
	c.st.LastError = "connection: " + err.Error()
	c.mu.Unlock()
}

// run calls until ctx ends. Calls in flight then are not failures.
func (c *caller) run(ctx context.Context) {
	conns := map[string]*rpcConn{} // by address
	down := map[string]time.Time{} // address -> not dialed before
	drop := func(addr string, now time.Time, err error) {
		conns[addr].close(false)
		delete(conns, addr)
		down[addr] = now.Add(redialAfter)
		c.connError(err)
	}
	defer func() {
		for _, cn := range conns {
			cn.close(true)
		}
	}()
	t := time.NewTicker(time.Second / time.Duration(c.rps))
	defer t.Stop()
	var seq, rr uint64
	started := false
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		targets := c.targets()
		want := make(map[string]bool, len(targets))
		for _, a := range targets {
			want[a] = true
		}
		// Calls that waited too long fail; a connection that broke goes,
		// and so does an idle one to an address no longer targeted.
		for addr, cn := range conns {
			cn.expire(now)
			if err := cn.failed(); err != nil {
				drop(addr, now, err)
			} else if !want[addr] && cn.idle() {
				cn.close(false)
				delete(conns, addr)
			}
		}
		for addr, at := range down {
			if !want[addr] || now.After(at) {
				delete(down, addr)
			}
		}
		if len(targets) == 0 {
			if started {
				c.result("", "", errors.New("no provider known"))
			}
			continue
		}
		started = true
		// The next address in turn that has a connection or may be dialed.
		var cn *rpcConn
		var addr string
		for i := 0; i < len(targets) && cn == nil; i++ {
			rr++
			addr = targets[rr%uint64(len(targets))]
			if cn = conns[addr]; cn != nil {
				break
			}
			if _, ok := down[addr]; ok {
				continue
			}
			var err error
			if cn, err = c.dial(ctx, addr); err != nil {
				if ctx.Err() != nil {
					return
				}
				down[addr] = now.Add(redialAfter)
				c.connError(err)
				continue
			}
			conns[addr] = cn
		}
		if cn == nil {
			continue // every address failed just now: dialed again soon
		}
		seq++
		if err := cn.call(now, seq); err != nil {
			drop(addr, now, err)
		}
	}
}

// rpcConn is one pipelined connection of a caller: requests go out as the
// caller ticks, a goroutine reads the answers.
type rpcConn struct {
	c     *caller
	conn  net.Conn
	proto rpcProtocol

	mu      sync.Mutex // guards pending, id, out and writes to conn
	pending map[uint32]time.Time
	id      uint32
	out     []byte

	done chan struct{} // closed when the reader ends
	err  error         // why it ended (set before done is closed)
}

func (c *caller) dial(ctx context.Context, addr string) (*rpcConn, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.st.Connects++
	c.mu.Unlock()
	cn := &rpcConn{c: c, conn: conn, proto: c.mk(), pending: map[uint32]time.Time{}, done: make(chan struct{})}
	go cn.read()
	return cn, nil
}

func (cn *rpcConn) read() {
	defer close(cn.done)
	err := frameLoop(cn.conn, func(b []byte) (int, error) {
		n, r, err := cn.proto.decode(b)
		if err != nil {
			return n, err
		}
		if r.answer != nil {
			cn.mu.Lock()
			err = cn.write(r.answer)
			cn.mu.Unlock()
			return n, err
		}
		if !r.response {
			return n, nil
		}
		cn.mu.Lock()
		_, ok := cn.pending[r.id]
		delete(cn.pending, r.id)
		cn.mu.Unlock()
		if ok { // else: a late answer to a call already counted as failed
			cn.c.result(r.text, r.by, r.err)
		}
		return n, nil
	}, nil)
	if err == nil {
		err = errors.New("closed")
	}
	cn.err = err
}

// write sends b; cn.mu must be held.
func (cn *rpcConn) write(b []byte) error {
	_ = cn.conn.SetWriteDeadline(time.Now().Add(callGiveUp))
	_, err := cn.conn.Write(b)
	return err
}

// call sends call number seq.
func (cn *rpcConn) call(now time.Time, seq uint64) error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	cn.id++
	var err error
	if cn.out, err = cn.proto.appendRequest(cn.out[:0], cn.id, seq); err != nil {
		return err
	}
	cn.pending[cn.id] = now
	return cn.write(cn.out)
}

// expire fails the calls that have had no answer within callGiveUp.
func (cn *rpcConn) expire(now time.Time) {
	cn.mu.Lock()
	var late int
	for id, at := range cn.pending {
		if now.Sub(at) > callGiveUp {
			delete(cn.pending, id)
			late++
		}
	}
	cn.mu.Unlock()
	for ; late > 0; late-- {
		cn.c.result("", "", fmt.Errorf("no reply within %s", callGiveUp))
	}
}

// failed is why the connection ended, nil while it is up.
func (cn *rpcConn) failed() error {
	select {
	case <-cn.done:
		return cn.err
	default:
		return nil
	}
}

func (cn *rpcConn) idle() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return len(cn.pending) == 0
}

// close closes the connection and waits for its reader. The calls still
// in flight fail, unless the caller is stopping.
func (cn *rpcConn) close(stopping bool) {
	_ = cn.conn.Close()
	<-cn.done
	if stopping {
		return
	}
	cn.mu.Lock()
	n := len(cn.pending)
	clear(cn.pending)
	cn.mu.Unlock()
	for ; n > 0; n-- {
		cn.c.result("", "", errors.New("connection closed before the reply"))
	}
}
