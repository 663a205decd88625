// Command registry is the service-registry benchmark (issue 6): S services
// with P providers each (default 1,000 × 20 = 20,000 instances) published
// through a registry backend (etcd, or the embedded registry served by
// `weft registry`) and subscribed by N consumer sidecars, each following
// every service the way the mesh agent does (a Watch per service feeding an
// EDS cluster of an upstream.Manager). It measures
//
//   - the time from a provider's Register call until every consumer
//     sidecar's cluster for that service holds the instance, for all
//     20,000 published at once (a fleet starting) and for one change on a
//     quiet system (and its removal);
//   - the time until everything is visible everywhere;
//   - the heap one consumer sidecar holds for 20,000 endpoints, and what a
//     new sidecar takes to load them;
//   - the registry server's RSS and CPU, and this process's CPU.
//
// The server runs as a separate process (so its CPU and memory are its
// own); the providers and consumers run in this process.
//
//	go run ./bench/registry -backend embedded
//	go run ./bench/registry -backend etcd
//
// The report goes to stdout and to bench/results/registry-BACKEND-UTC.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

type config struct {
	backend    string
	services   int
	providers  int // per service
	hosts      int // provider clients (provider sidecars)
	consumers  int
	repeats    int
	rate       float64 // registrations/s in the publish phase; 0: as fast as they go
	timeout    time.Duration
	memory     bool
	agentLog   bool
	weftBin    string
	etcdBin    string
	out        string
	seed       uint64
	cpuProfile string
	memProfile string
	maxIdle    int
}

func main() {
	cfg, child, endpoint := parseFlags(os.Args[1:])
	if child {
		os.Exit(childMain(cfg, endpoint))
	}
	os.Exit(realMain(cfg))
}

// parseFlags parses the command line; child and endpoint are the memory
// child's (see memoryChild).
func parseFlags(args []string) (cfg config, child bool, endpoint string) {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	fs.StringVar(&cfg.backend, "backend", "embedded", "embedded (a `weft registry` process) or etcd (an etcd process)")
	fs.IntVar(&cfg.services, "services", 1000, "services")
	fs.IntVar(&cfg.providers, "providers", 20, "providers (instances) per service")
	fs.IntVar(&cfg.hosts, "hosts", 100, "provider sidecars (registry clients) the instances are spread over; each registers services×providers/hosts instances")
	fs.IntVar(&cfg.consumers, "consumers", 10, "consumer sidecars, each subscribed to every service")
	fs.IntVar(&cfg.repeats, "repeats", 200, "one-change phase: instances added (and removed) one at a time")
	fs.Float64Var(&cfg.rate, "rate", 0, "publish phase: registrations per second over all providers (0: as fast as the registry takes them)")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "limit of each phase's wait for the consumers")
	fs.BoolVar(&cfg.memory, "memory", true, "measure one more consumer sidecar (in a fresh process): its memory and cold start")
	fs.BoolVar(&cfg.agentLog, "agent-log", true, "format the agent's info line per provider change (to io.Discard), as a sidecar at the default log level does")
	fs.StringVar(&cfg.weftBin, "weft", "", "weft binary for -backend embedded (default: go build ./cmd/weft into a temp dir)")
	fs.StringVar(&cfg.etcdBin, "etcd", "/usr/bin/etcd", "etcd binary for -backend etcd")
	fs.StringVar(&cfg.out, "out", "", `report file (default bench/results/registry-BACKEND-YYYYMMDD-HHMMSS.md, UTC; "-": stdout only)`)
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the service order and the one-change picks")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (providers and consumers) to this file")
	fs.StringVar(&cfg.memProfile, "memprofile", "", "write a heap profile of the memory child (one consumer sidecar, fed) to this file")
	fs.IntVar(&cfg.maxIdle, "embedded-max-idle", 0, "experiment: MaxIdleConnsPerHost of the embedded clients' transport (0: the client's own, 64)")
	fs.BoolVar(&child, "child-memory", false, "internal: run as the memory child")
	fs.StringVar(&endpoint, "child-endpoint", "", "internal: the memory child's server")
	_ = fs.Parse(args)
	embeddedMaxIdle = cfg.maxIdle
	return cfg, child, endpoint
}

func realMain(cfg config) int {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if err := cfg.check(); err != nil {
		log.Print(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			log.Print(err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Print(err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	var b backend
	var err error
	log.Printf("starting the %s registry server", cfg.backend)
	switch cfg.backend {
	case "etcd":
		b, err = startEtcd(ctx, cfg.etcdBin)
	case "embedded":
		b, err = startWeftRegistry(ctx, cfg.weftBin)
	}
	if err != nil {
		log.Print(err)
		return 1
	}
	res, runErr := run(ctx, cfg, b)
	if err := b.Stop(); err != nil {
		log.Printf("stopping the server: %v", err)
	}
	if res != nil {
		report := res.markdown()
		fmt.Print(report)
		if cfg.out != "-" {
			path := cfg.out
			if path == "" {
				root, err := moduleRoot()
				if err != nil {
					log.Print(err)
					return 1
				}
				path = filepath.Join(root, "bench", "results", fmt.Sprintf("registry-%s-%s.md", cfg.backend, res.when.UTC().Format("20060102-150405")))
			}
			if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
				log.Print(err)
				return 1
			}
			log.Printf("report written to %s", path)
		}
	}
	if runErr != nil {
		log.Print(runErr)
		return 1
	}
	return 0
}

func (c config) check() error {
	switch {
	case c.backend != "embedded" && c.backend != "etcd":
		return fmt.Errorf("-backend %q: want embedded or etcd", c.backend)
	case c.services < 1 || c.providers < 1 || c.consumers < 1 || c.hosts < 1:
		return errors.New("-services, -providers, -hosts and -consumers must be at least 1")
	case c.hosts < c.providers:
		return fmt.Errorf("-hosts %d < -providers %d: a service's providers must be on distinct hosts", c.hosts, c.providers)
	case c.hosts > 60000:
		return errors.New("-hosts: at most 60000")
	}
	// The embedded client holds one long poll (a connection) per watched
	// service, and the server one socket per poll.
	if c.backend == "embedded" {
		need := uint64((c.consumers+1)*c.services + c.hosts + 256)
		if lim := raiseFDLimit(); lim != 0 && need > lim {
			return fmt.Errorf("-backend embedded needs ~%d open files here ((consumers+1) × services long polls) but the limit is %d: raise `ulimit -n` or lower -consumers/-services", need, lim)
		}
	}
	return nil
}

// serviceName is service s's name.
func serviceName(s int) string { return fmt.Sprintf("com.weftmesh.bench.Service%04d", s) }

// hostAddr is provider sidecar h's ingress address, what it registers.
func hostAddr(h int) string { return fmt.Sprintf("10.1.%d.%d:12200", h/250, h%250+1) }

// extraAddr is the address of the r-th instance of the one-change phase.
func extraAddr(r int) string { return fmt.Sprintf("10.2.%d.%d:12200", r/250, r%250+1) }

// providerHost is the host of provider j of service s: consecutive hosts,
// so the providers of a service are distinct hosts.
func (c config) providerHost(s, j int) int { return (s*c.providers + j) % c.hosts }

// instance is what host h registers for service s (the mesh agent adds
// "meshed"; version, app and zone are typical routing metadata).
func instance(s int, addr string, h int) registry.Instance {
	return registry.Instance{Service: serviceName(s), Protocol: protocol, Address: addr, Metadata: map[string]string{
		"meshed":  "true",
		"version": "1.0.0",
		"app":     fmt.Sprintf("app%03d", s/5),
		"zone":    "zone-" + string(rune('a'+h%3)),
	}}
}

// result is everything measured, for the report.
type result struct {
	cfg      config
	when     time.Time
	server   string
	pid      int
	fdLimit  uint64
	warnings *logCount
	errs     []string

	subscribe    time.Duration // every consumer's every watch answered
	rssIdle      int64         // server RSS with the watches and no instance
	connsIdle    int           // established connections to the server
	publishTotal time.Duration // first Register → last instance in every cluster
	publishIssue time.Duration // first Register → last Register returned
	ack          dist          // Register call times
	visible      dist          // Register start → every consumer's cluster
	clusterFull  dist          // publish start → a consumer's cluster complete
	pubMissing   int           // instances not everywhere at the deadline
	regErrors    int
	updates      float64 // UpdateEndpoints calls per consumer in the publish phase
	serverCPU    time.Duration
	selfCPU      time.Duration
	rssPublished int64
	twServer     int // sockets in TIME_WAIT closed by the server first
	twClient     int // ... by a client first
	connsBusy    int
	addLat       dist
	delLat       dist
	oneMissing   int
	mem          *memResult
	rssEnd, hwm  int64
	refused      int64
	opened       int64         // TCP connections opened on the machine during publish
	machineCPU   time.Duration // all cores' busy time during publish
}

// run measures with the server b.
func run(ctx context.Context, cfg config, b backend) (*result, error) {
	res := &result{cfg: cfg, when: time.Now(), server: b.Describe(), pid: b.PID(), warnings: &logCount{}, fdLimit: raiseFDLimit()}
	clientLog := slog.New(countingHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), res.warnings})
	services := make([]string, cfg.services)
	for s := range services {
		services[s] = serviceName(s)
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 6))

	// Provider sidecars: one registry client each, opened first so that
	// their sessions (leases) exist before the publish phase.
	providers := make([]registry.Registry, cfg.hosts)
	defer func() { closeAll(providers) }()
	for h := range providers {
		r, err := b.Client(ctx, clientLog)
		if err != nil {
			return nil, fmt.Errorf("provider client: %w", err)
		}
		providers[h] = r
	}

	// Consumer sidecars, started together like a fleet's sidecars.
	log.Printf("subscribing %d consumer sidecars to %d services each", cfg.consumers, cfg.services)
	tr := newTracker(cfg.consumers, cfg.services)
	consumers := make([]*consumer, cfg.consumers)
	defer func() { closeConsumers(consumers) }()
	t0 := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, cfg.consumers)
	for i := range consumers {
		wg.Go(func() {
			c, err := newConsumer(ctx, b, i, services, cfg.providers, tr, clientLog, cfg.agentLog)
			if err != nil {
				errc <- err
				return
			}
			consumers[i] = c
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	for _, c := range consumers {
		if err := waitFor(ctx, c.knownCh, t0.Add(cfg.timeout)); err != nil {
			return nil, fmt.Errorf("subscribing: not every watch answered within %s: %w", cfg.timeout, err)
		}
	}
	res.subscribe = time.Since(t0)
	time.Sleep(time.Second) // the server settles (session heartbeats, idle pollers)
	res.rssIdle, _ = procMem(res.pid)
	res.connsIdle, _, _ = tcpStates(b.Port())
	log.Printf("subscribed in %s; publishing %d instances from %d provider sidecars", fmtDur(res.subscribe), cfg.services*cfg.providers, cfg.hosts)

	if err := publish(ctx, cfg, b, res, providers, consumers, tr, rng); err != nil {
		return res, err
	}
	log.Printf("published: everything everywhere after %s", fmtDur(res.publishTotal))

	if cfg.repeats > 0 {
		log.Printf("one change at a time, %d times", cfg.repeats)
		if err := oneChange(ctx, cfg, res, providers, tr, rng); err != nil {
			return res, err
		}
	}
	if cfg.memory {
		log.Printf("measuring one more consumer sidecar")
		m, err := memoryChild(ctx, cfg, b)
		if err != nil {
			return res, err
		}
		res.mem = m
		if m.TimedOut || m.Refused > 0 || m.Hosts != cfg.services*cfg.providers {
			res.errs = append(res.errs, fmt.Sprintf("new consumer: %d of %d endpoints after %s, %d updates refused", m.Hosts, cfg.services*cfg.providers, cfg.timeout, m.Refused))
		}
	}
	for _, c := range consumers {
		res.refused += c.refused.Load()
	}
	if res.refused > 0 {
		res.errs = append(res.errs, fmt.Sprintf("%d endpoint updates refused by upstream.Manager", res.refused))
	}
	res.rssEnd, res.hwm = procMem(res.pid)
	return res, nil
}

// publish registers every instance, every provider sidecar in a goroutine
// of its own working through its services, and waits until every consumer
// has every instance.
func publish(ctx context.Context, cfg config, b backend, res *result, providers []registry.Registry, consumers []*consumer, tr *tracker, rng *rand.Rand) error {
	type job struct {
		s, h int
	}
	jobs := make([][]job, cfg.hosts)
	for s := range cfg.services {
		for j := range cfg.providers {
			h := cfg.providerHost(s, j)
			jobs[h] = append(jobs[h], job{s, h})
		}
	}
	for _, js := range jobs {
		rng.Shuffle(len(js), func(a, b int) { js[a], js[b] = js[b], js[a] })
	}
	n := cfg.services * cfg.providers
	tracks := make([]*instTrack, 0, n)
	var tmu sync.Mutex
	acks := make([][]time.Duration, cfg.hosts)
	errs := make([]int, cfg.hosts)
	var updates0 int64
	for _, c := range consumers {
		updates0 += c.updates.Load()
	}
	cpu0, self0 := procCPU(res.pid), procCPU(os.Getpid())
	opens0, busy0 := tcpActiveOpens(), machineBusy()
	var slot struct {
		sync.Mutex
		next time.Time
	}
	start := time.Now()
	slot.next = start
	var wg sync.WaitGroup
	for h, js := range jobs {
		wg.Go(func() {
			for _, jb := range js {
				if ctx.Err() != nil {
					return
				}
				if cfg.rate > 0 {
					slot.Lock()
					at := slot.next
					slot.next = at.Add(time.Duration(float64(time.Second) / cfg.rate))
					slot.Unlock()
					time.Sleep(time.Until(at))
				}
				inst := instance(jb.s, hostAddr(jb.h), jb.h)
				it := tr.start(jb.s, inst.Address, true)
				tmu.Lock()
				tracks = append(tracks, it)
				tmu.Unlock()
				err := providers[h].Register(ctx, inst)
				acks[h] = append(acks[h], time.Since(it.start))
				if err != nil {
					errs[h]++
					if errs[h] == 1 {
						log.Printf("provider %d: register %s: %v", h, inst.Service, err)
					}
				}
			}
		})
	}
	wg.Wait()
	res.publishIssue = time.Since(start)
	log.Printf("every Register returned after %s; waiting for the consumers", fmtDur(res.publishIssue))
	deadline := start.Add(cfg.timeout)
	var last time.Time
	var vis []time.Duration
	for _, it := range tracks {
		if waitFor(ctx, it.done, deadline) != nil {
			break
		}
	}
	for _, it := range tracks {
		if d, ok := it.latency(); ok {
			vis = append(vis, d)
			if it.last.After(last) {
				last = it.last
			}
		} else {
			res.pubMissing++
		}
	}
	res.serverCPU, res.selfCPU = procCPU(res.pid)-cpu0, procCPU(os.Getpid())-self0
	res.opened, res.machineCPU = tcpActiveOpens()-opens0, machineBusy()-busy0
	res.rssPublished, _ = procMem(res.pid)
	res.connsBusy, res.twServer, res.twClient = tcpStates(b.Port())
	res.publishTotal = last.Sub(start)
	res.visible = newDist(vis)
	var all []time.Duration
	for _, a := range acks {
		all = append(all, a...)
	}
	res.ack = newDist(all)
	for _, e := range errs {
		res.regErrors += e
	}
	var updates int64
	var full []time.Duration
	for _, c := range consumers {
		updates += c.updates.Load()
		c.mu.Lock()
		for _, t := range c.full {
			if !t.IsZero() {
				full = append(full, t.Sub(start))
			}
		}
		c.mu.Unlock()
	}
	res.updates = float64(updates-updates0) / float64(len(consumers))
	res.clusterFull = newDist(full)
	for s := range tr.svc { // done with these instances
		tr.svc[s].mu.Lock()
		tr.svc[s].inst = nil
		tr.svc[s].mu.Unlock()
	}
	if res.pubMissing > 0 {
		res.errs = append(res.errs, fmt.Sprintf("publish: %d of %d instances were not in every consumer's cluster after %s", res.pubMissing, n, cfg.timeout))
	}
	if res.regErrors > 0 {
		res.errs = append(res.errs, fmt.Sprintf("publish: %d Register calls failed", res.regErrors))
	}
	return ctx.Err()
}

// oneChange adds one instance of a random service through an existing
// provider sidecar, waits until every consumer has it, removes it and
// waits until every consumer has dropped it; repeats times.
func oneChange(ctx context.Context, cfg config, res *result, providers []registry.Registry, tr *tracker, rng *rand.Rand) error {
	var add, del []time.Duration
	for r := range cfg.repeats {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s, h := rng.IntN(cfg.services), rng.IntN(cfg.hosts)
		inst := instance(s, extraAddr(r), h)
		time.Sleep(10 * time.Millisecond) // a quiet system between changes
		// change registers or deregisters inst and waits until every
		// consumer sees it.
		change := func(present bool, call func(context.Context, registry.Instance) error, what string) (time.Duration, bool) {
			it := tr.start(s, inst.Address, present)
			defer tr.stop(s, it)
			if err := call(ctx, inst); err != nil {
				res.errs = append(res.errs, fmt.Sprintf("one change: %s: %v", what, err))
				return 0, false
			}
			_ = waitFor(ctx, it.done, time.Now().Add(cfg.timeout))
			d, ok := it.latency()
			if !ok {
				res.oneMissing++
			}
			return d, ok
		}
		if d, ok := change(true, providers[h].Register, "register"); ok {
			add = append(add, d)
		}
		time.Sleep(10 * time.Millisecond)
		if d, ok := change(false, providers[h].Deregister, "deregister"); ok {
			del = append(del, d)
		}
	}
	res.addLat, res.delLat = newDist(add), newDist(del)
	if res.oneMissing > 0 {
		res.errs = append(res.errs, fmt.Sprintf("one change: %d changes not seen by every consumer within %s", res.oneMissing, cfg.timeout))
	}
	return nil
}

// waitFor waits until ch is closed, ctx ends or deadline passes.
func waitFor(ctx context.Context, ch <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("timed out")
	}
}

func closeConsumers(cs []*consumer) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			wg.Go(func() { _ = c.close() })
		}
	}
	wg.Wait()
}

func closeAll(rs []registry.Registry) {
	var wg sync.WaitGroup
	for _, r := range rs {
		if r != nil {
			wg.Go(func() { _ = r.Close() })
		}
	}
	wg.Wait()
}

// markdown is the report.
func (r *result) markdown() string {
	var b strings.Builder
	c := r.cfg
	n := c.services * c.providers
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Service registry benchmark: %s, %s\n\n", c.backend, r.when.UTC().Format(time.RFC3339))
	p("Command: `go run ./bench/registry %s`\n\n", strings.Join(os.Args[1:], " "))
	host, _ := os.Hostname()
	p("- Machine: %s, %d CPUs, GOMAXPROCS %d, %s %s/%s; open-files limit %d\n", host, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, r.fdLimit)
	p("- Server: %s\n", r.server)
	p("- Scale: %d services × %d providers = %d instances, registered by %d provider sidecars (%d each, one registry client each); %d consumer sidecars × %d watches = %d watches\n",
		c.services, c.providers, n, c.hosts, n/c.hosts, c.consumers, c.services, c.consumers*c.services)
	p("- Consumer sidecar = registry client + one Watch per service feeding an EDS cluster of an upstream.Manager (Upsert per subscription, UpdateEndpoints per change under one lock, agent info log formatted: %v), in this process with the providers\n", c.agentLog)
	rate := "as fast as the registry takes them"
	if c.rate > 0 {
		rate = fmt.Sprintf("paced at %.0f/s", c.rate)
	}
	p("- Publish: every provider sidecar registers its instances one after another (services shuffled), all sidecars at once, %s\n", rate)
	if c.maxIdle > 0 && c.backend == "embedded" {
		p("- **Experiment**: every embedded client uses a transport with MaxIdleConnsPerHost %d (embedded.New's own has 64)\n", c.maxIdle)
	}
	p("\n")

	p("| measure | value |\n|---|---|\n")
	span := max(r.publishTotal, r.publishIssue, time.Millisecond).Seconds()
	p("| subscribe: %d sidecars × %d watches created, every one answered (empty registry) | %s |\n", c.consumers, c.services, fmtDur(r.subscribe))
	p("| publish: Register call, p50 / p99 / max | %s |\n", r.ack.triple())
	p("| **publish → every consumer's cluster has the instance**, p50 / p99 / max (%d instances) | **%s** |\n", len(r.visible), r.visible.triple())
	p("| publish: a consumer's cluster complete (%d/%d), since the first Register, p50 / p99 / max | %s |\n", c.providers, c.providers, r.clusterFull.triple())
	p("| publish: all %d Register calls returned | %s (%.0f/s) |\n", n, fmtDur(r.publishIssue), float64(n)/max(r.publishIssue, time.Millisecond).Seconds())
	p("| **publish: all %d instances in every consumer's cluster** | **%s** |\n", n, fmtDur(r.publishTotal))
	p("| publish: UpdateEndpoints calls per consumer sidecar (%d = one per instance) | %.0f |\n", n, r.updates)
	if r.pid != 0 {
		p("| publish: registry server CPU | %.1f s (%.0f%% of one core) |\n", r.serverCPU.Seconds(), 100*r.serverCPU.Seconds()/span)
	}
	p("| publish: this process's CPU (providers + %d consumers) | %.1f s (%.0f%% of one core) |\n", c.consumers, r.selfCPU.Seconds(), 100*r.selfCPU.Seconds()/span)
	other := r.machineCPU - r.selfCPU - r.serverCPU
	p("| publish: machine CPU busy, all %d cores / of which neither process (softirq, other work) | %.0f%% / %.0f%% of the machine |\n", runtime.NumCPU(),
		100*r.machineCPU.Seconds()/span/float64(runtime.NumCPU()), 100*other.Seconds()/span/float64(runtime.NumCPU()))
	p("| **one change: Register → every consumer's cluster has it**, p50 / p99 / max (n=%d) | **%s** |\n", len(r.addLat), r.addLat.triple())
	p("| one change: Deregister → gone from every consumer's cluster, p50 / p99 / max (n=%d) | %s |\n", len(r.delLat), r.delLat.triple())
	if m := r.mem; m != nil {
		full := m.Full.sub(m.Base)
		rest := full.HeapAlloc - m.ManagerEmpty.HeapAlloc - m.ManagerEPs.HeapAlloc
		p("| new consumer sidecar (a fresh process): every watch answered / every cluster complete (%d endpoints) | %s / %s%s |\n", m.Hosts, fmtDur(m.ColdKnown), fmtDur(m.Cold), map[bool]string{true: " (TIMED OUT)", false: ""}[m.TimedOut])
		p("| **one consumer sidecar's state for %d endpoints: Go heap in use** (HeapInuse after GC, minus before; live HeapAlloc in brackets) | **%s** (%s live, %.1f KiB per endpoint) |\n", m.Hosts, mib(full.HeapInuse), mib(full.HeapAlloc), float64(full.HeapAlloc)/1024/float64(max(m.Hosts, 1)))
		p("| … goroutine stacks (StackInuse), goroutines | %s, %d goroutines |\n", mib(full.StackInuse), full.Goroutines)
		p("| … process RSS before / after (peak) | %s / %s (%s) |\n", mib(m.RSSBase), mib(m.RSSFull), mib(m.HWMFull))
		p("| … of the live heap: upstream.Manager with %d empty EDS clusters | %s |\n", c.services, mib(m.ManagerEmpty.HeapAlloc))
		p("| … of the live heap: + %d endpoints in them | %s (%.0f B per endpoint) |\n", n, mib(m.ManagerEPs.HeapAlloc), float64(m.ManagerEPs.HeapAlloc)/float64(n))
		p("| … of the live heap: the rest (registry client, its watches and connections, agent-side state) | %s |\n", mib(rest))
	}
	if r.pid != 0 {
		p("| registry server RSS: watches only / after publish / end (peak) | %s / %s / %s (%s) |\n", mib(r.rssIdle), mib(r.rssPublished), mib(r.rssEnd), mib(r.hwm))
	}
	p("| connections to the server: before / right after publish; in TIME_WAIT after publish, closed by the server / by clients | %d / %d; %d / %d |\n", r.connsIdle, r.connsBusy, r.twServer, r.twClient)
	p("| TCP connections opened on the machine during publish (ActiveOpens Δ) | %d |\n", r.opened)
	p("| registry client warnings | %s |\n", r.warnings)
	p("| errors | %s |\n", map[bool]string{true: "none", false: strings.Join(r.errs, "; ")}[len(r.errs) == 0])
	p("\n")
	return b.String()
}
