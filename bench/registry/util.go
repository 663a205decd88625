package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// dist is a sorted sample of durations.
type dist []time.Duration

func newDist(d []time.Duration) dist {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// q is the nearest-rank quantile (0 < p <= 1).
func (d dist) q(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

// triple is "p50 / p99 / max" of d, or "-" when d is empty.
func (d dist) triple() string {
	if len(d) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s", fmtDur(d.q(0.5)), fmtDur(d.q(0.99)), fmtDur(d.max()))
}

// fmtDur prints a duration in ms (s from 10 s on) with 2-3 digits.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// procCPU is the user+system CPU time of a process (all threads), from
// /proc/PID/stat; 0 when unreadable.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ... utime(11) stime(12), in clock ticks.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(u+st) * time.Second / clkTck
}

// machineBusy is the CPU time all cores spent not idle so far (the first
// line of /proc/stat: everything but idle and iowait); 0 when unreadable.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 {
			busy += n
		}
	}
	if len(f) > 8 { // steal
		n, _ := strconv.ParseInt(f[8], 10, 64)
		busy += n
	}
	const clkTck = 100
	return time.Duration(busy) * time.Second / clkTck
}

// procMem is VmRSS and VmHWM of a process in bytes; 0 when unreadable.
func procMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	kib := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n << 10
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = kib(v)
		} else if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwm = kib(v)
		}
	}
	return rss, hwm
}

// tcpStates counts the loopback IPv4 connections of this machine to
// port: established ones (each counted once), and sockets in TIME_WAIT
// split by the side that closed first (the server's, or a client's).
func tcpStates(port int) (established, twServer, twClient int) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, 0, 0
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 4 {
			continue
		}
		local, remote := strings.HasSuffix(fl[1], want), strings.HasSuffix(fl[2], want)
		switch {
		case fl[3] == "01" && remote: // the client's end of each connection
			established++
		case fl[3] == "06" && local:
			twServer++
		case fl[3] == "06" && remote:
			twClient++
		}
	}
	return established, twServer, twClient
}

// tcpActiveOpens is the machine's count of TCP connections opened so far
// (ActiveOpens of /proc/net/snmp); -1 when unreadable.
func tcpActiveOpens() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var head []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "ActiveOpens" && i < len(f) {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// memSnap is this process's memory after a full GC.
type memSnap struct {
	HeapInuse, HeapAlloc, StackInuse int64
	Goroutines                       int
}

func snapMem() memSnap {
	runtime.GC()
	runtime.GC() // the second cycle frees what the first one's finalizers released
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSnap{HeapInuse: int64(m.HeapInuse), HeapAlloc: int64(m.HeapAlloc), StackInuse: int64(m.StackInuse), Goroutines: runtime.NumGoroutine()}
}

func (a memSnap) sub(b memSnap) memSnap {
	return memSnap{a.HeapInuse - b.HeapInuse, a.HeapAlloc - b.HeapAlloc, a.StackInuse - b.StackInuse, a.Goroutines - b.Goroutines}
}

// countingHandler counts the records at Warn and above of every logger
// derived from it, keeps the first few, and passes them on.
type countingHandler struct {
	slog.Handler
	c *logCount
}

type logCount struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.c.n.Add(1)
		h.c.mu.Lock()
		if len(h.c.first) < 5 {
			h.c.first = append(h.c.first, r.Message)
		}
		h.c.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.c}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.c}
}

func (c *logCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n.Load() == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (first: %s)", c.n.Load(), strings.Join(c.first, "; "))
}
