// Package health runs Envoy-style active health checks (HTTP and TCP)
// against one upstream address and turns their results into a healthy /
// unhealthy verdict with the configured thresholds.
package health

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// maxResponse bounds what a check reads from a peer: the HTTP status line
// or the TCP receive window.
const maxResponse = 64 << 10

// StatusRange is a half-open range [Start, End) of HTTP statuses.
type StatusRange struct{ Start, End int }

// Config is one parsed health check. It is immutable once parsed.
type Config struct {
	Timeout               time.Duration
	Interval              time.Duration
	IntervalJitter        time.Duration
	IntervalJitterPercent uint32
	UnhealthyThreshold    uint32
	HealthyThreshold      uint32
	// AltPort, when non-zero, is checked instead of the host's port.
	AltPort uint32

	// Exactly one of HTTP and TCP is set.
	HTTP *HTTPConfig
	TCP  *TCPConfig
}

// HTTPConfig is an HTTP/1.1 GET check.
type HTTPConfig struct {
	Host     string
	Path     string
	Expected []StatusRange
	request  []byte
}

// TCPConfig is a connect check, optionally sending Send and expecting every
// Receive block, in order, in the reply.
type TCPConfig struct {
	Send    []byte
	Receive [][]byte
}

// Parse validates hc. defaultHost is the HTTP Host header when hc sets none
// (Envoy uses the cluster name). Errors name the field path relative to
// the health check.
func Parse(hc *corev3.HealthCheck, defaultHost string) (Config, error) {
	var c Config
	var err error
	if c.Timeout, err = positive(hc.GetTimeout().AsDuration(), hc.GetTimeout() != nil, "timeout"); err != nil {
		return c, err
	}
	if c.Interval, err = positive(hc.GetInterval().AsDuration(), hc.GetInterval() != nil, "interval"); err != nil {
		return c, err
	}
	if hc.GetIntervalJitter() != nil {
		if c.IntervalJitter = hc.GetIntervalJitter().AsDuration(); c.IntervalJitter < 0 {
			return c, errors.New("interval_jitter: negative")
		}
	}
	c.IntervalJitterPercent = hc.GetIntervalJitterPercent()
	if hc.GetUnhealthyThreshold() == nil {
		return c, errors.New("unhealthy_threshold: required")
	}
	if hc.GetHealthyThreshold() == nil {
		return c, errors.New("healthy_threshold: required")
	}
	c.UnhealthyThreshold = max(1, hc.GetUnhealthyThreshold().GetValue())
	c.HealthyThreshold = max(1, hc.GetHealthyThreshold().GetValue())
	if ap := hc.GetAltPort(); ap != nil {
		if ap.GetValue() == 0 || ap.GetValue() > 65535 {
			return c, fmt.Errorf("alt_port: %d out of range", ap.GetValue())
		}
		c.AltPort = ap.GetValue()
	}
	switch k := hc.GetHealthChecker().(type) {
	case *corev3.HealthCheck_HttpHealthCheck_:
		h, err := parseHTTP(k.HttpHealthCheck, defaultHost)
		if err != nil {
			return c, fmt.Errorf("http_health_check.%w", err)
		}
		c.HTTP = h
	case *corev3.HealthCheck_TcpHealthCheck_:
		t, err := parseTCP(k.TcpHealthCheck)
		if err != nil {
			return c, fmt.Errorf("tcp_health_check.%w", err)
		}
		c.TCP = t
	case *corev3.HealthCheck_GrpcHealthCheck_:
		return c, errors.New("grpc_health_check: not supported")
	case *corev3.HealthCheck_CustomHealthCheck_:
		return c, errors.New("custom_health_check: not supported")
	default:
		return c, errors.New("health_checker: one of http_health_check, tcp_health_check is required")
	}
	return c, nil
}

func positive(d time.Duration, set bool, field string) (time.Duration, error) {
	if !set {
		return 0, fmt.Errorf("%s: required", field)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: must be positive", field)
	}
	return d, nil
}

func parseHTTP(h *corev3.HealthCheck_HttpHealthCheck, defaultHost string) (*HTTPConfig, error) {
	c := &HTTPConfig{Host: h.GetHost(), Path: h.GetPath()}
	if c.Host == "" {
		c.Host = defaultHost
	}
	if c.Path == "" {
		return nil, errors.New("path: required")
	}
	if !strings.HasPrefix(c.Path, "/") {
		return nil, fmt.Errorf("path: %q must start with /", c.Path)
	}
	if strings.ContainsAny(c.Path, " \r\n") {
		return nil, fmt.Errorf("path: %q contains a space or line break", c.Path)
	}
	if strings.ContainsAny(c.Host, " \r\n") {
		return nil, fmt.Errorf("host: %q contains a space or line break", c.Host)
	}
	if h.GetSend() != nil || len(h.GetReceive()) > 0 {
		return nil, errors.New("send: request and response payloads are not supported for HTTP checks")
	}
	for i, r := range h.GetExpectedStatuses() {
		if r.GetStart() < 100 || r.GetEnd() > 600 || r.GetStart() >= r.GetEnd() {
			return nil, fmt.Errorf("expected_statuses[%d]: [%d, %d) is not a status range within [100, 600)", i, r.GetStart(), r.GetEnd())
		}
		c.Expected = append(c.Expected, StatusRange{int(r.GetStart()), int(r.GetEnd())})
	}
	if len(c.Expected) == 0 {
		c.Expected = []StatusRange{{200, 300}}
	}
	c.request = []byte("GET " + c.Path + " HTTP/1.1\r\nHost: " + c.Host +
		"\r\nUser-Agent: weft-health-check\r\nConnection: close\r\n\r\n")
	return c, nil
}

func parseTCP(t *corev3.HealthCheck_TcpHealthCheck) (*TCPConfig, error) {
	c := &TCPConfig{}
	var err error
	if t.GetSend() != nil {
		if c.Send, err = payload(t.GetSend()); err != nil {
			return nil, fmt.Errorf("send.%w", err)
		}
	}
	for i, p := range t.GetReceive() {
		b, err := payload(p)
		if err != nil {
			return nil, fmt.Errorf("receive[%d].%w", i, err)
		}
		c.Receive = append(c.Receive, b)
	}
	return c, nil
}

func payload(p *corev3.HealthCheck_Payload) ([]byte, error) {
	switch v := p.GetPayload().(type) {
	case *corev3.HealthCheck_Payload_Text:
		b, err := hex.DecodeString(v.Text)
		if err != nil {
			return nil, fmt.Errorf("text: not hex: %w", err)
		}
		return b, nil
	case *corev3.HealthCheck_Payload_Binary:
		return v.Binary, nil
	}
	return nil, errors.New("payload: text or binary is required")
}

// NextInterval is the wait before the next check: the interval plus the
// configured jitter.
func (c *Config) NextInterval() time.Duration {
	d := c.Interval
	if c.IntervalJitter > 0 {
		d += rand.N(c.IntervalJitter)
	}
	if c.IntervalJitterPercent > 0 {
		if j := c.Interval * time.Duration(c.IntervalJitterPercent) / 100; j > 0 {
			d += rand.N(j)
		}
	}
	return d
}

// DialFunc opens a connection; *net.Dialer's DialContext is one.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Check runs one check against addr ("ip:port") within Timeout. A nil
// error is a pass; the error text is the failure reason shown in the admin
// API.
func (c *Config) Check(ctx context.Context, dial DialFunc, addr string) error {
	if c.AltPort != 0 {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		addr = net.JoinHostPort(host, strconv.Itoa(int(c.AltPort)))
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", unwrapOp(err))
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Unblock reads and writes at once when ctx is cancelled early (the
	// cluster is being removed).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	switch {
	case c.HTTP != nil:
		err = c.HTTP.check(conn)
	case c.TCP != nil:
		err = c.TCP.check(conn)
	}
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		return fmt.Errorf("timeout after %s", c.Timeout)
	}
	return err
}

// unwrapOp drops net.OpError's addresses (the admin page already shows
// them) and the syscall name, keeping "connection refused" and the like.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sc *os.SyscallError
	if errors.As(err, &sc) && sc.Err != nil {
		err = sc.Err
	}
	return err
}

func (h *HTTPConfig) check(conn net.Conn) error {
	if _, err := conn.Write(h.request); err != nil {
		return fmt.Errorf("write request: %w", unwrapOp(err))
	}
	br := bufio.NewReaderSize(io.LimitReader(conn, maxResponse), 1024)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read status line: %w", unwrapOp(err))
	}
	code, err := statusCode(line)
	if err != nil {
		return err
	}
	for _, r := range h.Expected {
		if code >= r.Start && code < r.End {
			return nil
		}
	}
	return fmt.Errorf("http status %d", code)
}

// statusCode parses "HTTP/1.x NNN reason\r\n".
func statusCode(line []byte) (int, error) {
	line = bytes.TrimRight(line, "\r\n")
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(rest) < 3 {
		return 0, fmt.Errorf("malformed status line %q", truncate(line))
	}
	code := 0
	for _, b := range rest[:3] {
		if b < '0' || b > '9' {
			return 0, fmt.Errorf("malformed status line %q", truncate(line))
		}
		code = code*10 + int(b-'0')
	}
	if len(rest) > 3 && rest[3] != ' ' {
		return 0, fmt.Errorf("malformed status line %q", truncate(line))
	}
	return code, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func (t *TCPConfig) check(conn net.Conn) error {
	if len(t.Send) > 0 {
		if _, err := conn.Write(t.Send); err != nil {
			return fmt.Errorf("send: %w", unwrapOp(err))
		}
	}
	if len(t.Receive) == 0 {
		return nil
	}
	buf := make([]byte, 0, 512)
	tmp := make([]byte, 512)
	for {
		if matchInOrder(buf, t.Receive) {
			return nil
		}
		if len(buf) >= maxResponse {
			return errors.New("receive: expected bytes not found")
		}
		n, err := conn.Read(tmp[:min(len(tmp), maxResponse-len(buf))])
		buf = append(buf, tmp[:n]...)
		if err != nil {
			if matchInOrder(buf, t.Receive) {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("receive: expected bytes not found before EOF")
			}
			return fmt.Errorf("receive: %w", unwrapOp(err))
		}
	}
}

// matchInOrder reports whether every block occurs in buf, each after the
// previous one (Envoy's TCP health-check matching).
func matchInOrder(buf []byte, blocks [][]byte) bool {
	for _, b := range blocks {
		i := bytes.Index(buf, b)
		if i < 0 {
			return false
		}
		buf = buf[i+len(b):]
	}
	return true
}

// Result is the verdict after one check.
type Result struct {
	// Healthy is the verdict after thresholds.
	Healthy bool
	// Changed reports that Healthy flipped (or was set for the first time).
	Changed bool
	// Err is this check's failure, nil on a pass.
	Err error
}

// Run checks addr now and then every NextInterval until ctx ends, calling
// report after each check. The verdict starts unhealthy; the first pass
// makes it healthy at once (as Envoy does for a new host), after which it
// takes HealthyThreshold consecutive passes to become healthy and
// UnhealthyThreshold consecutive failures to become unhealthy.
func Run(ctx context.Context, c *Config, dial DialFunc, addr string, report func(Result)) {
	RunFrom(ctx, c, dial, addr, nil, report)
}

// RunFrom is Run starting from a known verdict (nil: never checked), as
// when a rebuilt cluster carries a host's health over: the first check
// then counts against the thresholds instead of deciding alone.
func RunFrom(ctx context.Context, c *Config, dial DialFunc, addr string, healthy *bool, report func(Result)) {
	var t Thresholds
	t.Init(c)
	if healthy != nil {
		t.checked, t.isHealthy = true, *healthy
		if *healthy {
			t.passes = t.healthy
		} else {
			t.fails = t.unhealthy
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := c.Check(ctx, dial, addr)
		if ctx.Err() != nil {
			return
		}
		report(t.Observe(err))
		timer.Reset(c.NextInterval())
	}
}

// Thresholds turns check results into a verdict. The zero value after
// Init is "unhealthy, never checked".
type Thresholds struct {
	unhealthy, healthy uint32
	fails, passes      uint32
	isHealthy, checked bool
}

// Init sets the thresholds from c.
func (t *Thresholds) Init(c *Config) {
	*t = Thresholds{unhealthy: max(1, c.UnhealthyThreshold), healthy: max(1, c.HealthyThreshold)}
}

// Observe records one check result and returns the verdict.
func (t *Thresholds) Observe(err error) Result {
	first := !t.checked
	t.checked = true
	was := t.isHealthy
	if err == nil {
		t.fails = 0
		t.passes++
		if first || t.passes >= t.healthy {
			t.isHealthy = true
		}
	} else {
		t.passes = 0
		t.fails++
		if t.fails >= t.unhealthy {
			t.isHealthy = false
		}
	}
	return Result{Healthy: t.isHealthy, Changed: first || was != t.isHealthy, Err: err}
}
