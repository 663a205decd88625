package dubbo

import (
	"testing"
)

// BenchmarkDecodeHeader parses the 16-byte header only.
func BenchmarkDecodeHeader(b *testing.B) {
	v := hexFile(b, "request_dubbogo_pojo_trace.hex")
	var c Codec
	b.SetBytes(HeaderLen)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.DecodeHeader(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResponse decodes an OK response into a reused frame:
// header plus a copy of the opaque body.
func BenchmarkDecodeResponse(b *testing.B) {
	benchDecode(b, "response_ok.hex")
}

// BenchmarkDecodeRequest decodes a dubbo-go request with a POJO argument
// and seven attachments into a reused frame, reading every routing field.
func BenchmarkDecodeRequest(b *testing.B) {
	benchDecode(b, "request_dubbogo_pojo_trace.hex")
}

// BenchmarkDecodeRequestSmall decodes GetUser("A001").
func BenchmarkDecodeRequestSmall(b *testing.B) {
	benchDecode(b, "request_dubbogo_string.hex")
}

func benchDecode(b *testing.B, name string) {
	v := hexFile(b, name)
	var c Codec
	f := new(Frame)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(f, v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequestLibrary reads the same request body with
// dubbo-go-hessian2 the way dubbo-go's server does (every value built), for
// comparison with BenchmarkDecodeRequest.
func BenchmarkDecodeRequestLibrary(b *testing.B) {
	registerPOJOs()
	v := hexFile(b, "request_dubbogo_pojo_trace.hex")
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := libraryDecode(v[HeaderLen:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeadersGet looks up what a router reads.
func BenchmarkHeadersGet(b *testing.B) {
	f := decodeOK(b, hexFile(b, "request_dubbogo_pojo_trace.hex"))
	h := f.Headers()
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range []string{":authority", ":path", "version", "group"} {
			if _, ok := h.Get(k); !ok {
				b.Fatal(k)
			}
		}
	}
}

// BenchmarkEncode writes an unchanged request into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	v := hexFile(b, "request_dubbogo_pojo_trace.hex")
	f := decodeOK(b, v)
	var c Codec
	dst := make([]byte, 0, 2*len(v))
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = c.Encode(dst[:0], f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRewriteEncode is a tracing filter's path: decode, set a
// trace attachment, encode with the attachments rewritten.
func BenchmarkDecodeRewriteEncode(b *testing.B) {
	v := hexFile(b, "request_dubbogo_pojo_trace.hex")
	var c Codec
	f := new(Frame)
	dst := make([]byte, 0, 2*len(v))
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(f, v); err != nil {
			b.Fatal(err)
		}
		f.Headers().Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		var err error
		if dst, err = c.Encode(dst[:0], f); err != nil {
			b.Fatal(err)
		}
	}
}
