// Package controlplane is Weft's built-in control plane (SPEC C4): it reads
// mesh rules (services, routes, sidecars) from a directory of YAML files,
// watches it, takes service endpoints from a service registry, compiles
// both into xDS v3 resources for each node, and serves them over ADS (state
// of the world and delta) with go-control-plane's server and snapshot
// cache. docs/control-plane.md is the user's guide.
//
// A rule set is refused as a whole when any file has an error: the last
// good rules keep being served, and the errors (file:line) show at the
// admin /status endpoint. Each node gets the snapshot of the first sidecar
// rule that matches its id and metadata; snapshots carry a content hash
// per resource type, so a node whose configuration did not change gets no
// push.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/internal/registry"
)

// Defaults of Options.
const (
	DefaultXDSAddress   = "127.0.0.1:18000"
	DefaultAdminAddress = "127.0.0.1:18001"
	DefaultPoll         = 500 * time.Millisecond
	DefaultDebounce     = 100 * time.Millisecond
	DefaultRegistryWait = 3 * time.Second
)

// setTimeout bounds handing one snapshot to the cache (which writes to the
// node's stream channels).
const setTimeout = 5 * time.Second

// Options configure a control plane.
type Options struct {
	// RulesDir holds the rule files (*.yaml, *.yml; not subdirectories).
	RulesDir string
	// XDSAddress is where the ADS gRPC server listens; default
	// DefaultXDSAddress, "host:0" picks a free port.
	XDSAddress string
	// AdminAddress serves /status and /ready; default
	// DefaultAdminAddress, "-" disables it.
	AdminAddress string
	// Registry, when set, feeds every service its instances (merged with
	// the static endpoints). The caller owns it and closes it after Close.
	Registry registry.Registry
	// RegistryName labels the registry in /status ("embedded", "etcd"...).
	RegistryName string
	// PollInterval is how often the rules directory is looked at; default
	// DefaultPoll.
	PollInterval time.Duration
	// Debounce is how long a change must stay still before it is loaded
	// (a burst of file writes or registry updates makes one push);
	// default DefaultDebounce.
	Debounce time.Duration
	// RegistryWait bounds how long the first snapshots wait for the
	// registry's first answer for every service; default
	// DefaultRegistryWait.
	RegistryWait time.Duration
	// Logger receives loads, errors and node events; nil discards.
	Logger *slog.Logger
}

// Server is a running control plane.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   cache.SnapshotCache
	grpc    *grpc.Server
	xdsLn   net.Listener
	adminLn net.Listener
	admin   *http.Server
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kick    chan struct{} // the registry changed
	start   sync.Once

	mu        sync.Mutex
	started   bool
	model     *model // last good rules, compiled; nil before the first
	loadedAt  time.Time
	ready     bool // snapshots are handed out
	firstGood time.Time
	lastErr   *ErrorStatus
	warnings  []Problem
	stamps    map[string]stamp
	digest    string // of the files last looked at (good or bad)
	instances map[string][]registry.Instance
	answered  map[string]bool
	watches   map[string]context.CancelFunc
	nodes     map[string]*nodeState
	streams   map[int64]*streamState
	pushes    uint64
	closed    bool
}

// nodeState is what the server knows of one node (by id).
type nodeState struct {
	id      string
	meta    map[string]string
	streams int
	group   *group
	version string // of the snapshot set for it; "" none yet
	types   map[string]*TypeStatus
	since   time.Time
}

// streamState follows one xDS stream for ACK/NACK accounting.
type streamState struct {
	node  string // "" until its first request names one
	delta bool
	sent  map[string]sent // by type URL: the last response
}

type sent struct{ nonce, version string }

// New checks o, binds the xDS and admin listeners and loads the rules
// once. Rules with errors do not fail New: the server then waits for good
// rules (see Status). Serving begins with Start.
func New(o Options) (*Server, error) {
	if o.RulesDir == "" {
		return nil, errors.New("controlplane: RulesDir is required")
	}
	if fi, err := os.Stat(o.RulesDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("controlplane: rules directory %q: not a directory", o.RulesDir)
	}
	if o.XDSAddress == "" {
		o.XDSAddress = DefaultXDSAddress
	}
	if o.AdminAddress == "" {
		o.AdminAddress = DefaultAdminAddress
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPoll
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.RegistryWait <= 0 {
		o.RegistryWait = DefaultRegistryWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      o,
		log:       o.Logger.With("component", "controlplane"),
		kick:      make(chan struct{}, 1),
		instances: map[string][]registry.Instance{},
		answered:  map[string]bool{},
		watches:   map[string]context.CancelFunc{},
		nodes:     map[string]*nodeState{},
		streams:   map[int64]*streamState{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, cacheLogger(s.log))
	xs := serverv3.NewServer(s.ctx, s.cache, s.callbacks())
	s.grpc = grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<20),
		// Sidecars keep one stream open for ever: find dead ones, and let
		// live ones ping (Envoy's default keepalive is 5 minutes, but
		// some set less).
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, xs)
	var err error
	if s.xdsLn, err = net.Listen("tcp", o.XDSAddress); err != nil {
		return nil, fmt.Errorf("controlplane: xDS listener: %w", err)
	}
	if o.AdminAddress != "-" {
		if s.adminLn, err = net.Listen("tcp", o.AdminAddress); err != nil {
			s.xdsLn.Close()
			return nil, fmt.Errorf("controlplane: admin listener: %w", err)
		}
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	}
	s.poll()
	return s, nil
}

// Start serves xDS and the admin API and begins watching the rules and the
// registry. It returns at once.
func (s *Server) Start() {
	s.start.Do(func() {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			if err := s.grpc.Serve(s.xdsLn); err != nil && s.ctx.Err() == nil {
				s.log.Error("xDS server stopped", "err", err)
			}
		}()
		go func() {
			defer s.wg.Done()
			s.run()
		}()
		if s.admin != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.log.Error("admin server stopped", "err", err)
				}
			}()
		}
		s.mu.Lock()
		s.started = true
		if s.model != nil {
			s.firstGood = time.Now() // the registry wait starts with the watches
		}
		s.syncWatchesLocked()
		s.mu.Unlock()
		s.log.Info("control plane serving", "xds", s.XDSAddr(), "admin", s.AdminAddr(), "rules", s.opts.RulesDir)
	})
}

// Close stops serving: xDS streams end (sidecars keep their last
// configuration and reconnect elsewhere or later), registry watches stop.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, c := range s.watches {
		c()
	}
	s.mu.Unlock()
	s.cancel()
	s.grpc.Stop() // streams never end by themselves: no graceful wait
	_ = s.xdsLn.Close()
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
		_ = s.adminLn.Close()
	}
	s.wg.Wait()
	return nil
}

// XDSAddr is the bound xDS address.
func (s *Server) XDSAddr() string { return s.xdsLn.Addr().String() }

// AdminAddr is the bound admin address, "" when disabled.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Ready reports whether good rules are loaded and snapshots handed out.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// run polls the rules directory and rebuilds on registry changes, until
// Close.
func (s *Server) run() {
	t := time.NewTimer(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			next := s.opts.PollInterval
			if s.poll() {
				next = s.opts.Debounce // a change: look again soon
			}
			s.checkReady()
			t.Reset(next)
		case <-s.kick:
			// Let a burst of registry updates settle into one push.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(s.opts.Debounce):
			}
			select {
			case <-s.kick:
			default:
			}
			s.recompile()
			s.checkReady()
		}
	}
}

// poll looks at the rules directory; it loads the files once they have
// stayed unchanged for one debounce period. It reports whether a change is
// waiting to settle.
func (s *Server) poll() bool {
	s.mu.Lock()
	prev, digest := s.stamps, s.digest
	s.mu.Unlock()
	sc := scanDir(s.opts.RulesDir, prev)
	if sc.err != nil {
		s.refuse([]Problem{{Message: sc.err.Error()}}, nil, "")
		s.mu.Lock()
		s.lastErr.scan = true
		s.mu.Unlock()
		return false
	}
	s.mu.Lock()
	if s.lastErr != nil && s.lastErr.scan && sc.digest == digest {
		s.lastErr = nil // the directory is back as it was
	}
	changed := sc.digest != digest
	settled := prev != nil && sameStamps(prev, sc.stamps)
	s.stamps = sc.stamps
	s.mu.Unlock()
	if !changed {
		return false
	}
	if !settled && prev != nil {
		return true // changed since the last look: wait for it to settle
	}
	s.load(sc)
	return false
}

func sameStamps(a, b map[string]stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.sum != v.sum {
			return false
		}
	}
	return true
}

// load compiles a settled set of files and, when good, serves it.
func (s *Server) load(sc dirScan) {
	s.mu.Lock()
	inst := s.instances
	s.mu.Unlock()
	m, errs, warns := loadRules(sc.files, inst)
	if len(errs) > 0 {
		s.refuse(errs, warns, sc.digest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.digest = sc.digest
	s.lastErr = nil
	s.warnings = warns
	s.model, s.loadedAt = m, time.Now()
	if s.firstGood.IsZero() {
		s.firstGood = s.loadedAt
	}
	for _, w := range warns {
		s.log.Warn("rules: " + w.String())
	}
	s.log.Info("rules loaded", "version", m.rules.version, "files", len(sc.files), "services", len(m.rules.names), "sidecars", len(m.rules.sidecars))
	s.syncWatchesLocked()
	s.maybeReadyLocked()
	s.pushLocked()
}

// refuse records a bad rule set; the last good one stays.
func (s *Server) refuse(errs, warns []Problem, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if digest != "" {
		s.digest = digest // do not reload the same bad files every poll
	}
	same := s.lastErr != nil && equalProblems(s.lastErr.Problems, errs)
	s.lastErr = &ErrorStatus{At: time.Now(), Problems: errs}
	if same {
		return
	}
	for _, p := range errs {
		s.log.Error("rules refused: " + p.String())
	}
	for _, w := range warns {
		s.log.Warn("rules: " + w.String())
	}
	if s.model != nil {
		s.log.Error("rules refused; serving the last good rules", "version", s.model.rules.version)
	}
}

func equalProblems(a, b []Problem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// recompile rebuilds the current rules with the registry's latest
// instances and pushes what changed.
func (s *Server) recompile() {
	s.mu.Lock()
	m := s.model
	inst := s.instances
	s.mu.Unlock()
	if m == nil {
		return
	}
	nm, err := compile(m.rules, inst)
	if err != nil {
		s.log.Error("compile with registry instances failed; keeping the last snapshots", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.model == nil || s.model.rules != m.rules {
		return // new rules were loaded meanwhile, with these instances
	}
	s.model = nm
	s.warnings = append(append([]Problem(nil), nm.rules.warnings...), nm.warnings...)
	s.maybeReadyLocked()
	s.pushLocked()
}

// checkReady turns ready once the registry wait is over.
func (s *Server) checkReady() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready && s.maybeReadyLocked() {
		s.pushLocked()
	}
}

// maybeReadyLocked decides readiness: good rules, and with a registry its
// first answer for every service (or RegistryWait passed), so that the
// first snapshots do not carry empty endpoint lists.
func (s *Server) maybeReadyLocked() bool {
	if s.ready || s.model == nil {
		return s.ready
	}
	if s.opts.Registry != nil && time.Since(s.firstGood) < s.opts.RegistryWait {
		for _, n := range s.model.rules.names {
			if !s.answered[n] {
				return false
			}
		}
	}
	s.ready = true
	s.log.Info("ready: handing out snapshots", "nodes", len(s.nodes))
	return true
}

// pushLocked gives every known node the snapshot of its group when its
// version changed.
func (s *Server) pushLocked() {
	if !s.ready {
		return
	}
	n := 0
	for _, ns := range s.nodes {
		if s.setLocked(ns) {
			n++
		}
	}
	if n > 0 {
		s.pushes++
		s.log.Info("pushed", "nodes", n, "rules", s.model.rules.version)
	}
}

// setLocked hands a node its group's snapshot if it differs from the one
// it has.
func (s *Server) setLocked(ns *nodeState) bool {
	if !s.ready {
		return false
	}
	g := s.model.groupFor(ns.id, ns.meta)
	ns.group = g
	if g.version == ns.version {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, setTimeout)
	defer cancel()
	if err := s.cache.SetSnapshot(ctx, ns.id, g.snapshot); err != nil {
		s.log.Error("set snapshot", "node", ns.id, "err", err)
		return false
	}
	ns.version = g.version
	return true
}

// callbacks follow streams, learn nodes on their first request and keep
// ACK/NACK state per node and type.
func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.openStream(id, false)
			return nil
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.openStream(id, true)
			return nil
		},
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { s.closeStream(id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { s.closeStream(id) },
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			return s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			return s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.response(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			s.response(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
		},
	}
}

func (s *Server) openStream(id int64, delta bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[id] = &streamState{delta: delta, sent: map[string]sent{}}
}

// closeStream forgets a stream; a node whose last stream closed is
// forgotten with its snapshot (it is compiled again when it comes back).
func (s *Server) closeStream(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	delete(s.streams, id)
	if st == nil || st.node == "" {
		return
	}
	ns := s.nodes[st.node]
	if ns == nil {
		return
	}
	ns.streams--
	if ns.streams > 0 {
		return
	}
	delete(s.nodes, st.node)
	s.cache.ClearSnapshot(st.node)
	s.log.Debug("node gone", "node", st.node)
}

// request handles a discovery request: the first of a stream names the
// node, which is then compiled for; later ones are ACKs or NACKs.
func (s *Server) request(id int64, node *corev3.Node, typeURL, nonce, version, errMsg string, nack bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		return nil
	}
	if st.node == "" {
		if node.GetId() == "" {
			return errors.New("node.id is required: the control plane keys configuration by node id")
		}
		st.node = node.GetId()
		ns := s.nodes[st.node]
		if ns == nil {
			ns = &nodeState{id: st.node, types: map[string]*TypeStatus{}, since: time.Now()}
			s.nodes[st.node] = ns
			s.log.Debug("node connected", "node", ns.id)
		}
		ns.streams++
		meta := flattenMetadata(node.GetMetadata())
		if !sameMeta(ns.meta, meta) {
			ns.meta = meta
			ns.version = "" // its group may change
		}
		s.setLocked(ns)
	}
	ns := s.nodes[st.node]
	if ns == nil || nonce == "" {
		return nil
	}
	ts := ns.typeStatus(typeURL)
	last := st.sent[typeURL]
	switch {
	case nack:
		ts.NackVersion, ts.NackError = last.version, errMsg
		if last.nonce != nonce {
			ts.NackVersion = ""
		}
		ts.NackAt = time.Now()
		s.log.Warn("NACK", "node", ns.id, "type", shortType(typeURL), "version", ts.NackVersion, "error", errMsg)
	case nonce == last.nonce:
		if st.delta {
			version = last.version
		}
		ts.Acked, ts.AckedAt = version, time.Now()
		if ts.NackVersion == version {
			ts.NackVersion, ts.NackError, ts.NackAt = "", "", time.Time{}
		}
	}
	return nil
}

func (s *Server) response(id int64, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		return
	}
	st.sent[typeURL] = sent{nonce: nonce, version: version}
	if ns := s.nodes[st.node]; ns != nil {
		ns.typeStatus(typeURL).Sent = version
	}
}

func (ns *nodeState) typeStatus(typeURL string) *TypeStatus {
	k := shortType(typeURL)
	ts := ns.types[k]
	if ts == nil {
		ts = &TypeStatus{}
		ns.types[k] = ts
	}
	return ts
}

// shortType names a resource type in /status.
func shortType(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "clusters"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listeners"
	case resource.RouteType:
		return "routes"
	}
	return typeURL
}

// flattenMetadata keeps the scalar fields of node metadata as strings.
func flattenMetadata(st *structpb.Struct) map[string]string {
	out := map[string]string{}
	for k, v := range st.GetFields() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			out[k] = x.StringValue
		case *structpb.Value_NumberValue:
			out[k] = strconv.FormatFloat(x.NumberValue, 'f', -1, 64)
		case *structpb.Value_BoolValue:
			out[k] = strconv.FormatBool(x.BoolValue)
		}
	}
	return out
}

func sameMeta(a, b map[string]string) bool {
	if a == nil || len(a) != len(b) {
		return a == nil && b == nil
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// cacheLogger passes go-control-plane's messages on at debug level (its
// warnings too: they are about individual requests).
func cacheLogger(l *slog.Logger) log.Logger {
	l = l.With("from", "go-control-plane")
	f := func(format string, args ...any) {
		if l.Enabled(context.Background(), slog.LevelDebug) {
			l.Debug(fmt.Sprintf(format, args...))
		}
	}
	return log.LoggerFuncs{DebugFunc: f, InfoFunc: f, WarnFunc: f, ErrorFunc: func(format string, args ...any) {
		l.Warn(fmt.Sprintf(format, args...))
	}}
}

// sortedNodes lists node ids in order, for status.
func (s *Server) sortedNodesLocked() []*nodeState {
	out := make([]*nodeState, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
