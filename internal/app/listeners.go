package app

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/listener"
	"github.com/weftmesh/weft/internal/tlsctx"
)

// ClusterReferrer is implemented by parsed filter configs that name
// clusters, so a static config that routes to a missing cluster is refused
// up front (Envoy's validate_clusters).
type ClusterReferrer interface {
	ClusterRefs() []string
}

// Warner is implemented by parsed filter configs that accepted something
// with a warning (an unknown optional http filter skipped, a field
// ignored), so `weft validate` can show it too.
type Warner interface {
	Warnings() []string
}

// inspectors are listener filters that only inspect the first bytes. The
// TLS inspector runs (and is inserted by itself when a chain matches on
// what it finds, as in Envoy); Weft detects HTTP by itself, so the HTTP
// inspector is accepted and skipped.
var inspectors = map[string]bool{
	tlsInspector:                            true,
	"envoy.filters.listener.http_inspector": true,
}

const tlsInspector = "envoy.filters.listener.tls_inspector"

type parsedFilter struct {
	name    string
	factory api.NetworkFilterFactory
	parsed  any
}

type parsedChain struct {
	name    string
	key     string // identifies this chain's config across updates
	match   listener.Match
	filters []parsedFilter
	tls     *tls.Config // nil: plain TCP
	// handshake bounds the TLS handshake (transport_socket_connect_timeout).
	handshake time.Duration
}

type parsedListener struct {
	pb       *listenerv3.Listener
	chains   []parsedChain
	fallback *parsedChain
}

// filters lists the parsed configs of every filter of every chain.
func (pl parsedListener) filters() []parsedFilter {
	var out []parsedFilter
	for _, c := range pl.chains {
		out = append(out, c.filters...)
	}
	if pl.fallback != nil {
		out = append(out, pl.fallback.filters...)
	}
	return out
}

// warnings lists what the listener's filters accepted with a warning.
func (pl parsedListener) warnings() []string {
	var out []string
	for _, f := range pl.filters() {
		if w, ok := f.parsed.(Warner); ok {
			for _, m := range w.Warnings() {
				out = append(out, "listener "+pl.pb.GetName()+": "+m)
			}
		}
	}
	return out
}

// RouteNamer is implemented by parsed filter configs that take route
// configs by RDS.
type RouteNamer interface {
	RouteNames() []string
}

// routeNames lists the RDS route configs the listener's filters name.
func (pl parsedListener) routeNames() []string {
	var out []string
	for _, f := range pl.filters() {
		if rn, ok := f.parsed.(RouteNamer); ok {
			out = append(out, rn.RouteNames()...)
		}
	}
	return out
}

// parseListeners parses and validates every listener's filter chains
// (pure: nothing is bound or started). known lists the cluster names that
// exist; nil skips the reference check.
func parseListeners(ls []*listenerv3.Listener, known map[string]bool, secrets tlsctx.Options) ([]parsedListener, error) {
	return parseListenersAt(ls, known, secrets, func(i int, _ *listenerv3.Listener) string {
		return fmt.Sprintf("static_resources.listeners[%d]", i)
	})
}

// parseListenersAt is parseListeners with the error path of each listener
// given by at (an index in the bootstrap, or a name for LDS).
func parseListenersAt(ls []*listenerv3.Listener, known map[string]bool, secrets tlsctx.Options, at func(int, *listenerv3.Listener) string) ([]parsedListener, error) {
	errs := &config.Errors{}
	out := make([]parsedListener, 0, len(ls))
	for i, l := range ls {
		path := at(i, l)
		pl := parsedListener{pb: l}
		for j, lf := range l.GetListenerFilters() {
			if !inspectors[lf.GetName()] {
				errs.Add(fmt.Sprintf("%s.listener_filters[%d]", path, j), "unknown listener filter %q", lf.GetName())
			}
		}
		seen := map[string]int{}
		for j, fc := range l.GetFilterChains() {
			pc, ok := parseChain(fmt.Sprintf("%s.filter_chains[%d]", path, j), fc, known, secrets, errs)
			if !ok {
				continue
			}
			if k, dup := seen[pc.match.Key()]; dup {
				errs.Add(fmt.Sprintf("%s.filter_chains[%d].filter_chain_match", path, j), "same matching rules as filter_chains[%d]: which chain applies would be arbitrary", k)
				continue
			}
			seen[pc.match.Key()] = j
			pl.chains = append(pl.chains, pc)
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			pc, ok := parseChain(path+".default_filter_chain", fc, known, secrets, errs)
			if ok {
				pl.fallback = &pc
			}
		}
		out = append(out, pl)
	}
	return out, errs.Err()
}

func parseChain(path string, fc *listenerv3.FilterChain, known map[string]bool, secrets tlsctx.Options, errs *config.Errors) (parsedChain, bool) {
	pc := parsedChain{name: fc.GetName(), key: chainKey(fc)}
	n := len(errs.List)
	m, err := listener.CompileMatch(fc.GetFilterChainMatch())
	if err != nil {
		errs.AddErr(path+".filter_chain_match", err)
	}
	pc.match = m
	if ts := fc.GetTransportSocket(); ts != nil && ts.GetName() != tlsctx.RawBuffer {
		cfg, err := tlsctx.Server(ts, path+".transport_socket", secrets)
		if err != nil {
			errs.AddErr("", err)
		}
		pc.tls = cfg
	}
	pc.handshake = fc.GetTransportSocketConnectTimeout().AsDuration()
	if len(fc.GetFilters()) == 0 {
		errs.Add(path+".filters", "at least one network filter is required")
	}
	for k, f := range fc.GetFilters() {
		fp := fmt.Sprintf("%s.filters[%d]", path, k)
		tu := config.TypeURL(f.GetTypedConfig())
		fac, ok := api.NetworkFilters.Lookup(f.GetName(), tu)
		if !ok {
			errs.Add(fp, "unknown network filter %q (type %q)", f.GetName(), tu)
			continue
		}
		var raw []byte
		if tc := f.GetTypedConfig(); tc != nil {
			raw = tc.GetValue()
		}
		parsed, err := fac.Parse(raw, tu)
		if err != nil {
			errs.AddErr(fp+".typed_config", err)
			continue
		}
		if cr, ok := parsed.(ClusterReferrer); ok && known != nil {
			refs := cr.ClusterRefs()
			sort.Strings(refs)
			for _, c := range refs {
				if !known[c] {
					errs.Add(fp+".typed_config", "unknown cluster %q", c)
				}
			}
		}
		pc.filters = append(pc.filters, parsedFilter{name: f.GetName(), factory: fac, parsed: parsed})
	}
	// A TLS chain whose context names no ALPN offers what its terminal
	// filter speaks (h2 and http/1.1 for an HTTP connection manager).
	if pc.tls != nil && len(pc.tls.NextProtos) == 0 && len(pc.filters) > 0 {
		if a, ok := pc.filters[len(pc.filters)-1].parsed.(interface{ ALPN() []string }); ok {
			pc.tls.NextProtos = a.ALPN()
		}
	}
	return pc, len(errs.List) == n
}

// chainKey is a digest of a filter chain's config: equal keys mean the
// chain need not be rebuilt (nor its connections drained) on an update.
// Typed configs are compared by content, not by their bytes: a server may
// serialize the same config differently each time (map order in a Struct),
// and that must not drain every connection of the listener.
func chainKey(fc *listenerv3.FilterChain) string {
	h := sha256.New()
	if err := hashCanonical(h, fc); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// hashCanonical writes m deterministically, with every Any replaced by the
// deterministic form of the message it holds (when its type is known).
func hashCanonical(w io.Writer, m proto.Message) error {
	c := proto.Clone(m)
	rewriteMessages(c.ProtoReflect(), nil)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// buildListeners parses then builds every listener's handlers.
// It also returns the route configs they take by RDS.
func buildListeners(ls []*listenerv3.Listener, known map[string]bool, a *App) ([]listener.Config, []string, error) {
	parsed, err := parseListeners(ls, known, a.tlsOptions())
	if err != nil {
		return nil, nil, err
	}
	out := make([]listener.Config, 0, len(parsed))
	var routes []string
	for _, pl := range parsed {
		lc, err := buildListener(pl, a, nil)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, lc)
		routes = append(routes, pl.routeNames()...)
	}
	return out, routes, nil
}

// buildListener builds one parsed listener's chains; a chain whose key is
// in reuse keeps the handler built before (an LDS update that leaves the
// chain unchanged neither rebuilds nor drains it).
func buildListener(pl parsedListener, a *App, reuse map[string]listener.Chain) (listener.Config, error) {
	name := pl.pb.GetName()
	bc := a.buildContext(name)
	lc := listener.Config{
		Name:    name,
		Address: listenerAddress(pl.pb),
		Logger:  a.log,
		Stats:   listenerStats{a.store.Listener(name)},
		// A nil timeout is Envoy's 15s default; an explicit 0 (Envoy: no
		// timeout) is kept at the default too, so a silent client never
		// holds a connection forever.
		InspectTimeout:    pl.pb.GetListenerFiltersTimeout().AsDuration(),
		ContinueOnTimeout: pl.pb.GetContinueOnListenerFiltersTimeout(),
	}
	for _, lf := range pl.pb.GetListenerFilters() {
		lc.Inspect = lc.Inspect || lf.GetName() == tlsInspector
	}
	build := func(pc parsedChain) (listener.Chain, error) {
		if old, ok := reuse[pc.key]; ok && pc.key != "" {
			return old, nil
		}
		h, err := buildChain(pc, bc)
		if err != nil {
			return listener.Chain{}, fmt.Errorf("listener %q: %w", name, err)
		}
		return listener.Chain{Name: pc.name, Key: pc.key, Match: pc.match, Handler: h, TLS: pc.tls, HandshakeTimeout: pc.handshake}, nil
	}
	for _, pc := range pl.chains {
		ch, err := build(pc)
		if err != nil {
			return lc, err
		}
		lc.Chains = append(lc.Chains, ch)
	}
	if pl.fallback != nil {
		ch, err := build(*pl.fallback)
		if err != nil {
			return lc, err
		}
		lc.Default = &ch
	}
	return lc, nil
}

// listenerAddress is the host:port a listener binds.
func listenerAddress(l *listenerv3.Listener) string {
	sa := l.GetAddress().GetSocketAddress()
	return config.JoinHostPort(sa.GetAddress(), sa.GetPortValue())
}

// buildChain builds the filters and links them: the last is terminal and
// each earlier one wraps what follows.
func buildChain(pc parsedChain, bc api.BuildContext) (api.ConnHandler, error) {
	h := api.EndOfChain
	for i := len(pc.filters) - 1; i >= 0; i-- {
		f := pc.filters[i]
		nf, err := f.factory.Build(f.parsed, bc)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", f.name, err)
		}
		h = nf.Chain(h)
	}
	return h, nil
}

// tlsOptions serves transport sockets their secrets: static ones by name,
// and SDS ones when there is an xDS client.
func (a *App) tlsOptions() tlsctx.Options {
	o := tlsctx.Options{Secrets: a.secrets}
	if a.sds != nil {
		o.SDS = a.sds
	}
	return o
}

// sdsNames lists the secrets the transport sockets of ls take by SDS.
func sdsNames(ls []*listenerv3.Listener) []string {
	var out []string
	for _, l := range ls {
		for _, fc := range l.GetFilterChains() {
			out = append(out, tlsctx.SDSNames(fc.GetTransportSocket())...)
		}
		out = append(out, tlsctx.SDSNames(l.GetDefaultFilterChain().GetTransportSocket())...)
	}
	return out
}

// staticSecrets loads static_resources.secrets: the TLS certificates and
// CAs that transport sockets name without sds_config.
func staticSecrets(b *bootstrapv3.Bootstrap) (tlsctx.Provider, error) {
	st, err := tlsctx.NewStatic(b.GetStaticResources().GetSecrets(), "static_resources.secrets", tlsctx.Options{})
	if err != nil {
		return nil, err
	}
	return st, nil
}
