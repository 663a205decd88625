package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the memory child (memoryChild
// runs os.Executable()).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-child-memory" {
		cfg, _, endpoint := parseFlags(os.Args[1:])
		os.Exit(childMain(cfg, endpoint))
	}
	os.Exit(m.Run())
}

func TestDist(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	s := newDist(d)
	if s.q(0.5) != 50*time.Millisecond || s.q(0.99) != 99*time.Millisecond || s.max() != 100*time.Millisecond {
		t.Fatalf("p50 %v p99 %v max %v", s.q(0.5), s.q(0.99), s.max())
	}
	if (dist{}).triple() != "-" {
		t.Fatal("empty dist")
	}
}

func TestProvidersOnDistinctHosts(t *testing.T) {
	c := config{services: 37, providers: 7, hosts: 9}
	for s := range c.services {
		seen := map[int]bool{}
		for j := range c.providers {
			h := c.providerHost(s, j)
			if seen[h] {
				t.Fatalf("service %d: host %d twice", s, h)
			}
			seen[h] = true
		}
	}
}

func smoke(t *testing.T, b backend, backendName string) {
	cfg := config{backend: backendName, services: 6, providers: 3, hosts: 4, consumers: 2, repeats: 3,
		timeout: 30 * time.Second, memory: true, agentLog: true, out: "-", seed: 1}
	res, err := run(context.Background(), cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.errs) > 0 {
		t.Fatalf("errors: %v", res.errs)
	}
	if len(res.visible) != 18 || len(res.addLat) != 3 || len(res.delLat) != 3 || res.mem == nil || res.mem.Hosts != 18 {
		t.Fatalf("visible %d add %d del %d mem %+v", len(res.visible), len(res.addLat), len(res.delLat), res.mem)
	}
	if md := res.markdown(); !strings.Contains(md, "publish → every consumer's cluster") {
		t.Fatalf("report:\n%s", md)
	}
}

func TestSmokeEmbedded(t *testing.T) {
	s, err := startInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	smoke(t, s, "embedded")
}

func TestSmokeEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	if _, err := os.Stat("/usr/bin/etcd"); err != nil {
		t.Skip("no /usr/bin/etcd")
	}
	s, err := startEtcd(context.Background(), "/usr/bin/etcd")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
			t.Errorf("etcd data dir %s left behind", s.dir)
		}
	}()
	smoke(t, s, "etcd")
}
