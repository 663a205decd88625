package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// idleKeepAlive opens a connection, completes one request on it and
// leaves it idle; it returns the connection and its reader.
func idleKeepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("keep-alive request: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("keep-alive request: %d close=%v", resp.StatusCode, resp.Close)
	}
	return c, br
}

// TestGracefulShutdown: on SIGTERM an in-flight request (1s upstream)
// completes with 200, an idle keep-alive connection is closed at once,
// new connections are refused, /ready stops answering 200, and weft
// exits as soon as the request is done — well within the drain timeout.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		_, _ = io.WriteString(w, "finished")
	}))
	const drain = 5 * time.Second
	w := startWeft(t, bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("a")})}, staticCluster("a", up.Port)),
		"--drain-timeout", drain.String())
	addr := w.Listener("http")
	base := "http://" + addr

	idle, idleR := idleKeepAlive(t, addr)

	type result struct {
		status int
		body   string
		close  bool
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		resp, err := c.Get(base + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{resp.StatusCode, string(b), resp.Close, err}
	}()
	waitFor(t, 5*time.Second, "the slow request to reach the upstream", func() bool { return up.Hits() == 2 })

	sigAt := time.Now()
	w.Signal(syscall.SIGTERM)

	// The idle connection is closed promptly.
	_ = idle.SetReadDeadline(time.Now().Add(drain))
	_, err := idleR.ReadByte()
	idleClosed := time.Since(sigAt)
	if !errors.Is(err, io.EOF) && !isConnReset(err) {
		t.Errorf("idle keep-alive connection: read returned %v, want EOF", err)
	}
	if idleClosed > 500*time.Millisecond {
		t.Errorf("idle keep-alive connection closed %v after SIGTERM, want promptly", idleClosed)
	}

	// New connections are refused while the request is still in flight.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted after SIGTERM")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("new connection after SIGTERM: %v, want connection refused", err)
	}
	if code, _ := w.Admin("/ready"); code == 200 {
		t.Errorf("/ready still 200 while draining")
	}

	select {
	case r := <-inflight:
		if r.err != nil || r.status != 200 || r.body != "finished" {
			t.Errorf("in-flight request: %d %q %v, want 200 finished", r.status, r.body, r.err)
		}
		if !r.close {
			t.Errorf("in-flight response during drain lacks Connection: close")
		}
	case <-time.After(drain):
		t.Fatal("in-flight request did not complete")
	}
	if !w.Wait(drain + 2*time.Second) {
		t.Fatalf("weft did not exit within the drain timeout (+2s)")
	}
	el := time.Since(sigAt)
	if el > 2500*time.Millisecond {
		t.Errorf("weft exited %v after SIGTERM; with the only request done after ~1s it should not wait for the %v drain timeout", el, drain)
	}
	if w.exitErr != nil {
		t.Errorf("exit status: %v", w.exitErr)
	}
	t.Logf("idle closed after %v, exited after %v", idleClosed, el)
}

// TestShutdownDrainTimeout: a request that outlives --drain-timeout 1s is
// cut, and weft exits after about 1s instead of waiting for it.
func TestShutdownDrainTimeout(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		case <-g.ch:
		}
		_, _ = io.WriteString(w, "too late")
	}))
	w := startWeft(t, bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("a")})}, staticCluster("a", up.Port)),
		"--drain-timeout", "1s")
	base := "http://" + w.Listener("http")

	done := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 15 * time.Second}
		resp, err := c.Get(base + "/forever")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = fmt.Errorf("got a whole response: %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	waitFor(t, 5*time.Second, "the request to reach the upstream", func() bool { return up.Hits() == 1 })
	sigAt := time.Now()
	w.Signal(syscall.SIGTERM)
	if !w.Wait(4 * time.Second) {
		t.Fatalf("weft still running 4s after SIGTERM with --drain-timeout 1s")
	}
	el := time.Since(sigAt)
	if el < 900*time.Millisecond || el > 2500*time.Millisecond {
		t.Errorf("weft exited %v after SIGTERM, want ~1s", el)
	}
	select {
	case err := <-done:
		t.Logf("cut request: %v", err)
	case <-time.After(3 * time.Second):
		t.Errorf("the client was left hanging after weft exited")
	}
}

func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
