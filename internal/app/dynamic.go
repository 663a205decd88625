package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/listener"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stream"
	"github.com/weftmesh/weft/internal/tlsctx"
	"github.com/weftmesh/weft/internal/xds"
)

// dynamic applies what the xDS client receives to the running proxy. Every
// Apply is all-or-nothing per resource where Envoy's is: a cluster set that
// does not build changes nothing; a listener that fails (bad filter, port
// taken) keeps its previous version while the others of the same update
// apply, and the update is NACKed naming it.
type dynamic struct {
	a      *App
	client *xds.Client
	routes *stream.RouteStore
	// warm bounds how long a new listener waits for its route configs
	// before it serves anyway.
	warm time.Duration

	mu        sync.Mutex
	static    []*clusterv3.Cluster // bootstrap clusters: CDS cannot replace them
	clusters  map[string]*clusterv3.Cluster
	cla       map[string]*endpointv3.ClusterLoadAssignment // by EDS service name
	listeners map[string]*dynListener
	rconfs    map[string]*routev3.RouteConfiguration
	stopped   bool
}

// dynListener is one LDS listener as it runs.
type dynListener struct {
	pb     *listenerv3.Listener
	ln     *listener.Listener
	routes []string
	// secrets are what its transport sockets take by SDS.
	secrets []string
	chains  map[string]listener.Chain // by key, for reuse on update
	cancel  context.CancelFunc        // stops a pending warm-up
}

func newDynamic(a *App, cfg *xds.Config) *dynamic {
	d := &dynamic{a: a, routes: stream.NewRouteStore(), warm: cfg.InitialFetchTimeout,
		static: a.boot.GetStaticResources().GetClusters(), clusters: map[string]*clusterv3.Cluster{},
		cla: map[string]*endpointv3.ClusterLoadAssignment{}, listeners: map[string]*dynListener{},
		rconfs: map[string]*routev3.RouteConfiguration{}}
	switch {
	case d.warm == 0:
		d.warm = 15 * time.Second
	case d.warm < 0: // initial_fetch_timeout: 0s, Envoy's "wait forever"
		d.warm = 100 * 365 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = a.log.With("component", "xds")
	}
	d.client = xds.New(cfg, d)
	return d
}

// Apply implements xds.Applier.
func (d *dynamic) Apply(typeURL string, all map[string]proto.Message, changed, removed []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("shutting down")
	}
	switch typeURL {
	case resourcev3.ClusterType:
		return d.applyClusters(all)
	case resourcev3.EndpointType:
		return d.applyEndpoints(all, changed)
	case resourcev3.ListenerType:
		return d.applyListeners(all)
	case resourcev3.RouteType:
		return d.applyRoutes(all, changed, removed)
	case resourcev3.SecretType:
		return d.applySecrets(all)
	}
	return fmt.Errorf("resource type %q is not supported", typeURL)
}

// Wants implements xds.Applier.
func (d *dynamic) Wants(typeURL string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch typeURL {
	case resourcev3.RouteType:
		seen := map[string]bool{}
		for _, dl := range d.listeners {
			for _, r := range dl.routes {
				seen[r] = true
			}
		}
		for _, r := range d.a.staticRoutes {
			seen[r] = true
		}
		return sortedKeys(seen)
	case resourcev3.EndpointType:
		seen := map[string]bool{}
		for _, c := range d.static {
			if n := edsName(c); n != "" {
				seen[n] = true
			}
		}
		for _, c := range d.clusters {
			if n := edsName(c); n != "" {
				seen[n] = true
			}
		}
		return sortedKeys(seen)
	case resourcev3.SecretType:
		return d.secretNames()
	}
	return nil
}

// secretNames lists the secrets the running listeners and clusters (static
// and dynamic) take by SDS.
func (d *dynamic) secretNames() []string {
	seen := map[string]bool{}
	add := func(names []string) {
		for _, n := range names {
			seen[n] = true
		}
	}
	add(sdsNames(d.a.boot.GetStaticResources().GetListeners()))
	for _, dl := range d.listeners {
		add(dl.secrets)
	}
	for _, c := range d.static {
		add(tlsctx.SDSNames(c.GetTransportSocket()))
	}
	for _, c := range d.clusters {
		add(tlsctx.SDSNames(c.GetTransportSocket()))
	}
	return sortedKeys(seen)
}

// applySecrets installs the secrets received: handshakes from now on use
// them, nothing is rebuilt. A secret that does not parse keeps its
// previous version and NACKs the update, named.
func (d *dynamic) applySecrets(all map[string]proto.Message) error {
	secs := make(map[string]*tlsv3.Secret, len(all))
	for n, m := range all {
		if s, ok := m.(*tlsv3.Secret); ok {
			secs[n] = s
		}
	}
	return d.a.sds.Update(secs)
}

// edsName is the name a cluster's endpoints are requested by, "" for a
// cluster that does not use EDS.
func edsName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

func (d *dynamic) applyClusters(all map[string]proto.Message) error {
	list := make([]*clusterv3.Cluster, 0, len(d.static)+len(all))
	list = append(list, d.static...)
	isStatic := map[string]bool{}
	for _, c := range d.static {
		isStatic[c.GetName()] = true
	}
	next := make(map[string]*clusterv3.Cluster, len(all))
	var errs []error
	for _, name := range sortedKeys(all) {
		c := all[name].(*clusterv3.Cluster)
		if isStatic[name] {
			errs = append(errs, fmt.Errorf("cluster %q: a static cluster of that name exists; CDS cannot replace it", name))
			continue
		}
		next[name] = c
		list = append(list, c)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := d.a.clusters.Update(list); err != nil {
		return err
	}
	d.clusters = next
	// A cluster built afresh (new, or changed so that it was rebuilt
	// without an EDS predecessor) gets the endpoints already known.
	for name, c := range next {
		if n := edsName(c); n != "" {
			if cla, ok := d.cla[n]; ok && !d.a.clusters.Get(name).HasEndpoints() {
				_ = d.a.clusters.UpdateEndpoints(name, cla)
			}
		}
	}
	return nil
}

func (d *dynamic) applyEndpoints(all map[string]proto.Message, changed []string) error {
	var errs []error
	for _, n := range changed {
		cla, ok := all[n].(*endpointv3.ClusterLoadAssignment)
		if !ok {
			continue
		}
		applied := false
		for _, c := range d.edsClusters(n) {
			if err := d.a.clusters.UpdateEndpoints(c, cla); err != nil {
				errs = append(errs, fmt.Errorf("endpoints %q: %w", n, err))
				applied = false
				break
			}
			applied = true
		}
		if applied || len(d.edsClusters(n)) == 0 {
			d.cla[n] = cla
		}
	}
	return errors.Join(errs...)
}

// edsClusters lists the clusters whose endpoints are named n.
func (d *dynamic) edsClusters(n string) []string {
	var out []string
	for _, c := range d.static {
		if edsName(c) == n {
			out = append(out, c.GetName())
		}
	}
	for name, c := range d.clusters {
		if edsName(c) == n {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (d *dynamic) applyRoutes(all map[string]proto.Message, changed, removed []string) error {
	var errs []error
	for _, n := range changed {
		rc, ok := all[n].(*routev3.RouteConfiguration)
		if !ok {
			continue
		}
		t, err := router.CompileValidated(rc) // the client ran ValidateAll
		if err != nil {
			errs = append(errs, fmt.Errorf("route config %q: %w", n, err))
			continue
		}
		d.routes.Set(n, t)
		d.rconfs[n] = rc
	}
	for _, n := range removed {
		d.routes.Set(n, nil)
		delete(d.rconfs, n)
	}
	return errors.Join(errs...)
}

func (d *dynamic) applyListeners(all map[string]proto.Message) error {
	ls := make([]*listenerv3.Listener, 0, len(all))
	for _, n := range sortedKeys(all) {
		ls = append(ls, all[n].(*listenerv3.Listener))
	}
	var errs []error
	parsed := make([]parsedListener, 0, len(ls))
	// Parse one by one so that one bad listener does not hold back the
	// others (Envoy applies the good ones and NACKs naming the bad).
	for _, l := range ls {
		if d.a.staticListener(l.GetName()) {
			errs = append(errs, fmt.Errorf("listener %q: a static listener of that name exists", l.GetName()))
			continue
		}
		pl, err := parseListenersAt([]*listenerv3.Listener{l}, nil, d.a.tlsOptions(), func(int, *listenerv3.Listener) string {
			return fmt.Sprintf("listener %q", l.GetName())
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parsed = append(parsed, pl[0])
	}
	keep := map[string]bool{}
	for _, pl := range parsed {
		name := pl.pb.GetName()
		keep[name] = true
		if err := d.applyListener(pl); err != nil {
			errs = append(errs, err)
		}
	}
	for name, dl := range d.listeners {
		if !keep[name] && all[name] == nil {
			d.a.log.Info("listener removed by LDS: draining it", "listener", name)
			d.retire(dl)
			delete(d.listeners, name)
		}
	}
	return errors.Join(errs...)
}

// applyListener adds or updates one listener. An update on the same address
// swaps the chains in place (only replaced chains drain); a new address
// binds the new socket first and drains the old listener after.
func (d *dynamic) applyListener(pl parsedListener) error {
	name := pl.pb.GetName()
	old := d.listeners[name]
	if old != nil && proto.Equal(old.pb, pl.pb) {
		return nil
	}
	routes := pl.routeNames()
	secrets := sdsNames([]*listenerv3.Listener{pl.pb})
	if old != nil && listenerAddress(old.pb) == listenerAddress(pl.pb) {
		lc, err := buildListener(pl, d.a, old.chains)
		if err != nil {
			return err
		}
		next := &dynListener{pb: pl.pb, ln: old.ln, routes: routes, secrets: secrets, chains: chainsByKey(lc)}
		if old.cancel != nil {
			old.cancel()
		}
		d.listeners[name] = next
		// New chains naming route configs or secrets not here yet wait
		// for them (bounded), so the swap never serves "no route" or
		// fails handshakes meanwhile.
		d.whenRoutesReady(next, func() {
			if n := old.ln.UpdateConfig(lc); n > 0 {
				d.a.log.Info("listener updated by LDS: draining connections of replaced filter chains", "listener", name, "connections", n)
			}
		})
		return nil
	}
	lc, err := buildListener(pl, d.a, nil)
	if err != nil {
		return err
	}
	ln, err := listener.Listen(lc)
	if err != nil {
		return err
	}
	dl := &dynListener{pb: pl.pb, ln: ln, routes: routes, secrets: secrets, chains: chainsByKey(lc)}
	d.listeners[name] = dl
	if old != nil {
		d.a.log.Info("listener moved by LDS: draining the old address", "listener", name, "from", old.ln.Addr().String(), "to", ln.Addr().String())
		d.retire(old)
	}
	d.whenRoutesReady(dl, func() { go ln.Serve() })
	return nil
}

// whenRoutesReady runs fn once every route config and SDS secret dl names
// has arrived or the warm-up time has passed (Envoy's listener warming).
func (d *dynamic) whenRoutesReady(dl *dynListener, fn func()) {
	missingNow := func() []string {
		return append(d.routes.Missing(dl.routes), d.a.sds.Missing(dl.secrets)...)
	}
	if len(missingNow()) == 0 {
		fn()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.warm)
	dl.cancel = cancel
	go func() {
		defer cancel()
		for {
			ch, sch := d.routes.Changed(), d.a.sds.Changed()
			missing := missingNow()
			if len(missing) == 0 {
				break
			}
			select {
			case <-ch:
				continue
			case <-sch:
				continue
			case <-ctx.Done():
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				return // superseded by a newer version of the listener
			}
			d.a.log.Warn("listener serves before its route configs or secrets arrived", "listener", dl.pb.GetName(), "missing", missing)
			break
		}
		fn()
	}()
}

// retire drains a listener in the background and closes it after the
// drain timeout.
func (d *dynamic) retire(dl *dynListener) {
	if dl.cancel != nil {
		dl.cancel()
	}
	dl.ln.Drain()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d.a.opts.DrainTimeout)
		defer cancel()
		dl.ln.Wait(ctx)
	}()
}

func chainsByKey(lc listener.Config) map[string]listener.Chain {
	out := make(map[string]listener.Chain, len(lc.Chains)+1)
	for _, c := range lc.Chains {
		out[c.Key] = c
	}
	if lc.Default != nil {
		out[lc.Default.Key] = *lc.Default
	}
	return out
}

// runningListeners lists the LDS listeners (sorted by name).
func (d *dynamic) runningListeners() []*listener.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*listener.Listener, 0, len(d.listeners))
	for _, n := range sortedKeys(d.listeners) {
		out = append(out, d.listeners[n].ln)
	}
	return out
}

// stop ends the client; no Apply runs after it returns.
func (d *dynamic) stop() {
	d.client.Close()
	d.mu.Lock()
	d.stopped = true
	for _, dl := range d.listeners {
		if dl.cancel != nil {
			dl.cancel()
		}
	}
	d.mu.Unlock()
}

// dump is the dynamic part of /config_dump.
func (d *dynamic) dump() map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]any{"xds": d.client.Status()}
	ls := make([]proto.Message, 0, len(d.listeners))
	for _, n := range sortedKeys(d.listeners) {
		ls = append(ls, d.listeners[n].pb)
	}
	out["dynamic_listeners"] = ls
	cs := make([]proto.Message, 0, len(d.clusters))
	for _, n := range sortedKeys(d.clusters) {
		cs = append(cs, d.clusters[n])
	}
	out["dynamic_active_clusters"] = cs
	rs := make([]proto.Message, 0, len(d.rconfs))
	for _, n := range sortedKeys(d.rconfs) {
		rs = append(rs, d.rconfs[n])
	}
	out["dynamic_route_configs"] = rs
	es := make([]proto.Message, 0, len(d.cla))
	for _, n := range sortedKeys(d.cla) {
		es = append(es, d.cla[n])
	}
	out["dynamic_endpoint_configs"] = es
	out["dynamic_secrets"] = d.a.sds.Names() // names only: never dump key material
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
