package e2e

// Misbehaving HTTP/2 clients and upstreams, driven frame by frame with
// golang.org/x/net/http2's Framer on raw connections: rapid reset,
// SETTINGS and PING floods, stream limits, oversized headers, invalid
// frames, a client that stops reading, an upstream reset mid-stream and
// GOAWAY on drain. Weft must survive each and keep serving well-behaved
// clients.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2Steady is a well-behaved HTTP/2 client doing GETs in a loop on its
// own connection until stopped.
type h2Steady struct {
	ok, fail atomic.Int64
	lastErr  atomic.Value
	stop     chan struct{}
	done     chan struct{}
}

func startH2Steady(t *testing.T, addr, path string) *h2Steady {
	t.Helper()
	s := &h2Steady{stop: make(chan struct{}), done: make(chan struct{})}
	c := h2cClient(addr)
	go func() {
		defer close(s.done)
		for {
			code, _, err := h2Get(c, "http://"+addr+path)
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			if err != nil {
				s.fail.Add(1)
				s.lastErr.Store(err.Error())
			} else {
				s.ok.Add(1)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(s.end)
	waitFor(t, 10*time.Second, "the well-behaved HTTP/2 client's first 200", func() bool { return s.ok.Load() > 0 })
	return s
}

func (s *h2Steady) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// check stops the client and fails t if it saw an error or fewer than min
// 200s.
func (s *h2Steady) check(t *testing.T, min int64) {
	t.Helper()
	s.end()
	if n := s.fail.Load(); n > 0 {
		t.Errorf("well-behaved HTTP/2 client harmed: %d failures, last %v (%d OK)", n, s.lastErr.Load(), s.ok.Load())
	}
	if n := s.ok.Load(); n < min {
		t.Errorf("well-behaved HTTP/2 client got %d 200s, want >= %d", n, min)
	}
}

// h2OK fails t unless a fresh HTTP/2 connection gets a 200 from addr.
func h2OK(t *testing.T, addr, what string) {
	t.Helper()
	if code, _, err := h2Get(h2cClient(addr), "http://"+addr+"/ok"); err != nil || code != 200 {
		t.Errorf("%s: a fresh HTTP/2 connection got %d %v, want 200", what, code, err)
	}
}

func TestH2BadInputRapidReset(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	addr := strings.TrimPrefix(base, "http://")
	steady := startH2Steady(t, addr, "/steady")
	before := up.Hits()

	r := dialH2Raw(t, addr, false)
	events := r.readEvents(false)
	const n = 2000
	sent := 0
	var werr error
	for i := 0; i < n && werr == nil; i++ {
		id := uint32(2*i + 1)
		if werr = r.request(id, "GET", "/reset", true); werr == nil {
			r.wmu.Lock()
			werr = r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			r.wmu.Unlock()
		}
		if werr == nil {
			sent++
		}
	}
	// Either weft closes the connection (GOAWAY) or it keeps it and
	// cancels the reset streams before most reach the upstream.
	ga, seen, gotGoAway := waitEvent(events, 10*time.Second, isGoAway)
	_ = r.conn.Close()
	rapidHits := up.Hits() - before - steady.ok.Load() - steady.fail.Load()
	t.Logf("sent %d HEADERS+RST_STREAM pairs (write error %v); GOAWAY %v (%v); ~%d reached the upstream",
		sent, werr, gotGoAway, ga, rapidHits)
	closed := len(seen) > 0 && seen[len(seen)-1].Err != nil
	if len(seen) > 0 {
		t.Logf("last event: %v (connection closed: %v)", seen[len(seen)-1], closed)
	}
	if !gotGoAway && !closed && rapidHits > n/2 {
		t.Errorf("rapid reset: no GOAWAY and %d of %d reset streams reached the upstream; events:\n%s", rapidHits, sent, eventsString(seen))
	}
	// The well-behaved client keeps working during and after.
	time.Sleep(200 * time.Millisecond) // let the steady client run after the attack, too
	steady.check(t, 5)
	h2OK(t, addr, "after rapid reset")
	biAlive(t, w)
}

// TestH2BadInputFloods: SETTINGS and PING floods from a client that never
// reads. golang.org/x/net/http2 (weft's server) defends in two ways:
// SETTINGS acknowledgements are coalesced into one pending flag, so a
// SETTINGS flood costs nothing and the connection may stay open (it must
// then still work, and weft's memory must not grow); PING
// acknowledgements are queued, and once more than 10000 wait behind a
// client that does not read, the connection is closed. The kernel's
// loopback buffers absorb the first few MB of acknowledgements, so the
// PING flood goes on (up to 1M frames, 17 MB) until weft closes.
func TestH2BadInputFloods(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct {
		name      string
		frames    int
		mustClose bool
		write     func(*http2.Framer) error
	}{
		{"settings", 100000, false, func(fr *http2.Framer) error { return fr.WriteSettings() }},
		{"ping", 1000000, true, func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steady := startH2Steady(t, addr, "/steady")
			rss0 := biRSSMB(t, w)
			r := dialH2Raw(t, addr, false)
			// Never read while flooding: weft's acknowledgements pile up.
			_ = r.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			wrote := 0
			var werr error
			for ; wrote < tc.frames; wrote++ {
				if werr = tc.write(r.fr); werr != nil {
					break
				}
			}
			rss := biRSSMB(t, w)
			if tc.name == "settings" && werr == nil {
				// Still open: the connection must still serve a request.
				werr = r.request(1, "GET", "/after-flood", true)
			}
			// Now read: what weft acknowledged comes first, then either the
			// end of the connection or (SETTINGS) the response.
			start := time.Now()
			_ = r.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			var rerr error
			var goAway *http2.GoAwayFrame
			frames, acks := 0, 0
			served := false
			for rerr == nil && !served {
				var f http2.Frame
				if f, rerr = r.fr.ReadFrame(); rerr == nil {
					frames++
					switch f := f.(type) {
					case *http2.GoAwayFrame:
						goAway = f
					case *http2.SettingsFrame:
						if f.IsAck() {
							acks++
						}
					case *http2.PingFrame:
						acks++
					case *http2.DataFrame:
						served = f.StreamID == 1 && f.StreamEnded()
					case *http2.MetaHeadersFrame:
						served = f.StreamID == 1 && f.StreamEnded()
					}
				}
			}
			t.Logf("%s flood: wrote %d frames (%v); read %d frames (%d acks), GOAWAY %v, request served %v, then %v after %v; weft RSS %.1f -> %.1f MiB",
				tc.name, wrote, werr, frames, acks, goAway != nil, served, rerr, time.Since(start).Round(time.Millisecond), rss0, rss)
			switch {
			case tc.mustClose && rerr == nil:
				t.Errorf("%s flood: weft kept serving the flooding connection", tc.name)
			case tc.mustClose && biIsTimeout(rerr):
				t.Errorf("%s flood of %d frames: connection still open after 15s of reading (read %d frames); weft's HTTP/2 goroutines:\n%s",
					tc.name, wrote, frames, weftStacks(w, "http2"))
			case !tc.mustClose && !served && biIsTimeout(rerr):
				t.Errorf("%s flood: the connection is neither closed nor serving requests", tc.name)
			}
			if rss-rss0 > 64 {
				t.Errorf("%s flood: weft's RSS grew %.1f MiB", tc.name, rss-rss0)
			}
			steady.check(t, 3)
			h2OK(t, addr, "after the "+tc.name+" flood")
			biAlive(t, w)
		})
	}
}

func TestH2BadInputMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	var inflight, maxInflight atomic.Int64
	up := newUpstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			n := inflight.Add(1)
			for m := maxInflight.Load(); n > m && !maxInflight.CompareAndSwap(m, n); m = maxInflight.Load() {
			}
			g.wait(20 * time.Second)
			inflight.Add(-1)
		}
		_, _ = io.WriteString(w, "done")
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("slow"),
		Extra: `http2_protocol_options: {max_concurrent_streams: 10}`}, staticCluster("slow", up.Port))
	addr := strings.TrimPrefix(base, "http://")

	r := dialH2Raw(t, addr, false)
	if v, ok := r.serverSettings[http2.SettingMaxConcurrentStreams]; !ok || v != 10 {
		t.Errorf("server SETTINGS_MAX_CONCURRENT_STREAMS = %v (sent %v), want 10", v, ok)
	}
	events := r.readEvents(false)
	// Wait until the SETTINGS ack reached weft: send a PING and wait for
	// its ack, so the limit is in force (RFC 9113 6.5.3).
	r.wmu.Lock()
	_ = r.fr.WritePing(false, [8]byte{'s', 'y', 'n', 'c'})
	r.wmu.Unlock()
	if _, seen, ok := waitEvent(events, 10*time.Second, func(e h2Event) bool { return e.Type == http2.FramePing }); !ok {
		t.Fatalf("no PING ack; events:\n%s", eventsString(seen))
	}
	const streams = 12
	for i := 0; i < streams; i++ {
		if err := r.request(uint32(2*i+1), "GET", "/slow", true); err != nil {
			t.Fatalf("opening stream %d: %v", 2*i+1, err)
		}
	}
	waitFor(t, 10*time.Second, "10 streams at the upstream", func() bool { return inflight.Load() >= 10 })
	// Streams 21 and 23 are over the limit: refused with RST_STREAM
	// (REFUSED_STREAM or PROTOCOL_ERROR, RFC 9113 5.1.2), never sent on.
	var refused []h2Event
	_, seen, _ := waitEvent(events, 3*time.Second, func(e h2Event) bool {
		if e.Type == http2.FrameRSTStream {
			refused = append(refused, e)
		}
		return len(refused) == streams-10
	})
	if m := maxInflight.Load(); m > 10 {
		t.Errorf("the upstream saw %d concurrent requests from one connection limited to 10 streams", m)
	}
	for _, e := range refused {
		if e.StreamID < 21 || (e.ErrCode != http2.ErrCodeRefusedStream && e.ErrCode != http2.ErrCodeProtocol) {
			t.Errorf("unexpected reset: %v", e)
		}
	}
	if len(refused) != streams-10 {
		t.Errorf("%d of the %d streams over the limit were reset; events:\n%s", len(refused), streams-10, eventsString(seen))
	}
	g.open()
	// The 10 admitted streams complete with 200.
	done := map[uint32]bool{}
	_, seen, _ = waitEvent(events, 15*time.Second, func(e h2Event) bool {
		if e.Type == http2.FrameData && e.EndStream || e.Type == http2.FrameHeaders && e.EndStream {
			done[e.StreamID] = true
		}
		return len(done) == 10
	})
	if len(done) != 10 {
		t.Errorf("%d admitted streams completed, want 10; events:\n%s", len(done), eventsString(seen))
	}
	h2OK(t, addr, "after the stream limit")
	biAlive(t, w)
}

func TestH2BadInputOversizedHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a"), Extra: `max_request_headers_kb: 16`}, staticCluster("a", up.Port))
	addr := strings.TrimPrefix(base, "http://")
	r := dialH2Raw(t, addr, false)
	if v, ok := r.serverSettings[http2.SettingMaxHeaderListSize]; ok {
		t.Logf("server SETTINGS_MAX_HEADER_LIST_SIZE = %d", v)
	}
	events := r.readEvents(false)
	huge := strings.Repeat("abcdefghij", 100<<10/10)
	if err := r.request(1, "GET", "/huge", true, "x-huge", huge); err != nil {
		t.Logf("writing the 100 KiB header: %v", err)
	}
	ev, seen, ok := waitEvent(events, 10*time.Second, func(e h2Event) bool {
		return e.StreamID == 1 && (e.Type == http2.FrameRSTStream || e.Type == http2.FrameHeaders) ||
			e.Type == http2.FrameGoAway || e.Err != nil
	})
	switch {
	case !ok:
		t.Errorf("100 KiB header with max_request_headers_kb 16: no answer; events:\n%s", eventsString(seen))
	case ev.Type == http2.FrameHeaders && ev.Status != "431":
		t.Errorf("100 KiB header: answered :status %s, want 431 or a reset", ev.Status)
	default:
		t.Logf("100 KiB header refused: %v", ev)
	}
	if up.Hits() != 0 {
		t.Errorf("the request with a 100 KiB header reached the upstream")
	}
	h2OK(t, addr, "after oversized headers")
	biAlive(t, w)
}

func TestH2BadInputInvalidFrames(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct {
		name       string
		noSettings bool
		send       func(*h2Raw) error
		codes      []http2.ErrCode
	}{
		{"data_on_stream_0", false, func(r *h2Raw) error { return r.fr.WriteData(0, false, []byte("hello")) },
			[]http2.ErrCode{http2.ErrCodeProtocol}},
		{"headers_even_stream", false, func(r *h2Raw) error { return r.request(2, "GET", "/even", true) },
			[]http2.ErrCode{http2.ErrCodeProtocol}},
		{"unknown_frame_before_settings", true, func(r *h2Raw) error {
			// A well-formed frame header of an unknown type where the
			// client's SETTINGS must come first, then junk.
			_, err := r.conn.Write([]byte("\x00\x00\x04\xfa\x00\x00\x00\x00\x00junkmore garbage that is not a frame"))
			return err
		}, []http2.ErrCode{http2.ErrCodeProtocol}},
		{"garbage_after_preface", true, func(r *h2Raw) error {
			_, err := io.WriteString(r.conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not HTTP/2 at all")
			return err
		}, []http2.ErrCode{http2.ErrCodeProtocol, http2.ErrCodeFrameSize}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialH2Raw(t, addr, tc.noSettings)
			events := r.readEvents(false)
			if err := tc.send(r); err != nil {
				t.Fatalf("sending: %v", err)
			}
			ev, seen, ok := waitEvent(events, 10*time.Second, func(e h2Event) bool { return isGoAway(e) || e.Err != nil })
			if !ok || ev.Type != http2.FrameGoAway {
				t.Errorf("no GOAWAY; events:\n%s", eventsString(seen))
			} else if !containsCode(tc.codes, ev.ErrCode) {
				t.Errorf("GOAWAY %v, want one of %v", ev.ErrCode, tc.codes)
			}
			// Then the connection is closed.
			_, seen, closed := waitEvent(events, 10*time.Second, func(e h2Event) bool { return e.Err != nil })
			if !closed {
				t.Errorf("connection not closed after GOAWAY; events:\n%s", eventsString(seen))
			}
			h2OK(t, addr, "after "+tc.name)
		})
	}
	if n := up.Hits(); n != 4 { // the four h2OK probes only
		t.Errorf("upstream served %d requests, want only the 4 probes", n)
	}
	biAlive(t, w)
}

func containsCode(codes []http2.ErrCode, c http2.ErrCode) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

func TestH2BadInputClientStopsReading(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	var written atomic.Int64
	up := newUpstream(t, "firehose", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/firehose" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		buf := make([]byte, 32<<10)
		for written.Load() < size {
			n, err := w.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("firehose")}, staticCluster("firehose", up.Port))
	addr := strings.TrimPrefix(base, "http://")
	rss0 := biRSSMB(t, w)

	r := dialH2Raw(t, addr, false)
	if err := r.request(1, "GET", "/firehose", true); err != nil {
		t.Fatal(err)
	}
	// Never read again. Wait until the upstream's writes stall (no
	// progress for a second), then check how far it got.
	waitFor(t, 10*time.Second, "the upstream to start writing", func() bool { return written.Load() > 0 })
	last, still := written.Load(), time.Now()
	waitFor(t, 30*time.Second, "the upstream's writes to stall", func() bool {
		if n := written.Load(); n != last {
			last, still = n, time.Now()
			return false
		}
		return time.Since(still) > time.Second
	})
	rss := biRSSMB(t, w)
	t.Logf("upstream wrote %.1f MiB of %d MiB before stalling; weft RSS %.1f -> %.1f MiB", float64(last)/(1<<20), size>>20, rss0, rss)
	// HTTP/2 flow control (64 KiB windows, never updated) plus the
	// kernel's loopback socket buffers on both of weft's sockets bound
	// what can be in flight; the rest must wait at the upstream.
	if last > 24<<20 {
		t.Errorf("the upstream wrote %.1f MiB to a client that reads nothing: no back-pressure", float64(last)/(1<<20))
	}
	if rss-rss0 > 48 {
		t.Errorf("weft's RSS grew %.1f MiB for one stalled stream", rss-rss0)
	}
	h2OK(t, addr, "while one client stalls")
	biAlive(t, w)
}

func TestH2BadInputUpstreamResetMidStream(t *testing.T) {
	t.Parallel()
	resetDone := make(chan struct{})
	var resetOnce sync.Once
	up := newUpstream(t, "h2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			_, _ = w.Write(make([]byte, 64<<10))
			w.(http.Flusher).Flush()
			resetOnce.Do(func() { close(resetDone) })
			panic(http.ErrAbortHandler) // RST_STREAM(INTERNAL_ERROR) on HTTP/2
		case "/after-reset":
			select {
			case <-resetDone:
			case <-time.After(10 * time.Second):
			}
			_, _ = w.Write(make([]byte, 64<<10))
			_, _ = io.WriteString(w, "complete")
		}
	}), withH2c)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("h2")}, h2Cluster("h2", up.Port))
	addr := strings.TrimPrefix(base, "http://")

	// One downstream connection carries both streams.
	c := &http.Client{Timeout: 20 * time.Second, Transport: h2cTransport(addr)}
	type result struct {
		code int
		body string
		err  error
	}
	okc := make(chan result, 1)
	go func() {
		code, body, err := h2Get(c, base+"/after-reset")
		okc <- result{code, body, err}
	}()
	resp, err := c.Get(base + "/reset")
	var n int64
	if err == nil {
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var se http2.StreamError
	switch {
	case err == nil:
		t.Errorf("upstream reset mid-body: the client got a clean end after %d bytes, want a stream reset", n)
	case errors.As(err, &se):
		t.Logf("reset stream: %v after %d bytes", se, n)
	default:
		t.Logf("reset stream ended with %v after %d bytes (not a StreamError)", err, n)
		if strings.Contains(err.Error(), "connection") && !strings.Contains(err.Error(), "stream") {
			t.Errorf("the upstream's stream reset took down the client connection: %v", err)
		}
	}
	select {
	case r := <-okc:
		if r.err != nil || r.code != 200 || !strings.HasSuffix(r.body, "complete") {
			t.Errorf("concurrent stream on the same connection: %d %v (%d bytes), want 200 complete", r.code, r.err, len(r.body))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("concurrent stream did not finish")
	}
	biAlive(t, w)
}

func TestH2BadInputGoAwayOnDrain(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	up := newUpstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.wait(20 * time.Second)
		_, _ = io.WriteString(w, "finished")
	}))
	w := startWeft(t, bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("slow")})}, staticCluster("slow", up.Port)),
		"--drain-timeout", "15s")
	addr := w.Listener("http")
	r := dialH2Raw(t, addr, false)
	events := r.readEvents(false)
	if err := r.request(1, "GET", "/long", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stream to reach the upstream", func() bool { return g.waiting.Load() == 1 })
	w.Signal(syscall.SIGTERM)
	ga, seen, ok := waitEvent(events, 5*time.Second, isGoAway)
	if !ok {
		t.Errorf("no GOAWAY within 5s of SIGTERM; events:\n%s", eventsString(seen))
	} else {
		t.Logf("GOAWAY on drain: %v", ga)
		if ga.ErrCode != http2.ErrCodeNo || ga.LastID < 1 {
			t.Errorf("drain GOAWAY %v, want NO_ERROR with last stream >= 1", ga)
		}
	}
	g.open()
	var status string
	ended := false
	_, seen, _ = waitEvent(events, 15*time.Second, func(e h2Event) bool {
		if e.StreamID == 1 && e.Type == http2.FrameHeaders && e.Status != "" {
			status = e.Status
		}
		if e.StreamID == 1 && e.EndStream {
			ended = true
		}
		if e.StreamID == 1 && e.Type == http2.FrameRSTStream {
			return true
		}
		return ended || e.Err != nil
	})
	if status != "200" || !ended {
		t.Errorf("in-flight stream during drain: status %q ended %v, want 200 completed; events:\n%s", status, ended, eventsString(seen))
	}
	if !w.Wait(15 * time.Second) {
		t.Errorf("weft did not exit after the drained stream completed")
	}
}

// TestH2BadInputUpstreamAnswersBeforeBody: an HTTP/2 upstream answers
// (and ends its stream) before reading the request body while the client
// is still sending it. Weft must finish the stream cleanly — the upstream
// transport may still be reading the request body when the downstream
// stream ends — and keep serving.
func TestH2BadInputUpstreamAnswersBeforeBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "early", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "early answer")
	}), withH2c)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("early")}, h2Cluster("early", up.Port))
	addr := strings.TrimPrefix(base, "http://")

	for _, proto := range []string{"h2", "h1"} {
		t.Run(proto, func(t *testing.T) {
			var c *http.Client
			if proto == "h2" {
				c = h2cClient(addr)
			} else {
				c = client()
			}
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pr, pw := io.Pipe()
					// The body trickles in for a second, long after the answer.
					go func() {
						chunk := make([]byte, 16<<10)
						for end := time.Now().Add(time.Second); time.Now().Before(end); {
							if _, err := pw.Write(chunk); err != nil {
								return
							}
							time.Sleep(20 * time.Millisecond)
						}
						_ = pw.Close()
					}()
					req, _ := http.NewRequest("POST", base+"/upload", pr)
					resp, err := c.Do(req)
					if err != nil {
						_ = pr.CloseWithError(err)
						return // a reset stream is an acceptable end; weft must survive
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					_ = pr.CloseWithError(io.ErrClosedPipe)
					if resp.StatusCode != 200 || string(b) != "early answer" {
						errs <- fmt.Errorf("%d %q", resp.StatusCode, b)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("early upstream answer: %v", err)
			}
			// Give any upstream body writer still running time to trip.
			time.Sleep(1500 * time.Millisecond)
			biAlive(t, w)
			h2OK(t, addr, "after early upstream answers")
		})
	}
}
