// Package zk is the ZooKeeper backend of the service registry, in the
// layout Apache Dubbo's ZooKeeper registry uses, so that plain Dubbo
// applications registered in ZooKeeper are seen by the mesh and the
// mesh's instances by them:
//
//	/<root>/<interface>/providers/<URL-encoded provider URL>
//
// The path nodes are persistent; a provider is an ephemeral node, alive
// as long as the session of the client that created it. See url.go for
// how an Instance maps to a provider URL.
package zk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/weftmesh/weft/internal/registry"
)

// Options configures a client.
type Options struct {
	// Servers are the ZooKeeper servers, "host:port" (port 2181 when
	// missing).
	Servers []string
	// Root is the Dubbo registry root, "/dubbo" by default.
	Root string
	// SessionTimeout is the session timeout asked of the server (which
	// bounds it between 2 and 20 ticks by default), 10s by default.
	SessionTimeout time.Duration
	// Application is the "application" URL parameter of the instances
	// this client registers (unless their metadata has one), "weft" by
	// default.
	Application string
	// Logger receives state changes and errors; slog.Default() if nil.
	Logger *slog.Logger
}

// ErrNoSession is returned (wrapped) by Register and Deregister when the
// client got no ZooKeeper session before their context ended: the request
// is remembered and carried out once a session exists.
var ErrNoSession = errors.New("zk: no ZooKeeper session yet; will apply when connected")

// Registry is a client of ZooKeeper. It implements registry.Registry.
type Registry struct {
	conn *zk.Conn
	dial *dialer
	log  *slog.Logger
	root string // "/dubbo", or "" for the ZooKeeper root
	app  string

	sem  chan struct{} // held while changing this client's nodes
	kick chan struct{} // wakes the reconciler
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	hasSession bool
	up         chan struct{} // closed while hasSession
	ready      bool          // hasSession, and this client's nodes restored in it
	readyCh    chan struct{} // closed while ready
	sid        int64         // session the reconciler last saw
	regs       map[string]*reg
}

// node is one provider node of this client: its path and the session that
// created it (0: unknown, maybe none).
type node struct {
	path  string
	owner int64
}

// reg is what this client wants of one instance (service and key).
type reg struct {
	want bool
	ts   string // the "timestamp" parameter, kept across updates
	cur  node   // the node wanted (want) or nothing
	old  []node // nodes written before, to delete
}

var _ registry.Registry = (*Registry)(nil)

var openACL = zk.WorldACL(zk.PermAll)

// New returns a client of the ZooKeeper servers in o. It does not wait for
// a session: the client connects in the background and keeps trying while
// ZooKeeper is away.
func New(o Options) (*Registry, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("zk: no servers")
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.Application == "" {
		o.Application = "weft"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	root := "/" + strings.Trim(o.Root, "/")
	if o.Root == "" {
		root = "/dubbo"
	}
	if root == "/" {
		root = ""
	}
	r := &Registry{
		dial:    &dialer{handshake: max(time.Second, o.SessionTimeout/3)},
		log:     o.Logger.With("registry", "zookeeper"),
		root:    root,
		app:     o.Application,
		sem:     make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		up:      make(chan struct{}),
		readyCh: make(chan struct{}),
		regs:    make(map[string]*reg),
	}
	conn, _, err := zk.Connect(o.Servers, o.SessionTimeout,
		zk.WithHostProvider(&hostList{}),
		zk.WithDialer(r.dial.dial),
		zk.WithEventCallback(r.onEvent),
		zk.WithLogger(zkLogger{r.log}),
		zk.WithLogInfo(false),
	)
	if err != nil {
		return nil, err
	}
	r.conn = conn
	r.wg.Add(1)
	go r.reconciler()
	return r, nil
}

// onEvent follows the session state. It runs on the ZooKeeper client's
// goroutine and must not block.
func (r *Registry) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	r.mu.Lock()
	was := r.hasSession
	switch ev.State {
	case zk.StateHasSession:
		if !was {
			r.hasSession = true
			close(r.up)
		}
	case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting, zk.StateAuthFailed:
		if was {
			r.hasSession = false
			r.up = make(chan struct{})
		}
		if r.ready {
			r.ready = false
			r.readyCh = make(chan struct{})
		}
	}
	closed := r.closed
	r.mu.Unlock()
	if !closed {
		switch {
		case ev.State == zk.StateExpired:
			r.log.Warn("zookeeper session expired; registering again in a new session", "server", ev.Server)
		case was && ev.State != zk.StateHasSession:
			r.log.Warn("lost the zookeeper connection; reconnecting", "server", ev.Server, "state", ev.State.String())
		}
	}
	r.poke()
}

func (r *Registry) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func regKey(inst registry.Instance) string { return inst.Service + " " + inst.Key() }

// serviceDir is the directory of service's providers.
func (r *Registry) serviceDir(service string) string {
	return r.root + "/" + dubboEncode(service) + "/providers"
}

// Register publishes inst for as long as the client is open. It waits
// for a session until ctx ends; without one it then returns an error
// wrapping ErrNoSession (and ctx's error), and registers inst once a
// session exists. After any other failure it keeps trying too.
func (r *Registry) Register(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	md := make(map[string]string, len(inst.Metadata))
	for k, v := range inst.Metadata {
		md[k] = v
	}
	inst.Metadata = md
	k := regKey(inst)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	g := r.regs[k]
	if g == nil {
		g = &reg{ts: strconv.FormatInt(time.Now().UnixMilli(), 10)}
		r.regs[k] = g
	}
	path := r.serviceDir(inst.Service) + "/" + dubboEncode(providerURL(inst, r.app, g.ts))
	if g.want && g.cur.path == path && r.hasSession && g.cur.owner == r.conn.SessionID() {
		r.mu.Unlock()
		return nil // already there
	}
	if g.cur.path != path {
		if g.cur.path != "" {
			g.old = append(g.old, g.cur)
		}
		g.cur = node{path: path}
		// Writing a node again that is still to be deleted: keep it.
		for i := 0; i < len(g.old); i++ {
			if g.old[i].path == path {
				g.cur = g.old[i]
				g.old = append(g.old[:i], g.old[i+1:]...)
				i--
			}
		}
	}
	g.want = true
	r.mu.Unlock()

	if err := r.do(ctx, k); err != nil {
		return fmt.Errorf("register %s %s: %w", inst.Service, inst.Key(), err)
	}
	return nil
}

// Deregister removes an instance this client registered (matched by
// service and key). Like Register it waits for a session until ctx ends,
// then returns an error wrapping ErrNoSession and removes the node once
// connected (or the server does, when the session ends).
func (r *Registry) Deregister(ctx context.Context, inst registry.Instance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	k := regKey(inst)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	g := r.regs[k]
	if g == nil || (!g.want && len(g.old) == 0) {
		r.mu.Unlock()
		return nil
	}
	if g.want {
		g.want = false
		g.old = append(g.old, g.cur)
		g.cur = node{}
	}
	r.mu.Unlock()

	if err := r.do(ctx, k); err != nil {
		return fmt.Errorf("deregister %s %s: %w", inst.Service, inst.Key(), err)
	}
	return nil
}

// do brings the nodes of key k in line with what is wanted, waiting for a
// session if need be, at most until ctx ends (the operation then
// completes in the background, and the reconciler retries what failed).
func (r *Registry) do(ctx context.Context, k string) error {
	if err := r.waitSession(ctx, false); err != nil {
		r.poke()
		if errors.Is(err, registry.ErrClosed) {
			return err
		}
		return fmt.Errorf("%w (%w)", ErrNoSession, err)
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return registry.ErrClosed
	}
	res := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.reconcile(k)
		<-r.sem
		if err != nil {
			r.poke()
		}
		res <- err
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reconcile creates the node wanted for key k if this session does not
// hold it yet and deletes the ones no longer wanted: in one transaction
// when it can, so that an update never shows watchers both nodes or none.
// The caller holds r.sem.
func (r *Registry) reconcile(k string) error {
	r.mu.Lock()
	g := r.regs[k]
	switch {
	case r.closed:
		r.mu.Unlock()
		return registry.ErrClosed
	case g == nil:
		r.mu.Unlock()
		return nil
	case !r.hasSession:
		r.mu.Unlock()
		return ErrNoSession
	}
	sid := r.conn.SessionID()
	path := g.cur.path
	create := g.want && g.cur.owner != sid
	var dels []string
	for _, n := range g.old {
		// Nodes of an earlier session went with it.
		if n.owner == sid || n.owner == 0 {
			dels = append(dels, n.path)
		}
	}
	r.mu.Unlock()

	var err error
	deleted := make(map[string]bool, len(dels))
	created := false
	if create && len(dels) > 0 {
		ops := make([]any, 0, len(dels)+1)
		for _, p := range dels {
			ops = append(ops, &zk.DeleteRequest{Path: p, Version: -1})
		}
		ops = append(ops, &zk.CreateRequest{Path: path, Acl: openACL, Flags: zk.FlagEphemeral})
		if res, e := r.conn.Multi(ops...); e == nil && multiOK(res) {
			created = true
			for _, p := range dels {
				deleted[p] = true
			}
		}
	}
	if create && !created {
		if err = r.ensure(path, sid); err == nil {
			created = true
		}
	}
	for _, p := range dels {
		if deleted[p] {
			continue
		}
		if e := r.conn.Delete(p, -1); e == nil || errors.Is(e, zk.ErrNoNode) {
			deleted[p] = true
		} else if err == nil {
			err = e
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.regs[k] != g {
		return err
	}
	if created && g.want && g.cur.path == path && r.conn.SessionID() == sid {
		g.cur.owner = sid
	}
	kept := g.old[:0]
	for _, n := range g.old {
		if !deleted[n.path] && (n.owner == sid || n.owner == 0) {
			kept = append(kept, n)
		}
	}
	g.old = kept
	if !g.want && len(g.old) == 0 {
		delete(r.regs, k)
	}
	return err
}

func multiOK(res []zk.MultiResponse) bool {
	for _, m := range res {
		if m.Error != nil {
			return false
		}
	}
	return true
}

// ensure creates the ephemeral node path, and its parents as needed, or
// checks that session sid already holds it.
func (r *Registry) ensure(path string, sid int64) error {
	_, err := r.conn.Create(path, nil, zk.FlagEphemeral, openACL)
	if errors.Is(err, zk.ErrNoNode) {
		if err = r.mkdirs(path[:strings.LastIndexByte(path, '/')]); err != nil {
			return err
		}
		_, err = r.conn.Create(path, nil, zk.FlagEphemeral, openACL)
	}
	if !errors.Is(err, zk.ErrNodeExists) {
		return err
	}
	ok, st, err := r.conn.Exists(path)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("zk: %s vanished while being created; will retry", path)
	case st.EphemeralOwner != sid:
		// Typically the node of this client's previous, expired session,
		// which the server is about to delete.
		return fmt.Errorf("zk: %s is held by session 0x%x; will retry", path, st.EphemeralOwner)
	}
	return nil
}

// mkdirs creates the persistent nodes of dir that do not exist yet.
func (r *Registry) mkdirs(dir string) error {
	for i := 1; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		_, err := r.conn.Create(dir[:i], nil, zk.FlagPersistent, openACL)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zk: create %s: %w", dir[:i], err)
		}
	}
	return nil
}

// reconciler applies, in the background, what Register and Deregister
// could not: after an outage, with a new session after the old one
// expired, or after an error.
func (r *Registry) reconciler() {
	defer r.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastErr := map[string]string{}
	for {
		select {
		case <-r.done:
			return
		case <-r.kick:
		case <-tick.C:
		}
		r.mu.Lock()
		if r.closed || !r.hasSession {
			r.mu.Unlock()
			continue
		}
		sid := r.conn.SessionID()
		var keys []string
		for k, g := range r.regs {
			if (g.want && g.cur.owner != sid) || len(g.old) > 0 {
				keys = append(keys, k)
			}
		}
		if sid != r.sid {
			r.log.Info("zookeeper session established", "session", fmt.Sprintf("0x%x", sid), "pending", len(keys))
			r.sid = sid
		}
		r.mu.Unlock()
		sort.Strings(keys)
		for _, k := range keys {
			select {
			case r.sem <- struct{}{}:
			case <-r.done:
				return
			}
			err := r.reconcile(k)
			<-r.sem
			switch {
			case err == nil:
				delete(lastErr, k)
			case errors.Is(err, registry.ErrClosed):
				return
			case lastErr[k] != err.Error():
				lastErr[k] = err.Error()
				r.log.Warn("zookeeper registration failed; will retry", "instance", k, "err", err)
			}
		}
		// Watches read again once this client's nodes are back (or
		// failed to come back, to be retried), so that after an expiry
		// they do not report this client's own instances gone.
		r.mu.Lock()
		if r.hasSession && !r.ready && r.conn.SessionID() == sid {
			r.ready = true
			close(r.readyCh)
		}
		r.mu.Unlock()
	}
}

// waitSession waits until the client has a session and, if ready, until
// the reconciler has been through this client's nodes in it.
func (r *Registry) waitSession(ctx context.Context, ready bool) error {
	for {
		r.mu.Lock()
		closed, has, up := r.closed, r.hasSession, r.up
		if ready {
			has, up = r.ready, r.readyCh
		}
		r.mu.Unlock()
		switch {
		case closed:
			return registry.ErrClosed
		case has:
			return nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return registry.ErrClosed
		}
	}
}

// errAppeared says that the providers node was created between reading
// its children and watching for it.
var errAppeared = errors.New("providers node appeared")

// readProviders reads the children of dir and watches them, or, when dir
// does not exist, watches for it to appear.
func (r *Registry) readProviders(dir string) ([]string, <-chan zk.Event, error) {
	children, _, ch, err := r.conn.ChildrenW(dir)
	if err == nil {
		return children, ch, nil
	}
	if !errors.Is(err, zk.ErrNoNode) {
		return nil, nil, err
	}
	ok, _, ch, err := r.conn.ExistsW(dir)
	switch {
	case err != nil:
		return nil, nil, err
	case ok:
		return nil, nil, errAppeared
	}
	return nil, ch, nil
}

// Watch calls fn with the providers of service after the first read and
// after every change, until ctx ends (it then returns nil) or the client
// is closed (registry.ErrClosed). It blocks; calls to fn are serialized,
// fn may keep the slice. While the client has no session fn is not
// called: the last list stands.
func (r *Registry) Watch(ctx context.Context, service string, fn func([]registry.Instance)) error {
	if err := (registry.Instance{Service: service, Protocol: "x", Address: "0.0.0.0:0"}).Validate(); err != nil {
		return err
	}
	dir := r.serviceDir(service)
	var last []registry.Instance
	reported := false
	skipped := map[string]bool{} // bad node names, logged once
	backoff := 50 * time.Millisecond
	for {
		if err := r.waitSession(ctx, true); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		children, ch, err := r.readProviders(dir)
		if errors.Is(err, errAppeared) {
			continue
		}
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return registry.ErrClosed
			}
			r.log.Debug("zookeeper: reading providers failed; retrying", "path", dir, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			case <-r.done:
				return registry.ErrClosed
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		list := r.decode(service, dir, children, skipped)
		if !reported || !registry.Equal(last, list) {
			reported, last = true, list
			fn(append([]registry.Instance(nil), list...))
		}
		select {
		case <-ch:
			// A change, or the watch is gone (session expired: it is
			// set again after the next read, in the new session).
		case <-ctx.Done():
			return nil
		case <-r.done:
			return registry.ErrClosed
		}
	}
}

// decode reads the provider nodes, skipping (and logging once) those
// that are not provider URLs, sorted by key (then node name, so that a
// list compares stably when two URLs share a key).
func (r *Registry) decode(service, dir string, children []string, skipped map[string]bool) []registry.Instance {
	type entry struct {
		inst registry.Instance
		name string
	}
	es := make([]entry, 0, len(children))
	for _, name := range children {
		inst, err := decodeNode(service, name)
		if err != nil {
			if !skipped[name] {
				skipped[name] = true
				r.log.Warn("zookeeper: skipping a provider node that is not a provider URL", "path", dir+"/"+name, "err", err)
			}
			continue
		}
		es = append(es, entry{inst, name})
	}
	sort.Slice(es, func(a, b int) bool {
		ka, kb := es[a].inst.Key(), es[b].inst.Key()
		if ka != kb {
			return ka < kb
		}
		return es[a].name < es[b].name
	})
	list := make([]registry.Instance, len(es))
	for i, e := range es {
		list[i] = e.inst
	}
	return list
}

// Close deletes the nodes this client created, ends its session and stops
// its goroutines. Later calls return registry.ErrClosed; Close again does
// nothing and returns nil.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.done)
	r.sem <- struct{}{} // wait for a change in flight; never released

	r.mu.Lock()
	has, sid := r.hasSession, r.conn.SessionID()
	var paths []string
	for _, g := range r.regs {
		if g.want && g.cur.owner == sid {
			paths = append(paths, g.cur.path)
		}
		for _, n := range g.old {
			if n.owner == sid || n.owner == 0 {
				paths = append(paths, n.path)
			}
		}
	}
	r.mu.Unlock()

	if has && len(paths) > 0 {
		// Explicitly, in parallel, so that watchers see them go now; the
		// end of the session would remove them too.
		var wg sync.WaitGroup
		for _, p := range paths {
			wg.Add(1)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer wg.Done()
				if err := r.conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
					r.log.Debug("zookeeper: delete on close failed", "path", p, "err", err)
				}
			}()
		}
		deleted := make(chan struct{})
		go func() { wg.Wait(); close(deleted) }()
		select {
		case <-deleted:
		case <-time.After(5 * time.Second):
		}
	}
	r.conn.Close()
	r.wg.Wait()
	return nil
}

// cut cuts the client's connection and keeps it from connecting again
// (on true) so that its session expires on the server, as a crashed
// client's would; cut(false) lets it reconnect. For tests.
func (r *Registry) cut(on bool) { r.dial.block(on) }
