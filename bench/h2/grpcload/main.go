// Command grpcload is the gRPC load client of the bench/h2 benchmark: a
// closed loop of -streams concurrent unary calls to /weft.bench.Echo/Echo
// (bench/h2/internal/echo), spread over -conns HTTP/2 connections, for
// -duration. It keeps every call's latency and prints one machine-readable
// line on stdout:
//
//	STAT requests=N duration_us=D errors=E p50=X p99=Y p999=Z max=M
//
// (latencies in µs, exact percentiles of all calls that succeeded). With
// -check T it instead makes one call at a time until one succeeds or T has
// passed, and exits 0 or 1: a readiness probe.
//
//	go run ./bench/h2/grpcload -addr 127.0.0.1:8003 -streams 50 -conns 1 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/bench/h2/internal/echo"
)

func main() {
	addr := flag.String("addr", "", "host:port to call (required)")
	streams := flag.Int("streams", 1, "concurrent calls in flight")
	conns := flag.Int("conns", 1, "HTTP/2 connections the calls are spread over")
	dur := flag.Duration("duration", 10*time.Second, "how long to run")
	payload := flag.Int("payload", 100, "request (and echoed response) message bytes")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	check := flag.Duration("check", 0, "readiness probe: retry one call for up to this long, exit 0 on success")
	flag.Parse()
	if *addr == "" || *streams < 1 || *conns < 1 {
		flag.Usage()
		os.Exit(2)
	}
	*conns = min(*conns, *streams)

	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(echo.Codec{})),
	}
	msg := make([]byte, *payload)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}

	if *check > 0 {
		os.Exit(probe(*addr, opts, msg, *check))
	}

	// One ClientConn per connection: grpc-go keeps one HTTP/2 transport per
	// ClientConn to a single address.
	ccs := make([]*grpc.ClientConn, *conns)
	for i := range ccs {
		cc, err := grpc.NewClient("passthrough:///"+*addr, opts...)
		if err != nil {
			log.Fatal(err)
		}
		defer cc.Close()
		// Open the connection and make one call on it before the clock starts.
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		var out []byte
		err = cc.Invoke(ctx, echo.Method, &msg, &out, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			log.Fatalf("connection %d: first call: %v", i, err)
		}
		ccs[i] = cc
	}

	var (
		stop     atomic.Bool
		errs     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	lat := make([][]time.Duration, *streams)
	start := time.Now()
	for w := range *streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := ccs[w%len(ccs)]
			samples := make([]time.Duration, 0, 1<<14)
			var out []byte
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				t0 := time.Now()
				err := cc.Invoke(ctx, echo.Method, &msg, &out)
				d := time.Since(t0)
				cancel()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond) // a refusing proxy must not turn this into a spin
					continue
				}
				if len(out) != len(msg) {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("echo returned %d bytes, sent %d", len(out), len(msg)))
					continue
				}
				samples = append(samples, d)
			}
			lat[w] = samples
		}()
	}
	time.Sleep(*dur)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	slices.Sort(all)
	us := func(q float64) int64 {
		if len(all) == 0 {
			return 0
		}
		i := int(q*float64(len(all))+0.999999) - 1
		return all[max(0, min(i, len(all)-1))].Microseconds()
	}
	if e := firstErr.Load(); e != nil {
		log.Printf("%d calls failed; first error: %v", errs.Load(), e)
	}
	log.Printf("%d calls in %v: %.0f/s, p50 %dµs p99 %dµs (%d streams over %d connections, %d-byte payload)",
		len(all), elapsed.Round(time.Millisecond), float64(len(all))/elapsed.Seconds(), us(0.5), us(0.99),
		*streams, len(ccs), *payload)
	fmt.Printf("STAT requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d max=%d\n",
		len(all), elapsed.Microseconds(), errs.Load(), us(0.50), us(0.99), us(0.999), us(1))
}

func probe(addr string, opts []grpc.DialOption, msg []byte, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		log.Print(err)
		return 1
	}
	defer cc.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, limit))
		var out []byte
		err = cc.Invoke(ctx, echo.Method, &msg, &out)
		cancel()
		if err == nil {
			return 0
		}
		if time.Now().After(deadline) {
			log.Printf("not ready after %v: %v", limit, err)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
}
