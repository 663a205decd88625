package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/codec/http1"
)

// h2cc is one HTTP/2 connection to an upstream host. It is Weft's own
// client on x/net's Framer and HPACK rather than x/net's Transport because
// the proxy's hot path needs two things the Transport does not give:
//   - frames of all streams go out in as few writes as possible: every
//     frame is appended to one buffer and a single writer goroutine writes
//     whatever has gathered (the Transport flushes HEADERS, each DATA frame
//     and the closing empty DATA frame each in their own write(2), which on
//     loopback was a third of the proxy's CPU for gRPC unary calls);
//   - a response body tells whether more of it is already here (pending),
//     so the downstream side flushes only when the next read would wait.
//
// Flow control: Weft grants the host StreamWindow per stream and
// ConnWindow per connection and gives credit back only as the downstream
// consumes the body, so a slow client stops the host rather than growing a
// buffer; request bodies wait for the host's windows.
type h2cc struct {
	nc   net.Conn
	fr   *http2.Framer // reads from nc; writes into wbuf (under wmu)
	opts h2ccOptions

	wmu     sync.Mutex
	wbuf    bytes.Buffer
	spare   bytes.Buffer
	wake    chan struct{} // a write is pending
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	nextID  uint32
	flushed bool // wbuf holds nothing the writer has not been told of
	// lastWords: the writer closes the connection once it has sent what
	// is queued (a final GOAWAY).
	lastWords bool
	shutOnce  sync.Once

	mu         sync.Mutex
	cond       sync.Cond // send windows, stream slots, closing
	streams    map[uint32]*h2cs
	active     int // streams open or reserved
	maxStreams uint32
	peerWindow int32 // SETTINGS_INITIAL_WINDOW_SIZE of the host
	maxFrame   uint32
	sendWindow int32 // connection-level credit for our DATA
	recvUnack  int32 // connection-level bytes consumed, not yet credited
	goAway     bool
	lastID     uint32 // the host's GOAWAY last stream id
	closed     bool
	err        error
	idle       *time.Timer
	lastRead   time.Time
	done       chan struct{}
	// settings is closed once the host's first SETTINGS arrived: DATA
	// waits for it, since a host that announces a stream window below the
	// default 65,535 treats more as a flow-control error.
	settings     chan struct{}
	seenSettings bool
}

type h2ccOptions struct {
	streamWindow, connWindow int32
	maxStreams               uint32 // our own cap; 0: the host's
	maxHeaderList            uint32
	idleTimeout              time.Duration
	pingInterval, pingWait   time.Duration
	scheme                   string
}

// errH2Refused is a stream the host did not process (REFUSED_STREAM, or
// above its GOAWAY's last stream id): it may be sent again anywhere.
var errH2Refused = errors.New("http2: stream refused by the host before processing")

// newH2CC starts the client side of a connection: preface, SETTINGS, the
// connection window, then the reader and writer goroutines.
func newH2CC(nc net.Conn, o h2ccOptions) (*h2cc, error) {
	cc := &h2cc{
		nc: nc, opts: o, wake: make(chan struct{}, 1), nextID: 1,
		streams: map[uint32]*h2cs{}, maxStreams: 100, peerWindow: 65535, maxFrame: 16384,
		sendWindow: 65535, done: make(chan struct{}), flushed: true, settings: make(chan struct{}),
	}
	cc.cond.L = &cc.mu
	cc.fr = http2.NewFramer(&cc.wbuf, bufio.NewReaderSize(nc, 16<<10))
	cc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cc.fr.MaxHeaderListSize = o.maxHeaderList
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.wbuf.WriteString(http2.ClientPreface)
	settings := []http2.Setting{
		{ID: http2.SettingEnablePush, Val: 0},
		{ID: http2.SettingInitialWindowSize, Val: uint32(o.streamWindow)},
	}
	if o.maxHeaderList > 0 {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: o.maxHeaderList})
	}
	_ = cc.fr.WriteSettings(settings...)
	if o.connWindow > 65535 {
		_ = cc.fr.WriteWindowUpdate(0, uint32(o.connWindow-65535))
	}
	if _, err := nc.Write(cc.wbuf.Bytes()); err != nil {
		return nil, err
	}
	cc.wbuf.Reset()
	cc.lastRead = time.Now()
	if o.idleTimeout > 0 {
		cc.idle = time.AfterFunc(o.idleTimeout, cc.closeIfIdle)
	}
	go cc.writeLoop()
	go cc.readLoop()
	if o.pingInterval > 0 {
		go cc.pingLoop()
	}
	return cc, nil
}

// write appends frames under the write lock and has the writer send them
// with whatever else gathered meanwhile.
func (cc *h2cc) write(fn func(fr *http2.Framer)) {
	cc.wmu.Lock()
	fn(cc.fr)
	cc.signalLocked()
	cc.wmu.Unlock()
}

// signalLocked tells the writer that wbuf has frames (under wmu).
func (cc *h2cc) signalLocked() {
	if cc.flushed {
		cc.flushed = false
		select {
		case cc.wake <- struct{}{}:
		default:
		}
	}
}

func (cc *h2cc) writeLoop() {
	for {
		select {
		case <-cc.wake:
		case <-cc.done:
			return
		}
		cc.wmu.Lock()
		cc.wbuf, cc.spare = cc.spare, cc.wbuf
		cc.flushed = true
		last := cc.lastWords
		cc.wmu.Unlock()
		if cc.spare.Len() > 0 {
			_ = cc.nc.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
			_, err := cc.nc.Write(cc.spare.Bytes())
			cc.spare.Reset()
			if cc.spare.Cap() > 256<<10 {
				cc.spare = bytes.Buffer{}
			}
			if err != nil {
				cc.fail(fmt.Errorf("http2: writing to the host: %w", err))
				return
			}
		}
		if last {
			cc.shut()
			return
		}
	}
}

// h2WriteTimeout bounds one write to a host that stopped reading.
const h2WriteTimeout = 30 * time.Second

// fail closes the connection and ends every stream with err.
func (cc *h2cc) fail(err error) {
	cc.abort(err)
	cc.shut()
}

// abort ends every stream with err and takes no more; it reports whether
// the connection was still open.
func (cc *h2cc) abort(err error) bool {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return false
	}
	cc.closed = true
	cc.err = err
	streams := cc.streams
	cc.streams = map[uint32]*h2cs{}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	for _, cs := range streams {
		cs.finish(err)
	}
	return true
}

// shut stops the connection's loops and closes the socket, once.
func (cc *h2cc) shut() {
	cc.shutOnce.Do(func() {
		close(cc.done)
		cc.mu.Lock()
		idle := cc.idle
		cc.mu.Unlock()
		if idle != nil {
			idle.Stop()
		}
		_ = cc.nc.Close()
	})
}

// closeWithGoAway ends the connection with a GOAWAY the host receives
// before the close: streams end with err at once, and the writer closes
// the socket once the GOAWAY is out (or a second later, if the host does
// not read).
func (cc *h2cc) closeWithGoAway(code http2.ErrCode, err error) {
	if !cc.abort(err) {
		return
	}
	cc.wmu.Lock()
	_ = cc.fr.WriteGoAway(0, code, nil)
	cc.lastWords = true
	cc.signalLocked()
	cc.wmu.Unlock()
	time.AfterFunc(time.Second, cc.shut)
}

// Close closes the connection at once.
func (cc *h2cc) Close() { cc.fail(errors.New("http2: connection closed")) }

// Shutdown sends GOAWAY, waits for the open streams (up to ctx), closes.
func (cc *h2cc) Shutdown(ctx context.Context) {
	cc.mu.Lock()
	cc.goAway = true
	cc.mu.Unlock()
	cc.write(func(fr *http2.Framer) { _ = fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
	stop := context.AfterFunc(ctx, func() {
		cc.mu.Lock()
		cc.cond.Broadcast()
		cc.mu.Unlock()
	})
	defer stop()
	cc.mu.Lock()
	for cc.active > 0 && !cc.closed && ctx.Err() == nil {
		cc.cond.Wait()
	}
	cc.mu.Unlock()
	cc.Close()
}

// usable reports a connection that may take new streams.
func (cc *h2cc) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return !cc.closed && !cc.goAway
}

// reserve takes a stream slot if one is free.
func (cc *h2cc) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	limit := cc.maxStreams
	if m := cc.opts.maxStreams; m > 0 && m < limit {
		limit = m
	}
	if cc.closed || cc.goAway || uint32(cc.active) >= limit {
		return false
	}
	cc.active++
	if cc.idle != nil {
		cc.idle.Stop()
	}
	return true
}

// waitSlot takes a stream slot, waiting for one (ctx bounds the wait).
func (cc *h2cc) waitSlot(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		cc.mu.Lock()
		cc.cond.Broadcast()
		cc.mu.Unlock()
	})
	defer stop()
	for !cc.reserve() {
		cc.mu.Lock()
		if cc.closed || cc.goAway {
			cc.mu.Unlock()
			return errH2Refused
		}
		if err := ctx.Err(); err != nil {
			cc.mu.Unlock()
			return err
		}
		cc.cond.Wait()
		cc.mu.Unlock()
	}
	return nil
}

// release gives a slot back.
func (cc *h2cc) release() {
	cc.mu.Lock()
	cc.active--
	if cc.active == 0 && cc.idle != nil && !cc.closed {
		cc.idle.Reset(cc.opts.idleTimeout)
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
}

func (cc *h2cc) closeIfIdle() {
	cc.mu.Lock()
	idle := cc.active == 0 && !cc.closed
	if idle {
		cc.goAway = true
	}
	cc.mu.Unlock()
	if idle {
		cc.closeWithGoAway(http2.ErrCodeNo, errors.New("http2: idle connection closed"))
	}
}

// pingLoop sends a PING when nothing was read for the keepalive interval
// and closes the connection when the answer does not come in time.
func (cc *h2cc) pingLoop() {
	t := time.NewTicker(cc.opts.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-cc.done:
			return
		case <-t.C:
		}
		cc.mu.Lock()
		quiet := time.Since(cc.lastRead)
		cc.mu.Unlock()
		if quiet < cc.opts.pingInterval {
			continue
		}
		cc.write(func(fr *http2.Framer) { _ = fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'}) })
		select {
		case <-cc.done:
			return
		case <-time.After(cc.opts.pingWait):
		}
		cc.mu.Lock()
		dead := !cc.lastRead.After(time.Now().Add(-cc.opts.pingWait))
		cc.mu.Unlock()
		if dead {
			cc.fail(errors.New("http2: keepalive ping not answered"))
			return
		}
	}
}

// readLoop reads the host's frames until the connection ends.
func (cc *h2cc) readLoop() {
	for {
		f, err := cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				cc.resetStream(se.StreamID, se.Code, err)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				cc.closeWithGoAway(http2.ErrCode(ce), fmt.Errorf("http2: the host broke the protocol: %w", err))
				return
			}
			cc.fail(fmt.Errorf("http2: reading from the host: %w", err))
			return
		}
		cc.mu.Lock()
		cc.lastRead = time.Now()
		cc.mu.Unlock()
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			cc.onHeaders(f)
		case *http2.DataFrame:
			cc.onData(f)
		case *http2.RSTStreamFrame:
			err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = errH2Refused
			}
			cc.endStream(f.StreamID, err)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				cc.onSettings(f)
			}
		case *http2.WindowUpdateFrame:
			cc.onWindowUpdate(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				cc.write(func(fr *http2.Framer) { _ = fr.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			cc.onGoAway(f)
		}
	}
}

// maxWindow is the largest flow-control window (RFC 9113 6.9.1).
const maxWindow = 1<<31 - 1

// onWindowUpdate grows a send window. A window past 2^31-1 is the host's
// FLOW_CONTROL_ERROR: the stream's, or the connection's on stream 0.
func (cc *h2cc) onWindowUpdate(f *http2.WindowUpdateFrame) {
	inc := int64(f.Increment)
	cc.mu.Lock()
	var bad *h2cs
	overflow := false
	if f.StreamID == 0 {
		if overflow = int64(cc.sendWindow)+inc > maxWindow; !overflow {
			cc.sendWindow += int32(inc)
		}
	} else if cs := cc.streams[f.StreamID]; cs != nil {
		if int64(cs.sendWindow)+inc > maxWindow {
			bad = cs
		} else {
			cs.sendWindow += int32(inc)
		}
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	switch {
	case overflow:
		cc.closeWithGoAway(http2.ErrCodeFlowControl, errors.New("http2: host grew the connection window past 2^31-1"))
	case bad != nil:
		cc.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("http2: host grew a stream window past 2^31-1"))
	}
}

func (cc *h2cc) onSettings(f *http2.SettingsFrame) {
	// Values out of range (a frame size under 16,384, a window past
	// 2^31-1, ENABLE_PUSH other than 0 or 1) are a connection error; a
	// frame size of 0 would otherwise split header blocks forever.
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		code := http2.ErrCodeProtocol
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			code = http2.ErrCode(ce)
		}
		cc.closeWithGoAway(code, fmt.Errorf("http2: host sent an invalid SETTINGS frame: %w", err))
		return
	}
	table := int64(-1)
	overflow := false
	cc.mu.Lock()
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(cc.peerWindow)
			cc.peerWindow = int32(s.Val)
			for _, cs := range cc.streams {
				if int64(cs.sendWindow)+delta > maxWindow {
					overflow = true
				}
				cs.sendWindow += int32(delta)
			}
		case http2.SettingMaxFrameSize:
			cc.maxFrame = s.Val
		case http2.SettingHeaderTableSize:
			table = int64(s.Val)
		}
		return nil
	})
	first := !cc.seenSettings
	cc.seenSettings = true
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if overflow {
		cc.closeWithGoAway(http2.ErrCodeFlowControl, errors.New("http2: host's INITIAL_WINDOW_SIZE grew a stream window past 2^31-1"))
		return
	}
	if first {
		close(cc.settings)
	}
	// (wmu is never taken under mu: roundTrip holds wmu, then mu.)
	cc.write(func(fr *http2.Framer) {
		if table >= 0 {
			cc.henc.SetMaxDynamicTableSize(uint32(table))
		}
		_ = fr.WriteSettingsAck()
	})
}

func (cc *h2cc) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goAway = true
	cc.lastID = f.LastStreamID
	var refused []*h2cs
	for id, cs := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, cs)
			delete(cc.streams, id)
		}
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	for _, cs := range refused {
		cs.finish(errH2Refused)
	}
}

func (cc *h2cc) onHeaders(f *http2.MetaHeadersFrame) {
	cc.mu.Lock()
	cs := cc.streams[f.StreamID]
	cc.mu.Unlock()
	if cs == nil {
		return
	}
	cs.mu.Lock()
	if !cs.gotHead {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 100 || status > 999 {
			cs.mu.Unlock()
			cc.resetStream(f.StreamID, http2.ErrCodeProtocol, errors.New("http2: response without a valid :status"))
			return
		}
		if status < 200 && !f.StreamEnded() {
			cs.mu.Unlock() // 1xx: the final head follows
			return
		}
		cs.status = status
		cs.fields = f.RegularFields()
		cs.gotHead = true
		close(cs.head)
	} else {
		// Trailers: they end the stream.
		tr := make(http.Header, len(f.RegularFields()))
		for _, hf := range f.RegularFields() {
			k := http.CanonicalHeaderKey(hf.Name)
			tr[k] = append(tr[k], hf.Value)
		}
		cs.trailer = tr
	}
	if f.StreamEnded() {
		cs.eof = true
	}
	cs.notify()
	cs.mu.Unlock()
}

func (cc *h2cc) onData(f *http2.DataFrame) {
	n := int32(f.Length)
	cc.mu.Lock()
	cs := cc.streams[f.StreamID]
	cc.recvUnack += n
	credit := cc.takeConnCredit()
	cc.mu.Unlock()
	if cs == nil {
		if credit > 0 {
			cc.write(func(fr *http2.Framer) { _ = fr.WriteWindowUpdate(0, uint32(credit)) })
		}
		return
	}
	cs.mu.Lock()
	if len(cs.buf)-cs.off+int(n) > int(cc.opts.streamWindow) {
		// More than the window Weft granted: the host ignores flow
		// control, and buffering it would be unbounded.
		cs.mu.Unlock()
		if credit > 0 {
			cc.write(func(fr *http2.Framer) { _ = fr.WriteWindowUpdate(0, uint32(credit)) })
		}
		cc.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("http2: the host sent more than its flow-control window"))
		return
	}
	if data := f.Data(); len(data) > 0 {
		cs.buf = append(cs.buf, data...)
	}
	// Padding counts against the window but is never read: credit it now.
	streamPad := n - int32(len(f.Data()))
	if f.StreamEnded() {
		cs.eof = true
	}
	cs.notify()
	ended := cs.eof
	cs.mu.Unlock()
	if streamPad > 0 || credit > 0 {
		cc.write(func(fr *http2.Framer) {
			if streamPad > 0 && !ended {
				_ = fr.WriteWindowUpdate(f.StreamID, uint32(streamPad))
			}
			if credit > 0 {
				_ = fr.WriteWindowUpdate(0, uint32(credit))
			}
		})
	}
}

// takeConnCredit returns connection-level credit to give back (under mu):
// once half the window was received. Connection credit is returned as
// data arrives; the per-stream windows are what hold a slow stream back.
func (cc *h2cc) takeConnCredit() int32 {
	if cc.recvUnack < cc.opts.connWindow/2 {
		return 0
	}
	c := cc.recvUnack
	cc.recvUnack = 0
	return c
}

// resetStream ends a stream locally and tells the host.
func (cc *h2cc) resetStream(id uint32, code http2.ErrCode, err error) {
	cc.write(func(fr *http2.Framer) { _ = fr.WriteRSTStream(id, code) })
	cc.endStream(id, err)
}

// endStream removes a stream and ends it with err.
func (cc *h2cc) endStream(id uint32, err error) {
	cc.mu.Lock()
	cs := cc.streams[id]
	delete(cc.streams, id)
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if cs != nil {
		cs.finish(err)
	}
}

// h2cs is one stream of an h2cc: a request sent, its response received.
type h2cs struct {
	cc   *h2cc
	id   uint32
	head chan struct{} // closed when the response head (or an error) is in

	mu         sync.Mutex
	status     int
	fields     []hpack.HeaderField
	trailer    http.Header
	buf        []byte // received, not yet read
	off        int
	eof        bool  // END_STREAM received
	err        error // the stream failed
	gotHead    bool
	readWait   chan struct{} // signalled when buf, eof or err change
	unack      int32         // stream bytes read, not yet credited
	sendWindow int32         // guarded by cc.mu
	sentEnd    bool          // our END_STREAM went out (guarded by cc.mu)
	released   bool
}

func (cs *h2cs) notify() {
	select {
	case cs.readWait <- struct{}{}:
	default:
	}
}

// finish ends the stream with err (nil: nothing, the stream is complete).
func (cs *h2cs) finish(err error) {
	cs.mu.Lock()
	if cs.err == nil && err != nil && !(cs.eof && cs.gotHead) {
		cs.err = err
	}
	if !cs.gotHead {
		cs.gotHead = true
		if cs.err == nil {
			cs.err = err
		}
		close(cs.head)
	}
	cs.notify()
	cs.mu.Unlock()
	cs.cc.mu.Lock()
	cs.cc.cond.Broadcast()
	cs.cc.mu.Unlock()
}

// roundTrip sends a request on a reserved slot and waits for the
// response head. The caller owns the returned stream and must close it.
func (cc *h2cc) roundTrip(ctx context.Context, h *http1.RequestHead, body io.Reader, bodyLen int64) (*h2cs, error) {
	cs := &h2cs{cc: cc, head: make(chan struct{}), readWait: make(chan struct{}, 1)}
	hasBody := body != nil && bodyLen != 0
	cc.wmu.Lock()
	cc.mu.Lock()
	if cc.closed || cc.goAway {
		err := cc.err
		cc.mu.Unlock()
		cc.wmu.Unlock()
		cc.release()
		if err == nil || cc.goAway {
			err = errH2Refused
		}
		return nil, err
	}
	cs.id = cc.nextID
	cc.nextID += 2
	cs.sendWindow = cc.peerWindow
	cs.sentEnd = !hasBody
	cc.streams[cs.id] = cs
	maxFrame := cc.maxFrame
	cc.mu.Unlock()
	err := cc.encodeHeaders(h, bodyLen)
	if err == nil {
		block := cc.hbuf.Bytes()
		first := true
		for len(block) > 0 {
			chunk := block
			if uint32(len(chunk)) > maxFrame {
				chunk = chunk[:maxFrame]
			}
			block = block[len(chunk):]
			if first {
				_ = cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: cs.id, BlockFragment: chunk, EndStream: !hasBody, EndHeaders: len(block) == 0})
				first = false
			} else {
				_ = cc.fr.WriteContinuation(cs.id, len(block) == 0, chunk)
			}
		}
		cc.signalLocked()
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.endStream(cs.id, err)
		cs.close()
		return nil, err
	}
	if hasBody {
		go cs.sendBody(ctx, body)
	}
	select {
	case <-cs.head:
	case <-ctx.Done():
		cs.close()
		return nil, ctx.Err()
	}
	cs.mu.Lock()
	err = cs.err
	gotStatus := cs.status != 0
	cs.mu.Unlock()
	if !gotStatus {
		cs.close()
		return nil, err
	}
	// A head arrived: an error after it (a reset mid-body) is the body's
	// to report, after the data that came before it.
	return cs, nil
}

// encodeHeaders HPACK-encodes the request head into cc.hbuf (under wmu).
func (cc *h2cc) encodeHeaders(h *http1.RequestHead, bodyLen int64) error {
	cc.hbuf.Reset()
	e := cc.henc
	path := h.Target
	if path == "" || path == "*" && h.Method != "OPTIONS" {
		return errors.New("http2: request without a path")
	}
	_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: h.Method})
	_ = e.WriteField(hpack.HeaderField{Name: ":scheme", Value: cc.opts.scheme})
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: h.Host()})
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	var err error
	h.Range(func(k, v string) bool {
		lk := lowerASCII(k)
		if hopHeaders[lk] || (lk == "te" && v != "trailers") {
			return true
		}
		if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
			err = fmt.Errorf("http2: invalid value of header %q", k)
			return false
		}
		_ = e.WriteField(hpack.HeaderField{Name: lk, Value: v, Sensitive: uniquePerRequest[lk]})
		return true
	})
	if bodyLen > 0 {
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(bodyLen, 10)})
	}
	if max := cc.opts.maxHeaderList; max > 0 && uint32(cc.hbuf.Len()) > max {
		return errors.New("http2: request header list too large")
	}
	return err
}

// uniquePerRequest names headers whose values differ on every request:
// they are sent as literals never indexed, since in the HPACK dynamic
// table they would only evict what repeats (the table churn was a tenth of
// the proxy's CPU on gRPC calls carrying x-request-id and grpc-timeout).
var uniquePerRequest = map[string]bool{
	"x-request-id": true, "grpc-timeout": true, "traceparent": true, "tracestate": true,
	"x-b3-traceid": true, "x-b3-spanid": true, "x-b3-parentspanid": true, "b3": true,
	"sw8": true, "tri-req-id": true, "x-client-trace-id": true,
}

// lowerASCII lower-cases an ASCII header name, copying only when needed.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// sendBufs are the request-body read buffers (one frame each).
var sendBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// sendBody streams the request body as DATA frames within the host's
// flow-control windows.
func (cs *h2cs) sendBody(ctx context.Context, body io.Reader) {
	cc := cs.cc
	select {
	case <-cc.settings:
	case <-cc.done:
		return
	case <-ctx.Done():
		return
	}
	bp := sendBufs.Get().(*[]byte)
	defer sendBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		eof := rerr == io.EOF
		if rerr != nil && !eof {
			cc.resetStream(cs.id, http2.ErrCodeCancel, fmt.Errorf("http2: reading the request body: %w", rerr))
			return
		}
		data := buf[:n]
		for len(data) > 0 || eof {
			cc.mu.Lock()
			for len(data) > 0 && (cs.sendWindow <= 0 || cc.sendWindow <= 0) && !cc.closed && cc.streams[cs.id] == cs && ctx.Err() == nil {
				cc.cond.Wait()
			}
			if cc.closed || cc.streams[cs.id] != cs || ctx.Err() != nil {
				cc.mu.Unlock()
				return
			}
			// A bare END_STREAM (no data left) needs no credit; the
			// windows may even be negative after the host lowered
			// INITIAL_WINDOW_SIZE.
			m := int32(0)
			if len(data) > 0 {
				m = min(int32(len(data)), cs.sendWindow, cc.sendWindow, int32(cc.maxFrame))
			}
			cs.sendWindow -= m
			cc.sendWindow -= m
			end := eof && int(m) == len(data)
			if end {
				cs.sentEnd = true
			}
			cc.mu.Unlock()
			chunk := data[:m]
			cc.write(func(fr *http2.Framer) { _ = fr.WriteData(cs.id, end, chunk) })
			data = data[m:]
			if end {
				return
			}
		}
	}
}

// Read reads the response body; read bytes are credited back to the host.
func (cs *h2cs) Read(p []byte) (int, error) {
	for {
		cs.mu.Lock()
		if cs.off < len(cs.buf) {
			n := copy(p, cs.buf[cs.off:])
			cs.off += n
			if cs.off == len(cs.buf) {
				cs.buf, cs.off = cs.buf[:0], 0
			}
			cs.unack += int32(n)
			credit := int32(0)
			if !cs.eof && cs.unack >= cs.cc.opts.streamWindow/2 {
				credit, cs.unack = cs.unack, 0
			}
			cs.mu.Unlock()
			if credit > 0 {
				id := cs.id
				cs.cc.write(func(fr *http2.Framer) { _ = fr.WriteWindowUpdate(id, uint32(credit)) })
			}
			return n, nil
		}
		if cs.err != nil {
			err := cs.err
			cs.mu.Unlock()
			return 0, err
		}
		if cs.eof {
			cs.mu.Unlock()
			return 0, io.EOF
		}
		cs.mu.Unlock()
		select {
		case <-cs.readWait:
		case <-cs.cc.done:
		}
	}
}

// pending reports whether a Read would return at once: data is buffered
// or the stream already ended.
func (cs *h2cs) pending() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.off < len(cs.buf) || cs.eof || cs.err != nil
}

// close releases the stream: one that did not complete both ways is reset
// (RST_STREAM CANCEL) so the host stops.
func (cs *h2cs) close() {
	cc := cs.cc
	cs.mu.Lock()
	if cs.released {
		cs.mu.Unlock()
		return
	}
	cs.released = true
	complete := cs.eof && cs.err == nil
	cs.mu.Unlock()
	cc.mu.Lock()
	open := cc.streams[cs.id] == cs
	if open {
		delete(cc.streams, cs.id)
	}
	cc.mu.Unlock()
	if open && !cc.isClosed() && !(complete && cs.sentEndLocked()) {
		cc.write(func(fr *http2.Framer) { _ = fr.WriteRSTStream(cs.id, http2.ErrCodeCancel) })
	}
	cs.finish(errors.New("http2: stream closed"))
	cc.release()
}

func (cs *h2cs) sentEndLocked() bool {
	cs.cc.mu.Lock()
	defer cs.cc.mu.Unlock()
	return cs.sentEnd
}

func (cc *h2cc) isClosed() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.closed
}
