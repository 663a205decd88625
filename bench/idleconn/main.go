// Command idleconn measures what an idle keep-alive HTTP/1.1 connection costs a
// proxy in resident memory.
//
// It reads the proxy's RSS (summed over PID and its descendants, so an nginx
// master and its worker count together), opens N connections to the proxy,
// sends one GET on each and reads the whole response (so every buffer on the
// path has been used once), then leaves the connections idle: it sends
// nothing more, waits, and reads the RSS again. The difference divided by the
// connections still open is the cost of one idle connection.
//
//	ulimit -n "$(ulimit -Hn)"
//	go run ./bench/idleconn -addr 127.0.0.1:PORT -n 10000 -pid PID
//
// The last line of output is machine-readable ("RESULT key=value ...").
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// config holds the command-line settings.
type config struct {
	addr        string
	n           int
	pid         int
	wait        time.Duration
	concurrency int
	sources     int
	perSource   int
	path        string
	host        string
	timeout     time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "", "proxy address, host:port (loopback)")
	flag.IntVar(&c.n, "n", 10000, "number of connections to open and hold idle")
	flag.IntVar(&c.pid, "pid", 0, "proxy process id (its descendants are included)")
	flag.DurationVar(&c.wait, "wait", 5*time.Second, "how long to hold the connections idle before measuring")
	flag.IntVar(&c.concurrency, "c", 8, "connections being opened at once")
	flag.IntVar(&c.sources, "sources", 0, "source addresses 127.0.0.2, 127.0.0.3, ... to spread over (0: enough for -per-source)")
	flag.IntVar(&c.perSource, "per-source", 20000, "connections per source address when -sources is 0")
	flag.StringVar(&c.path, "path", "/", "request path")
	flag.StringVar(&c.host, "host", "bench", "Host header")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for each connect, request and response")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "idleconn: %v\n", err)
		os.Exit(1)
	}
}

func run(c config, out io.Writer) error {
	if c.addr == "" || c.pid <= 0 || c.n <= 0 || c.concurrency <= 0 {
		return errors.New("need -addr, -pid and a positive -n and -c")
	}
	if c.sources <= 0 {
		c.sources = (c.n + c.perSource - 1) / c.perSource
	}
	limit, err := raiseNoFile(uint64(c.n) + 64)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "open-files limit %d; %d connections from %d source address(es) to %s\n", limit, c.n, c.sources, c.addr)

	before, err := readTree(c.pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "before: rss=%d KiB hwm=%d KiB fds=%d processes=%d\n", before.rssKiB, before.hwmKiB, before.fds, before.procs)

	start := time.Now()
	conns, failed, firstErr := openAll(c)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	fmt.Fprintf(out, "opened %d connections in %v (%d failed)\n", len(conns), time.Since(start).Round(time.Millisecond), failed)
	if firstErr != nil {
		fmt.Fprintf(out, "first error: %v\n", firstErr)
	}
	if len(conns) == 0 {
		return errors.New("no connection succeeded")
	}

	time.Sleep(c.wait)
	after, err := readTree(c.pid)
	if err != nil {
		return err
	}
	alive := countAlive(conns)
	fmt.Fprintf(out, "after %v idle: rss=%d KiB hwm=%d KiB fds=%d; %d of %d connections still open\n",
		c.wait, after.rssKiB, after.hwmKiB, after.fds, alive, len(conns))
	if alive == 0 {
		return errors.New("the proxy closed every connection while idle")
	}
	delta := after.rssKiB - before.rssKiB
	perConn := float64(delta) / float64(alive)
	fmt.Fprintf(out, "per idle connection: %.2f KiB RSS (%d KiB over %d connections)\n", perConn, delta, alive)
	fmt.Fprintf(out, "RESULT n=%d opened=%d alive=%d rss_before_kib=%d rss_after_kib=%d hwm_after_kib=%d fds_before=%d fds_after=%d per_conn_kib=%.2f\n",
		c.n, len(conns), alive, before.rssKiB, after.rssKiB, after.hwmKiB, before.fds, after.fds, perConn)
	return nil
}

// raiseNoFile lifts the soft open-files limit toward the hard one; it fails if
// even the hard limit cannot hold want descriptors.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("idleconn: getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("idleconn: setrlimit: %w", err)
		}
	}
	if lim.Cur < want {
		return lim.Cur, fmt.Errorf("idleconn: open-files limit %d is below the %d needed; lower -n or raise the hard limit", lim.Cur, want)
	}
	return lim.Cur, nil
}

// openAll opens c.n connections, c.concurrency at a time, each with one
// completed request. It returns the open ones.
func openAll(c config) ([]net.Conn, int, error) {
	req := []byte("GET " + c.path + " HTTP/1.1\r\nHost: " + c.host + "\r\nUser-Agent: weft-idleconn\r\n\r\n")
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, c.n)
		failed   atomic.Int64
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < c.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				cn, err := openOne(c, i, req)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, cn)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < c.n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return conns, int(failed.Load()), firstErr
}

// openOne dials from source address 127.0.0.(2 + i%sources), sends req and
// reads one full response, leaving the connection open and idle.
func openOne(c config, i int, req []byte) (net.Conn, error) {
	src := net.IPv4(127, 0, 0, byte(2+i%c.sources))
	d := net.Dialer{
		Timeout:   c.timeout,
		LocalAddr: &net.TCPAddr{IP: src},
		Control:   bindNoPort,
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cn, err := d.DialContext(ctx, "tcp4", c.addr)
	if err != nil {
		return nil, fmt.Errorf("idleconn: dial from %v: %w", src, err)
	}
	if err := exchange(cn, req, c.timeout); err != nil {
		cn.Close()
		return nil, err
	}
	return cn, nil
}

// exchange writes req and reads the response to its end.
func exchange(cn net.Conn, req []byte, timeout time.Duration) error {
	if err := cn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("idleconn: set deadline: %w", err)
	}
	if _, err := cn.Write(req); err != nil {
		return fmt.Errorf("idleconn: write request: %w", err)
	}
	br := bufio.NewReaderSize(cn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("idleconn: read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("idleconn: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("idleconn: status %d", resp.StatusCode)
	}
	if resp.Close {
		return errors.New("idleconn: the proxy asked to close the connection (no keep-alive)")
	}
	if br.Buffered() != 0 {
		return errors.New("idleconn: unexpected bytes after the response")
	}
	return cn.SetDeadline(time.Time{})
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT so that binding a source address
// does not reserve an ephemeral port before connect: the kernel picks the
// port at connect time, per destination, which stretches the port range.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	const ipBindAddressNoPort = 24 // linux/in.h IP_BIND_ADDRESS_NO_PORT
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}

// countAlive reports how many connections the proxy has not closed, with a
// non-blocking MSG_PEEK on each socket: nothing is sent and nothing consumed.
func countAlive(conns []net.Conn) int {
	alive := 0
	buf := make([]byte, 1)
	for _, cn := range conns {
		sc, ok := cn.(syscall.Conn)
		if !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			continue
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return true // one attempt; never wait for readiness
		}); err != nil {
			continue
		}
		// EAGAIN: open and quiet. n == 0 without error: the peer closed.
		if errors.Is(rerr, syscall.EAGAIN) || (rerr == nil && n > 0) {
			alive++
		}
	}
	return alive
}

// usage is the memory and descriptor use of a process tree.
type usage struct {
	rssKiB, hwmKiB int64
	fds, procs     int
}

// readTree sums VmRSS, VmHWM and open descriptors over pid and its descendants.
func readTree(pid int) (usage, error) {
	pids, err := descendants(pid)
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, p := range pids {
		rss, hwm, err := readStatus(p)
		if err != nil {
			if p == pid {
				return usage{}, err
			}
			continue // a child that just exited
		}
		u.rssKiB += rss
		u.hwmKiB += hwm
		u.procs++
		if ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd")); err == nil {
			u.fds += len(ents)
		}
	}
	return u, nil
}

// readStatus returns VmRSS and VmHWM, in KiB, from /proc/PID/status.
func readStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("idleconn: read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, hwm, nil
}

// descendants returns pid followed by every process below it, found through
// the parent field of each /proc/N/stat.
func descendants(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("idleconn: list /proc: %w", err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces; the parent
		// pid is the second field after the closing one.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}
