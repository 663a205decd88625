package bolt

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
)

var (
	sofaRequest  = []byte("com.alipay.sofa.rpc.core.request.SofaRequest")
	sofaResponse = []byte("com.alipay.sofa.rpc.core.response.SofaResponse")
	bodyBytes    = []byte("@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_")
	respBytes    = []byte("`abcdefghijklmno")
)

// withHeader returns a Header holding kv pairs in order.
func withHeader(kv ...string) Header {
	var h Header
	for i := 0; i < len(kv); i += 2 {
		h.fields = append(h.fields, field{kv[i], kv[i+1]})
	}
	return h
}

var helloRoute = []string{
	"service", "com.alipay.test.HelloService:1.0",
	"sofa_head_target_service", "com.alipay.test.HelloService:1.0",
	"sofa_head_method_name", "sayHello",
	"sofa_head_target_app", "demo",
	"rpc_trace_context.sofaTraceId", "0a0fe8ad170000000000100112345",
}

// vectorCases are the frames the testdata vectors encode, built here from
// the field values their comments name.
func vectorCases() []struct {
	file string
	want *Frame
	kind api.FrameKind
} {
	return []struct {
		file string
		want *Frame
		kind api.FrameKind
	}{
		{"v1_heartbeat.hex", &Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdHeartbeat, Ver2: 1, ID: 1, Codec: 1, TimeoutMs: -1}, api.KindHeartbeat},
		{"v1_heartbeat_reply.hex", &Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdHeartbeat, Ver2: 1, ID: 1, Codec: 1}, api.KindHeartbeatReply},
		{"v1_request.hex", &Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 7, Codec: 1, TimeoutMs: 3000,
			ClassName: sofaRequest, Header: withHeader(helloRoute...), Content: bodyBytes}, api.KindRequest},
		{"v1_oneway.hex", &Frame{Proto: 1, Type: TypeOneway, CmdCode: CmdRequest, Ver2: 1, ID: 8, Codec: 11, TimeoutMs: -1,
			ClassName: sofaRequest, Header: withHeader("service", "com.alipay.test.LogService:2.0:blue", "sofa_head_method_name", "log"),
			Content: []byte("\x0a\x01a")}, api.KindOneway},
		{"v1_response.hex", &Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 7, Codec: 1,
			ClassName: sofaResponse, Header: withHeader("rpc_resp_baggage", ""), Content: respBytes}, api.KindResponse},
		{"v1_response_no_processor.hex", &Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 7, Codec: 1,
			RespStatus: StatusNoProcessor, ClassName: []byte("java.lang.String"), Content: []byte("\x08no route")}, api.KindResponse},
		{"v2_request_crc.hex", &Frame{Proto: 2, Ver1: 2, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 9, Codec: 1, Switch: SwitchCRC,
			TimeoutMs: 1000, ClassName: sofaRequest, Header: withHeader(helloRoute[:6]...), Content: bodyBytes}, api.KindRequest},
		{"v2_request_ver1.hex", &Frame{Proto: 2, Ver1: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 10, Codec: 11, Switch: SwitchCRC,
			TimeoutMs: 500, ClassName: sofaRequest, Header: withHeader(helloRoute[:2]...), Content: []byte("\x0a\x01b")}, api.KindRequest},
		{"v2_response_crc.hex", &Frame{Proto: 2, Ver1: 2, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 9, Codec: 1, Switch: SwitchCRC,
			ClassName: sofaResponse, Content: respBytes}, api.KindResponse},
		{"v2_heartbeat.hex", &Frame{Proto: 2, Ver1: 2, Type: TypeRequest, CmdCode: CmdHeartbeat, Ver2: 1, ID: 11, Codec: 1, Switch: SwitchCRC, TimeoutMs: -1}, api.KindHeartbeat},
		{"v2_heartbeat_reply.hex", &Frame{Proto: 2, Ver1: 2, Type: TypeResponse, CmdCode: CmdHeartbeat, Ver2: 1, ID: 11, Codec: 1, Switch: SwitchCRC}, api.KindHeartbeatReply},
		{"v1_response_pb.hex", &Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 132, Codec: CodecProtobuf,
			ClassName: sofaResponse, Content: []byte("\x0a\x01a")}, api.KindResponse},
		{"v1_request_pb16.hex", &Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 109, Codec: CodecProtobuf, TimeoutMs: 100,
			ClassName: sofaRequest, Header: withHeader(
				"sofa_head_target_service", "com.weftmesh.demo.OrderService:1.0",
				"rpc_trace_context.sofaRpcId", "0",
				"rpc_trace_context.zproxyTimeout", "100",
				"rpc_trace_context.sofaTraceId", "7f0000011732000000001000142",
				"rpc_trace_context.sofaCallerIdc", "dev",
				"rpc_trace_context.sofaCallerIp", "127.0.0.1",
				"rpc_trace_context.sofaPenAttrs", "",
				"rpc_trace_context.zproxyUID", "",
				"rpc_trace_context.sofaCallerZone", "GZ00A",
				"sofa_head_target_app", "orders",
				"service", "com.weftmesh.demo.OrderService:1.0",
				"rpc_trace_context.Elastic", "F",
				"rpc_trace_context.sysPenAttrs", "",
				"rpc_trace_context.zproxyTargetZone", "",
				"rpc_trace_context.sofaCallerApp", "frontend",
				"sofa_head_method_name", "create",
			), Content: []byte("\x0a\x01a")}, api.KindRequest},
	}
}

// TestVectors decodes every vector into the frame its comments describe,
// encodes that frame back to the same bytes, and checks that every proper
// prefix is ErrNeedMore.
func TestVectors(t *testing.T) {
	cases := vectorCases()
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			b := vector(t, tc.file)
			var f Frame
			n, err := Decode(&f, b, Limits{})
			if err != nil || n != len(b) {
				t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(b))
			}
			if d := sameFrame(&f, tc.want); d != "" {
				t.Fatalf("decoded %s differs: got %+v, want %+v", d, f, *tc.want)
			}
			if f.Kind() != tc.kind {
				t.Errorf("Kind = %d, want %d", f.Kind(), tc.kind)
			}
			for _, fr := range []*Frame{&f, tc.want} {
				out, err := Encode(nil, fr)
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("Encode = %x, %v\nwant     %x", out, err, b)
				}
				if Size(fr) != len(b) {
					t.Errorf("Size = %d, want %d", Size(fr), len(b))
				}
			}
			checkPrefixes(t, b)
		})
	}
	for _, name := range vectorNames(t) {
		if !covered[name] {
			t.Errorf("vector %s has no test case", name)
		}
	}
}

// checkPrefixes checks that every proper prefix of the valid frame b is
// ErrNeedMore, that b followed by more bytes decodes to len(b), and that
// Decode is the same through the Codec.
func checkPrefixes(t *testing.T, b []byte) {
	t.Helper()
	var f Frame
	for i := 0; i < len(b); i++ {
		if n, err := Decode(&f, b[:i], Limits{}); err != api.ErrNeedMore {
			t.Fatalf("prefix %d/%d: Decode = %d, %v; want ErrNeedMore", i, len(b), n, err)
		}
	}
	two := append(append([]byte(nil), b...), b...)
	if n, err := Decode(&f, two, Limits{}); n != len(b) || err != nil {
		t.Fatalf("frame + next: Decode = %d, %v; want %d", n, err, len(b))
	}
	var c Codec
	g := c.NewFrame()
	if n, err := c.Decode(g, b); n != len(b) || err != nil {
		t.Fatalf("Codec.Decode = %d, %v", n, err)
	}
	if d := sameFrame(&f, g.(*Frame)); d != "" {
		t.Fatalf("Codec.Decode differs in %s", d)
	}
}

// TestRoundTrip encodes frames of every kind in both protocol versions,
// decodes them back, and checks the fields and the incremental decode.
func TestRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 70000) // past keepBufCap
	cases := []struct {
		name string
		f    Frame
	}{
		{"v1 request", Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 1, Codec: CodecHessian2, TimeoutMs: 3000,
			ClassName: sofaRequest, Header: withHeader(helloRoute...), Content: bodyBytes}},
		{"v1 request no header", Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 0xffffffff, Codec: CodecJava, TimeoutMs: -1,
			ClassName: sofaRequest, Content: bodyBytes}},
		{"v1 request empty", Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 2, Codec: CodecJSON}},
		{"v1 oneway", Frame{Proto: 1, Type: TypeOneway, CmdCode: CmdRequest, Ver2: 1, ID: 3, Codec: CodecProtobuf, TimeoutMs: 0,
			Header: withHeader("service", "a.B:1.0", "k", ""), Content: []byte{0}}},
		{"v1 response", Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 4, Codec: CodecHessian2,
			ClassName: sofaResponse, Content: respBytes}},
		{"v1 response error", Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 5, Codec: CodecHessian2,
			RespStatus: StatusServerDeserialException, Header: withHeader("sofa_head_response_error", "true")}},
		{"v1 heartbeat", Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdHeartbeat, Ver2: 1, ID: 6, Codec: CodecHessian2, TimeoutMs: -1}},
		{"v1 heartbeat reply", Frame{Proto: 1, Type: TypeResponse, CmdCode: CmdHeartbeat, Ver2: 1, ID: 6, Codec: CodecHessian2}},
		{"v1 large content", Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 7, Codec: CodecHessian2, Content: long}},
		{"v2 request crc", Frame{Proto: 2, Ver1: 2, Switch: SwitchCRC, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 8, Codec: CodecHessian2,
			TimeoutMs: 1, ClassName: sofaRequest, Header: withHeader(helloRoute...), Content: bodyBytes}},
		{"v2 request no crc", Frame{Proto: 2, Ver1: 2, Switch: 0, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 9, Codec: CodecMsgpack,
			TimeoutMs: 1, Content: bodyBytes}},
		{"v2 ver1 request other switch bits", Frame{Proto: 2, Ver1: 1, Switch: 0xfe, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 10, Codec: CodecHessian2Legacy}},
		{"v2 oneway crc", Frame{Proto: 2, Ver1: 2, Switch: 0xff, Type: TypeOneway, CmdCode: CmdRequest, Ver2: 1, ID: 11, Codec: CodecHessian2,
			Header: withHeader("a", "b"), Content: bodyBytes}},
		{"v2 response crc", Frame{Proto: 2, Ver1: 2, Switch: SwitchCRC, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 12, Codec: CodecHessian2,
			RespStatus: StatusTimeout, ClassName: sofaResponse, Content: respBytes}},
		{"v2 response", Frame{Proto: 2, Ver1: 1, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 13, Codec: CodecHessian2}},
		{"v2 heartbeat", Frame{Proto: 2, Ver1: 2, Switch: SwitchCRC, Type: TypeRequest, CmdCode: CmdHeartbeat, Ver2: 1, ID: 14, Codec: CodecHessian2, TimeoutMs: -1}},
		{"v2 heartbeat reply", Frame{Proto: 2, Ver1: 1, Type: TypeResponse, CmdCode: CmdHeartbeat, Ver2: 1, ID: 14, Codec: CodecHessian2}},
		{"v2 large crc", Frame{Proto: 2, Ver1: 2, Switch: SwitchCRC, Type: TypeResponse, CmdCode: CmdResponse, Ver2: 1, ID: 15, Codec: CodecHessian2, Content: long}},
	}
	var dec Frame // reused across cases, as a connection does
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode([]byte("prefix"), &tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:6]) != "prefix" {
				t.Fatal("Encode did not append")
			}
			b = b[6:]
			if len(b) != Size(&tc.f) {
				t.Errorf("len = %d, Size = %d", len(b), Size(&tc.f))
			}
			n, err := Decode(&dec, b, Limits{})
			if err != nil || n != len(b) {
				t.Fatalf("Decode = %d, %v; want %d", n, err, len(b))
			}
			if d := sameFrame(&dec, &tc.f); d != "" {
				t.Fatalf("round trip changed %s", d)
			}
			if dec.Kind() == 0 {
				t.Fatal("Kind = 0")
			}
			if len(b) < 1000 {
				checkPrefixes(t, b)
			}
		})
	}
}

func TestFrameAccessors(t *testing.T) {
	cases := []struct {
		name    string
		f       Frame
		kind    api.FrameKind
		timeout time.Duration
		status  int
	}{
		{"request", Frame{Type: TypeRequest, CmdCode: CmdRequest, TimeoutMs: 3000}, api.KindRequest, 3 * time.Second, 0},
		{"request no timeout", Frame{Type: TypeRequest, CmdCode: CmdRequest, TimeoutMs: -1}, api.KindRequest, 0, 0},
		{"request zero timeout", Frame{Type: TypeRequest, CmdCode: CmdRequest}, api.KindRequest, 0, 0},
		{"oneway", Frame{Type: TypeOneway, CmdCode: CmdRequest, TimeoutMs: 5}, api.KindOneway, 5 * time.Millisecond, 0},
		{"heartbeat", Frame{Type: TypeRequest, CmdCode: CmdHeartbeat, TimeoutMs: -1}, api.KindHeartbeat, 0, 0},
		{"response", Frame{Type: TypeResponse, CmdCode: CmdResponse, RespStatus: StatusTimeout, TimeoutMs: 9}, api.KindResponse, 0, 7},
		{"heartbeat reply", Frame{Type: TypeResponse, CmdCode: CmdHeartbeat}, api.KindHeartbeatReply, 0, 0},
		{"oneway heartbeat", Frame{Type: TypeOneway, CmdCode: CmdHeartbeat}, 0, 0, 0},
		{"response with request code", Frame{Type: TypeResponse, CmdCode: CmdRequest}, 0, 0, 0},
		{"request with response code", Frame{Type: TypeRequest, CmdCode: CmdResponse}, 0, 0, 0},
		{"unknown type", Frame{Type: 3, CmdCode: CmdRequest}, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if k := tc.f.Kind(); k != tc.kind {
				t.Errorf("Kind = %d, want %d", k, tc.kind)
			}
			if d := tc.f.Timeout(); d != tc.timeout {
				t.Errorf("Timeout = %v, want %v", d, tc.timeout)
			}
			if s := tc.f.Status(); s != tc.status {
				t.Errorf("Status = %d, want %d", s, tc.status)
			}
		})
	}
	var f Frame
	f.SetRequestID(1<<32 | 42)
	if f.ID != 42 || f.RequestID() != 42 {
		t.Errorf("SetRequestID(1<<32|42): ID %d, RequestID %d", f.ID, f.RequestID())
	}
}

// head builds a fixed head with the given lengths for error cases.
func head(proto, ver1, typ byte, cmd uint16, codec byte, field uint32, classLen, headerLen uint16, contentLen uint32) []byte {
	b := []byte{proto}
	if proto == 2 {
		b = append(b, ver1)
	}
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, cmd)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, 77)
	b = append(b, codec)
	if proto == 2 {
		b = append(b, 0)
	}
	if typ == TypeResponse {
		b = binary.BigEndian.AppendUint16(b, uint16(field))
	} else {
		b = binary.BigEndian.AppendUint32(b, field)
	}
	b = binary.BigEndian.AppendUint16(b, classLen)
	b = binary.BigEndian.AppendUint16(b, headerLen)
	return binary.BigEndian.AppendUint32(b, contentLen)
}

// reqWithHeader returns a v1 request whose header map is raw.
func reqWithHeader(raw []byte) []byte {
	b := head(1, 0, TypeRequest, CmdRequest, 1, 0xffffffff, 0, uint16(len(raw)), 0)
	return append(b, raw...)
}

// kv encodes header map items: each string is one length-prefixed item.
func kv(items ...string) []byte {
	var b []byte
	for _, s := range items {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	valid := vector(t, "v1_request.hex")
	validV2 := vector(t, "v2_request_crc.hex")
	badCRC := bytes.Clone(validV2)
	badCRC[len(badCRC)-1] ^= 1
	flipped := bytes.Clone(validV2)
	flipped[40] ^= 0x20 // a class name byte: the CRC no longer matches
	small := Limits{MaxClassName: 10, MaxHeader: 20, MaxContent: 30, MaxHeaderEntries: 2}
	cases := []struct {
		name  string
		b     []byte
		lim   Limits
		class string
		field string // a word the error must name
	}{
		{"proto 0", []byte{0}, Limits{}, "malformed", "protocol code"},
		{"proto 3", []byte{3, 1, 1}, Limits{}, "malformed", "protocol code"},
		{"http", []byte("GET / HTTP/1.1\r\n"), Limits{}, "malformed", "protocol code"},
		{"dubbo", []byte{0xda, 0xbb, 0xc2, 0}, Limits{}, "malformed", "protocol code"},
		{"v2 ver1 0", []byte{2, 0}, Limits{}, "malformed", "ver1"},
		{"v2 ver1 3", []byte{2, 3, 1}, Limits{}, "malformed", "ver1"},
		{"type 3", []byte{1, 3}, Limits{}, "malformed", "command type"},
		{"v2 type 9", []byte{2, 2, 9}, Limits{}, "malformed", "command type"},
		{"cmdcode 3 early", []byte{1, 1, 0, 3}, Limits{}, "malformed", "command code"},
		{"oneway heartbeat", head(1, 0, TypeOneway, CmdHeartbeat, 1, 0, 0, 0, 0), Limits{}, "malformed", "command code"},
		{"response with request code", head(1, 0, TypeResponse, CmdRequest, 1, 0, 0, 0, 0), Limits{}, "malformed", "command code"},
		{"request with response code", head(2, 1, TypeRequest, CmdResponse, 1, 0, 0, 0, 0), Limits{}, "malformed", "command code"},
		{"codec 0 early", head(1, 0, TypeRequest, CmdRequest, 0, 0, 0, 0, 0)[:10], Limits{}, "malformed", "codec"},
		{"codec 3", head(1, 0, TypeRequest, CmdRequest, 3, 0, 0, 0, 0), Limits{}, "malformed", "codec"},
		{"v2 codec 255", head(2, 2, TypeResponse, CmdResponse, 255, 0, 0, 0, 0), Limits{}, "malformed", "codec"},
		{"status 0x000a early", head(1, 0, TypeResponse, CmdResponse, 1, 0x000a, 0, 0, 0)[:12], Limits{}, "malformed", "status"},
		{"status 0x0013", head(1, 0, TypeResponse, CmdResponse, 1, 0x0013, 0, 0, 0), Limits{}, "malformed", "status"},
		{"status 0xffff v2", head(2, 1, TypeResponse, CmdHeartbeat, 1, 0xffff, 0, 0, 0), Limits{}, "malformed", "status"},
		{"class length negative", head(1, 0, TypeRequest, CmdRequest, 1, 0, 0x8000, 0, 0), Limits{}, "malformed", "class name length"},
		{"header length negative", head(1, 0, TypeResponse, CmdResponse, 1, 0, 0, 0xffff, 0), Limits{}, "malformed", "header length"},
		{"content length negative", head(2, 2, TypeRequest, CmdRequest, 1, 0, 0, 0, 0x80000000), Limits{}, "malformed", "content length"},
		{"content 2 GB fails fast", head(1, 0, TypeRequest, CmdRequest, 1, 0, 0, 0, 0x7fffffff), Limits{}, "too large", "content length"},
		{"class over limit", head(1, 0, TypeRequest, CmdRequest, 1, 0, 11, 0, 0), small, "too large", "class name length"},
		{"class over default", head(1, 0, TypeRequest, CmdRequest, 1, 0, 1025, 0, 0), Limits{}, "too large", "class name length"},
		{"header over limit", head(1, 0, TypeRequest, CmdRequest, 1, 0, 0, 21, 0), small, "too large", "header length"},
		{"content over limit", head(2, 1, TypeResponse, CmdResponse, 1, 0, 0, 0, 31), small, "too large", "content length"},
		{"content over default", head(1, 0, TypeResponse, CmdResponse, 1, 0, 0, 0, 16<<20+1), Limits{}, "too large", "content length"},
		{"header entry truncated", reqWithHeader([]byte{0, 0, 0}), Limits{}, "malformed", "truncated"},
		{"header value missing", reqWithHeader(kv("k")), Limits{}, "malformed", "truncated"},
		{"header key negative", reqWithHeader([]byte{0xff, 0xff, 0xff, 0xff}), Limits{}, "malformed", "key length negative"},
		{"header value negative", reqWithHeader(append(kv("k"), 0xff, 0xff, 0xff, 0xff)), Limits{}, "malformed", "value length negative"},
		{"header key overruns", reqWithHeader([]byte{0, 0, 0, 5, 'a', 'b'}), Limits{}, "malformed", "key overruns"},
		{"header key overruns 2 GB", reqWithHeader([]byte{0x7f, 0xff, 0xff, 0xff, 'a'}), Limits{}, "malformed", "key overruns"},
		{"header value overruns", reqWithHeader(append(kv("k"), 0, 0, 0, 9, 'v')), Limits{}, "malformed", "value overruns"},
		{"header pseudo key", reqWithHeader(kv(":authority", "x")), Limits{}, "malformed", "':'"},
		{"header duplicate", reqWithHeader(kv("a", "1", "b", "2", "a", "3")), Limits{}, "malformed", "duplicate"},
		{"header duplicate case", reqWithHeader(kv("Trace", "1", "trace", "2")), Limits{}, "malformed", "duplicate"},
		{"header entries over limit", reqWithHeader(kv("a", "", "b", "", "c", "")), Limits{MaxHeaderEntries: 2}, "too large", "entries"},
		{"service disagrees", reqWithHeader(kv("service", "a.B:1.0", "sofa_head_target_service", "a.C:1.0")), Limits{}, "malformed", "disagree"},
		{"bad crc trailer", badCRC, Limits{}, "malformed", "CRC32"},
		{"bad crc body", flipped, Limits{}, "malformed", "CRC32"},
		{"valid v1", valid, Limits{}, "ok", ""},
		{"valid v2", validV2, Limits{}, "ok", ""},
		{"truncated v1", valid[:len(valid)-1], Limits{}, "need more", ""},
		{"truncated v2 crc", validV2[:len(validV2)-1], Limits{}, "need more", ""},
		{"empty", nil, Limits{}, "need more", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f Frame
			n, err := Decode(&f, tc.b, tc.lim)
			if c := errClass(err); c != tc.class {
				t.Fatalf("Decode = %d, %v; want %s", n, err, tc.class)
			}
			if err != nil && n != 0 {
				t.Errorf("n = %d with error", n)
			}
			if tc.field != "" && !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	ok := Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, Codec: 1}
	cases := []struct {
		name  string
		edit  func(*Frame)
		class string
	}{
		{"ok", func(*Frame) {}, "ok"},
		{"zero frame", func(f *Frame) { *f = Frame{} }, "malformed"},
		{"proto 3", func(f *Frame) { f.Proto = 3 }, "malformed"},
		{"v2 ver1 0", func(f *Frame) { f.Proto = 2 }, "malformed"},
		{"v2 ver1 3", func(f *Frame) { f.Proto, f.Ver1 = 2, 3 }, "malformed"},
		{"oneway heartbeat", func(f *Frame) { f.Type, f.CmdCode = TypeOneway, CmdHeartbeat }, "malformed"},
		{"cmd 7", func(f *Frame) { f.CmdCode = 7 }, "malformed"},
		{"codec 0", func(f *Frame) { f.Codec = 0 }, "malformed"},
		{"status 0x000b", func(f *Frame) { f.Type, f.CmdCode, f.RespStatus = TypeResponse, CmdResponse, 0x000b }, "malformed"},
		{"class 32767", func(f *Frame) { f.ClassName = make([]byte, MaxWireLen16) }, "ok"},
		{"class 32768", func(f *Frame) { f.ClassName = make([]byte, MaxWireLen16+1) }, "too large"},
		{"header 32767", func(f *Frame) { f.Header.Set("k", strings.Repeat("v", MaxWireLen16-9)) }, "ok"},
		{"header 32768", func(f *Frame) { f.Header.Set("k", strings.Repeat("v", MaxWireLen16-8)) }, "too large"},
		{"services disagree", func(f *Frame) {
			f.Header.Set(KeyService, "a.B:1.0")
			f.Header.Set(KeyTargetService, "a.C:1.0")
		}, "malformed"},
		{"services agree", func(f *Frame) {
			f.Header.Set(KeyService, "a.B:1.0")
			f.Header.Set(KeyTargetService, "a.B:1.0")
		}, "ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := ok
			tc.edit(&f)
			dst := []byte("keep")
			out, err := Encode(dst, &f)
			if c := errClass(err); c != tc.class {
				t.Fatalf("Encode: %v; want %s", err, tc.class)
			}
			if err != nil {
				if string(out) != "keep" {
					t.Errorf("Encode changed dst on error: %q", out)
				}
				return
			}
			var g Frame
			if n, err := Decode(&g, out[4:], Limits{MaxClassName: MaxWireLen16}); err != nil || n != len(out)-4 {
				t.Fatalf("Decode of Encode = %d, %v", n, err)
			}
		})
	}
}

// TestDecodeCopies checks the buffer contract: the frame owns its bytes, so
// the caller may overwrite its read buffer, and a large frame's buffer is
// not kept for the small ones after it.
func TestDecodeCopies(t *testing.T) {
	b := vector(t, "v1_request.hex")
	var f Frame
	if _, err := Decode(&f, b, Limits{}); err != nil {
		t.Fatal(err)
	}
	want := (&f).Clone()
	for i := range b {
		b[i] = 0xee
	}
	if d := sameFrame(&f, want); d != "" {
		t.Fatalf("overwriting the input changed the frame's %s", d)
	}
	if v, _ := f.Headers().Get(":authority"); v != "com.alipay.test.HelloService" {
		t.Fatalf(":authority = %q after overwriting the input", v)
	}
	if v, _ := f.Headers().Get("service"); v != "com.alipay.test.HelloService:1.0" {
		t.Fatalf("service = %q after overwriting the input", v)
	}

	big, err := Encode(nil, &Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, Codec: 1, Content: make([]byte, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(&f, big, Limits{}); err != nil {
		t.Fatal(err)
	}
	if cap(f.buf) < 1<<20 {
		t.Fatalf("cap(buf) = %d after a 1 MiB frame", cap(f.buf))
	}
	if _, err := Decode(&f, vector(t, "v1_heartbeat.hex"), Limits{}); err != nil {
		t.Fatal(err)
	}
	if cap(f.buf) > keepBufCap {
		t.Fatalf("cap(buf) = %d kept after a small frame", cap(f.buf))
	}

	// Clone shares nothing with the original.
	if _, err := Decode(&f, vector(t, "v1_request.hex"), Limits{}); err != nil {
		t.Fatal(err)
	}
	c := f.Clone()
	if _, err := Decode(&f, vector(t, "v1_response.hex"), Limits{}); err != nil {
		t.Fatal(err)
	}
	if d := sameFrame(c, want); d != "" {
		t.Fatalf("Clone changed by the next Decode: %s", d)
	}

	f.Reset()
	if d := sameFrame(&f, &Frame{}); d != "" || f.Kind() != api.KindHeartbeatReply {
		t.Fatalf("Reset left %s", d)
	}
	f.Release()
	if f.buf != nil || f.Header.fields != nil {
		t.Fatal("Release kept storage")
	}
}

// TestAllocs checks the hot path allocates nothing for a reused frame.
func TestAllocs(t *testing.T) {
	req := vector(t, "v1_request_pb16.hex")
	v2 := vector(t, "v2_request_crc.hex")
	var f Frame
	var c Codec
	var g api.Frame = c.NewFrame()
	out := make([]byte, 0, 4096)
	bad := []byte{9}
	checks := []struct {
		name string
		fn   func()
	}{
		{"Decode", func() { _, _ = Decode(&f, req, Limits{}) }},
		{"Decode v2 CRC", func() { _, _ = Decode(&f, v2, Limits{}) }},
		{"Codec.Decode", func() { _, _ = c.Decode(g, req) }},
		{"Decode error", func() { _, _ = Decode(&f, bad, Limits{}) }},
		{"Encode", func() { _, _ = Encode(out[:0], &f) }},
		{"Codec.Encode", func() { _, _ = c.Encode(out[:0], g) }},
		{"Headers", func() {
			h := g.Headers()
			_, _ = h.Get(":authority")
			_, _ = h.Get(":path")
			_, _ = h.Get("version")
			_, _ = h.Get("rpc_trace_context.sofaTraceId")
		}},
		{"Detect", func() { _ = c.Detect(req) }},
	}
	for _, ch := range checks {
		ch.fn()
		if n := testing.AllocsPerRun(100, ch.fn); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", ch.name, n)
		}
	}
}

func TestLimitsNorm(t *testing.T) {
	l := Limits{}.norm()
	if l.MaxClassName != 1024 || l.MaxHeader != 32767 || l.MaxContent != 16<<20 || l.MaxHeaderEntries != 256 {
		t.Fatalf("defaults = %+v", l)
	}
	l = Limits{MaxClassName: 1, MaxHeader: 2, MaxContent: 3, MaxHeaderEntries: 4}.norm()
	if l != (Limits{1, 2, 3, 4}) {
		t.Fatalf("norm changed set limits: %+v", l)
	}
}
