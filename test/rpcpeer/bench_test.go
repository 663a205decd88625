package rpcpeer

import (
	"context"
	"testing"
)

// BenchmarkCall measures pipelined calls on one connection to the echo
// server, many in flight.
func BenchmarkCall(b *testing.B) {
	for _, p := range protocols {
		b.Run(string(p), func(b *testing.B) {
			s, err := Serve(p, "127.0.0.1:0", ServerOptions{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c, err := Dial(p, s.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := &Request{Service: "com.weftmesh.bench.Echo", Method: "echo", Version: "1.0",
				Headers: map[string]string{"x-bench": "1"}, Body: make([]byte, 128)}
			for i := range req.Body {
				req.Body[i] = 'a' + byte(i%26)
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.Call(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkEncodeRequest(b *testing.B) {
	for _, p := range protocols {
		b.Run(string(p), func(b *testing.B) {
			req := &Request{Service: "com.weftmesh.bench.Echo", Method: "echo", Version: "1.0",
				Headers: map[string]string{"x-bench": "1"}, Body: make([]byte, 128)}
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var err error
				if p == Bolt {
					buf, err = appendBoltRequest(buf[:0], uint32(i), req)
				} else {
					buf, err = appendDubboRequest(buf[:0], uint64(i), req)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
