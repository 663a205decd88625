package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream"
)

// memResult is what the memory child measured.
type memResult struct {
	// Base is the child before it built anything; Full the child with one
	// whole consumer sidecar fed by the registry (both after a GC).
	Base, Full memSnap
	RSSBase    int64
	RSSFull    int64
	HWMFull    int64
	// ManagerEmpty is an upstream.Manager with S EDS clusters and
	// ManagerEPs the S×P endpoints fed to it directly, built after Full
	// next to it (live-heap deltas).
	ManagerEmpty, ManagerEPs memSnap
	Cold                     time.Duration // start → every cluster complete
	ColdKnown                time.Duration // start → every watch answered
	Hosts                    int
	Updates                  int64
	Refused                  int64
	TimedOut                 bool
}

// memoryChild runs this program again as a fresh process that builds one
// consumer sidecar against b and reports its memory: in this process the
// heap is full of the other consumers and of the publish phase's garbage,
// which a delta cannot see past (new objects fill the old holes).
func memoryChild(ctx context.Context, cfg config, b backend) (*memResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-child-memory", "-backend", cfg.backend, "-child-endpoint", b.Endpoint(),
		"-services", strconv.Itoa(cfg.services), "-providers", strconv.Itoa(cfg.providers),
		"-hosts", strconv.Itoa(cfg.hosts), "-timeout", cfg.timeout.String(),
		"-agent-log=" + strconv.FormatBool(cfg.agentLog), "-embedded-max-idle", strconv.Itoa(cfg.maxIdle)}
	if cfg.memProfile != "" {
		args = append(args, "-memprofile", cfg.memProfile)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = procAttr()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("memory child: %w", err)
	}
	var m memResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &m); err != nil {
		return nil, fmt.Errorf("memory child answered %q: %w", out, err)
	}
	return &m, nil
}

// childMain is the memory child: it prints a memResult as JSON.
func childMain(cfg config, endpoint string) int {
	ctx := context.Background()
	b := remote{cfg.backend, endpoint}
	services := make([]string, cfg.services)
	for s := range services {
		services[s] = serviceName(s)
	}
	clientLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := &memResult{}

	m.Base = snapMem()
	m.RSSBase, _ = procMem(os.Getpid())
	t0 := time.Now()
	c, err := newConsumer(ctx, b, 0, services, cfg.providers, nil, clientLog, cfg.agentLog)
	if err != nil {
		log.Print(err)
		return 1
	}
	deadline := t0.Add(cfg.timeout)
	if waitFor(ctx, c.knownCh, deadline) == nil {
		m.ColdKnown = time.Since(t0)
	}
	m.TimedOut = waitFor(ctx, c.fullCh, deadline) != nil
	m.Cold = time.Since(t0)
	time.Sleep(500 * time.Millisecond) // the last long polls go back out
	m.Full = snapMem()
	m.RSSFull, m.HWMFull = procMem(os.Getpid())
	m.Hosts, m.Updates, m.Refused = c.hostCount(), c.updates.Load(), c.refused.Load()
	if cfg.memProfile != "" {
		if f, err := os.Create(cfg.memProfile); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}

	// The manager alone, next to the consumer: live-heap deltas.
	s0 := snapMem()
	cm := upstream.NewManager(upstream.Options{Logger: slog.New(slog.DiscardHandler), Stats: stats.NewStore()})
	for _, name := range services {
		if err := cm.Upsert([]*clusterv3.Cluster{edsCluster(name)}, nil); err != nil {
			log.Print(err)
			return 1
		}
	}
	s1 := snapMem()
	for s, name := range services {
		list := make([]registry.Instance, 0, cfg.providers)
		for j := range cfg.providers {
			h := cfg.providerHost(s, j)
			list = append(list, instance(s, hostAddr(h), h))
		}
		registry.Sort(list)
		if err := cm.UpdateEndpoints(name, cla(name, list)); err != nil {
			log.Print(err)
			return 1
		}
	}
	s2 := snapMem()
	m.ManagerEmpty, m.ManagerEPs = s1.sub(s0), s2.sub(s1)
	cm.Close()
	_ = c.close()

	out, _ := json.Marshal(m)
	fmt.Println(string(out))
	return 0
}
