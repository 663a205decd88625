// Command consumer is a dubbo-go v3 consumer calling a direct URL, no
// registry, over the Dubbo 2 protocol (hessian2) or, with -protocol tri,
// Triple (gRPC over h2c, protobuf). It makes -n SayHello calls over -c
// goroutines, each with x-trace-id/x-load-test attachments, checks the reply
// and the response attachments, calls Fail once, and prints one JSON line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/common/extension"
	"dubbo.apache.org/dubbo-go/v3/filter"
	"dubbo.apache.org/dubbo-go/v3/graceful_shutdown"
	"dubbo.apache.org/dubbo-go/v3/protocol/base"
	"dubbo.apache.org/dubbo-go/v3/protocol/result"
	tri "dubbo.apache.org/dubbo-go/v3/protocol/triple/triple_protocol"

	"github.com/weftmesh/weft/test/interop/dubbogo/internal/interop"
)

// captureFilterName is the consumer-side filter that hands the response
// attachments back to the caller (Connection.CallUnary only returns an error).
const captureFilterName = "weft-interop-capture"

type captureKey struct{}

// captured receives a copy of one call's response attachments.
type captured struct{ atts map[string]any }

type captureFilter struct{}

func (captureFilter) Invoke(ctx context.Context, invoker base.Invoker, inv base.Invocation) result.Result {
	return invoker.Invoke(ctx, inv)
}

func (captureFilter) OnResponse(ctx context.Context, res result.Result, _ base.Invoker, _ base.Invocation) result.Result {
	if c, ok := ctx.Value(captureKey{}).(*captured); ok && res != nil {
		c.atts = make(map[string]any, len(res.Attachments()))
		for k, v := range res.Attachments() {
			c.atts[k] = v
		}
	}
	return res
}

// Report is the JSON line printed on stdout.
type Report struct {
	OK              int64  `json:"ok"`
	Failed          int64  `json:"failed"`
	AttachmentsOK   int64  `json:"attachments_ok"`
	FailCallErrored bool   `json:"fail_call_errored"`
	FirstError      string `json:"first_error"`
	// Triple only: the Triple (gRPC) code of the first error
	// ("unimplemented", "unavailable"...), and how many replies each provider
	// (its x-provider-id response attachment) sent.
	FirstCode string           `json:"first_code,omitempty"`
	Providers map[string]int64 `json:"providers,omitempty"`
}

// options are the command-line settings.
type options struct {
	addr, proto, iface, version, group string
	expectProvider                     string // wanted x-provider value (Triple)
	n, c                               int
	timeout                            time.Duration
	verbose                            bool
}

func main() {
	addr := flag.String("addr", "127.0.0.1:20880", "provider (or proxy) address host:port")
	n := flag.Int("n", 100, "number of SayHello calls")
	c := flag.Int("c", 4, "concurrent goroutines")
	timeout := flag.Duration("timeout", 3*time.Second, "per-call timeout")
	v := flag.Bool("v", false, "print the first call's response attachments to stderr")
	logLevel := flag.String("log-level", "error", "dubbo-go log level (debug, info, warn, error)")
	proto := flag.String("protocol", "dubbo", "dubbo (Dubbo 2, hessian2) or tri (Triple, protobuf)")
	iface := flag.String("interface", interop.Interface, "service interface to call")
	version := flag.String("version", interop.Version, "service version")
	group := flag.String("group", interop.Group, "service group")
	expectProvider := flag.String("expect-provider", interop.ProviderValue, "x-provider response attachment to expect (-protocol tri only: a plain gRPC server may send its own)")
	flag.Parse()
	interop.QuietLogs(*logLevel)
	if *proto != "dubbo" && *proto != "tri" {
		fmt.Fprintf(os.Stderr, "consumer: -protocol %q: want dubbo or tri\n", *proto)
		os.Exit(2)
	}

	o := options{addr: *addr, proto: *proto, iface: *iface, version: *version, group: *group,
		expectProvider: *expectProvider, n: *n, c: *c, timeout: *timeout, verbose: *v}
	var rep *Report
	if o.proto == "tri" {
		rep = runTriple(o)
	} else {
		rep = run(o)
	}
	line, _ := json.Marshal(rep)
	fmt.Println(string(line))
	if rep.Failed != 0 || rep.AttachmentsOK != int64(*n) || !rep.FailCallErrored {
		os.Exit(1)
	}
}

// dial refers the service at url. dubbo-go connects eagerly and panics (nil
// invoker) when the server cannot be reached, so turn that into an error.
func dial(cli *client.Client, url, iface, group, version string, timeout time.Duration) (conn *client.Connection, err error) {
	defer func() {
		if r := recover(); r != nil {
			conn, err = nil, fmt.Errorf("cannot connect to %s: %v", url, r)
		}
	}()
	return cli.Dial(iface,
		client.WithURL(url),
		client.WithProtocolDubbo(),
		client.WithGroup(group),
		client.WithVersion(version),
		client.WithSerialization(constant.Hessian2Serialization),
		client.WithClusterFailFast(), // one request per call: no hidden retries
		client.WithRequestTimeout(timeout),
		client.WithFilter(captureFilterName),
	)
}

func run(o options) *Report {
	addr, n, c, timeout, verbose := o.addr, o.n, o.c, o.timeout, o.verbose
	rep := &Report{}
	var firstErr sync.Once
	fail := func(err error) {
		firstErr.Do(func() { rep.FirstError = err.Error() })
	}
	if c < 1 {
		c = 1
	}

	extension.SetFilter(captureFilterName, func() filter.Filter { return captureFilter{} })

	cli, err := client.NewClient(
		client.WithClientProtocolDubbo(),
		client.WithClientShutdown(graceful_shutdown.WithoutInternalSignal()),
	)
	if err != nil {
		rep.Failed = int64(n)
		fail(err)
		return rep
	}
	url := fmt.Sprintf("dubbo://%s/%s?group=%s&version=%s&serialization=%s",
		addr, o.iface, o.group, o.version, constant.Hessian2Serialization)
	conn, err := dial(cli, url, o.iface, o.group, o.version, timeout)
	if err != nil {
		rep.Failed = int64(n)
		fail(err)
		return rep
	}

	// Without a per-call timeout dubbo-go 3.3.2 sends timeout "" and then
	// waits with a zero (unbounded) timeout: always pass it.
	callTimeout := client.WithCallRequestTimeout(timeout)

	runID := time.Now().UnixNano()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				name := fmt.Sprintf("weft-%d", i)
				trace := fmt.Sprintf("trace-%x-%d", runID, i)
				cap := &captured{}
				ctx := context.WithValue(context.Background(), captureKey{}, cap)
				ctx = context.WithValue(ctx, constant.AttachmentKey, map[string]any{
					"x-trace-id":  trace,
					"x-load-test": "1",
				})
				var reply string
				if err := conn.CallUnary(ctx, []any{name}, &reply, "SayHello", callTimeout); err != nil {
					atomic.AddInt64(&rep.Failed, 1)
					fail(fmt.Errorf("call %d: %v", i, err))
					continue
				}
				if want := "hello " + name; reply != want {
					atomic.AddInt64(&rep.Failed, 1)
					fail(fmt.Errorf("call %d: reply %q, want %q", i, reply, want))
					continue
				}
				atomic.AddInt64(&rep.OK, 1)
				got, _ := cap.atts["x-trace-id"].(string)
				prov, _ := cap.atts[interop.ProviderKey].(string)
				if verbose && i == 0 {
					fmt.Fprintf(os.Stderr, "response attachments of call 0: %v\n", cap.atts)
				}
				if got == trace && prov == interop.ProviderValue {
					atomic.AddInt64(&rep.AttachmentsOK, 1)
				} else {
					fail(fmt.Errorf("call %d: response attachments x-trace-id=%q (want %q) %s=%q: %v",
						i, got, trace, interop.ProviderKey, prov, cap.atts))
				}
			}
		}()
	}
	wg.Wait()

	var reply string
	err = conn.CallUnary(context.Background(), []any{"boom"}, &reply, "Fail", callTimeout)
	rep.FailCallErrored = err != nil
	if err == nil {
		fail(fmt.Errorf("Fail call returned no error (reply %q)", reply))
	}
	return rep
}

// dialTriple refers the Triple service at url with the IDL-mode invoker
// (protobuf codec), turning dubbo-go's panic on failure into an error.
func dialTriple(cli *client.Client, url string, o options) (conn *client.Connection, err error) {
	defer func() {
		if r := recover(); r != nil {
			conn, err = nil, fmt.Errorf("cannot refer %s: %v", url, r)
		}
	}()
	info := interop.GreeterClientInfo
	info.InterfaceName = o.iface
	return cli.DialWithInfo(o.iface, &info,
		client.WithURL(url),
		client.WithProtocolTriple(),
		client.WithGroup(o.group),
		client.WithVersion(o.version),
		client.WithSerialization(constant.ProtobufSerialization),
		client.WithClusterFailFast(), // one request per call: no hidden retries
		client.WithRequestTimeout(o.timeout),
	)
}

// runTriple is run over Triple. dubbo-go's Triple provider sends the response
// attachments as gRPC trailers; they are collected with client.WithResponseTrailer
// (and the response headers too, in case a provider sends them there).
func runTriple(o options) *Report {
	rep := &Report{Providers: map[string]int64{}}
	var mu sync.Mutex // guards rep.FirstError, rep.FirstCode, rep.Providers
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if rep.FirstError == "" {
			rep.FirstError = err.Error()
			if c := tri.CodeOf(err); c != tri.CodeUnknown || tri.IsWireError(err) {
				rep.FirstCode = c.String()
			}
		}
	}
	if o.c < 1 {
		o.c = 1
	}

	cli, err := client.NewClient(
		client.WithClientProtocolTriple(),
		client.WithClientShutdown(graceful_shutdown.WithoutInternalSignal()),
	)
	if err != nil {
		rep.Failed = int64(o.n)
		fail(err)
		return rep
	}
	url := fmt.Sprintf("tri://%s/%s?group=%s&version=%s", o.addr, o.iface, o.group, o.version)
	conn, err := dialTriple(cli, url, o)
	if err != nil {
		rep.Failed = int64(o.n)
		fail(err)
		return rep
	}
	callTimeout := client.WithCallRequestTimeout(o.timeout)

	runID := time.Now().UnixNano()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < o.c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.n) {
					return
				}
				name := fmt.Sprintf("weft-%d", i)
				trace := fmt.Sprintf("trace-%x-%d", runID, i)
				ctx := context.WithValue(context.Background(), constant.AttachmentKey, map[string]any{
					"x-trace-id":  trace,
					"x-load-test": "1",
				})
				reply := new(wrapperspb.StringValue)
				var hdr, trl http.Header
				if err := conn.CallUnary(ctx, []any{wrapperspb.String(name)}, reply, "SayHello",
					callTimeout, client.WithResponseHeader(&hdr), client.WithResponseTrailer(&trl)); err != nil {
					atomic.AddInt64(&rep.Failed, 1)
					fail(fmt.Errorf("call %d: %w", i, err))
					continue
				}
				if want := "hello " + name; reply.GetValue() != want {
					atomic.AddInt64(&rep.Failed, 1)
					fail(fmt.Errorf("call %d: reply %q, want %q", i, reply.GetValue(), want))
					continue
				}
				atomic.AddInt64(&rep.OK, 1)
				if hdr == nil {
					hdr = http.Header{}
				}
				for k, v := range trl {
					hdr[k] = append(hdr[k], v...)
				}
				got := hdr.Get("x-trace-id")
				prov := hdr.Get(interop.ProviderKey)
				if id := hdr.Get(interop.ProviderIDKey); id != "" {
					mu.Lock()
					rep.Providers[id]++
					mu.Unlock()
				}
				if o.verbose && i == 0 {
					fmt.Fprintf(os.Stderr, "response headers and trailers of call 0: %v\n", hdr)
				}
				if got == trace && prov == o.expectProvider {
					atomic.AddInt64(&rep.AttachmentsOK, 1)
				} else {
					fail(fmt.Errorf("call %d: response attachments x-trace-id=%q (want %q) %s=%q (want %q): %v",
						i, got, trace, interop.ProviderKey, prov, o.expectProvider, hdr))
				}
			}
		}()
	}
	wg.Wait()

	reply := new(wrapperspb.StringValue)
	err = conn.CallUnary(context.Background(), []any{wrapperspb.String("boom")}, reply, "Fail", callTimeout)
	rep.FailCallErrored = err != nil
	if err == nil {
		fail(fmt.Errorf("Fail call returned no error (reply %q)", reply.GetValue()))
	}
	return rep
}
