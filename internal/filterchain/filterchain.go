// Package filterchain parses and builds the stream filter list of an L7
// proxy (http_filters in Envoy's HTTP connection manager, the same list in
// the RPC proxy), and lists the clusters a route table names, so both
// proxies share one implementation.
package filterchain

import (
	"fmt"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stream"
)

// RouterName and RouterTypeURL identify the terminal router filter, which
// is the proxy itself rather than a registered stream filter.
const (
	RouterName    = "envoy.filters.http.router"
	RouterTypeURL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

// Spec is one parsed stream filter.
type Spec struct {
	Name    string
	Factory api.StreamFilterFactory
	Parsed  any
}

// Parse validates a filter list. With requireRouter the list must end with
// the router filter (Envoy's rule for http_filters); otherwise a router
// filter is allowed only last. Unknown filters are errors unless marked
// is_optional, which skips them with a warning. Errors carry paths relative
// to the list ("[2].typed_config").
func Parse(hf []*hcmv3.HttpFilter, requireRouter bool, errs *config.Errors, path string) (specs []Spec, warnings []string) {
	for i, f := range hf {
		fp := fmt.Sprintf("%s[%d]", path, i)
		if f.GetDisabled() {
			continue
		}
		tu := config.TypeURL(f.GetTypedConfig())
		if f.GetName() == RouterName || tu == RouterTypeURL {
			if i != len(hf)-1 {
				errs.Add(fp, "the router filter must be the last filter")
			}
			continue
		}
		if requireRouter && i == len(hf)-1 {
			errs.Add(fp, "the last http filter must be %s", RouterName)
		}
		fac, ok := api.StreamFilters.Lookup(f.GetName(), tu)
		if !ok {
			if f.GetIsOptional() {
				warnings = append(warnings, fmt.Sprintf("%s: unknown optional filter %q (%s) skipped", fp, f.GetName(), tu))
				continue
			}
			errs.Add(fp, "unknown http filter %q (type %q); mark it is_optional to skip it", f.GetName(), tu)
			continue
		}
		var raw []byte
		if tc := f.GetTypedConfig(); tc != nil {
			raw = tc.GetValue()
		}
		pc, err := fac.Parse(raw, tu)
		if err != nil {
			errs.AddErr(fp+".typed_config", err)
			continue
		}
		specs = append(specs, Spec{Name: f.GetName(), Factory: fac, Parsed: pc})
	}
	if requireRouter && len(hf) == 0 {
		errs.Add(path, "must end with %s", RouterName)
	}
	return specs, warnings
}

// Build makes the filters of a parsed list.
func Build(specs []Spec, bc api.BuildContext) ([]api.StreamFilter, error) {
	out := make([]api.StreamFilter, 0, len(specs))
	for _, f := range specs {
		sf, err := f.Factory.Build(f.Parsed, bc)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", f.Name, err)
		}
		out = append(out, sf)
	}
	return out, nil
}

// ClusterRefs lists the clusters a route table names (routes, weighted
// clusters, mirrors), so a static config that routes to a missing cluster
// is refused at load time.
func ClusterRefs(t *router.Table) []string {
	if t == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, vh := range t.VirtualHosts() {
		for _, r := range vh.Routes {
			add(r.Cluster)
			for _, w := range r.WeightedClusters {
				add(w.Name)
			}
			for _, m := range r.MirrorPolicies {
				add(m.Cluster)
			}
		}
	}
	return out
}

// Routes returns the route source of a connection manager: its own table,
// or, when rds names a route config, the shared source the xDS client
// fills (nil table until the config arrives: requests get "no route").
func Routes(bc api.BuildContext, t *router.Table, rds string) (stream.RouteSource, error) {
	if rds == "" {
		return stream.NewStaticRoutes(t), nil
	}
	var store *stream.RouteStore
	if !bc.Service(&store) {
		return nil, fmt.Errorf("rds: route config %q needs dynamic_resources (an xDS server) in the bootstrap", rds)
	}
	return store.Source(rds), nil
}

// RDSNames is the list form of one optional route config name.
func RDSNames(rds string) []string {
	if rds == "" {
		return nil
	}
	return []string{rds}
}
