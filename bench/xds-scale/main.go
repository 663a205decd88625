// Command xds-scale measures dynamic configuration at scale (SPEC C2/C3):
// route matching, memory and RDS update time for a 10,000 virtual host /
// 50,000 route table, and EDS update time, memory and host picks for a
// 50,000-endpoint cluster. It prints Markdown tables: with -runs N (default
// 3) it runs itself N times, each in a fresh process, and prints the median
// of each figure. run.sh runs it and the go test benchmarks beside it.
//
//	go run ./bench/xds-scale [-runs 3] [-vhosts 10000] [-routes 50000] [-endpoints 50000] [-only rds|eds]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/weftmesh/weft/internal/stream"
)

type options struct {
	runs           int
	vhosts, routes int
	requests       int // distinct prepared requests
	passes         int // timed sweeps over them
	updates        int // RDS updates while the reader runs
	endpoints      int
	pushes         int // repetitions of each EDS push kind
	picks          int
	lbs            string
	meta           bool
	only           string
	jsonOut        bool
}

// result is everything one run measures.
type result struct {
	Go, CPU string
	Procs   int
	Clock   dist
	RDS     *rdsResult
	EDS     []*edsResult
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "runs, each in a fresh process; the tables show the median")
	flag.IntVar(&o.vhosts, "vhosts", 10000, "virtual hosts in the route table")
	flag.IntVar(&o.routes, "routes", 50000, "routes in the route table (all virtual hosts)")
	flag.IntVar(&o.requests, "requests", 200000, "distinct random requests")
	flag.IntVar(&o.passes, "passes", 5, "timed sweeps over the requests")
	flag.IntVar(&o.updates, "updates", 10, "RDS updates applied while a reader matches")
	flag.IntVar(&o.endpoints, "endpoints", 50000, "endpoints in the EDS cluster")
	flag.IntVar(&o.pushes, "pushes", 9, "repetitions of each kind of EDS push")
	flag.IntVar(&o.picks, "picks", 1000000, "timed host picks")
	flag.StringVar(&o.lbs, "lb", "ROUND_ROBIN,LEAST_REQUEST", "comma-separated lb_policy values for the EDS cluster")
	flag.BoolVar(&o.meta, "meta", true, "give every endpoint Istio-style metadata")
	flag.StringVar(&o.only, "only", "", "run only \"rds\" or \"eds\"")
	flag.BoolVar(&o.jsonOut, "json", false, "print one run's raw result as JSON (used by -runs)")
	flag.Parse()
	if err := mainErr(os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "xds-scale:", err)
		os.Exit(1)
	}
}

func mainErr(w io.Writer, o options) error {
	if o.jsonOut || o.runs <= 1 {
		r, err := measure(o)
		if err != nil {
			return err
		}
		if o.jsonOut {
			return json.NewEncoder(w).Encode(r)
		}
		render(w, o, []*result{r})
		return nil
	}
	var rs []*result
	for i := range o.runs {
		fmt.Fprintf(os.Stderr, "xds-scale: run %d of %d\n", i+1, o.runs)
		r, err := child(o)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		rs = append(rs, r)
	}
	render(w, o, rs)
	return nil
}

// child runs one measurement in a fresh process of this program.
func child(o options) (*result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-json", "-runs=1"}
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "runs" && f.Name != "json" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	var out bytes.Buffer
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, err
	}
	r := &result{}
	return r, json.Unmarshal(out.Bytes(), r)
}

func measure(o options) (*result, error) {
	r := &result{Go: runtime.Version(), CPU: cpuModel(), Procs: runtime.GOMAXPROCS(0), Clock: clockOverhead(1_000_000)}
	if o.only != "eds" {
		rr, err := measureRDS(o)
		if err != nil {
			return nil, fmt.Errorf("rds: %w", err)
		}
		r.RDS = rr
	}
	if o.only != "rds" {
		v, err := newEDSVariants(o.endpoints, o.meta)
		if err != nil {
			return nil, fmt.Errorf("eds: %w", err)
		}
		for _, name := range strings.Split(o.lbs, ",") {
			pol, ok := clusterv3.Cluster_LbPolicy_value[strings.TrimSpace(name)]
			if !ok {
				return nil, fmt.Errorf("eds: unknown lb_policy %q", name)
			}
			er, err := measureEDS(o, v, clusterv3.Cluster_LbPolicy(pol))
			if err != nil {
				return nil, fmt.Errorf("eds %s: %w", name, err)
			}
			r.EDS = append(r.EDS, er)
		}
	}
	return r, nil
}

// rdsResult is one run of the route table measurements.
type rdsResult struct {
	WireBytes int
	// Memory deltas in bytes over the state before the first apply.
	HeapInuse, HeapAlloc, RSS, PeakRSS int64
	PeakOK                             bool
	First                              phases
	Match                              [numClasses]dist
	All, Cold, Zipf                    dist
	MeanNs, ZipfMeanNs                 float64
	Decode, Validate, Compile          stat
	Swap, Total                        stat
	ValidateOnly                       stat // rc.Validate alone: what Compile repeats
	ReaderMatches                      int64
	ReaderTables                       int
	Reader                             dist
}

func measureRDS(o options) (*rdsResult, error) {
	s := shape{vhosts: o.vhosts, routes: o.routes}
	wire := make([][]byte, 2)
	for g := range wire {
		b, err := encodeRDS(routeConfig(s, g), fmt.Sprint(g))
		if err != nil {
			return nil, err
		}
		wire[g] = b
	}
	reqs := requests(s, o.requests, 1, uniform)
	zreqs := requests(s, o.requests, 2, zipf)
	res := &rdsResult{WireBytes: len(wire[0])}

	before := settle()
	res.PeakOK = resetPeakRSS()
	t, p, err := applyRDS(wire[0], nil)
	if err != nil {
		return nil, err
	}
	_, peak := procStatus()
	src := stream.NewStaticRoutes(t)
	t = nil
	after := settle()
	res.First = p
	res.HeapInuse = delta(after.heapInuse, before.heapInuse)
	res.HeapAlloc = delta(after.heapAlloc, before.heapAlloc)
	res.RSS = delta(after.rss, before.rss)
	res.PeakRSS = delta(peak, before.rss)

	tbl := src.Table()
	cd, err := matchLatency(tbl, reqs, o.passes, true)
	if err != nil {
		return nil, err
	}
	res.Match, res.All = cd.byClass, cd.all
	cold, err := matchLatency(tbl, reqs, 1, false)
	if err != nil {
		return nil, err
	}
	res.Cold = cold.all
	zd, err := matchLatency(tbl, zreqs, o.passes, true)
	if err != nil {
		return nil, err
	}
	res.Zipf = zd.all
	res.MeanNs = float64(matchThroughput(tbl, reqs, o.passes))
	res.ZipfMeanNs = float64(matchThroughput(tbl, zreqs, o.passes))

	// Updates alternate between two generations while a reader matches.
	rd := startReader(src, reqs, o.vhosts)
	var ps []phases
	for u := 0; u < o.updates; u++ {
		_, p, err := applyRDS(wire[(u+1)%2], src)
		if err != nil {
			rd.halt()
			return nil, err
		}
		ps = append(ps, p)
	}
	if err := rd.halt(); err != nil {
		return nil, err
	}
	col := func(f func(phases) time.Duration) stat {
		var ds []time.Duration
		for _, p := range ps {
			ds = append(ds, f(p))
		}
		return statOf(ds)
	}
	res.Decode = col(func(p phases) time.Duration { return p.Decode })
	res.Validate = col(func(p phases) time.Duration { return p.Validate })
	res.Compile = col(func(p phases) time.Duration { return p.Compile })
	res.Swap = col(func(p phases) time.Duration { return p.Swap })
	res.Total = col(phases.total)
	res.ReaderMatches, res.ReaderTables, res.Reader = rd.matches, rd.tables, summarize(rd.lat)

	rc, err := decodeRDS(wire[0])
	if err != nil {
		return nil, err
	}
	var vs []time.Duration
	for range max(3, o.updates/2) {
		t0 := time.Now()
		if err := rc.Validate(); err != nil {
			return nil, err
		}
		vs = append(vs, time.Since(t0))
	}
	res.ValidateOnly = statOf(vs)
	return res, nil
}

// edsResult is one run of the EDS measurements for one lb_policy.
type edsResult struct {
	Policy                  string
	WireBytes               int
	First, One, Tenth, Same stat
	Decode                  stat // proto.Unmarshal + ValidateAll, the xDS client's part
	HeapInuse, Proto, Weft  int64
	HeapAlloc, RSS          int64
	Pick                    dist
	PickMeanNs              float64
}

func measureEDS(o options, v *edsVariants, pol clusterv3.Cluster_LbPolicy) (*edsResult, error) {
	n := o.endpoints
	res := &edsResult{Policy: pol.String(), WireBytes: len(v.wire)}
	// Memory: what the first push leaves (the manager may keep the decoded
	// assignment), and the decoded assignment alone.
	m, err := newEDSManager(pol)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	s0 := settle()
	var decodes, first []time.Duration
	t0 := time.Now()
	cla, err := decodeCLA(v.wire)
	decodes = append(decodes, time.Since(t0))
	if err != nil {
		return nil, err
	}
	s1 := settle()
	d, err := timedPush(m, cla, n)
	if err != nil {
		return nil, err
	}
	first = append(first, d)
	cla = nil
	s2 := settle()
	res.HeapInuse = delta(s2.heapInuse, s0.heapInuse)
	res.Proto = delta(s1.heapInuse, s0.heapInuse)
	res.HeapAlloc = delta(s2.heapAlloc, s0.heapAlloc)
	res.RSS = delta(s2.rss, s0.rss)

	// More first pushes, each into a fresh manager.
	for range o.pushes - 1 {
		fm, err := newEDSManager(pol)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		c, err := decodeCLA(v.wire)
		decodes = append(decodes, time.Since(t0))
		if err != nil {
			fm.Close()
			return nil, err
		}
		d, err := timedPush(fm, c, n)
		fm.Close()
		if err != nil {
			return nil, err
		}
		first = append(first, d)
	}
	res.First, res.Decode = statOf(first), statOf(decodes)

	// Each kind alternates between the base assignment and its variant,
	// so every push changes exactly that many endpoints.
	for _, k := range []struct {
		out *stat
		seq []*endpointv3.ClusterLoadAssignment
	}{
		{&res.One, []*endpointv3.ClusterLoadAssignment{v.one, v.base}},
		{&res.Tenth, []*endpointv3.ClusterLoadAssignment{v.tenth, v.base}},
		{&res.Same, []*endpointv3.ClusterLoadAssignment{v.base}},
	} {
		var ds []time.Duration
		for range o.pushes {
			for _, next := range k.seq {
				d, err := timedPush(m, next, n)
				if err != nil {
					return nil, err
				}
				ds = append(ds, d)
			}
		}
		*k.out = statOf(ds)
	}
	if res.Pick, err = pickLatency(m, o.picks); err != nil {
		return nil, err
	}
	res.PickMeanNs = float64(pickThroughput(m, o.picks))
	return res, nil
}

// cpuModel is the first "model name" of /proc/cpuinfo, "" elsewhere.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.TrimSpace(string(k)) == "model name" {
			return strings.TrimSpace(string(v))
		}
	}
	return ""
}
