package bolt

import (
	"bytes"
	"testing"
)

// smallRequest is the benchmark frame: a v1 SOFARPC request with a 3-entry
// header map (service, target service, method) and 100 bytes of content.
func smallRequest(proto byte) *Frame {
	f := &Frame{Proto: proto, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, ID: 42, Codec: CodecHessian2, TimeoutMs: 3000,
		ClassName: sofaRequest, Content: bytes.Repeat([]byte{0x5a}, 100)}
	if proto == ProtoV2 {
		f.Ver1, f.Switch = 2, SwitchCRC
	}
	f.Header = withHeader(
		"service", "com.alipay.test.HelloService:1.0",
		"sofa_head_target_service", "com.alipay.test.HelloService:1.0",
		"sofa_head_method_name", "sayHello",
	)
	return f
}

func benchDecode(b *testing.B, wire []byte) {
	var f Frame
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(&f, wire, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequest decodes the 314-byte request into a reused frame,
// as a connection's read loop does.
func BenchmarkDecodeRequest(b *testing.B) {
	wire, err := Encode(nil, smallRequest(ProtoV1))
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, wire)
}

// BenchmarkDecodeRequestV2CRC is BenchmarkDecodeRequest in v2 with the CRC
// trailer checked.
func BenchmarkDecodeRequestV2CRC(b *testing.B) {
	wire, err := Encode(nil, smallRequest(ProtoV2))
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, wire)
}

// BenchmarkDecode16Headers decodes the 16-header SOFARPC-shaped request
// (16 header entries).
func BenchmarkDecode16Headers(b *testing.B) {
	benchDecode(b, vector(b, "v1_request_pb16.hex"))
}

func benchEncode(b *testing.B, f *Frame) {
	dst := make([]byte, 0, Size(f))
	b.SetBytes(int64(Size(f)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = Encode(dst[:0], f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes the decoded benchmark request into a reused
// buffer, as the proxy does towards the upstream.
func BenchmarkEncode(b *testing.B) {
	wire, err := Encode(nil, smallRequest(ProtoV1))
	if err != nil {
		b.Fatal(err)
	}
	var f Frame
	if _, err := Decode(&f, wire, Limits{}); err != nil {
		b.Fatal(err)
	}
	benchEncode(b, &f)
}

// BenchmarkEncodeV2CRC is BenchmarkEncode in v2 with the CRC computed.
func BenchmarkEncodeV2CRC(b *testing.B) {
	benchEncode(b, smallRequest(ProtoV2))
}

// BenchmarkHeadersRoute reads the routing keys a router needs through
// api.HeaderMap from the 16-header request.
func BenchmarkHeadersRoute(b *testing.B) {
	var c Codec
	f := c.NewFrame()
	if _, err := c.Decode(f, vector(b, "v1_request_pb16.hex")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h := f.Headers()
		svc, _ := h.Get(":authority")
		m, _ := h.Get(":path")
		v, _ := h.Get("version")
		if svc == "" || m == "" || v == "" {
			b.Fatal("missing routing key")
		}
	}
}

// BenchmarkDetect sniffs the first bytes of a connection.
func BenchmarkDetect(b *testing.B) {
	var c Codec
	wire := vector(b, "v1_request.hex")
	b.ReportAllocs()
	for b.Loop() {
		if c.Detect(wire) != 1 {
			b.Fatal("not detected")
		}
	}
}
