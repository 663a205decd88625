// Command rpc is the RPC load benchmark: it measures Bolt and Dubbo calls
// direct, through one Weft sidecar and through two (consumer sidecar ->
// provider sidecar), at several concurrency levels, with the sidecars
// pinned to one core, and prints requests/s, latency (and what each hop
// adds), the sidecars' CPU time per request and their RSS. A second part
// runs at a fixed rate (default 10,000 requests/s) to measure the latency
// a hop adds under a realistic load rather than at saturation.
//
//	go build -o /tmp/weft ./cmd/weft
//	go run ./bench/rpc -weft /tmp/weft -duration 10s
//
// The client and the provider (test/rpcpeer) run in this process, pinned to
// the other cores, so the sidecar's CPU is measured alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/rpcpeer"
)

func main() {
	weft := flag.String("weft", "", "path to the weft binary (required)")
	protos := flag.String("protocols", "bolt,dubbo", "protocols to measure")
	concs := flag.String("conc", "1,100,1000", "concurrent requests")
	dur := flag.Duration("duration", 10*time.Second, "measurement time per cell")
	rate := flag.Int("rate", 10000, "requests/s of the fixed-rate part (0 skips it)")
	body := flag.Int("body", 256, "request body bytes")
	sidecarCPU := flag.String("sidecar-cpu", "1", "taskset cpu list for the sidecars")
	clientCPU := flag.String("client-cpu", "0", "cpu list for this process (client and provider)")
	flag.Parse()
	if *weft == "" {
		log.Fatal("-weft is required")
	}
	pin(os.Getpid(), *clientCPU)
	runtime.GOMAXPROCS(cpuCount(*clientCPU))
	b := &bench{weft: *weft, dur: *dur, cpu: *sidecarCPU, body: strings.Repeat("x", *body)}
	fmt.Printf("# RPC benchmark %s, %d CPUs, sidecars on cpu %s, client+provider on cpu %s, %s per cell, %d-byte body\n\n",
		time.Now().Format(time.RFC3339), runtime.NumCPU(), *sidecarCPU, *clientCPU, *dur, *body)
	for _, p := range strings.Split(*protos, ",") {
		b.protocol(rpcpeer.Protocol(p), ints(*concs), *rate)
	}
}

type bench struct {
	weft string
	dur  time.Duration
	cpu  string
	body string
}

// sidecar is one weft process.
type sidecar struct {
	cmd   *exec.Cmd
	addr  string
	dir   string
	admin string
}

// histogram reads the sidecar's own request-time histogram (decode of the
// request to write of the response): cumulative counts per upper bound.
func (s *sidecar) histogram() map[float64]float64 {
	out := map[float64]float64{}
	if s.admin == "" {
		return out
	}
	resp, err := http.Get("http://" + s.admin + "/stats/prometheus")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "weft_rpc_downstream_rq_time_seconds_bucket{") {
			continue
		}
		i := strings.Index(l, `le="`)
		j := strings.Index(l[i+4:], `"`)
		le, err := strconv.ParseFloat(l[i+4:i+4+j], 64)
		if err != nil || math.IsInf(le, 1) {
			le = 1e9 // +Inf
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		out[le] = v
	}
	return out
}

// quantile interpolates quantile q of the difference of two cumulative
// histograms.
func quantile(before, after map[float64]float64, q float64) time.Duration {
	les := make([]float64, 0, len(after))
	for le := range after {
		les = append(les, le)
	}
	slices.Sort(les)
	total := after[1e9] - before[1e9]
	if total <= 0 {
		return 0
	}
	prevLE, prevN := 0.0, 0.0
	for _, le := range les {
		n := after[le] - before[le]
		if n >= q*total {
			if le == 1e9 {
				return time.Duration(prevLE * 1e9)
			}
			frac := (q*total - prevN) / max(n-prevN, 1)
			return time.Duration((prevLE + frac*(le-prevLE)) * 1e9)
		}
		prevLE, prevN = le, n
	}
	return 0
}

func (b *bench) startSidecar(p rpcpeer.Protocol, upstream string) *sidecar {
	dir, err := os.MkdirTemp("", "weft-bench-rpc-")
	if err != nil {
		log.Fatal(err)
	}
	port := freePort()
	uh, up, _ := net.SplitHostPort(upstream)
	cfg := fmt.Sprintf(`
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  listeners:
  - name: rpc
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: weft.filters.network.rpc_proxy
        typed_config:
          "@type": type.googleapis.com/xds.type.v3.TypedStruct
          type_url: type.weftmesh.io/weft.filters.network.rpc_proxy.v1.RpcProxy
          value:
            stat_prefix: bench
            protocols: [%s]
            route_config:
              virtual_hosts:
              - name: all
                domains: ["*"]
                routes:
                - match: {prefix: ""}
                  route: {cluster: up, timeout: 10s}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, port, p, uh, up)
	path := filepath.Join(dir, "weft.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		log.Fatal(err)
	}
	// Started under taskset so that the Go runtime sizes GOMAXPROCS to the
	// pinned cores (pinning after start leaves idle Ps spinning).
	cmd := exec.Command("taskset", "-c", b.cpu, b.weft, "start", "-c", path, "--log-level", "error",
		"--admin-address-path", filepath.Join(dir, "admin"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("sidecar did not come up on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sc := &sidecar{cmd: cmd, addr: addr, dir: dir}
	if a, err := os.ReadFile(filepath.Join(dir, "admin")); err == nil {
		sc.admin = strings.TrimSpace(string(a))
		log.Printf("sidecar %s: admin http://%s (pprof: /debug/pprof/profile)", addr, sc.admin)
	}
	return sc
}

func (s *sidecar) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(s.dir)
}

// result is one measured cell.
type result struct {
	n             int64
	errors        int64
	rps           float64
	p50, p99      time.Duration
	cpuPerReq     []time.Duration // per sidecar
	rssMiB        []float64
	sidecarCPUPct []float64
	inProxy       []string // the sidecar's own p50/p99 request time
}

func (b *bench) protocol(p rpcpeer.Protocol, concs []int, rate int) {
	prov, err := rpcpeer.Serve(p, "127.0.0.1:0", rpcpeer.ServerOptions{Name: "bench"})
	if err != nil {
		log.Fatal(err)
	}
	defer prov.Close()
	ingress := b.startSidecar(p, prov.Addr())
	defer ingress.stop()
	egress := b.startSidecar(p, ingress.addr)
	defer egress.stop()
	type path struct {
		name     string
		addr     string
		sidecars []*sidecar
	}
	paths := []path{
		{"direct", prov.Addr(), nil},
		{"1 sidecar", ingress.addr, []*sidecar{ingress}},
		{"2 sidecars", egress.addr, []*sidecar{egress, ingress}},
	}
	if len(concs) > 0 {
		fmt.Printf("## %s, closed loop (as many requests as the concurrency allows)\n\n", p)
	}
	for _, c := range concs {
		_ = c
		fmt.Println("| path | concurrency | requests/s | p50 | p99 | added p50 / p99 vs direct | sidecar CPU per request | sidecar CPU | sidecar RSS | errors |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
		break
	}
	for _, c := range concs {
		var direct result
		for _, pa := range paths {
			r := b.run(p, pa.addr, c, 0, pa.sidecars)
			if pa.sidecars == nil {
				direct = r
			}
			fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %d |\n", pa.name, c, r.rps, us(r.p50), us(r.p99),
				added(r, direct, pa.sidecars == nil), durs(r.cpuPerReq), pcts(r.sidecarCPUPct), mibs(r.rssMiB), r.errors)
		}
	}
	if rate > 0 {
		fmt.Printf("\n## %s, fixed rate %d requests/s (200 concurrent at most)\n\n", p, rate)
		fmt.Println("| path | requests/s | p50 | p99 | added per hop p50 / p99 | sidecar's own request time p50 / p99 (includes the hops behind it) | sidecar CPU per request | sidecar CPU | errors |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|")
		var direct result
		for _, pa := range paths {
			r := b.run(p, pa.addr, 200, rate, pa.sidecars)
			if pa.sidecars == nil {
				direct = r
			}
			perHop := "-"
			if hops := len(pa.sidecars); hops > 0 {
				perHop = fmt.Sprintf("%s / %s", us((r.p50-direct.p50)/time.Duration(hops)), us((r.p99-direct.p99)/time.Duration(hops)))
			}
			inside := "-"
			if len(r.inProxy) > 0 {
				inside = strings.Join(r.inProxy, " + ")
			}
			fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %s | %s | %d |\n", pa.name, r.rps, us(r.p50), us(r.p99), perHop,
				inside, durs(r.cpuPerReq), pcts(r.sidecarCPUPct), r.errors)
		}
	}
	fmt.Println()
}

// run drives conc concurrent callers (over ceil(conc/100) connections)
// for the bench duration; rate > 0 paces them to that total rate.
func (b *bench) run(p rpcpeer.Protocol, addr string, conc, rate int, sidecars []*sidecar) result {
	nconn := (conc + 99) / 100
	clients := make([]*rpcpeer.Client, nconn)
	for i := range clients {
		c, err := rpcpeer.Dial(p, addr)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	req := &rpcpeer.Request{Service: "com.example.BenchService", Method: "echo", Version: "1.0", Body: []byte(b.body)}
	// Warm up: connections, pools, the Go heap.
	b.drive(clients, req, conc, rate, time.Second, nil)

	cpu0 := make([]time.Duration, len(sidecars))
	h0 := make([]map[float64]float64, len(sidecars))
	for i, s := range sidecars {
		cpu0[i] = cpuTime(s.cmd.Process.Pid)
		h0[i] = s.histogram()
	}
	lat := make([][]time.Duration, conc)
	start := time.Now()
	n, errs := b.drive(clients, req, conc, rate, b.dur, lat)
	el := time.Since(start)
	r := result{n: n, errors: errs, rps: float64(n) / el.Seconds()}
	for i, s := range sidecars {
		d := cpuTime(s.cmd.Process.Pid) - cpu0[i]
		if n > 0 {
			r.cpuPerReq = append(r.cpuPerReq, d/time.Duration(n))
		}
		r.sidecarCPUPct = append(r.sidecarCPUPct, 100*d.Seconds()/el.Seconds())
		r.rssMiB = append(r.rssMiB, rssMiB(s.cmd.Process.Pid))
		h1 := s.histogram()
		r.inProxy = append(r.inProxy, fmt.Sprintf("%s / %s", us(quantile(h0[i], h1, 0.5)), us(quantile(h0[i], h1, 0.99))))
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
	}
	return r
}

// drive runs conc callers for d and returns the calls made and failed;
// with lat set each caller records its latencies there.
func (b *bench) drive(clients []*rpcpeer.Client, req *rpcpeer.Request, conc, rate int, d time.Duration, lat [][]time.Duration) (int64, int64) {
	var n, errs atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(conc) / float64(rate))
	}
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			next := time.Now().Add(time.Duration(w) * interval / time.Duration(conc))
			for {
				if interval > 0 {
					next = next.Add(interval)
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
				}
				t0 := time.Now()
				if t0.After(stop) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.Call(ctx, req)
				cancel()
				el := time.Since(t0)
				if err != nil || resp.Status != okStatus(resp, req) {
					errs.Add(1)
					continue
				}
				n.Add(1)
				if lat != nil {
					lat[w] = append(lat[w], el)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), errs.Load()
}

func okStatus(resp *rpcpeer.Response, _ *rpcpeer.Request) int {
	if resp == nil {
		return -1
	}
	if resp.Status == rpcpeer.DubboOK || resp.Status == rpcpeer.BoltSuccess {
		return resp.Status
	}
	return -1
}

// cpuTime is a process's user+system CPU time from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

func pin(pid int, cpus string) {
	if cpus == "" {
		return
	}
	if err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).Run(); err != nil {
		log.Printf("taskset %s %d: %v (not pinned)", cpus, pid, err)
	}
}

// cpuCount counts the CPUs of a taskset list such as "0" or "0,2-3".
func cpuCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if ok {
			b, _ = strconv.Atoi(hi)
		}
		n += b - a + 1
	}
	return max(n, 1)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func ints(s string) []int {
	var out []int
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			log.Fatalf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func added(r, direct result, isDirect bool) string {
	if isDirect {
		return "-"
	}
	return fmt.Sprintf("%s / %s", us(r.p50-direct.p50), us(r.p99-direct.p99))
}

func durs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
	return strings.Join(parts, " + ")
}

func pcts(ps []float64) string {
	if len(ps) == 0 {
		return "-"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%.0f%%", p)
	}
	return strings.Join(parts, " + ")
}

func mibs(ms []float64) string {
	if len(ms) == 0 {
		return "-"
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%.0f MiB", m)
	}
	return strings.Join(parts, " + ")
}
