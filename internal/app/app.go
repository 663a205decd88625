// Package app is the wiring root: it builds every manager from a bootstrap
// and passes each its dependencies by constructor. Nothing else in Weft
// reaches for a global.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/listener"
	"github.com/weftmesh/weft/internal/mesh"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
	"github.com/weftmesh/weft/internal/tlsctx"
	"github.com/weftmesh/weft/internal/upstream"
	"github.com/weftmesh/weft/internal/xds"
)

// DefaultDrainTimeout is how long a shutdown waits for in-flight requests.
const DefaultDrainTimeout = 5 * time.Second

// DefaultAdminAddress is used when the bootstrap has no admin block.
const DefaultAdminAddress = "127.0.0.1:9901"

// Options are the process-level knobs that are not in the bootstrap.
type Options struct {
	Logger       *slog.Logger
	LogLevel     *slog.LevelVar
	DrainTimeout time.Duration
	// AdminAddress overrides the bootstrap's admin address when set;
	// "-" disables the admin server.
	AdminAddress string
}

// App is one running Weft: listeners, clusters, admin.
type App struct {
	opts      Options
	boot      *bootstrapv3.Bootstrap
	log       *slog.Logger
	store     *stats.Store
	bufs      *http1.BufPool
	logs      *accesslog.Set
	clusters  *upstream.Manager
	listeners []*listener.Listener
	admin     *admin.Server
	mesh      *mesh.Agent
	dyn       *dynamic        // nil without dynamic_resources
	secrets   tlsctx.Provider // static_resources.secrets, by name
	sds       *tlsctx.SDS     // secrets over ADS; nil without dynamic_resources
	// staticRoutes are the RDS route configs static listeners name.
	staticRoutes []string
	ctx          context.Context // ends at shutdown
	cancel       context.CancelFunc

	mu       sync.Mutex
	draining bool
}

// New builds everything in b and binds the listeners and the admin port,
// but serves nothing until Start. On error nothing is left running.
func New(b *bootstrapv3.Bootstrap, opts Options) (_ *App, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LogLevel == nil {
		opts.LogLevel = &slog.LevelVar{}
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	a := &App{opts: opts, boot: b, log: opts.Logger, store: stats.NewStore(), bufs: http1.NewBufPool(8 << 10), logs: accesslog.NewSet()}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	if a.secrets, err = staticSecrets(b); err != nil {
		return nil, err
	}
	xcfg, err := xds.FromBootstrap(b)
	if err != nil {
		return nil, err
	}
	if xcfg != nil {
		a.sds = tlsctx.NewSDS()
	}
	to := a.tlsOptions()
	a.clusters = upstream.NewManager(upstream.Options{Logger: a.log, Stats: a.store, Secrets: to.Secrets, SDS: to.SDS})
	if err := a.clusters.Update(b.GetStaticResources().GetClusters()); err != nil {
		return nil, err
	}
	if xcfg != nil {
		a.dyn = newDynamic(a, xcfg)
	}
	known := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		known[c.GetName()] = true
	}
	if xcfg == nil {
		if err := staticRDSWithoutXDS(b, to); err != nil {
			return nil, err
		}
	}
	specs, routes, err := buildListeners(b.GetStaticResources().GetListeners(), known, a)
	if err != nil {
		return nil, err
	}
	a.staticRoutes = routes
	for _, sp := range specs {
		ln, err := listener.Listen(sp)
		if err != nil {
			return nil, err
		}
		a.listeners = append(a.listeners, ln)
	}
	if mc, err := meshConfig(b); err != nil {
		return nil, err
	} else if mc != nil {
		if a.mesh, err = mesh.New(mc, mesh.Options{Logger: a.log, Store: a.store}); err != nil {
			return nil, err
		}
	}
	adminAddr := config.AdminAddress(b, DefaultAdminAddress)
	if opts.AdminAddress != "" {
		adminAddr = opts.AdminAddress
	}
	if adminAddr != "-" {
		a.admin = admin.New(admin.Options{
			Address:    adminAddr,
			Stats:      a.store,
			LogLevel:   opts.LogLevel,
			Logger:     a.log,
			ConfigDump: a.configDump,
			Clusters:   a.clusterStatus,
			Listeners:  a.listenerInfo,
			Ready:      a.ready,
		})
		if err := a.admin.Start(); err != nil {
			a.admin = nil
			return nil, fmt.Errorf("admin: %w", err)
		}
	}
	return a, nil
}

// Check builds everything in b without binding a port or starting a
// goroutine that outlives it: what `weft validate` runs. It returns the
// warnings of an accepted config too.
func Check(b *bootstrapv3.Bootstrap) (warnings []string, err error) {
	errs := &config.Errors{}
	st, serr := staticSecrets(b)
	if serr != nil {
		errs.AddErr("", serr)
	}
	xcfg, xerr := xds.FromBootstrap(b)
	if xerr != nil {
		errs.AddErr("", xerr)
	}
	secrets := tlsctx.Options{Secrets: st}
	if xcfg != nil {
		secrets.SDS = tlsctx.NewSDS() // empty: looked up only at handshakes
	}
	for i, c := range b.GetStaticResources().GetClusters() {
		if err := upstream.Validate(c, secrets); err != nil {
			errs.AddErr(fmt.Sprintf("static_resources.clusters[%d]", i), err)
		}
	}
	known := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		known[c.GetName()] = true
	}
	if _, err := meshConfig(b); err != nil {
		errs.AddErr("", err)
	}
	parsed, perr := parseListeners(b.GetStaticResources().GetListeners(), known, secrets)
	if perr != nil {
		errs.AddErr("", perr)
	}
	for _, pl := range parsed {
		warnings = append(warnings, pl.warnings()...)
	}
	if xcfg == nil && xerr == nil && perr == nil {
		if err := staticRDSWithoutXDS(b, secrets); err != nil {
			errs.AddErr("", err)
		}
	}
	return warnings, errs.Err()
}

// Start serves every listener.
func (a *App) Start() {
	for _, l := range a.listeners {
		go l.Serve()
	}
	if a.mesh != nil {
		a.mesh.Start()
	}
	if a.dyn != nil {
		a.dyn.client.Start(a.ctx)
	}
	a.log.Info("weft started", "listeners", len(a.listeners), "admin", a.AdminAddr(), "xds", a.dyn != nil)
}

// ListenerAddr returns the bound address of the named listener.
func (a *App) ListenerAddr(name string) net.Addr {
	for _, l := range a.allListeners() {
		if l.Name() == name {
			return l.Addr()
		}
	}
	return nil
}

// AdminAddr is the admin server's bound address ("" when disabled).
func (a *App) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Stats is the metrics store.
func (a *App) Stats() *stats.Store { return a.store }

// Shutdown drains: listeners stop accepting, idle keep-alive connections
// close at once, in-flight requests get until the drain timeout (or ctx),
// then everything left is closed.
func (a *App) Shutdown(ctx context.Context) {
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
	if a.admin != nil {
		a.admin.SetDraining()
	}
	if a.mesh != nil {
		// Deregister first and keep serving while consumers learn it, then
		// drain: no consumer is left sending to a closed ingress. The grace
		// comes on top of the drain timeout, not out of it.
		mctx, mcancel := context.WithTimeout(ctx, a.mesh.DrainGrace()+a.opts.DrainTimeout)
		a.mesh.Shutdown(mctx)
		mcancel()
	}
	if a.dyn != nil {
		a.dyn.stop() // no config change while draining
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.DrainTimeout)
	defer cancel()
	all := a.allListeners()
	for _, l := range all {
		l.Drain()
	}
	var wg sync.WaitGroup
	for _, l := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n := l.Wait(ctx); n > 0 {
				a.log.Warn("drain timeout: closed connections with requests in flight", "listener", l.Name(), "connections", n)
			}
		}()
	}
	wg.Wait()
	a.closeAll()
	a.log.Info("weft stopped")
}

// MeshSDKAddr is the bound address of the mesh agent's SDK API, "" when
// the sidecar runs no agent.
func (a *App) MeshSDKAddr() string {
	if a.mesh == nil {
		return ""
	}
	return a.mesh.SDKAddr()
}

// meshConfig finds the mesh agent's bootstrap extension; any other
// bootstrap extension is refused by name.
func meshConfig(b *bootstrapv3.Bootstrap) (*mesh.Config, error) {
	var out *mesh.Config
	for i, e := range b.GetBootstrapExtensions() {
		tu := config.TypeURL(e.GetTypedConfig())
		if e.GetName() != mesh.ExtensionName && tu != mesh.TypeURL {
			return nil, fmt.Errorf("bootstrap_extensions[%d]: unknown extension %q (type %q)", i, e.GetName(), tu)
		}
		if out != nil {
			return nil, fmt.Errorf("bootstrap_extensions[%d]: a second %s", i, mesh.ExtensionName)
		}
		c, err := mesh.ParseConfig(e.GetTypedConfig().GetValue())
		if err != nil {
			errs := &config.Errors{}
			errs.AddErr(fmt.Sprintf("bootstrap_extensions[%d].typed_config", i), err)
			return nil, errs
		}
		out = c
	}
	return out, nil
}

// staticRDSWithoutXDS refuses static listeners that take routes by RDS
// when there is no xDS server to send them.
func staticRDSWithoutXDS(b *bootstrapv3.Bootstrap, secrets tlsctx.Options) error {
	parsed, err := parseListeners(b.GetStaticResources().GetListeners(), nil, secrets)
	if err != nil {
		return nil // reported by the build with its own paths
	}
	errs := &config.Errors{}
	for i, pl := range parsed {
		if rn := pl.routeNames(); len(rn) > 0 {
			errs.Add(fmt.Sprintf("static_resources.listeners[%d]", i), "rds: route config %q needs dynamic_resources (an xDS server) in the bootstrap", rn[0])
		}
	}
	return errs.Err()
}

// allListeners lists the static listeners, then the LDS ones.
func (a *App) allListeners() []*listener.Listener {
	if a.dyn == nil {
		return a.listeners
	}
	return append(a.listeners[:len(a.listeners):len(a.listeners)], a.dyn.runningListeners()...)
}

// staticListener reports whether the bootstrap defines a listener named n.
func (a *App) staticListener(n string) bool {
	for _, l := range a.boot.GetStaticResources().GetListeners() {
		if l.GetName() == n {
			return true
		}
	}
	return false
}

func (a *App) closeAll() {
	if a.dyn != nil {
		a.dyn.stop()
	}
	if a.cancel != nil {
		a.cancel()
	}
	if a.mesh != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace: this is the failure path or after the drain
		a.mesh.Shutdown(ctx)
	}
	for _, l := range a.allListeners() {
		l.Close()
	}
	if a.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = a.admin.Shutdown(sctx)
		cancel()
	}
	if a.clusters != nil {
		a.clusters.Close()
	}
	if err := a.logs.Close(); err != nil {
		a.log.Warn("closing access logs", "err", err)
	}
}

// ready is false while draining and, with xDS, until the first config
// arrived (Envoy's INITIALIZING).
func (a *App) ready() bool {
	a.mu.Lock()
	draining := a.draining
	a.mu.Unlock()
	if draining {
		return false
	}
	if a.dyn != nil {
		select {
		case <-a.dyn.client.Initialized():
		default:
			return false
		}
	}
	return true
}

// configDump is the bootstrap as loaded; with xDS it also carries "xds":
// what was received and applied (versions, the last NACK, resources).
func (a *App) configDump() ([]byte, error) {
	mo := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}
	boot, err := mo.Marshal(redact(a.boot))
	if err != nil || a.dyn == nil {
		return boot, err
	}
	var out map[string]any
	if err := json.Unmarshal(boot, &out); err != nil {
		return nil, err
	}
	x := map[string]any{}
	for k, v := range a.dyn.dump() {
		x[k] = protoJSON(protojson.MarshalOptions{UseProtoNames: true}, v)
	}
	out["xds"] = x
	return json.MarshalIndent(out, "", "  ")
}

// protoJSON makes messages (and lists of them) marshal as protojson inside
// encoding/json.
func protoJSON(mo protojson.MarshalOptions, v any) any {
	switch t := v.(type) {
	case proto.Message:
		b, err := mo.Marshal(redact(t))
		if err != nil {
			return err.Error()
		}
		return json.RawMessage(b)
	case []proto.Message:
		out := make([]any, len(t))
		for i, m := range t {
			out[i] = protoJSON(mo, m)
		}
		return out
	}
	return v
}

// buildContext is what network filter factories see.
type buildContext struct {
	a        *App
	listener string
	drain    api.Drainer
}

func (a *App) buildContext(listener string) api.BuildContext {
	return &buildContext{a: a, listener: listener}
}

func (b *buildContext) Clusters() api.ClusterManager { return b.a.clusters }
func (b *buildContext) Logger() *slog.Logger         { return b.a.log }
func (b *buildContext) Drain() api.Drainer           { return b.drain }
func (b *buildContext) Listener() string             { return b.listener }

// Service sets *target to the shared service of its type.
func (b *buildContext) Service(target any) bool {
	switch t := target.(type) {
	case **stats.Store:
		*t = b.a.store
	case **http1.BufPool:
		*t = b.a.bufs
	case **accesslog.Set:
		*t = b.a.logs
	case **stream.RouteStore:
		if b.a.dyn == nil {
			return false
		}
		*t = b.a.dyn.routes
	default:
		return false
	}
	return true
}

type listenerStats struct{ s *stats.ListenerStats }

func (l listenerStats) Accepted() { l.s.DownstreamCxTotal.Inc(); l.s.DownstreamCxActive.Inc() }
func (l listenerStats) Closed()   { l.s.DownstreamCxActive.Dec(); l.s.DownstreamCxDestroy.Inc() }

func (l listenerStats) NoChainMatch() { l.s.NoFilterChainMatch.Inc() }

func (l listenerStats) Handshake()      { l.s.SSLHandshake.Inc() }
func (l listenerStats) HandshakeError() { l.s.SSLConnectionError.Inc() }

func (a *App) listenerInfo() []admin.ListenerInfo {
	out := make([]admin.ListenerInfo, 0, len(a.listeners))
	for _, l := range a.allListeners() {
		out = append(out, admin.ListenerInfo{Name: l.Name(), Address: l.Addr().String()})
	}
	if a.mesh != nil {
		addrs := a.mesh.ListenerAddrs()
		names := make([]string, 0, len(addrs))
		for n := range addrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, admin.ListenerInfo{Name: n, Address: addrs[n]})
		}
	}
	return out
}

// clusterStatus is the admin /clusters content: the static clusters, then
// the mesh agent's.
func (a *App) clusterStatus() any {
	out := a.clusters.Snapshot()
	if a.mesh != nil {
		out = append(out, a.mesh.Clusters()...)
	}
	return out
}
