package bolt

// A tiny Bolt client and server written from the protocol spec, driving the
// codec over real loopback TCP the way SOFA peers use it: pipelined requests
// matched to responses by id, one-way requests, heartbeats, and errors for
// unknown services.

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
)

// echoService is the one service the test server knows.
const echoService = "com.example.EchoService:1.0"

// echoInterface is the interface part of echoService, its ":authority".
const echoInterface = "com.example.EchoService"

// peerTimeout bounds every blocking step of the peers.
const peerTimeout = 5 * time.Second

// boltServer answers heartbeats, echoes requests for echoService (content
// and headers back, class name SofaResponse), records one-way requests, and
// answers requests for any other service with ErrorReply(404).
type boltServer struct {
	ln     net.Listener
	codec  *Codec
	oneway chan *Frame
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startServer(t *testing.T) *boltServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &boltServer{ln: ln, codec: &Codec{}, oneway: make(chan *Frame, 16), conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(peerTimeout):
			t.Error("server goroutines did not exit")
		}
	})
	return s
}

func (s *boltServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve is a connection's read loop: one reused request frame, one reused
// response frame, one reused output buffer.
func (s *boltServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	rd := newFrameReader(c)
	var req, resp Frame
	var out []byte
	for {
		if err := c.SetDeadline(time.Now().Add(peerTimeout)); err != nil {
			return
		}
		if err := rd.next(&req); err != nil {
			return
		}
		var reply api.Frame
		switch req.Kind() {
		case api.KindHeartbeat:
			reply = s.codec.HeartbeatReply(&req)
		case api.KindOneway:
			s.oneway <- req.Clone()
			continue
		case api.KindRequest:
			// A SOFA server dispatches on the whole unique name.
			svc, ok := req.Headers().Get(KeyTargetService)
			if !ok {
				svc, _ = req.Headers().Get(KeyService)
			}
			if iface, _ := req.Headers().Get(":authority"); svc != echoService || iface != echoInterface {
				reply = s.codec.ErrorReply(&req, 404, "no service "+svc)
				break
			}
			resp.Reset()
			resp.Proto, resp.Ver1, resp.Switch = req.Proto, req.Ver1, req.Switch
			resp.Type, resp.CmdCode, resp.Ver2 = TypeResponse, CmdResponse, 1
			resp.ID, resp.Codec, resp.RespStatus = req.ID, req.Codec, StatusSuccess
			resp.ClassName = sofaResponse
			req.Header.Range(func(k, v string) bool {
				resp.Header.Set(k, v)
				return true
			})
			resp.Content = req.Content
			reply = &resp
		default:
			return // a client sends no responses
		}
		var err error
		if out, err = s.codec.Encode(out[:0], reply); err != nil {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// boltClient pipelines requests on one connection; responses come back in
// any order and are matched by id.
type boltClient struct {
	conn   net.Conn
	codec  *Codec
	rd     *frameReader
	nextID uint32
	out    []byte
}

func dial(t *testing.T, s *boltServer) *boltClient {
	t.Helper()
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(peerTimeout)); err != nil {
		t.Fatal(err)
	}
	return &boltClient{conn: c, codec: &Codec{}, rd: newFrameReader(c)}
}

// send assigns f the next id and writes it, byte by byte when slow is set
// (so the server decodes from every possible split).
func (c *boltClient) send(f *Frame, slow bool) (uint32, error) {
	c.nextID++
	f.SetRequestID(uint64(c.nextID))
	var err error
	if c.out, err = c.codec.Encode(c.out[:0], f); err != nil {
		return 0, err
	}
	if !slow {
		_, err = c.conn.Write(c.out)
		return c.nextID, err
	}
	for i := range c.out {
		if _, err := c.conn.Write(c.out[i : i+1]); err != nil {
			return 0, err
		}
	}
	return c.nextID, nil
}

// recv reads responses until it has one for each id in want.
func (c *boltClient) recv(want ...uint32) (map[uint32]*Frame, error) {
	got := map[uint32]*Frame{}
	var f Frame
	for len(got) < len(want) {
		if err := c.rd.next(&f); err != nil {
			return nil, err
		}
		if f.Type != TypeResponse {
			return nil, errors.New("server sent a request")
		}
		got[f.ID] = f.Clone()
	}
	for _, id := range want {
		if got[id] == nil {
			return nil, errors.New("missing response")
		}
	}
	return got, nil
}

func request(service, method string, content string, proto byte) *Frame {
	f := &Frame{Proto: proto, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, Codec: CodecHessian2, TimeoutMs: 3000,
		ClassName: sofaRequest, Content: []byte(content)}
	if proto == ProtoV2 {
		f.Ver1, f.Switch = 2, SwitchCRC
	}
	f.Headers().Set(KeyService, service)
	f.Headers().Set(":path", method)
	f.Headers().Set("rpc_trace_context.sofaTraceId", "0a0fe8ad1700")
	return f
}

func TestClientServer(t *testing.T) {
	s := startServer(t)
	c := dial(t, s)

	hb := c.codec.Heartbeat(0).(*Frame)
	idHB, err := c.send(hb, false)
	if err != nil {
		t.Fatal(err)
	}
	idEcho, err := c.send(request(echoService, "echo", "hello", ProtoV1), false)
	if err != nil {
		t.Fatal(err)
	}
	idV2, err := c.send(request(echoService, "echo", "crc protected", ProtoV2), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.send(&Frame{Proto: ProtoV1, Type: TypeOneway, CmdCode: CmdRequest, Ver2: 1, Codec: CodecProtobuf, TimeoutMs: -1,
		Header: withHeader("service", echoService), Content: []byte("fire")}, false); err != nil {
		t.Fatal(err)
	}
	idMissing, err := c.send(request("com.example.Missing:1.0", "x", "", ProtoV1), true)
	if err != nil {
		t.Fatal(err)
	}

	got, err := c.recv(idHB, idEcho, idV2, idMissing)
	if err != nil {
		t.Fatal(err)
	}
	if r := got[idHB]; r.Kind() != api.KindHeartbeatReply || r.Status() != 0 {
		t.Errorf("heartbeat reply: kind %d status %d", r.Kind(), r.Status())
	}
	for _, tc := range []struct {
		id      uint32
		proto   byte
		content string
	}{{idEcho, ProtoV1, "hello"}, {idV2, ProtoV2, "crc protected"}} {
		r := got[tc.id]
		if r.Kind() != api.KindResponse || r.Status() != int(StatusSuccess) || r.Proto != tc.proto || string(r.Content) != tc.content {
			t.Errorf("echo %d: kind %d status %d proto %d content %q", tc.id, r.Kind(), r.Status(), r.Proto, r.Content)
		}
		if m, _ := r.Headers().Get(":path"); m != "echo" {
			t.Errorf("echo %d: :path = %q", tc.id, m)
		}
		if v, _ := r.Headers().Get("version"); v != "1.0" {
			t.Errorf("echo %d: version = %q", tc.id, v)
		}
	}
	wantMsg := string(appendHessianString(nil, "no service com.example.Missing:1.0", maxErrorChars))
	if r := got[idMissing]; r.Status() != int(StatusNoProcessor) || string(r.ClassName) != ErrorClassName || string(r.Content) != wantMsg {
		t.Errorf("missing service: status %d class %q content %q", r.Status(), r.ClassName, r.Content)
	}
	select {
	case ow := <-s.oneway:
		if ow.Kind() != api.KindOneway || string(ow.Content) != "fire" || ow.Codec != CodecProtobuf {
			t.Errorf("one-way: kind %d content %q", ow.Kind(), ow.Content)
		}
	case <-time.After(peerTimeout):
		t.Fatal("one-way request not received")
	}
}

// TestServerRejectsGarbage checks that a peer sending garbage after a valid
// frame gets its answer and then the connection closed, not a hang.
func TestServerRejectsGarbage(t *testing.T) {
	s := startServer(t)
	c := dial(t, s)
	id, err := c.send(c.codec.Heartbeat(0).(*Frame), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write([]byte{1, 1, 0, 9}); err != nil { // unknown command code
		t.Fatal(err)
	}
	if _, err := c.recv(id); err != nil {
		t.Fatal(err)
	}
	var f Frame
	err = c.rd.next(&f)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("after garbage: %v, want the server to close the connection", err)
	}
}
