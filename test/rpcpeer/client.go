package rpcpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one call.
type Request struct {
	Service, Method, Version, Group string
	// Headers are extra Bolt header entries / Dubbo attachments, written
	// after the routing entries sorted by key. A key equal to one of the
	// routing entries (Bolt: service, sofa_head_target_service,
	// sofa_head_method_name, sofa_head_target_app; Dubbo: path, interface,
	// version, group, timeout) replaces that entry's value in place.
	Headers map[string]string
	// Body is the Bolt content (opaque), or for Dubbo the single
	// java.lang.String argument string(Body) (so it should be UTF-8).
	Body []byte
	// Timeout is the Bolt timeout field (ms; -1 when 0) or the Dubbo
	// "timeout" attachment in ms (omitted when 0). It does not bound the
	// call: use the context for that.
	Timeout time.Duration
	Oneway  bool
	BoltV2  bool // send as Bolt v2 with ver1 1, switch 0
	BoltCRC bool // send as Bolt v2 with ver1 2, switch bit 0 and a CRC32 trailer (implies BoltV2)
}

// Response is a decoded response.
type Response struct {
	// Status is the protocol status: Bolt BoltSuccess..., Dubbo DubboOK...
	Status int
	// Headers is the Bolt response header map, or the Dubbo response
	// attachments (non-string values formatted with fmt).
	Headers map[string]string
	// Body is the Bolt content; for Dubbo the returned value as text (a
	// string unchanged), nil for a null value, or the error message when
	// Status is not DubboOK.
	Body []byte
	// ClassName is the Bolt class name.
	ClassName string
	// Heartbeat marks a heartbeat reply.
	Heartbeat bool
	// Exception marks a Dubbo OK response carrying an exception (body
	// types 0 and 3); Body is then the exception as text.
	Exception bool
}

type result struct {
	resp *Response
	err  error
}

// call is a waiting request; pooled. Its channel receives exactly one
// result from whoever removed it from Client.calls.
type call struct{ ch chan result }

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan result, 1)} }}

// Client is a pipelining RPC client on one TCP connection.
type Client struct {
	p    Protocol
	conn net.Conn
	w    batchWriter
	ids  atomic.Uint64

	mu    sync.Mutex
	calls map[uint64]*call
	err   error // set once the connection is done; no new calls then

	closing atomic.Bool
	done    chan struct{} // closed when the reader has exited
}

// Dial connects to a server (or the proxy) speaking p at addr.
func Dial(p Protocol, addr string) (*Client, error) {
	if err := checkProtocol(p); err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(p, conn)
}

// NewClient speaks p on an open connection (a TLS one, say); the client
// owns conn from now on.
func NewClient(p Protocol, conn net.Conn) (*Client, error) {
	if err := checkProtocol(p); err != nil {
		return nil, err
	}
	c := &Client{p: p, conn: conn, calls: make(map[uint64]*call), done: make(chan struct{})}
	c.w.init(conn)
	go c.readLoop()
	return c, nil
}

// Close closes the connection; waiting calls fail with ErrClosed.
func (c *Client) Close() error {
	c.closing.Store(true)
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (c *Client) nextID() uint64 {
	for {
		id := c.ids.Add(1)
		if c.p == Bolt {
			id = uint64(uint32(id))
		}
		if id != 0 {
			return id
		}
	}
}

// Call sends r and waits for its response. It is safe for concurrent use;
// calls are pipelined on the one connection. For a one-way request it
// returns (nil, nil) once the frame has been written. When ctx ends first
// it returns ctx.Err() and a late response is dropped. When the
// connection fails every waiting call returns an error.
func (c *Client) Call(ctx context.Context, r *Request) (*Response, error) {
	id := c.nextID()
	bp := getBuf()
	var err error
	if c.p == Bolt {
		*bp, err = appendBoltRequest((*bp)[:0], uint32(id), r)
	} else {
		*bp, err = appendDubboRequest((*bp)[:0], id, r)
	}
	if err != nil {
		putBuf(bp)
		return nil, err
	}
	if r.Oneway {
		err := c.w.writeBytes(*bp, true)
		putBuf(bp)
		return nil, c.wrapErr(err)
	}
	return c.roundTrip(ctx, id, bp)
}

// Heartbeat sends a heartbeat (Bolt v1, or a Dubbo event) and waits for
// the reply.
func (c *Client) Heartbeat(ctx context.Context) (*Response, error) {
	id := c.nextID()
	bp := getBuf()
	if c.p == Bolt {
		*bp = appendBoltHeartbeat((*bp)[:0], uint32(id))
	} else {
		*bp = appendDubboHeartbeat((*bp)[:0], id)
	}
	return c.roundTrip(ctx, id, bp)
}

// roundTrip registers id, writes the frame in *bp (and returns bp to the
// pool) and waits.
func (c *Client) roundTrip(ctx context.Context, id uint64, bp *[]byte) (*Response, error) {
	if err := ctx.Err(); err != nil {
		putBuf(bp)
		return nil, err
	}
	cl := callPool.Get().(*call)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(cl)
		putBuf(bp)
		return nil, err
	}
	c.calls[id] = cl
	c.mu.Unlock()

	err := c.w.writeBytes(*bp, false)
	putBuf(bp)
	if err != nil {
		return c.abandon(id, cl, c.wrapErr(err))
	}
	select {
	case res := <-cl.ch:
		callPool.Put(cl)
		return res.resp, res.err
	case <-ctx.Done():
		return c.abandon(id, cl, ctx.Err())
	}
}

// abandon forgets id and returns err, unless a result is already on its
// way, which it then returns instead.
func (c *Client) abandon(id uint64, cl *call, err error) (*Response, error) {
	c.mu.Lock()
	_, mine := c.calls[id]
	if mine {
		delete(c.calls, id)
	}
	c.mu.Unlock()
	if mine {
		callPool.Put(cl)
		return nil, err
	}
	res := <-cl.ch
	callPool.Put(cl)
	return res.resp, res.err
}

func (c *Client) wrapErr(err error) error {
	if err == nil {
		return nil
	}
	if c.closing.Load() {
		return ErrClosed
	}
	return fmt.Errorf("rpcpeer: connection: %w", err)
}

// take removes and returns the call waiting for id.
func (c *Client) take(id uint64) *call {
	c.mu.Lock()
	cl := c.calls[id]
	if cl != nil {
		delete(c.calls, id)
	}
	c.mu.Unlock()
	return cl
}

func (c *Client) readLoop() {
	defer close(c.done)
	fr := newFrameReader(c.p, c.conn)
	var err error
	for {
		var b []byte
		if b, err = fr.next(); err != nil {
			break
		}
		if err = c.handle(b); err != nil {
			break
		}
	}
	c.conn.Close()
	if c.closing.Load() {
		err = ErrClosed
	} else {
		err = fmt.Errorf("rpcpeer: connection lost: %w", err)
	}
	c.mu.Lock()
	c.err = err
	calls := c.calls
	c.calls = nil
	c.mu.Unlock()
	for _, cl := range calls {
		cl.ch <- result{err: err}
	}
}

// handle dispatches one frame from the server.
func (c *Client) handle(b []byte) error {
	if c.p == Bolt {
		var v boltView
		if err := parseBolt(b, &v); err != nil {
			return err
		}
		if v.typ != boltTypeResponse {
			if v.cmd == boltCmdHeartbeat {
				return c.w.write(func(dst []byte) []byte { return appendBoltHeartbeatReply(dst, &v) }, false)
			}
			return nil // requests from the server are not served
		}
		if cl := c.take(uint64(v.id)); cl != nil {
			cl.ch <- result{resp: boltResponse(&v)}
		}
		return nil
	}
	var v dubboView
	if err := parseDubbo(b, &v); err != nil {
		return err
	}
	if v.flags&dubboFlagRequest != 0 {
		if v.flags&(dubboFlagEvent|dubboFlagTwoWay) == dubboFlagEvent|dubboFlagTwoWay {
			return c.w.write(func(dst []byte) []byte { return appendDubboHeartbeatReply(dst, &v) }, false)
		}
		return nil
	}
	if cl := c.take(v.id); cl != nil {
		resp, err := dubboResponse(&v)
		if err != nil {
			resp = nil
		}
		cl.ch <- result{resp: resp, err: err}
	}
	return nil
}

// EncodeRequest returns the exact frame Call would write for r with
// request id id (truncated to 32 bits for Bolt). It panics when r cannot
// be encoded (a Bolt header map over 64 KiB, a frame over MaxFrame) or p
// is unknown.
func EncodeRequest(p Protocol, id uint64, r *Request) []byte {
	var b []byte
	var err error
	switch p {
	case Bolt:
		b, err = appendBoltRequest(nil, uint32(id), r)
	case Dubbo:
		b, err = appendDubboRequest(nil, id, r)
	default:
		err = checkProtocol(p)
	}
	if err != nil {
		panic(err)
	}
	return b
}

// EncodeHeartbeat returns the heartbeat request frame Heartbeat writes.
func EncodeHeartbeat(p Protocol, id uint64) []byte {
	if p == Dubbo {
		return appendDubboHeartbeat(nil, id)
	}
	return appendBoltHeartbeat(nil, uint32(id))
}

// EncodeResponse returns a response frame for r. Bolt: v1, hessian2,
// r.ClassName as given, headers sorted by key, cmdcode 0 when Heartbeat.
// Dubbo: flags 0x02; status DubboOK gives body type 4 (value string(Body)
// with the headers as attachments sorted by key; 5 (null) when Body is
// nil; 3 when Exception, the message as the exception value); any other
// status gives the body string(Body) as a hessian string; Heartbeat gives
// the heartbeat reply. It panics where EncodeRequest does.
func EncodeResponse(p Protocol, id uint64, r *Response) []byte {
	var b []byte
	var err error
	switch p {
	case Bolt:
		b, err = appendBoltResponse(nil, uint32(id), r)
	case Dubbo:
		b, err = appendDubboResponse(nil, id, r)
	default:
		err = checkProtocol(p)
	}
	if err != nil {
		panic(err)
	}
	return b
}
