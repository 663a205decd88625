package dubbo

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/weftmesh/weft/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.hex and the FuzzDecode seed corpus")

// vector is a committed frame and what decoding it must give.
type vector struct {
	file    string
	comment string
	make    func(t testing.TB) []byte // regenerates it (-update)

	kind    api.FrameKind
	id      uint64
	status  int
	fields  [5]string // dubbo version, path, version, method, param types
	timeout time.Duration
	headers map[string]string
}

// encodeValues writes values one after another with one library encoder,
// the way Java's Hessian2Output writes a body value by value.
func encodeValues(t testing.TB, vals ...any) []byte {
	e := hessian.NewEncoder()
	for _, v := range vals {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return e.Buffer()
}

// orderedMap writes an untyped map with entries in the given order (Go maps
// have none): key, value, key, value...
func orderedMap(t testing.TB, kv ...any) []byte {
	b := []byte{'H'}
	b = append(b, encodeValues(t, kv...)...)
	return append(b, 'Z')
}

var vectors = []vector{
	{
		file: "request_dubbogo_string.hex",
		comment: `A two-way request as dubbo-go v3 sends it (hessian2 packRequest):
GetUser("A001") on org.apache.dubbo.samples.UserProvider:1.0.0, group blue, timeout 3s.
Made by dubboGoRequest in helpers_test.go with dubbo-go-hessian2 v1.13.2
(go test -run TestVectors -update); attachment order is Go map order.`,
		make: func(t testing.TB) []byte {
			return dubboGoRequest(t, 1, true, userSvc, []any{"A001"}, nil)
		},
		kind: api.KindRequest, id: 1,
		fields:  [5]string{"2.0.2", userSvc.Path, "1.0.0", "GetUser", "Ljava/lang/String;"},
		timeout: 3 * time.Second,
		headers: map[string]string{":authority": userSvc.Path, ":path": "GetUser", "version": "1.0.0", "group": "blue", "interface": userSvc.Interface, "timeout": "3000"},
	},
	{
		file: "request_dubbogo_pojo_trace.hex",
		comment: `A dubbo-go request with a POJO argument (class definition, object
instances, a back reference), an int and a String[], and W3C / SkyWalking
trace attachments. Made by dubboGoRequest with dubbo-go-hessian2 v1.13.2.`,
		make: func(t testing.TB) []byte {
			registerPOJOs()
			alice := &User{Name: "alice", Age: 30, Tags: []string{"admin"}}
			bob := &User{Name: "bob", Age: 31, Friend: alice}
			svc := userSvc
			svc.Method = "Befriend"
			return dubboGoRequest(t, 0x1122334455667788, true, svc, []any{bob, int32(5), []string{"x", "y"}},
				map[string]any{
					"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
					"sw8":         "1-NGJmOTJmMzU3N2IzNGRhNg==-MDBmMDY3YWEwYmE5MDJiNw==-0-c3Zj-aW5zdA==-L3Bh-MTI3LjAuMC4xOjgw",
				})
		},
		kind: api.KindRequest, id: 0x1122334455667788,
		fields:  [5]string{"2.0.2", userSvc.Path, "1.0.0", "Befriend", "Ljava/lang/Object;I[Ljava/lang/String;"},
		timeout: 3 * time.Second,
		headers: map[string]string{":path": "Befriend", "group": "blue", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	},
	{
		file: "request_dubbogo_oneway.hex",
		comment: `A one-way dubbo-go request (flags 0x82): Notify("evt"), no group, no timeout.
Made by dubboGoRequest with dubbo-go-hessian2 v1.13.2.`,
		make: func(t testing.TB) []byte {
			return dubboGoRequest(t, 7, false, service{Path: "com.example.Events", Version: "", Method: "Notify"}, []any{"evt"}, nil)
		},
		kind: api.KindOneway, id: 7,
		fields:  [5]string{"2.0.2", "com.example.Events", "", "Notify", "Ljava/lang/String;"},
		headers: map[string]string{":authority": "com.example.Events", ":path": "Notify", "path": "com.example.Events"},
	},
	{
		file: "request_java_generic.hex",
		comment: `A generic call ($invoke) in the layout Java Dubbo 2.7 clients use: the
three $invoke parameters (method name, String[] types, Object[] args), then
attachments in a fixed order, one of them an int (Java attachments are
Map<String, Object>). Assembled value by value with dubbo-go-hessian2
v1.13.2's encoder, so each value is encoded as the library encodes it (Java
would write the Object[] as a typed "[object" list, the library writes an
untyped one). Not a capture from a JVM.`,
		make: func(t testing.TB) []byte {
			body := encodeValues(t, "2.0.2", "org.apache.dubbo.samples.GreetingService", "", "$invoke",
				"Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;",
				"sayHello", []string{"java.lang.String"}, []any{"world"})
			body = append(body, orderedMap(t,
				"path", "org.apache.dubbo.samples.GreetingService",
				"remote.application", "consumer-app",
				"input", int32(512),
				"interface", "org.apache.dubbo.samples.GreetingService",
				"generic", "true",
				"timeout", "1500",
				"dubbo", "2.0.2",
			)...)
			return frame(0xc2, 0, 321, body)
		},
		kind: api.KindRequest, id: 321,
		fields:  [5]string{"2.0.2", "org.apache.dubbo.samples.GreetingService", "", "$invoke", "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;"},
		timeout: 1500 * time.Millisecond,
		headers: map[string]string{":path": "$invoke", "generic": "true", "input": "512", "remote.application": "consumer-app"},
	},
	{
		file:    "heartbeat_request.hex",
		comment: "A heartbeat request: flags 0xe2, body N (hessian null). Written by Codec.Heartbeat(5).",
		make: func(t testing.TB) []byte {
			return encodeOK(t, Codec{}.Heartbeat(5).(*Frame))
		},
		kind: api.KindHeartbeat, id: 5,
	},
	{
		file:    "heartbeat_reply.hex",
		comment: "A heartbeat reply: flags 0x22, status 20, body N. Written by Codec.HeartbeatReply.",
		make: func(t testing.TB) []byte {
			return encodeOK(t, Codec{}.HeartbeatReply(Codec{}.Heartbeat(5)).(*Frame))
		},
		kind: api.KindHeartbeatReply, id: 5, status: StatusOK,
	},
	{
		file: "response_ok.hex",
		comment: `An OK response as dubbo-go and Java (protocol 2.0.2) send it:
RESPONSE_VALUE_WITH_ATTACHMENTS (4), the value "hello alice", attachments
{"dubbo": "2.0.2"}. Assembled with dubbo-go-hessian2 v1.13.2's encoder.`,
		make: func(t testing.TB) []byte {
			body := encodeValues(t, int32(4), "hello alice")
			body = append(body, orderedMap(t, "dubbo", "2.0.2")...)
			return frame(SerializationHessian2, StatusOK, 1, body)
		},
		kind: api.KindResponse, id: 1, status: StatusOK,
	},
	{
		file: "response_service_not_found.hex",
		comment: `A SERVICE_NOT_FOUND (60) response: the body is the error message as a
hessian2 string, as Java's ExchangeCodec writes it. Written by
Codec.ErrorReply(req 1, 404, msg).`,
		make: func(t testing.TB) []byte {
			req := &Frame{ID: 1}
			return encodeOK(t, Codec{}.ErrorReply(req, 404, "Not found exported service: org.apache.dubbo.samples.UserProvider:1.0.0:20880").(*Frame))
		},
		kind: api.KindResponse, id: 1, status: StatusServiceNotFound,
	},
}

func TestVectors(t *testing.T) {
	if *update {
		for _, v := range vectors {
			writeHexFile(t, v.file, v.comment, v.make(t))
		}
		writeSeeds(t)
	}
	for _, v := range vectors {
		t.Run(v.file, func(t *testing.T) {
			b := hexFile(t, v.file)
			f := decodeOK(t, b)
			if f.Kind() != v.kind || f.RequestID() != v.id || f.Status() != v.status {
				t.Fatalf("kind %v id %#x status %d; want %v %#x %d", f.Kind(), f.RequestID(), f.Status(), v.kind, v.id, v.status)
			}
			if got := [5]string{f.DubboVersion, f.Path, f.Version, f.Method, f.ParamTypes}; got != v.fields {
				t.Fatalf("fields %q, want %q", got, v.fields)
			}
			if f.Timeout() != v.timeout {
				t.Fatalf("Timeout %v, want %v", f.Timeout(), v.timeout)
			}
			for k, want := range v.headers {
				if got, ok := f.Headers().Get(k); !ok || got != want {
					t.Errorf("Get(%q) = %q, %v; want %q", k, got, ok, want)
				}
			}
			if v.kind == api.KindRequest || v.kind == api.KindOneway {
				checkAgainstLibrary(t, f)
			}
			if out := encodeOK(t, f); !bytes.Equal(out, b) {
				t.Fatal("Encode differs from the vector")
			}
			// A freshly generated frame decodes to the same fields (the
			// bytes may differ: Go map order).
			g := decodeOK(t, v.make(t))
			if g.Kind() != f.Kind() || g.Path != f.Path || g.Method != f.Method || !equalAttachmentsUnordered(f.Attachments, g.Attachments) {
				t.Fatal("the generator no longer makes this vector")
			}
		})
	}
}

func equalAttachmentsUnordered(a, b []Attachment) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]string{}
	for _, x := range a {
		m[x.Key] = x.Value
	}
	for _, x := range b {
		if v, ok := m[x.Key]; !ok || v != x.Value {
			return false
		}
	}
	return true
}

// fuzzSeeds are hand-made inputs for FuzzDecode beside the vectors.
func fuzzSeeds(t testing.TB) map[string][]byte {
	str := func(s string) []byte { return appendString(nil, s) }
	lead := bytes.Join([][]byte{str("2.0.2"), str("svc"), str("1.0"), str("m")}, nil)
	huge := make([]byte, HeaderLen)
	copy(huge, []byte{0xda, 0xbb, 0xc2, 0})
	binary.BigEndian.PutUint32(huge[12:], 0x7fffffff)
	return map[string][]byte{
		"huge_length":       huge,
		"bad_magic":         []byte("GET / HTTP/1.1\r\n\r\n"),
		"fastjson":          frame(0xc6, 0, 1, []byte("{}")),
		"list_bomb":         frame(0xc2, 0, 1, bytes.Join([][]byte{lead, str("Ljava/util/List;"), {0x58, 'I', 0x7f, 0xff, 0xff, 0xff, 'N'}}, nil)),
		"class_and_objects": frame(0xc2, 0, 1, bytes.Join([][]byte{lead, str("Lx;Lx;"), {'C'}, str("x"), {0x91}, str("f"), {0x60, 0x91, 0x60, 'N', 'H', 'Z'}}, nil)),
		"chunked_method":    frame(0xc2, 0, 1, bytes.Join([][]byte{str("2.0.2"), str("svc"), str("1.0"), {'R', 0, 1, 'a'}, str("b"), str(""), {'H'}, str("k"), {'I', 0, 0, 1, 0}, {'Z'}}, nil)),
		"two_frames":        append(frame(0xe2, 0, 1, []byte{'N'}), frame(0x22, 20, 1, []byte{'N'})...),
	}
}

// writeSeeds writes the FuzzDecode seed corpus in go test's format.
func writeSeeds(t testing.TB) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vectors {
		write(v.file[:len(v.file)-len(".hex")], v.make(t))
	}
	for name, b := range fuzzSeeds(t) {
		write(name, b)
	}
}
