package rpcpeer

// Agreement with the byte vectors of Weft's own codecs: two independent
// implementations must read and write the same bytes. The vectors are read
// from internal/codec/... in place (never copied or modified); the
// expected field values below are the ones the vectors' comments state.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

const (
	boltVectorDir  = "../../internal/codec/bolt/testdata/vectors"
	dubboVectorDir = "../../internal/codec/dubbo/testdata"
)

// readHexVector reads an annotated hex file: hex digits and whitespace,
// '#' starting a comment that runs to the end of the line.
func readHexVector(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var digits []byte
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Fields(line) {
			digits = append(digits, f...)
		}
	}
	b := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(b, digits); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

var (
	helloBody = []byte("@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_")
	respBody  = []byte("`abcdefghijklmno")
	helloSvc  = "com.alipay.test.HelloService:1.0"
	helloHdr  = []KV{
		{"service", helloSvc},
		{"sofa_head_target_service", helloSvc},
		{"sofa_head_method_name", "sayHello"},
		{"sofa_head_target_app", "demo"},
		{"rpc_trace_context.sofaTraceId", "0a0fe8ad170000000000100112345"},
	}
)

// boltVectors are the frames the Bolt vectors hold, from their comments.
var boltVectors = map[string]*BoltFrame{
	"v1_heartbeat.hex":       {Proto: 1, Type: 1, CmdCode: 0, Ver2: 1, ID: 1, Codec: 1, Timeout: -1},
	"v1_heartbeat_reply.hex": {Proto: 1, Type: 0, CmdCode: 0, Ver2: 1, ID: 1, Codec: 1},
	"v1_request.hex": {Proto: 1, Type: 1, CmdCode: 1, Ver2: 1, ID: 7, Codec: 1, Timeout: 3000,
		ClassName: SofaRequestClass, Header: helloHdr, Content: helloBody},
	"v1_oneway.hex": {Proto: 1, Type: 2, CmdCode: 1, Ver2: 1, ID: 8, Codec: 11, Timeout: -1, ClassName: SofaRequestClass,
		Header:  []KV{{"service", "com.alipay.test.LogService:2.0:blue"}, {"sofa_head_method_name", "log"}},
		Content: []byte("\x0a\x01a")},
	"v1_response.hex": {Proto: 1, Type: 0, CmdCode: 2, Ver2: 1, ID: 7, Codec: 1, Status: 0,
		ClassName: SofaResponseClass, Header: []KV{{"rpc_resp_baggage", ""}}, Content: respBody},
	"v1_response_no_processor.hex": {Proto: 1, Type: 0, CmdCode: 2, Ver2: 1, ID: 7, Codec: 1, Status: BoltNoProcessor,
		ClassName: "java.lang.String", Content: []byte("\x08no route")},
	"v1_response_pb.hex": {Proto: 1, Type: 0, CmdCode: 2, Ver2: 1, ID: 132, Codec: 11, Status: 0,
		ClassName: SofaResponseClass, Content: []byte("\x0a\x01a")},
	"v1_request_pb16.hex": {Proto: 1, Type: 1, CmdCode: 1, Ver2: 1, ID: 109, Codec: 11, Timeout: 100, ClassName: SofaRequestClass,
		Header: []KV{
			{"sofa_head_target_service", "com.weftmesh.demo.OrderService:1.0"},
			{"rpc_trace_context.sofaRpcId", "0"},
			{"rpc_trace_context.zproxyTimeout", "100"},
			{"rpc_trace_context.sofaTraceId", "7f0000011732000000001000142"},
			{"rpc_trace_context.sofaCallerIdc", "dev"},
			{"rpc_trace_context.sofaCallerIp", "127.0.0.1"},
			{"rpc_trace_context.sofaPenAttrs", ""},
			{"rpc_trace_context.zproxyUID", ""},
			{"rpc_trace_context.sofaCallerZone", "GZ00A"},
			{"sofa_head_target_app", "orders"},
			{"service", "com.weftmesh.demo.OrderService:1.0"},
			{"rpc_trace_context.Elastic", "F"},
			{"rpc_trace_context.sysPenAttrs", ""},
			{"rpc_trace_context.zproxyTargetZone", ""},
			{"rpc_trace_context.sofaCallerApp", "frontend"},
			{"sofa_head_method_name", "create"},
		},
		Content: []byte("\x0a\x01a")},
	"v2_request_crc.hex": {Proto: 2, Ver1: 2, Type: 1, CmdCode: 1, Ver2: 1, ID: 9, Codec: 1, Switch: 1, Timeout: 1000,
		ClassName: SofaRequestClass, Header: helloHdr[:3], Content: helloBody},
	"v2_request_ver1.hex": {Proto: 2, Ver1: 1, Type: 1, CmdCode: 1, Ver2: 1, ID: 10, Codec: 11, Switch: 1, Timeout: 500,
		ClassName: SofaRequestClass, Header: helloHdr[:1], Content: []byte("\x0a\x01b")},
	"v2_response_crc.hex": {Proto: 2, Ver1: 2, Type: 0, CmdCode: 2, Ver2: 1, ID: 9, Codec: 1, Switch: 1,
		ClassName: SofaResponseClass, Content: respBody},
	"v2_heartbeat.hex":       {Proto: 2, Ver1: 2, Type: 1, CmdCode: 0, Ver2: 1, ID: 11, Codec: 1, Switch: 1, Timeout: -1},
	"v2_heartbeat_reply.hex": {Proto: 2, Ver1: 2, Type: 0, CmdCode: 0, Ver2: 1, ID: 11, Codec: 1, Switch: 1},
}

// TestBoltVectors decodes every Bolt vector to the fields its comment
// states, encodes those fields back to the same bytes, and checks that
// every proper prefix is short.
func TestBoltVectors(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(boltVectorDir, "*.hex"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Bolt vectors: %v", err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := boltVectors[name]
			if !ok {
				t.Fatalf("no expected fields for vector %s: add them to boltVectors", name)
			}
			b := readHexVector(t, path)
			f, n, err := DecodeBolt(b)
			if err != nil || n != len(b) {
				t.Fatalf("DecodeBolt = %d, %v; want %d", n, err, len(b))
			}
			if !reflect.DeepEqual(f, want) {
				t.Fatalf("decoded %+v\nwant    %+v", f, want)
			}
			out, err := AppendBolt(nil, want)
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("AppendBolt = %x, %v\nwant        %x", out, err, b)
			}
			for i := 0; i < len(b); i++ {
				if _, _, err := DecodeBolt(b[:i]); err != ErrShortFrame {
					t.Fatalf("prefix of %d: %v", i, err)
				}
			}
			if f2, n2, err := DecodeBolt(append(bytes.Clone(b), 1, 2, 3)); err != nil || n2 != len(b) || !reflect.DeepEqual(f2, want) {
				t.Fatalf("with trailing bytes: %d, %v", n2, err)
			}
			if f.HasCRC() {
				bad := bytes.Clone(b)
				bad[len(bad)/2] ^= 0x40
				if _, _, err := DecodeBolt(bad); !errors.Is(err, ErrMalformed) {
					t.Fatalf("flipped bit: %v", err)
				}
			}
		})
	}
}

// TestBoltVectorsHighLevel checks the frames the client and server write
// where a vector is one they can produce, and the responses as the client
// reads them.
func TestBoltVectorsHighLevel(t *testing.T) {
	vec := func(name string) []byte { return readHexVector(t, filepath.Join(boltVectorDir, name)) }

	// The client's request: routing entries in order, then the extra
	// headers sorted (sofa_head_target_app replaced in place).
	got := EncodeRequest(Bolt, 7, &Request{
		Service: "com.alipay.test.HelloService", Version: "1.0", Method: "sayHello",
		Headers: map[string]string{"sofa_head_target_app": "demo", "rpc_trace_context.sofaTraceId": "0a0fe8ad170000000000100112345"},
		Body:    helloBody, Timeout: 3 * time.Second,
	})
	if want := vec("v1_request.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeRequest = %x\nwant %x", got, want)
	}
	if got, want := EncodeHeartbeat(Bolt, 1), vec("v1_heartbeat.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeHeartbeat = %x\nwant %x", got, want)
	}
	for req, reply := range map[string]string{"v1_heartbeat.hex": "v1_heartbeat_reply.hex", "v2_heartbeat.hex": "v2_heartbeat_reply.hex"} {
		var v boltView
		if err := parseBolt(vec(req), &v); err != nil {
			t.Fatal(err)
		}
		if got, want := appendBoltHeartbeatReply(nil, &v), vec(reply); !bytes.Equal(got, want) {
			t.Errorf("reply to %s = %x\nwant %x", req, got, want)
		}
	}
	got = EncodeResponse(Bolt, 7, &Response{Status: BoltSuccess, ClassName: SofaResponseClass,
		Headers: map[string]string{"rpc_resp_baggage": ""}, Body: respBody})
	if want := vec("v1_response.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeResponse = %x\nwant %x", got, want)
	}
	got = EncodeResponse(Bolt, 7, &Response{Status: BoltNoProcessor, ClassName: "java.lang.String", Body: []byte("\x08no route")})
	if want := vec("v1_response_no_processor.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeResponse = %x\nwant %x", got, want)
	}

	for _, tc := range []struct {
		file string
		id   uint64
		want *Response
	}{
		{"v1_response.hex", 7, &Response{Status: 0, ClassName: SofaResponseClass, Headers: map[string]string{"rpc_resp_baggage": ""}, Body: respBody}},
		{"v1_response_no_processor.hex", 7, &Response{Status: BoltNoProcessor, ClassName: "java.lang.String", Body: []byte("\x08no route")}},
		{"v1_response_pb.hex", 132, &Response{Status: 0, ClassName: SofaResponseClass, Body: []byte("\x0a\x01a")}},
		{"v2_response_crc.hex", 9, &Response{Status: 0, ClassName: SofaResponseClass, Body: respBody}},
		{"v1_heartbeat_reply.hex", 1, &Response{Heartbeat: true}},
		{"v2_heartbeat_reply.hex", 11, &Response{Heartbeat: true}},
	} {
		b := vec(tc.file)
		id, resp, n, err := DecodeResponse(Bolt, b)
		if err != nil || n != len(b) || id != tc.id || !reflect.DeepEqual(resp, tc.want) {
			t.Errorf("%s: DecodeResponse = %d, %+v, %d, %v; want %d, %+v", tc.file, id, resp, n, err, tc.id, tc.want)
		}
		id, resp, err = ReadResponse(Bolt, bytes.NewReader(append(bytes.Clone(b), 0xee)))
		if err != nil || id != tc.id || !reflect.DeepEqual(resp, tc.want) {
			t.Errorf("%s: ReadResponse = %d, %+v, %v", tc.file, id, resp, err)
		}
	}
	if _, _, _, err := DecodeResponse(Bolt, vec("v1_request.hex")); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeResponse of a request: %v", err)
	}
}

// TestBoltVectorsServed sends each request vector to the server and checks
// the echo: same version, switch, codec and id, the request's header
// entries in order plus x-served-by, the same content.
func TestBoltVectorsServed(t *testing.T) {
	s := startServer(t, Bolt, ServerOptions{Name: "vec"})
	for name, want := range boltVectors {
		if want.Type == boltTypeResponse {
			continue
		}
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			before := s.Stats()
			if _, err := conn.Write(readHexVector(t, filepath.Join(boltVectorDir, name))); err != nil {
				t.Fatal(err)
			}
			if want.Type == boltTypeOneway {
				eventually(t, "the one-way counted", func() bool { return s.Stats().Oneways == before.Oneways+1 })
				checkLastHeaders(t, s, want.Header)
				return
			}
			got, _, err := DecodeBolt(readFrame(t, Bolt, conn))
			if err != nil {
				t.Fatal(err)
			}
			echo := &BoltFrame{Proto: want.Proto, Ver1: want.Ver1, Type: 0, CmdCode: 2, Ver2: want.Ver2, ID: want.ID,
				Codec: want.Codec, Switch: want.Switch, ClassName: SofaResponseClass,
				Header: append(append([]KV(nil), want.Header...), KV{"x-served-by", "vec"}), Content: want.Content}
			if want.CmdCode == boltCmdHeartbeat {
				echo.CmdCode, echo.ClassName, echo.Header = 0, "", nil
			}
			if !reflect.DeepEqual(got, echo) {
				t.Fatalf("reply %+v\nwant  %+v", got, echo)
			}
			if want.CmdCode != boltCmdHeartbeat {
				checkLastHeaders(t, s, want.Header)
			}
		})
	}
}

func checkLastHeaders(t *testing.T, s *Server, want []KV) {
	t.Helper()
	m := map[string]string{}
	for _, kv := range want {
		m[kv.Key] = kv.Value // the last of duplicate keys wins, as in SOFARPC's map
	}
	if got := s.LastRequestHeaders(); !reflect.DeepEqual(got, m) {
		t.Errorf("LastRequestHeaders = %v\nwant %v", got, m)
	}
}

// dubboVector is what a Dubbo vector's comment says it holds.
type dubboVector struct {
	flags, status byte
	id            uint64
	// requests
	fields [5]string // dubbo version, path, version, method, param types
	nargs  int
	att    map[string]any // attachments that must be present
}

const userSvc = "org.apache.dubbo.samples.UserProvider"

var dubboVectors = map[string]dubboVector{
	"request_dubbogo_string.hex": {flags: 0xc2, id: 1,
		fields: [5]string{"2.0.2", userSvc, "1.0.0", "GetUser", "Ljava/lang/String;"}, nargs: 1,
		att: map[string]any{"path": userSvc, "interface": userSvc, "version": "1.0.0", "group": "blue", "timeout": "3000"}},
	"request_dubbogo_pojo_trace.hex": {flags: 0xc2, id: 0x1122334455667788,
		fields: [5]string{"2.0.2", userSvc, "1.0.0", "Befriend", "Ljava/lang/Object;I[Ljava/lang/String;"}, nargs: 3,
		att: map[string]any{"group": "blue", "timeout": "3000", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"sw8": "1-NGJmOTJmMzU3N2IzNGRhNg==-MDBmMDY3YWEwYmE5MDJiNw==-0-c3Zj-aW5zdA==-L3Bh-MTI3LjAuMC4xOjgw"}},
	"request_dubbogo_oneway.hex": {flags: 0x82, id: 7,
		fields: [5]string{"2.0.2", "com.example.Events", "", "Notify", "Ljava/lang/String;"}, nargs: 1,
		att: map[string]any{"path": "com.example.Events"}},
	"request_java_generic.hex": {flags: 0xc2, id: 321,
		fields: [5]string{"2.0.2", "org.apache.dubbo.samples.GreetingService", "", "$invoke", "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;"}, nargs: 3,
		att: map[string]any{"path": "org.apache.dubbo.samples.GreetingService", "remote.application": "consumer-app", "input": int32(512),
			"interface": "org.apache.dubbo.samples.GreetingService", "generic": "true", "timeout": "1500", "dubbo": "2.0.2"}},
	"heartbeat_request.hex":          {flags: 0xe2, id: 5},
	"heartbeat_reply.hex":            {flags: 0x22, status: DubboOK, id: 5},
	"response_ok.hex":                {flags: 0x02, status: DubboOK, id: 1},
	"response_service_not_found.hex": {flags: 0x02, status: DubboServiceNotFound, id: 1},
}

func dubboVec(t *testing.T, name string) []byte {
	return readHexVector(t, filepath.Join(dubboVectorDir, name))
}

// TestDubboVectors reads every Dubbo vector with this package's reader.
func TestDubboVectors(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(dubboVectorDir, "*.hex"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Dubbo vectors: %v", err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, ok := dubboVectors[name]
			if !ok {
				t.Fatalf("no expected fields for vector %s: add them to dubboVectors", name)
			}
			b := dubboVec(t, name)
			f, n, err := DecodeDubbo(b)
			if err != nil || n != len(b) || f.Flags != want.flags || f.Status != want.status || f.ID != want.id {
				t.Fatalf("DecodeDubbo = %+v, %d, %v; want %+v", f, n, err, want)
			}
			if out := AppendDubbo(nil, f); !bytes.Equal(out, b) {
				t.Fatalf("AppendDubbo differs")
			}
			for i := 0; i < len(b); i++ {
				if _, _, err := DecodeDubbo(b[:i]); err != ErrShortFrame {
					t.Fatalf("prefix of %d: %v", i, err)
				}
			}
			if want.flags&dubboFlagRequest == 0 || want.flags&dubboFlagEvent != 0 {
				return
			}
			inv, err := ParseDubboRequest(f.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := [5]string{inv.DubboVersion, inv.Path, inv.Version, inv.Method, inv.ParamTypes}; got != want.fields {
				t.Fatalf("fields %q\nwant   %q", got, want.fields)
			}
			if len(inv.Args) != want.nargs {
				t.Fatalf("%d args, want %d", len(inv.Args), want.nargs)
			}
			for k, v := range want.att {
				if got, ok := inv.Attachments[k]; !ok || !reflect.DeepEqual(got, v) {
					t.Errorf("attachment %q = %#v, want %#v", k, got, v)
				}
			}
		})
	}
}

// TestDubboVectorsArgs checks argument values the vectors' comments state.
func TestDubboVectorsArgs(t *testing.T) {
	args := func(name string) []any {
		f, _, err := DecodeDubbo(dubboVec(t, name))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := ParseDubboRequest(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		return inv.Args
	}
	if a := args("request_dubbogo_string.hex"); a[0] != "A001" {
		t.Errorf("GetUser args %#v", a)
	}
	if a := args("request_dubbogo_oneway.hex"); a[0] != "evt" {
		t.Errorf("Notify args %#v", a)
	}
	if a := args("request_java_generic.hex"); a[0] != "sayHello" || valueText(a[1]) != "[java.lang.String]" || valueText(a[2]) != "[world]" {
		t.Errorf("$invoke args %#v", a)
	}
	a := args("request_dubbogo_pojo_trace.hex")
	if a[1] != int32(5) || valueText(a[2]) != "[x y]" {
		t.Errorf("Befriend args %#v", a)
	}
	// bob, a friend of alice: an object of an unregistered class, which
	// the library reads as a map with its class name under "_class".
	isUser := func(v any, name string, age int64) bool {
		m, ok := v.(map[string]any)
		n, _ := toInt64(m["age"])
		return ok && m["_class"] == "org.apache.dubbo.samples.User" && m["name"] == name && n == age
	}
	if !isUser(a[0], "bob", 31) || !isUser(a[0].(map[string]any)["friend"], "alice", 30) {
		t.Errorf("Befriend arg 0 %#v", a[0])
	}
}

// TestDubboVectorsHighLevel checks the frames this package writes against
// the vectors where it can write them, and the responses as the client
// reads them.
func TestDubboVectorsHighLevel(t *testing.T) {
	// Requests: the same header and leading values (version, path, service
	// version, method, types, argument); the attachments are the same set
	// for GetUser (the vector's order is a Go map's) and this package's own
	// for Notify.
	for _, tc := range []struct {
		file    string
		id      uint64
		req     *Request
		sameAtt bool
	}{
		{"request_dubbogo_string.hex", 1, &Request{Service: userSvc, Version: "1.0.0", Group: "blue", Method: "GetUser",
			Body: []byte("A001"), Timeout: 3 * time.Second}, true},
		{"request_dubbogo_oneway.hex", 7, &Request{Service: "com.example.Events", Method: "Notify", Body: []byte("evt"), Oneway: true}, false},
	} {
		want := dubboVec(t, tc.file)
		got := EncodeRequest(Dubbo, tc.id, tc.req)
		e := hessian.NewEncoder()
		for _, s := range []string{"2.0.2", tc.req.Service, tc.req.Version, tc.req.Method, "Ljava/lang/String;", string(tc.req.Body)} {
			e.Encode(s)
		}
		lead := dubboHeadLen + len(e.Buffer())
		if !bytes.Equal(got[:12], want[:12]) || !bytes.Equal(got[dubboHeadLen:lead], want[dubboHeadLen:lead]) || got[lead] != 'H' || want[lead] != 'H' {
			t.Errorf("%s: EncodeRequest = %x\nwant %x", tc.file, got, want)
		}
		if tc.sameAtt {
			g, _ := ParseDubboRequest(got[dubboHeadLen:])
			w, _ := ParseDubboRequest(want[dubboHeadLen:])
			if g == nil || w == nil || !reflect.DeepEqual(g.Attachments, w.Attachments) {
				t.Errorf("%s: attachments %v, want %v", tc.file, g, w)
			}
		}
	}
	if got, want := EncodeHeartbeat(Dubbo, 5), dubboVec(t, "heartbeat_request.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeHeartbeat = %x\nwant %x", got, want)
	}
	var hb dubboView
	if err := parseDubbo(dubboVec(t, "heartbeat_request.hex"), &hb); err != nil {
		t.Fatal(err)
	}
	if got, want := appendDubboHeartbeatReply(nil, &hb), dubboVec(t, "heartbeat_reply.hex"); !bytes.Equal(got, want) {
		t.Errorf("heartbeat reply = %x\nwant %x", got, want)
	}
	if got, want := EncodeResponse(Dubbo, 5, &Response{Heartbeat: true}), dubboVec(t, "heartbeat_reply.hex"); !bytes.Equal(got, want) {
		t.Errorf("EncodeResponse(heartbeat) = %x\nwant %x", got, want)
	}
	const notFound = "Not found exported service: org.apache.dubbo.samples.UserProvider:1.0.0:20880"
	for _, tc := range []struct {
		file string
		resp *Response
	}{
		{"response_ok.hex", &Response{Status: DubboOK, Headers: map[string]string{"dubbo": "2.0.2"}, Body: []byte("hello alice")}},
		{"response_service_not_found.hex", &Response{Status: DubboServiceNotFound, Body: []byte(notFound)}},
		{"heartbeat_reply.hex", &Response{Status: DubboOK, Heartbeat: true}},
	} {
		want := dubboVec(t, tc.file)
		id, resp, n, err := DecodeResponse(Dubbo, want)
		if err != nil || n != len(want) || !reflect.DeepEqual(resp, tc.resp) {
			t.Errorf("%s: DecodeResponse = %d, %+v, %d, %v; want %+v", tc.file, id, resp, n, err, tc.resp)
		}
		if got := EncodeResponse(Dubbo, id, tc.resp); !bytes.Equal(got, want) {
			t.Errorf("%s: EncodeResponse = %x\nwant %x", tc.file, got, want)
		}
	}
	res, err := ParseDubboResponse(dubboVec(t, "response_ok.hex")[dubboHeadLen:])
	if err != nil || res.Type != DubboResponseValueWithAttachments || res.Value != "hello alice" || !reflect.DeepEqual(res.Attachments, map[string]any{"dubbo": "2.0.2"}) {
		t.Errorf("ParseDubboResponse = %+v, %v", res, err)
	}
}

// TestDubboVectorsServed sends the request vectors to the server.
func TestDubboVectorsServed(t *testing.T) {
	s := startServer(t, Dubbo, ServerOptions{Name: "vec"})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		file  string
		value any
		att   map[string]any
	}{
		{"request_dubbogo_string.hex", "A001", map[string]any{"path": userSvc, "interface": userSvc, "version": "1.0.0",
			"group": "blue", "timeout": "3000", "x-served-by": "vec"}},
		// The int attachment "input" is not a string and is not echoed.
		{"request_java_generic.hex", "sayHello", map[string]any{"path": "org.apache.dubbo.samples.GreetingService",
			"remote.application": "consumer-app", "interface": "org.apache.dubbo.samples.GreetingService", "generic": "true",
			"timeout": "1500", "dubbo": "2.0.2", "x-served-by": "vec"}},
		{"request_dubbogo_pojo_trace.hex", nil, nil},
		{"heartbeat_request.hex", nil, nil},
	} {
		want := dubboVectors[tc.file]
		conn.Write(dubboVec(t, tc.file))
		f, _, err := DecodeDubbo(readFrame(t, Dubbo, conn))
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != want.id || f.Status != DubboOK {
			t.Fatalf("%s: reply %+v", tc.file, f)
		}
		if want.flags&dubboFlagEvent != 0 {
			if !bytes.Equal(AppendDubbo(nil, f), dubboVec(t, "heartbeat_reply.hex")) {
				t.Errorf("heartbeat reply %x", AppendDubbo(nil, f))
			}
			continue
		}
		res, err := ParseDubboResponse(f.Body)
		if err != nil || res.Type != DubboResponseValueWithAttachments {
			t.Fatalf("%s: %+v, %v", tc.file, res, err)
		}
		if tc.value != nil && (res.Value != tc.value || !reflect.DeepEqual(res.Attachments, tc.att)) {
			t.Errorf("%s: echo %#v %v\nwant %#v %v", tc.file, res.Value, res.Attachments, tc.value, tc.att)
		}
		if tc.value == nil {
			if bob, ok := res.Value.(map[string]any); !ok || bob["name"] != "bob" || res.Attachments["traceparent"] == nil {
				t.Errorf("%s: echo %#v %v", tc.file, res.Value, res.Attachments)
			}
		}
	}
	before := s.Stats()
	conn.Write(dubboVec(t, "request_dubbogo_oneway.hex"))
	eventually(t, "the one-way counted", func() bool { return s.Stats().Oneways == before.Oneways+1 })
	if h := s.LastRequestHeaders(); !reflect.DeepEqual(h, map[string]string{"path": "com.example.Events", "version": ""}) {
		t.Errorf("LastRequestHeaders = %v", h)
	}
}
