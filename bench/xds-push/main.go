// Command xds-push measures how fast the built-in control plane
// (internal/controlplane) pushes a rule change to many sidecars: it starts
// the control plane with a generated rules directory, connects N simulated
// sidecars (each a real state-of-the-world ADS stream that requests
// CDS, EDS, LDS and RDS and ACKs every response, as Weft's xDS client
// does), waits until all hold and ACKed the initial snapshot, then rewrites
// one rule file and measures the time until every sidecar has received and
// ACKed the new version. See README.md; run.sh runs it at N=1,000 and
// N=10,000.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/controlplane"
)

type config struct {
	n              int
	streamsPerConn int
	services       int
	poll           time.Duration
	debounce       time.Duration
	timeout        time.Duration
	connectRate    int
	weft           string // run `weft control-plane` as a child instead of in process
	keep           bool
	memprofile     string
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 10000, "simulated sidecars (one ADS stream each)")
	flag.IntVar(&c.streamsPerConn, "streams-per-conn", 100, "ADS streams per gRPC connection")
	flag.IntVar(&c.services, "services", 50, "HTTP services in the generated rules (plus one Bolt service per 5)")
	flag.DurationVar(&c.poll, "poll", controlplane.DefaultPoll, "the control plane's rules poll interval")
	flag.DurationVar(&c.debounce, "debounce", controlplane.DefaultDebounce, "the control plane's debounce")
	flag.DurationVar(&c.timeout, "timeout", 120*time.Second, "give up after this long per phase")
	flag.IntVar(&c.connectRate, "connect-parallel", 200, "streams opened at once while connecting")
	flag.StringVar(&c.weft, "weft", "", "a weft binary: run its control-plane in a child process (its RSS is then the control plane's alone)")
	flag.BoolVar(&c.keep, "keep", false, "keep the generated rules directory")
	flag.StringVar(&c.memprofile, "memprofile", "", "write a heap profile here once every sidecar is connected (in process)")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "xds-push:", err)
		os.Exit(1)
	}
}

// Result is what one run measured.
type Result struct {
	N, Conns, Clusters, Services int
	Connect                      time.Duration // all streams open and initial snapshot ACKed
	DetectDelay                  time.Duration // file written -> rules loaded
	FromWrite, FromLoad          dist          // per sidecar: file written / rules loaded -> new routes ACKed
	ServerAcked                  int           // nodes the server saw ACK all of their new snapshot
	HeapIdle, HeapConnected      uint64        // in-process: heap in use before clients and after
	StackConnected               uint64        // in-process: goroutine stacks in use, connected
	Goroutines                   int           // in-process, connected
	RSSConnected, HWM            uint64        // the control plane's RSS (the whole process when in process)
	CPUPush                      time.Duration // process CPU during the push (in process: clients included)
	InProcess                    bool
}

func run(c config, out io.Writer) error {
	fdLimit := raiseFDLimit()
	dir, err := os.MkdirTemp("", "xds-push-rules-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(dir)
	}
	rules := genRules(c.services)
	if err := writeFile(dir, "services.yaml", rules.services); err != nil {
		return err
	}
	if err := writeFile(dir, "routes.yaml", rules.routes(90)); err != nil {
		return err
	}
	if err := writeFile(dir, "sidecars.yaml", rules.sidecars); err != nil {
		return err
	}

	res := Result{N: c.n, Services: c.services + c.services/5, InProcess: c.weft == ""}
	var xdsAddr, adminAddr string
	var stopCP func()
	var pid int
	if c.weft == "" {
		runtime.GC()
		s, err := controlplane.New(controlplane.Options{RulesDir: dir, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
			PollInterval: c.poll, Debounce: c.debounce, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		s.Start()
		stopCP = func() { s.Close() }
		xdsAddr, adminAddr, pid = s.XDSAddr(), s.AdminAddr(), os.Getpid()
		res.HeapIdle = heapInUse()
	} else {
		cmd, x, a, err := startChild(c, dir)
		if err != nil {
			return err
		}
		stopCP = func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
		xdsAddr, adminAddr, pid = x, a, cmd.Process.Pid
	}
	defer stopCP()
	if err := waitReady(adminAddr, c.timeout); err != nil {
		return err
	}

	// Connect every sidecar and wait for the initial snapshot, ACKed.
	conns := (c.n + c.streamsPerConn - 1) / c.streamsPerConn
	res.Conns = conns
	if need := uint64(conns + 256); fdLimit > 0 && fdLimit < need {
		return fmt.Errorf("open-files limit %d < %d: raise ulimit -n", fdLimit, need)
	}
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer cc.Close()
		ccs[i] = cc
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet := &fleet{ready: make(chan int, c.n), changed: make(chan int, c.n), failed: make(chan error, c.n)}
	start := time.Now()
	sem := make(chan struct{}, c.connectRate)
	var wg sync.WaitGroup
	for i := 0; i < c.n; i++ {
		sc := &sidecar{id: fmt.Sprintf("bench-%05d", i), f: fleet}
		fleet.all = append(fleet.all, sc)
		sem <- struct{}{}
		wg.Add(1)
		go func(cc *grpc.ClientConn) {
			defer wg.Done()
			sc.run(ctx, cc, sem)
		}(ccs[i%conns])
	}
	if err := fleet.wait(fleet.ready, c.n, c.timeout, "initial snapshot"); err != nil {
		return err
	}
	res.Connect = time.Since(start)
	res.Clusters = int(fleet.all[0].clusters.Load())
	if c.weft == "" {
		res.HeapConnected = heapInUse()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		res.StackConnected, res.Goroutines = ms.StackInuse, runtime.NumGoroutine()
		if c.memprofile != "" {
			if err := writeHeapProfile(c.memprofile); err != nil {
				return err
			}
		}
	}
	res.RSSConnected, _ = procMem(pid)

	// The change: one route's weights flip, so every sidecar gets new
	// routes and nothing else.
	before, err := status(adminAddr)
	if err != nil {
		return err
	}
	cpu0 := cpuTime(pid)
	fleet.changeStarted.Store(true)
	t0 := time.Now()
	fleet.t0.Store(t0.UnixNano())
	if err := writeFile(dir, "routes.yaml", rules.routes(10)); err != nil {
		return err
	}
	if err := fleet.wait(fleet.changed, c.n, c.timeout, "the new routes"); err != nil {
		return err
	}
	res.CPUPush = cpuTime(pid) - cpu0
	rss, hwm := procMem(pid)
	res.HWM = max(hwm, rss, res.RSSConnected)
	// The sidecars ACKed; give the server a moment to process the last
	// ACKs before counting them.
	var after *controlplane.Status
	for deadline := time.Now().Add(10 * time.Second); ; {
		if after, err = status(adminAddr); err != nil {
			return err
		}
		res.ServerAcked = after.InSync
		if res.ServerAcked == c.n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after.Rules == nil || before.Rules == nil || after.Rules.Version == before.Rules.Version {
		return errors.New("the control plane did not load the change")
	}
	loaded := after.Rules.LoadedAt
	res.DetectDelay = loaded.Sub(t0)
	var fromWrite, fromLoad []time.Duration
	for _, sc := range fleet.all {
		done := time.Unix(0, sc.changedAt.Load())
		fromWrite = append(fromWrite, done.Sub(t0))
		fromLoad = append(fromLoad, done.Sub(loaded))
	}
	res.FromWrite, res.FromLoad = newDist(fromWrite), newDist(fromLoad)
	report(out, c, res)
	cancel()
	wg.Wait()
	return nil
}

// fleet is the set of simulated sidecars.
type fleet struct {
	all           []*sidecar
	ready         chan int
	changed       chan int
	failed        chan error
	changeStarted atomic.Bool
	t0            atomic.Int64
}

func (f *fleet) wait(ch chan int, n int, timeout time.Duration, what string) error {
	deadline := time.After(timeout)
	for got := 0; got < n; {
		select {
		case <-ch:
			got++
		case err := <-f.failed:
			return err
		case <-deadline:
			return fmt.Errorf("%d of %d sidecars got %s within %v", got, n, what, timeout)
		}
	}
	return nil
}

// sidecar is one simulated sidecar: an ADS client that subscribes like
// Weft's (CDS and LDS wildcard, EDS and RDS by the names those name) and
// ACKs every response.
type sidecar struct {
	id        string
	f         *fleet
	clusters  atomic.Int64
	changedAt atomic.Int64
}

func (s *sidecar) run(ctx context.Context, cc *grpc.ClientConn, sem chan struct{}) {
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	send := func(typeURL string, names []string, version, nonce string, node *corev3.Node) error {
		return st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce})
	}
	if err := send(resource.ClusterType, nil, "", "", &corev3.Node{Id: s.id, Cluster: "bench"}); err != nil {
		s.fail(ctx, err)
		return
	}
	var edsNames, rdsNames []string
	acked := map[string]bool{}
	var initRDS string
	ready, changed := false, false
	for {
		r, err := st.Recv()
		if err != nil {
			s.fail(ctx, err)
			return
		}
		t := r.GetTypeUrl()
		var names []string
		switch t {
		case resource.ClusterType:
			next, err := clusterNames(r)
			if err != nil {
				s.fail(ctx, err)
				return
			}
			s.clusters.Store(int64(len(next)))
			if err := send(t, nil, r.GetVersionInfo(), r.GetNonce(), nil); err != nil {
				s.fail(ctx, err)
				return
			}
			if !slices.Equal(next, edsNames) {
				edsNames = next
				if err := send(resource.EndpointType, edsNames, "", "", nil); err != nil {
					s.fail(ctx, err)
					return
				}
			}
			if !acked[resource.ListenerType] && !acked[t] {
				if err := send(resource.ListenerType, nil, "", "", nil); err != nil {
					s.fail(ctx, err)
					return
				}
			}
			acked[t] = true
			continue
		case resource.ListenerType:
			next, err := routeNames(r)
			if err != nil {
				s.fail(ctx, err)
				return
			}
			if err := send(t, nil, r.GetVersionInfo(), r.GetNonce(), nil); err != nil {
				s.fail(ctx, err)
				return
			}
			if !slices.Equal(next, rdsNames) {
				rdsNames = next
				if err := send(resource.RouteType, rdsNames, "", "", nil); err != nil {
					s.fail(ctx, err)
					return
				}
			}
			acked[t] = true
			continue
		case resource.EndpointType:
			names = edsNames
		case resource.RouteType:
			names = rdsNames
		}
		if err := send(t, names, r.GetVersionInfo(), r.GetNonce(), nil); err != nil {
			s.fail(ctx, err)
			return
		}
		acked[t] = true
		if t == resource.RouteType {
			if initRDS == "" {
				initRDS = r.GetVersionInfo()
			} else if !changed && s.f.changeStarted.Load() && r.GetVersionInfo() != initRDS {
				changed = true
				s.changedAt.Store(time.Now().UnixNano())
				s.f.changed <- 1
			}
		}
		if !ready && len(acked) == 4 {
			ready = true
			release()
			s.f.ready <- 1
		}
	}
}

func (s *sidecar) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	select {
	case s.f.failed <- fmt.Errorf("sidecar %s: %w", s.id, err):
	default:
	}
}

func clusterNames(r *discoveryv3.DiscoveryResponse) ([]string, error) {
	out := make([]string, 0, len(r.GetResources()))
	for _, a := range r.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		out = append(out, c.GetName())
	}
	slices.Sort(out)
	return out, nil
}

// routeNames lists the RDS names of the listeners' HTTP connection
// managers and RPC proxies.
func routeNames(r *discoveryv3.DiscoveryResponse) ([]string, error) {
	var out []string
	for _, a := range r.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, err
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				switch {
				case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
					h := &hcmv3.HttpConnectionManager{}
					if err := tc.UnmarshalTo(h); err != nil {
						return nil, err
					}
					if n := h.GetRds().GetRouteConfigName(); n != "" {
						out = append(out, n)
					}
				case tc.MessageIs(&xdstypev3.TypedStruct{}):
					ts := &xdstypev3.TypedStruct{}
					if err := tc.UnmarshalTo(ts); err != nil {
						return nil, err
					}
					if n := ts.GetValue().GetFields()["rds"].GetStructValue().GetFields()["route_config_name"].GetStringValue(); n != "" {
						out = append(out, n)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// rules generates a rules directory: HTTP services with three versions
// each and weighted routes on every fifth, Bolt services, one sidecar rule
// for every bench node with an HTTP and a Bolt listener.
type rules struct {
	services, sidecars string
	routes             func(firstWeight int) string
}

func genRules(n int) rules {
	var s strings.Builder
	s.WriteString("services:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&s, "- name: svc-%03d\n  protocol: http\n  port: 8080\n  endpoints:\n", i)
		for v := 1; v <= 3; v++ {
			fmt.Fprintf(&s, "  - {address: 10.%d.%d.%d:8080, labels: {version: v%d}}\n", 1+i/250, i%250, v, v)
		}
		s.WriteString("  traffic_policy: {connect_timeout: 1s, circuit_breakers: {max_requests: 1000}}\n")
	}
	for i := 0; i < n/5; i++ {
		fmt.Fprintf(&s, "- name: com.bench.Service%03d\n  protocol: bolt\n  endpoints:\n  - {address: 10.200.%d.1:12200, labels: {version: \"1.0\"}}\n  - {address: 10.200.%d.2:12200, labels: {version: \"2.0\"}}\n", i, i, i)
	}
	routes := func(w int) string {
		var r strings.Builder
		r.WriteString("routes:\n")
		for i := 0; i < n; i += 5 {
			fmt.Fprintf(&r, "- service: svc-%03d\n  rules:\n  - match: {headers: [{name: x-canary, exact: \"1\"}]}\n    destinations: [{subset: {version: v3}}]\n", i)
			fmt.Fprintf(&r, "  - destinations:\n    - {subset: {version: v1}, weight: %d}\n    - {subset: {version: v2}, weight: %d}\n    timeout: 2s\n", w, 100-w)
		}
		return r.String()
	}
	sidecars := "sidecars:\n- name: bench\n  match: {node_id: \"bench-*\"}\n  listeners:\n" +
		"  - {name: http_egress, address: 127.0.0.1:15001, protocol: http}\n" +
		"  - {name: bolt_egress, address: 127.0.0.1:12200, protocol: bolt}\n"
	return rules{services: s.String(), sidecars: sidecars, routes: routes}
}

func writeFile(dir, name, content string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// startChild runs `weft control-plane` and reads its addresses.
func startChild(c config, dir string) (*exec.Cmd, string, string, error) {
	cmd := exec.Command(c.weft, "control-plane", "--rules", dir, "--xds", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--poll", c.poll.String(), "--debounce", c.debounce.String(), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, "", "", fmt.Errorf("weft control-plane: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	m := regexp.MustCompile(`xDS on (\S+), admin on (\S+),`).FindStringSubmatch(line)
	if m == nil {
		_ = cmd.Process.Kill()
		return nil, "", "", fmt.Errorf("weft control-plane said %q", line)
	}
	return cmd, m[1], m[2], nil
}

// status reads /status without the node list (its counts suffice).
func status(admin string) (*controlplane.Status, error) {
	resp, err := http.Get("http://" + admin + "/status?nodes=0")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	st := &controlplane.Status{}
	return st, json.NewDecoder(resp.Body).Decode(st)
}

func waitReady(admin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the control plane did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// procMem reads VmRSS and VmHWM of pid in bytes.
func procMem(pid int) (rss, hwm uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}

// cpuTime is utime+stime of pid.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ is 100 on Linux
}

// raiseFDLimit lifts the soft open-files limit to the hard one.
func raiseFDLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

// dist is a sorted set of durations.
type dist []time.Duration

func newDist(d []time.Duration) dist {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func (d dist) q(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func report(out io.Writer, c config, r Result) {
	where := "in this process (heap and RSS include the simulated sidecars)"
	if !r.InProcess {
		where = "in a child process (`" + c.weft + " control-plane`)"
	}
	fmt.Fprintf(out, "# xDS push: %d sidecars\n\n", r.N)
	fmt.Fprintf(out, "- control plane %s, GOMAXPROCS %d on %d CPUs, %s\n", where, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(out, "- %d ADS streams (state of the world) over %d gRPC connections; rules: %d services, %d clusters per sidecar; poll %v, debounce %v\n",
		r.N, r.Conns, r.Services, r.Clusters, c.poll, c.debounce)
	fmt.Fprintf(out, "- change: one routes.yaml rewrite that flips the weights of %d routes (RDS only)\n\n", (c.services+4)/5)
	fmt.Fprintf(out, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(out, "| connect + initial snapshot ACKed (all) | %s |\n", ms(r.Connect))
	fmt.Fprintf(out, "| file written -> rules loaded | %s |\n", ms(r.DetectDelay))
	fmt.Fprintf(out, "| rules loaded -> new routes ACKed, p50 / p99 / max | %s / %s / %s |\n", ms(r.FromLoad.q(0.5)), ms(r.FromLoad.q(0.99)), ms(r.FromLoad.max()))
	fmt.Fprintf(out, "| file written -> new routes ACKed, p50 / p99 / max (total) | %s / %s / **%s** |\n", ms(r.FromWrite.q(0.5)), ms(r.FromWrite.q(0.99)), ms(r.FromWrite.max()))
	fmt.Fprintf(out, "| nodes the server saw ACK their whole new snapshot | %d / %d |\n", r.ServerAcked, r.N)
	fmt.Fprintf(out, "| CPU during the push | %s |\n", ms(r.CPUPush))
	if r.InProcess {
		fmt.Fprintf(out, "| heap in use: idle / %d connected | %s / %s |\n", r.N, mib(r.HeapIdle), mib(r.HeapConnected))
		fmt.Fprintf(out, "| goroutine stacks in use, connected (%d goroutines) | %s |\n", r.Goroutines, mib(r.StackConnected))
	}
	fmt.Fprintf(out, "| RSS connected / peak | %s / %s |\n", mib(r.RSSConnected), mib(r.HWM))
	target := "met"
	if r.FromWrite.max() > 10*time.Second {
		target = "NOT met"
	}
	fmt.Fprintf(out, "\nTarget (all %d ACKed within 10 s of the file write): %s.\n", r.N, target)
}
