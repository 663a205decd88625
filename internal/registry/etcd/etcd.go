// Package etcd is the etcd backend of the service registry (SPEC R3).
//
// An instance is the key <prefix>/<service>/<protocol>/<address> holding
// the registry.Instance as JSON. Every key a client registers is attached
// to the client's lease (one per client, kept alive by the client), so a
// client that dies takes its instances with it once the lease expires,
// and Close removes them at once by revoking the lease.
//
// The client never needs etcd to be up: New returns at once and the
// client grants its lease in the background, retrying until etcd answers.
// When the lease is lost (an outage longer than its TTL, a revocation)
// the client grants another and puts again everything it registered.
// Watches keep the last list while etcd is unreachable.
package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/registry"
)

// Defaults of Options.
const (
	DefaultPrefix      = "/weft/services"
	DefaultTTL         = 10 * time.Second
	DefaultDialTimeout = 3 * time.Second
)

// Retry of the background work and of watches.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Options configures a client.
type Options struct {
	// Endpoints are etcd's client URLs, e.g. "http://10.0.0.5:2379".
	Endpoints []string
	// Prefix is the root of the keys; default DefaultPrefix.
	Prefix string
	// TTL is the lease's TTL (whole seconds, rounded up; etcd may raise
	// it to its minimum): how long the instances of a client that died
	// survive it. Default DefaultTTL.
	TTL time.Duration
	// DialTimeout bounds each call to etcd (a call waits for a
	// connection until then). Default DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger receives lease and watch changes; nil means slog.Default().
	Logger *slog.Logger
}

// Registry is a client of etcd; it implements registry.Registry.
type Registry struct {
	cli     *clientv3.Client
	prefix  string // no trailing "/"
	ttl     int64  // lease TTL, seconds
	timeout time.Duration
	log     *slog.Logger
	ctx     context.Context // ends at Close: stops the keeper, keepalive and watches
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	op      chan struct{} // a token: serializes lease, put and delete work
	wake    chan struct{} // asks the keeper to look at the state now

	mu     sync.Mutex
	closed bool
	lease  clientv3.LeaseID // 0: none (no session)
	kaCh   <-chan *clientv3.LeaseKeepAliveResponse
	kaStop context.CancelFunc
	stale  clientv3.LeaseID // a lost lease, revoked once the new one holds everything
	synced bool             // etcd holds held and none of gone under lease
	dirty  uint64           // counts unsync calls, so a sync does not hide a later failure
	held   map[string]registry.Instance
	gone   map[string]struct{} // deregistered; the key may still be under lease
}

var _ registry.Registry = (*Registry)(nil)

// errLeaseLost reports that the lease went away during an operation.
var errLeaseLost = errors.New("registry: etcd lease lost")

// New returns a client of the etcd cluster at o.Endpoints. It does not
// wait for etcd (ctx only bounds New itself and passes its values on): the
// lease is granted in the background, and until then Register returns
// errors (while remembering the instance) and Watch waits.
func New(ctx context.Context, o Options) (*Registry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(o.Endpoints) == 0 {
		return nil, errors.New("registry: etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		DialTimeout:          o.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: o.DialTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			// Reconnect soon after etcd is back, not up to gRPC's 2 minutes.
			Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: o.DialTimeout,
		})},
		Context: context.WithoutCancel(ctx),
		Logger:  zap.NewNop(), // what matters is logged here, through slog
	})
	if err != nil {
		return nil, fmt.Errorf("registry: etcd: %w", err)
	}
	r := &Registry{
		cli:     cli,
		prefix:  strings.TrimRight(o.Prefix, "/"),
		ttl:     int64((o.TTL + time.Second - 1) / time.Second),
		timeout: o.DialTimeout,
		log:     o.Logger.With("component", "registry", "registry", "etcd", "endpoints", strings.Join(o.Endpoints, ",")),
		op:      make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		held:    map[string]registry.Instance{},
		gone:    map[string]struct{}{},
	}
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go r.keep()
	return r, nil
}

// key is the etcd key of an instance.
func (r *Registry) key(inst registry.Instance) string {
	return r.prefix + "/" + inst.Service + "/" + inst.Protocol + "/" + inst.Address
}

// Register puts inst under the client's lease. While etcd is unreachable
// it returns an error but keeps inst, and puts it once a lease exists.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	inst.Metadata = maps.Clone(inst.Metadata)
	k := r.key(inst)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	r.held[k] = inst
	delete(r.gone, k)
	r.mu.Unlock()

	ctx, done := r.opContext(ctx)
	defer done()
	if err := r.lock(ctx); err != nil {
		r.unsync() // the keeper puts it
		return r.opErr("registering "+k, err)
	}
	defer r.unlock()
	for attempt := 0; attempt < 2; attempt++ {
		r.mu.Lock()
		closed, id, synced := r.closed, r.lease, r.synced
		cur, ok := r.held[k]
		r.mu.Unlock()
		switch {
		case closed:
			return registry.ErrClosed
		case !ok:
			return nil // deregistered meanwhile
		case id == 0 || !synced:
			// Puts everything held, inst too.
			var rejected map[string]error
			var err error
			if id == 0 {
				rejected, err = r.establishOp(ctx)
			} else {
				rejected, err = r.syncOp(ctx)
			}
			if errors.Is(err, errLeaseLost) {
				continue
			}
			if err == nil {
				err = rejected[k]
			}
			return r.opErr("registering "+k, err)
		}
		err := r.put(ctx, id, k, cur)
		switch {
		case err == nil:
			return nil
		case isLeaseLost(err):
			r.lostLease(id, "etcd does not know it")
			continue
		case isRejected(err):
			r.forget(k, cur)
			return r.opErr("registering "+k, err)
		default:
			r.unsync()
			return r.opErr("registering "+k, err)
		}
	}
	return r.opErr("registering "+k, errLeaseLost)
}

// Deregister deletes an instance this client registered (an instance
// under another client's lease is left alone) and forgets it.
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	k := r.key(inst)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	delete(r.held, k)
	// Without a lease the key, if any, is under a lost lease: it goes
	// with it (revoked once a new lease holds the rest, or expired).
	pending := r.lease != 0
	if pending {
		r.gone[k] = struct{}{}
	}
	r.mu.Unlock()
	if !pending {
		return nil
	}

	ctx, done := r.opContext(ctx)
	defer done()
	if err := r.lock(ctx); err != nil {
		r.unsync()
		return r.opErr("deregistering "+k, err)
	}
	defer r.unlock()
	r.mu.Lock()
	closed, id := r.closed, r.lease
	_, pending = r.gone[k]
	r.mu.Unlock()
	if closed {
		return registry.ErrClosed
	}
	if !pending || id == 0 {
		return nil // done by a sync, registered again, or gone with the lease
	}
	if err := r.del(ctx, id, k); err != nil {
		r.unsync()
		return r.opErr("deregistering "+k, err)
	}
	r.mu.Lock()
	delete(r.gone, k)
	r.mu.Unlock()
	return nil
}

// Watch calls fn with the instances of service once etcd has answered,
// then after every change, until ctx ends (it returns nil) or the client
// is closed (registry.ErrClosed). While etcd is unreachable it retries
// and fn is not called. Values that are not instances of service under
// their own key are logged and ignored.
func (r *Registry) Watch(ctx context.Context, service string, fn func([]registry.Instance)) error {
	if service == "" || strings.ContainsAny(service, "/ \t\r\n") {
		return fmt.Errorf("registry: bad service name %q", service)
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return registry.ErrClosed
	}
	wctx, done := r.opContext(ctx)
	defer done()
	end := func() error {
		if ctx.Err() != nil {
			return nil
		}
		return registry.ErrClosed
	}

	w := &watch{r: r, service: service, prefix: r.prefix + "/" + service + "/", fn: fn, backoff: minBackoff}
	failing := false
	for {
		rev, err := w.load(wctx)
		if err == nil {
			if failing {
				r.log.Info("etcd watch recovered", "service", service)
				failing = false
			}
			w.report()
			err = w.follow(wctx, rev+1)
		}
		if wctx.Err() != nil {
			return end()
		}
		if !failing {
			r.log.Warn("etcd watch failing; keeping the last list", "service", service, "err", err)
			failing = true
		}
		if !sleep(wctx, w.backoff) {
			return end()
		}
		w.backoff = min(2*w.backoff, maxBackoff)
	}
}

// watch is the state of one Watch.
type watch struct {
	r        *Registry
	service  string
	prefix   string
	fn       func([]registry.Instance)
	cur      map[string]registry.Instance // etcd key → instance
	last     []registry.Instance          // what fn was told
	reported bool
	backoff  time.Duration
}

// load reads the service's keys into cur and returns the revision read.
func (w *watch) load(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.r.timeout)
	defer cancel()
	resp, err := w.r.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	w.cur = make(map[string]registry.Instance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if inst, ok := w.decode(kv.Key, kv.Value); ok {
			w.cur[string(kv.Key)] = inst
		}
	}
	return resp.Header.Revision, nil
}

// follow applies the changes from revision rev on, until the watch ends.
func (w *watch) follow(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watch when it failed
	wch := w.r.cli.Watch(clientv3.WithRequireLeader(ctx), w.prefix,
		clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithCreatedNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.Canceled {
			return errors.New("etcd canceled the watch")
		}
		if wr.Created {
			w.backoff = minBackoff
			continue
		}
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			switch ev.Type {
			case clientv3.EventTypePut:
				if inst, ok := w.decode(ev.Kv.Key, ev.Kv.Value); ok {
					w.cur[k] = inst
				} else {
					delete(w.cur, k) // no longer an instance
				}
			case clientv3.EventTypeDelete:
				delete(w.cur, k)
			}
		}
		if len(wr.Events) > 0 {
			w.report()
		}
	}
	return errors.New("etcd watch ended")
}

// report calls fn with cur unless it is what fn was told last.
func (w *watch) report() {
	list := make([]registry.Instance, 0, len(w.cur))
	for _, inst := range w.cur {
		list = append(list, inst)
	}
	registry.Sort(list)
	if w.reported && registry.Equal(w.last, list) {
		return
	}
	w.reported = true
	w.last = cloneList(list)
	w.fn(list)
}

// decode reads an instance of the watched service stored under its own
// key; anything else is logged and ignored.
func (w *watch) decode(key, value []byte) (registry.Instance, bool) {
	var inst registry.Instance
	err := json.Unmarshal(value, &inst)
	if err == nil {
		err = inst.Validate()
	}
	if err == nil && (inst.Service != w.service || w.r.key(inst) != string(key)) {
		err = fmt.Errorf("instance %s of %s stored under another key", inst.Key(), inst.Service)
	}
	if err != nil {
		w.r.log.Warn("ignoring a bad value in etcd", "key", string(key), "err", err)
		return registry.Instance{}, false
	}
	return inst, true
}

// Close revokes the lease (etcd deletes every instance of the client at
// once), stops the background work and closes the connection; later calls
// return registry.ErrClosed. It returns the error of the revocation, if
// any (the lease then expires on its own). A nil *Registry (what a
// failed New returns, possibly wrapped in a registry.Registry) closes
// without error.
func (r *Registry) Close() error {
	if r == nil || !r.stop() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	var err error
	if r.lock(ctx) == nil { // waits for an operation in flight (cut short by stop)
		r.mu.Lock()
		id, stale, kaStop := r.lease, r.stale, r.kaStop
		r.lease, r.stale, r.kaCh, r.kaStop = 0, 0, nil, nil
		clear(r.held)
		clear(r.gone)
		r.mu.Unlock()
		if kaStop != nil {
			kaStop()
		}
		if id != 0 {
			if _, err = r.cli.Revoke(ctx, id); isLeaseLost(err) {
				err = nil // gone already
			}
		}
		if stale != 0 {
			_, _ = r.cli.Revoke(ctx, stale)
		}
		r.unlock()
	} else {
		err = ctx.Err()
	}
	if cerr := r.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("registry: etcd: revoking the lease: %w", err)
	}
	return nil
}

// crashForTest stops the client as a killed process would: no more
// keepalives and no revocation; the lease then expires in etcd.
func (r *Registry) crashForTest() {
	if !r.stop() {
		return
	}
	r.mu.Lock()
	kaStop := r.kaStop
	r.lease, r.kaCh, r.kaStop = 0, nil, nil
	r.mu.Unlock()
	if kaStop != nil {
		kaStop()
	}
	_ = r.cli.Close()
}

// stop marks the client closed, ends its context and waits for the
// keeper; false if it was closed already.
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

// keep grants the lease, puts what the client holds, drains the
// keepalive responses and notices the lease's loss, until Close.
func (r *Registry) keep() {
	defer r.wg.Done()
	bo := minBackoff
	failing := false
	for {
		err := r.tick()
		if r.ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		var timer *time.Timer
		if err != nil {
			if !failing {
				r.log.Warn("etcd unreachable or refusing; retrying", "err", err)
				failing = true
			} else {
				r.log.Debug("etcd still failing", "err", err)
			}
			timer = time.NewTimer(bo)
			retry = timer.C
			bo = min(2*bo, maxBackoff)
		} else {
			if failing {
				r.log.Info("etcd reachable again; registrations in place")
				failing = false
			}
			bo = minBackoff
		}
		r.mu.Lock()
		id, ch := r.lease, r.kaCh
		r.mu.Unlock()
	wait:
		for {
			select {
			case <-r.ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case <-r.wake:
				break wait
			case <-retry:
				break wait
			case _, ok := <-ch: // nil without a lease: never ready
				if !ok {
					if r.ctx.Err() == nil {
						r.lostLease(id, "its keepalive ended")
					}
					break wait
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// tick grants a lease when there is none and syncs when etcd is behind.
func (r *Registry) tick() error {
	r.mu.Lock()
	idle := r.closed || (r.lease != 0 && r.synced)
	r.mu.Unlock()
	if idle {
		return nil
	}
	if err := r.lock(r.ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.mu.Lock()
	closed, id, synced := r.closed, r.lease, r.synced
	r.mu.Unlock()
	var rejected map[string]error
	var err error
	switch {
	case closed:
		return nil
	case id == 0:
		rejected, err = r.establishOp(r.ctx)
	case !synced:
		rejected, err = r.syncOp(r.ctx)
	}
	for k, e := range rejected {
		r.log.Warn("etcd refused an instance; dropping it", "key", k, "err", e)
	}
	return err
}

// establishOp (with the op token held) grants a lease, keeps it alive and
// puts everything held under it.
func (r *Registry) establishOp(ctx context.Context) (map[string]error, error) {
	gctx, cancel := context.WithTimeout(ctx, r.timeout)
	g, err := r.cli.Grant(gctx, r.ttl)
	cancel()
	if err != nil {
		return nil, err
	}
	kctx, kaStop := context.WithCancel(r.ctx)
	ch, err := r.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		kaStop()
		return nil, err
	}
	r.mu.Lock()
	r.lease, r.kaCh, r.kaStop, r.synced = g.ID, ch, kaStop, false
	clear(r.gone) // none is under the new lease
	r.mu.Unlock()
	r.log.Info("etcd lease granted", "lease", fmt.Sprintf("%x", int64(g.ID)), "ttl", g.TTL)
	r.poke() // the keeper drains ch
	return r.syncOp(ctx)
}

// syncOp (with the op token held) deletes what was deregistered and puts
// everything held under the current lease, then revokes a lost lease. It
// returns the instances etcd refused (dropped) by key, and errLeaseLost
// when the lease went away meanwhile.
func (r *Registry) syncOp(ctx context.Context) (map[string]error, error) {
	r.mu.Lock()
	id, stale, dirty := r.lease, r.stale, r.dirty
	gone := slices.Sorted(maps.Keys(r.gone))
	held := maps.Clone(r.held)
	r.mu.Unlock()
	if id == 0 {
		return nil, errLeaseLost
	}
	for _, k := range gone {
		if err := r.del(ctx, id, k); err != nil {
			r.unsync()
			return nil, err
		}
		r.mu.Lock()
		delete(r.gone, k)
		r.mu.Unlock()
	}
	var rejected map[string]error
	for _, k := range slices.Sorted(maps.Keys(held)) {
		inst := held[k]
		err := r.put(ctx, id, k, inst)
		switch {
		case err == nil:
		case isLeaseLost(err):
			r.lostLease(id, "etcd does not know it")
			return nil, errLeaseLost
		case isRejected(err):
			r.forget(k, inst)
			if rejected == nil {
				rejected = map[string]error{}
			}
			rejected[k] = err
		default:
			r.unsync()
			return nil, err
		}
	}
	r.mu.Lock()
	if r.lease == id && r.dirty == dirty {
		r.synced = true
	}
	if r.stale == stale {
		r.stale = 0
	}
	r.mu.Unlock()
	if stale != 0 {
		// What the lost lease still holds (instances deregistered in the
		// meantime, if it survived a restart of etcd) goes now.
		rctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, _ = r.cli.Revoke(rctx, stale)
		cancel()
	}
	return rejected, nil
}

func (r *Registry) put(ctx context.Context, id clientv3.LeaseID, k string, inst registry.Instance) error {
	val, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, err = r.cli.Put(ctx, k, string(val), clientv3.WithLease(id))
	return err
}

// del deletes k if it is under lease id (else another client owns it, or
// it is gone already).
func (r *Registry) del(ctx context.Context, id clientv3.LeaseID, k string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(k), "=", id)).
		Then(clientv3.OpDelete(k)).
		Commit()
	return err
}

// lostLease forgets lease id (etcd no longer keeps it) and wakes the
// keeper to grant another.
func (r *Registry) lostLease(id clientv3.LeaseID, why string) {
	r.mu.Lock()
	lost := id != 0 && r.lease == id
	if lost {
		r.kaStop()
		r.lease, r.kaCh, r.kaStop, r.synced = 0, nil, nil, false
		r.stale = id
		clear(r.gone) // they go with the lease
	}
	r.mu.Unlock()
	if lost {
		r.log.Warn("etcd lease lost; registering again under a new lease", "lease", fmt.Sprintf("%x", int64(id)), "why", why)
	}
	r.poke()
}

// unsync marks etcd behind the client, for the keeper to catch up.
func (r *Registry) unsync() {
	r.mu.Lock()
	r.synced = false
	r.dirty++
	r.mu.Unlock()
	r.poke()
}

func (r *Registry) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// forget drops a held instance etcd refused, unless it changed since.
func (r *Registry) forget(k string, inst registry.Instance) {
	r.mu.Lock()
	if cur, ok := r.held[k]; ok && registry.Equal([]registry.Instance{cur}, []registry.Instance{inst}) {
		delete(r.held, k)
	}
	r.mu.Unlock()
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

// opContext is ctx, also ended by Close.
func (r *Registry) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// opErr is the error of an operation: registry.ErrClosed once closed.
func (r *Registry) opErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case r.ctx.Err() != nil:
		return registry.ErrClosed
	}
	return fmt.Errorf("registry: etcd: %s: %w", what, err)
}

// isLeaseLost reports etcd's answer for an unknown (expired, revoked) lease.
func isLeaseLost(err error) bool {
	return err != nil && (errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound))
}

// isRejected reports a refusal of the request itself, which retrying
// cannot cure: an instance too large for etcd or for the client. (etcd's
// own "too many requests" arrives as an rpctypes.EtcdError, not a status.)
func isRejected(err error) bool {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.ResourceExhausted
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
