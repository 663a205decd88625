package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// Options configures a client.
type Options struct {
	// Address is the server's "host:port", e.g. "127.0.0.1:8848".
	Address string
	// HTTPClient makes the calls; nil means a client of its own (no
	// proxy, keep-alive). It must not have a Timeout shorter than a long
	// poll (MaxWait): calls carry their own deadlines.
	HTTPClient *http.Client
	// Logger receives connection changes; nil means slog.Default().
	Logger *slog.Logger
}

// Retry and timing of the client.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	callTimeout = 5 * time.Second  // one session or instance call
	pollMargin  = 10 * time.Second // a long poll's deadline beyond its wait
)

// Registry is a client of the embedded registry server; it implements
// registry.Registry. It holds one session, created in the background and
// kept alive by heartbeats at a third of the session TTL; every instance
// registered through it belongs to that session. When the session is lost
// (the server restarted, or it expired during an outage) the client
// creates a new one and registers again everything it holds.
type Registry struct {
	base   string
	hc     *http.Client
	own    *http.Transport // ours, to close at Close; nil with Options.HTTPClient
	log    *slog.Logger
	ctx    context.Context // ends at Close: stops the keeper and the watches
	cancel context.CancelFunc
	wg     sync.WaitGroup
	op     chan struct{} // a token: serializes session and instance calls
	wake   chan struct{} // asks the keeper to sync now
	wait   time.Duration // a long poll's wait

	mu     sync.Mutex
	closed bool
	sid    string        // "" without a session
	ttl    time.Duration // the session TTL the server announced
	synced bool          // the server holds everything in held under sid
	held   map[ownedKey]registry.Instance
	gone   map[ownedKey]uint64 // deregistered, the server not yet told (value: seq)
	seq    uint64
}

var _ registry.Registry = (*Registry)(nil)

// New returns a client of the server at o.Address. It does not fail when
// the server is down: it connects in the background.
func New(o Options) *Registry {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Registry{
		base: "http://" + o.Address,
		hc:   o.HTTPClient,
		log:  o.Logger.With("component", "registry", "registry", "embedded", "address", o.Address),
		op:   make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
		wait: DefaultWait,
		ttl:  DefaultSessionTTL,
		held: map[ownedKey]registry.Instance{},
		gone: map[ownedKey]uint64{},
	}
	if r.hc == nil {
		r.own = &http.Transport{
			Proxy:       nil, // loopback: never through a proxy
			DialContext: (&net.Dialer{Timeout: callTimeout, KeepAlive: 30 * time.Second}).DialContext,
			// One long poll per watched service: keep as many idle
			// connections as there can be polls, or every burst of
			// answers re-dials (measured: 7,379 dials for one publish).
			MaxIdleConnsPerHost: 100000,
			IdleConnTimeout:     90 * time.Second,
		}
		r.hc = &http.Client{Transport: r.own}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.keep()
	return r
}

// Register publishes inst under the client's session. While the server is
// unreachable it returns an error but keeps inst, and registers it once
// connected.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	inst.Metadata = maps.Clone(inst.Metadata)
	k := ownedKey{inst.Service, inst.Key()}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	r.held[k] = inst
	delete(r.gone, k)
	r.mu.Unlock()

	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	closed, sid, synced := r.closed, r.sid, r.synced
	r.mu.Unlock()
	if closed {
		return registry.ErrClosed
	}
	if sid == "" || !synced {
		return r.syncOp(ctx, k) // registers everything held, inst too
	}
	err := r.put(ctx, sid, inst)
	var he *httpError
	switch {
	case err == nil:
		return nil
	case isUnknownSession(err):
		r.lostSession(sid)
		return r.syncOp(ctx, k)
	case errors.As(err, &he) && he.status == http.StatusBadRequest:
		r.forget(k, inst)
		return err
	default:
		r.unsync()
		return err
	}
}

// Deregister removes an instance registered through this client.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	k := ownedKey{inst.Service, inst.Key()}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	delete(r.held, k)
	r.seq++
	seq := r.seq
	if r.sid != "" {
		r.gone[k] = seq
	}
	r.mu.Unlock()

	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	pending := r.gone[k] == seq
	closed, sid := r.closed, r.sid
	r.mu.Unlock()
	if closed {
		return registry.ErrClosed
	}
	if !pending || sid == "" {
		return nil // done by a sync, superseded, or no session holds it
	}
	err := r.del(ctx, sid, k)
	switch {
	case err == nil:
		r.doneGone(k, seq)
		return nil
	case isUnknownSession(err):
		r.lostSession(sid) // the instance went with the session
		return nil
	default:
		r.unsync()
		return err
	}
}

// Watch calls fn with the instances of service once the server has
// answered, then after every change, until ctx ends or the client is
// closed. While the server is unreachable it retries and fn is not called.
func (r *Registry) Watch(ctx context.Context, service string, fn func([]registry.Instance)) error {
	if err := checkService(service); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return registry.ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	var (
		index    uint64
		hasIndex bool   // false: ask for the current state, no wait
		epoch    string // the server's, to notice a restart
		last     []registry.Instance
		reported bool
		backoff  = minBackoff
		failing  bool
	)
	for {
		res, err := r.poll(wctx, service, index, hasIndex, epoch)
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return registry.ErrClosed
		}
		if err != nil {
			if !failing {
				r.log.Warn("registry watch failing; keeping the last list", "service", service, "err", err)
				failing = true
			}
			hasIndex = false // then take the server's state as it is
			if !sleep(wctx, backoff) {
				continue // the check above returns
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if failing {
			r.log.Info("registry watch recovered", "service", service)
			failing = false
		}
		backoff = minBackoff
		// A restarted server answers with another epoch and an older
		// revision: its state is taken as it is.
		index, hasIndex, epoch = res.Revision, true, res.Epoch
		list := res.Instances
		registry.Sort(list)
		if reported && registry.Equal(last, list) {
			continue
		}
		reported = true
		last = cloneList(list)
		fn(list)
	}
}

// Close deletes the session (the server removes its instances at once),
// stops the background work and makes later calls return
// registry.ErrClosed. It returns the error of the session deletion, if
// any (the session then expires on its own).
func (r *Registry) Close() error {
	if !r.stop() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var err error
	if r.lock(ctx) == nil { // waits for a call in flight
		r.mu.Lock()
		sid := r.sid
		r.sid = ""
		r.mu.Unlock()
		if sid != "" {
			err = r.call(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(sid), "", nil, nil)
			if isUnknownSession(err) {
				err = nil // gone already
			}
		}
		r.unlock()
	}
	if r.own != nil {
		r.own.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("registry: ending the session: %w", err)
	}
	return nil
}

// crash stops the client as a killed process would: no more heartbeats,
// nothing deleted. The session then expires on the server.
func (r *Registry) crash() {
	r.stop()
	if r.own != nil {
		r.own.CloseIdleConnections()
	}
}

// stop marks the client closed and waits for the keeper; false if it was
// closed already.
func (r *Registry) stop() bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return true
}

// keep creates the session, registers what the client holds, and
// heartbeats, until Close.
func (r *Registry) keep() {
	defer r.wg.Done()
	backoff := minBackoff
	down := false
	for {
		err := r.tick()
		r.mu.Lock()
		every := r.ttl / 3
		r.mu.Unlock()
		every = max(every, 10*time.Millisecond)
		d := every
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			if !down {
				r.log.Warn("registry session not in sync (server unreachable?); retrying", "err", err)
				down = true
			}
			d = min(backoff, every)
			backoff = min(2*backoff, maxBackoff)
		} else {
			if down {
				r.log.Info("registry session in sync again")
				down = false
			}
			backoff = minBackoff
		}
		t := time.NewTimer(d)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// tick syncs when the session is missing or behind, else heartbeats.
func (r *Registry) tick() error {
	if err := r.lock(r.ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	sid, synced := r.sid, r.synced
	r.mu.Unlock()
	if sid == "" || !synced {
		return r.syncOp(r.ctx, ownedKey{})
	}
	ctx, cancel := context.WithTimeout(r.ctx, callTimeout)
	defer cancel()
	var s sessionJSON
	err := r.call(ctx, http.MethodPut, "/v1/sessions/"+url.PathEscape(sid), "", nil, &s)
	if isUnknownSession(err) {
		r.log.Info("registry session lost; registering again", "session", sid)
		r.lostSession(sid)
		return r.syncOp(r.ctx, ownedKey{})
	}
	if err == nil {
		r.setTTL(s.TTLMs)
	}
	return err
}

// syncOp (with the op token held) creates a session if there is none,
// tells the server about pending deregistrations and registers everything
// held. It returns the error that concerns want (zero: any error).
func (r *Registry) syncOp(ctx context.Context, want ownedKey) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r.mu.Lock()
		sid := r.sid
		r.mu.Unlock()
		if sid == "" {
			var s sessionJSON
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := r.call(cctx, http.MethodPost, "/v1/sessions", "", nil, &s)
			cancel()
			if err == nil && s.ID == "" {
				err = errors.New("registry: server answered no session id")
			}
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.sid, r.synced = s.ID, false
			clear(r.gone) // the new session owns none of them
			r.mu.Unlock()
			r.setTTL(s.TTLMs)
			sid = s.ID
			r.log.Debug("registry session created", "session", sid)
		}
		r.mu.Lock()
		gone := maps.Clone(r.gone)
		held := maps.Clone(r.held)
		r.mu.Unlock()
		lost := false
		var wantErr error
		for k, seq := range gone {
			err := r.del(ctx, sid, k)
			if isUnknownSession(err) {
				lost = true
				break
			}
			if err != nil {
				r.unsync()
				return err
			}
			r.doneGone(k, seq)
		}
		failed := false
		for k, inst := range held {
			if lost {
				break
			}
			err := r.put(ctx, sid, inst)
			var he *httpError
			switch {
			case err == nil:
			case isUnknownSession(err):
				lost = true
			case errors.As(err, &he) && he.status == http.StatusBadRequest:
				r.log.Warn("registry rejected an instance; dropping it", "service", inst.Service, "key", k.key, "err", err)
				r.forget(k, inst)
				if k == want {
					wantErr = err
				}
			case errors.As(err, &he):
				// Refused for now (a limit): kept, and tried again.
				r.log.Warn("registry refused an instance", "service", inst.Service, "key", k.key, "err", err)
				failed = true
				if k == want || want == (ownedKey{}) {
					wantErr = err
				}
			default:
				r.unsync()
				return err // unreachable: try everything again later
			}
		}
		if lost {
			r.lostSession(sid)
			lastErr = errors.New("registry: the session expired while registering")
			continue
		}
		r.mu.Lock()
		if r.sid == sid {
			r.synced = !failed
		}
		r.mu.Unlock()
		return wantErr
	}
	return lastErr
}

// lock takes the op token.
func (r *Registry) lock(ctx context.Context) error {
	select {
	case r.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Registry) unlock() { <-r.op }

// lostSession forgets sid (the server no longer knows it) and wakes the
// keeper to create another.
func (r *Registry) lostSession(sid string) {
	r.mu.Lock()
	if r.sid == sid {
		r.sid, r.synced = "", false
		clear(r.gone)
	}
	r.mu.Unlock()
	r.poke()
}

// unsync marks the server behind the client, for the keeper to catch up.
func (r *Registry) unsync() {
	r.mu.Lock()
	r.synced = false
	r.mu.Unlock()
	r.poke()
}

func (r *Registry) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// forget drops a held instance the server refused, unless it changed.
func (r *Registry) forget(k ownedKey, inst registry.Instance) {
	r.mu.Lock()
	if cur, ok := r.held[k]; ok && sameInstance(cur, inst) {
		delete(r.held, k)
	}
	r.mu.Unlock()
}

func (r *Registry) setTTL(ms int64) {
	if ms <= 0 {
		return
	}
	r.mu.Lock()
	r.ttl = time.Duration(ms) * time.Millisecond
	r.mu.Unlock()
}

func (r *Registry) put(ctx context.Context, sid string, inst registry.Instance) error {
	body, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return r.call(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(inst.Service)+"/instances", sid, body, nil)
}

// del deregisters; an instance owned by another session (registered
// again by another client) counts as done.
func (r *Registry) del(ctx context.Context, sid string, k ownedKey) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := r.call(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(k.service)+"/instances/"+url.PathEscape(k.key), sid, nil, nil)
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusConflict {
		return nil
	}
	return err
}

// doneGone forgets a pending deregistration the server acknowledged,
// unless it was superseded meanwhile.
func (r *Registry) doneGone(k ownedKey, seq uint64) {
	r.mu.Lock()
	if r.gone[k] == seq {
		delete(r.gone, k)
	}
	r.mu.Unlock()
}

// poll asks for a service's state, long polling when hasIndex.
func (r *Registry) poll(ctx context.Context, service string, index uint64, hasIndex bool, epoch string) (*serviceJSON, error) {
	q := url.Values{}
	timeout := callTimeout
	if hasIndex {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", r.wait.String())
		timeout = r.wait + pollMargin
	}
	if epoch != "" {
		q.Set("epoch", epoch)
		r.mu.Lock()
		ttl := r.ttl
		r.mu.Unlock()
		timeout += ttl // a restarted server holds the answer up to a session TTL
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res serviceJSON
	if err := r.call(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"?"+q.Encode(), "", nil, &res); err != nil {
		return nil, err
	}
	if res.Service != "" && res.Service != service {
		return nil, fmt.Errorf("registry: asked for %s, answered %s", service, res.Service)
	}
	return &res, nil
}

// httpError is an error answer of the server.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("registry: %d %s: %s", e.status, e.code, e.msg)
}

func isUnknownSession(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound && he.code == codeUnknownSession
}

// call makes one API call; body and out are JSON (nil: none).
func (r *Registry) call(ctx context.Context, method, path, sid string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sid != "" {
		req.Header.Set(SessionHeader, sid)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e errorJSON
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e = errorJSON{Error: http.StatusText(resp.StatusCode), Code: "http"}
		}
		return &httpError{status: resp.StatusCode, code: e.Code, msg: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("registry: bad answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func cloneList(l []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(l))
	for i, x := range l {
		x.Metadata = maps.Clone(x.Metadata)
		out[i] = x
	}
	return out
}
