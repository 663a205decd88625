// Command backend is the upstream of the bench/h2 benchmark: a 200 with a
// fixed 100-byte body over HTTP/1.1 (-h1) and over h2c with prior knowledge
// (-h2c), and the unary gRPC echo service of bench/h2/internal/echo (-grpc).
// Any subset of the three can be served by one process.
//
//	go run ./bench/h2/backend -h1 127.0.0.1:8001 -h2c 127.0.0.1:8002 -grpc 127.0.0.1:8003
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/bench/h2/internal/echo"
)

// Body is the fixed response body: exactly 100 bytes, the same text as the
// bench/http1 upstream's.
const Body = "weft bench upstream: a fixed body of exactly one hundred bytes, padded to size with dots............"

func main() {
	h1 := flag.String("h1", "", "serve HTTP/1.1 on this address")
	h2c := flag.String("h2c", "", "serve HTTP/2 without TLS (prior knowledge; HTTP/1.1 too) on this address")
	grpcAddr := flag.String("grpc", "", "serve the gRPC echo service on this address")
	flag.Parse()
	if *h1 == "" && *h2c == "" && *grpcAddr == "" {
		log.Fatal("nothing to serve: give -h1, -h2c and/or -grpc")
	}

	body := []byte(Body)
	clen := strconv.Itoa(len(body))
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{clen}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})

	if *h1 != "" {
		var p http.Protocols
		p.SetHTTP1(true)
		serveHTTP(*h1, &http.Server{Handler: handler, Protocols: &p})
	}
	if *h2c != "" {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		serveHTTP(*h2c, &http.Server{
			Handler:   handler,
			Protocols: &p,
			HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: 1000},
		})
	}
	if *grpcAddr != "" {
		ln := listen(*grpcAddr)
		s := grpc.NewServer(grpc.ForceServerCodecV2(echo.Codec{}))
		s.RegisterService(&echo.ServiceDesc, nil)
		go func() { log.Fatal(s.Serve(ln)) }()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

func listen(addr string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

func serveHTTP(addr string, s *http.Server) {
	ln := listen(addr)
	s.ReadHeaderTimeout = time.Minute
	s.IdleTimeout = 10 * time.Minute
	go func() { log.Fatal(s.Serve(ln)) }()
}
