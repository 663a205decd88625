package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Service protocols.
const (
	protoHTTP  = "http"
	protoGRPC  = "grpc"
	protoBolt  = "bolt"
	protoDubbo = "dubbo"
	protoTCP   = "tcp"
	// protoRPC is a listener protocol only: Bolt and Dubbo on one port.
	protoRPC = "rpc"
)

var serviceProtocols = []string{protoHTTP, protoGRPC, protoBolt, protoDubbo, protoTCP}
var listenerProtocols = []string{protoHTTP, protoBolt, protoDubbo, protoRPC, protoTCP}

// retryConditions are the retry_on values Weft's router implements.
var retryConditions = []string{"5xx", "gateway-error", "connect-failure", "reset", "retriable-4xx", "refused-stream"}

// defaultRetryOn is used when retries give no retry_on: conditions under
// which the request never reached the application, safe for any method.
var defaultRetryOn = []string{"connect-failure", "refused-stream"}

var lbPolicies = []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}

// ruleSet is a merged and validated set of rules: what the compiler needs
// and nothing it has to check again.
type ruleSet struct {
	version  string // content hash of the files
	files    []FileInfo
	services map[string]*service
	names    []string // service names, sorted
	sidecars []*sidecar
	warnings []Problem
}

type service struct {
	rule      *serviceRule
	name      string
	protocol  string
	endpoints []endpoint // static ones
	routes    []*compiledRule
	routesAt  *routeRule // nil: the implicit catch-all route
	// subsets are the label sets that routes (of any service) send this
	// service's traffic to, keyed by cluster name.
	subsets map[string]subsetUse
}

type endpoint struct {
	addr   netip.AddrPort
	labels map[string]string
	weight uint32
}

type subsetUse struct {
	labels map[string]string
	at     pos // the first destination naming it, for warnings
	route  string
}

type compiledRule struct {
	rule  *rule
	dests []dest
}

type dest struct {
	cluster string
	weight  uint32
}

type sidecar struct {
	rule      *sidecarRule
	name      string
	nodeID    string // glob; "" matches every id
	metadata  map[string]string
	listeners []*listener
}

type listener struct {
	rule     *listenerRule
	name     string
	host     string
	port     uint32
	protocol string
	services []string // visible, sorted
}

// FileInfo describes one rule file of a loaded rule set.
type FileInfo struct {
	Name   string `json:"name"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// sourceFile is a rule file's name (as shown in messages) and content.
type sourceFile struct {
	name string
	data []byte
}

// buildRules parses, merges and validates files (sorted by name). On
// errors the rule set is refused as a whole.
func buildRules(files []sourceFile) (*ruleSet, *problems) {
	ps := &problems{}
	rs := &ruleSet{services: map[string]*service{}}
	h := sha256.New()
	var all ruleFile
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		rs.files = append(rs.files, FileInfo{Name: f.name, Size: len(f.data), SHA256: hex.EncodeToString(sum[:])})
		fmt.Fprintf(h, "%s\x00%x\x00", f.name, sum)
		rf := parseFile(f.name, f.data, ps)
		all.Services = append(all.Services, rf.Services...)
		all.Routes = append(all.Routes, rf.Routes...)
		all.Sidecars = append(all.Sidecars, rf.Sidecars...)
	}
	rs.version = hex.EncodeToString(h.Sum(nil))[:16]
	v := &validator{ps: ps, rs: rs}
	v.services(all.Services)
	v.routes(all.Routes)
	v.sidecars(all.Sidecars)
	return rs, ps
}

type validator struct {
	ps *problems
	rs *ruleSet
}

// name rules: a service name is a DNS-like or Java-interface-like name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_$][A-Za-z0-9_.$:-]*$`)

// labelRE bounds label keys and values: they make up cluster names
// ("reviews|version=v2") and metadata.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@-]+$`)

func (v *validator) services(list []*serviceRule) {
	seen := map[string]*serviceRule{}
	for i, r := range list {
		if r == nil {
			continue
		}
		what := fmt.Sprintf("service #%d", i+1)
		switch {
		case r.Name == "":
			v.ps.errorf(r.pos, "%s: name: required", what)
			continue
		case !nameRE.MatchString(r.Name) || len(r.Name) > 200:
			v.ps.errorf(r.field("name"), "service %q: name: letters, digits and . _ - : $ only (at most 200)", r.Name)
			continue
		}
		what = "service " + r.Name
		if prev, dup := seen[r.Name]; dup {
			v.ps.errorf(r.pos, "%s: defined twice: %s and %s", what, prev.at(), r.at())
			continue
		}
		seen[r.Name] = r
		s := &service{rule: r, name: r.Name, protocol: r.Protocol, subsets: map[string]subsetUse{}}
		if !oneOf(r.Protocol, serviceProtocols) {
			v.ps.errorf(r.field("protocol"), "%s: protocol: %s", what, want(r.Protocol, serviceProtocols))
		}
		if r.Port < 0 || r.Port > 65535 {
			v.ps.errorf(r.field("port"), "%s: port: %d is not a port", what, r.Port)
		}
		for j, hst := range r.Hosts {
			if err := checkDomain(hst); err != nil {
				v.ps.errorf(r.field("hosts"), "%s: hosts[%d]: %v", what, j, err)
			}
		}
		addrs := map[netip.AddrPort]bool{}
		for j, e := range r.Endpoints {
			if e == nil {
				continue
			}
			ep, ok := v.endpoint(e, fmt.Sprintf("%s: endpoints[%d]", what, j))
			if !ok {
				continue
			}
			if addrs[ep.addr] {
				v.ps.errorf(e.field("address"), "%s: endpoints[%d]: address %s listed twice", what, j, ep.addr)
				continue
			}
			addrs[ep.addr] = true
			s.endpoints = append(s.endpoints, ep)
		}
		if tp := r.TrafficPolicy; tp != nil {
			v.trafficPolicy(tp, what)
		}
		v.rs.services[r.Name] = s
	}
	for n := range v.rs.services {
		v.rs.names = append(v.rs.names, n)
	}
	sort.Strings(v.rs.names)
}

// checkDomain accepts what the router accepts as a virtual host domain:
// a name, or a name with one leading or trailing "*".
func checkDomain(d string) error {
	switch {
	case d == "":
		return fmt.Errorf("empty")
	case strings.ContainsAny(d, " \t\r\n,|"):
		return fmt.Errorf("%q: no spaces, commas or |", d)
	case d != "*" && strings.Count(d, "*") > 0 && !(strings.Count(d, "*") == 1 && (d[0] == '*' || d[len(d)-1] == '*')):
		return fmt.Errorf("%q: a * may only start or end a host", d)
	}
	return nil
}

func (v *validator) endpoint(e *endpointRule, what string) (endpoint, bool) {
	ep := endpoint{weight: 1, labels: e.Labels}
	ap, err := netip.ParseAddrPort(e.Address)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		v.ps.errorf(e.field("address"), "%s: address: %q: want ip:port (EDS takes addresses, not host names)", what, e.Address)
		return ep, false
	}
	ep.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	switch {
	case e.Weight < 0 || e.Weight > 1_000_000:
		v.ps.errorf(e.field("weight"), "%s: weight: %d is outside 1..1000000", what, e.Weight)
		return ep, false
	case e.Weight > 0:
		ep.weight = uint32(e.Weight)
	}
	ok := true
	for _, k := range sortedKeys(e.Labels) {
		if !labelRE.MatchString(k) || !labelRE.MatchString(e.Labels[k]) {
			v.ps.errorf(e.field("labels"), "%s: labels: %s=%q: keys and values are letters, digits and . _ : / @ - only", what, k, e.Labels[k])
			ok = false
		}
	}
	return ep, ok
}

func (v *validator) trafficPolicy(tp *trafficPolicyRule, what string) {
	what += ": traffic_policy"
	if tp.LBPolicy != "" && !oneOf(tp.LBPolicy, lbPolicies) {
		v.ps.errorf(tp.field("lb_policy"), "%s: lb_policy: %s", what, want(tp.LBPolicy, lbPolicies))
	}
	if tp.ConnectTimeout.Set && tp.ConnectTimeout.D <= 0 {
		v.ps.errorf(tp.field("connect_timeout"), "%s: connect_timeout: must be positive", what)
	}
	if cb := tp.CircuitBreakers; cb != nil {
		for _, f := range []struct {
			name string
			v    *int
		}{{"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_requests", cb.MaxRequests}, {"max_retries", cb.MaxRetries}} {
			if f.v != nil && (*f.v < 0 || int64(*f.v) > 1<<32-1) {
				v.ps.errorf(cb.field(f.name), "%s: circuit_breakers: %s: %d is outside 0..4294967295", what, f.name, *f.v)
			}
		}
	}
	if hc := tp.HealthCheck; hc != nil {
		if !hc.Interval.Set || hc.Interval.D <= 0 {
			v.ps.errorf(hc.field("interval"), "%s: health_check: interval: required, positive", what)
		}
		if !hc.Timeout.Set || hc.Timeout.D <= 0 {
			v.ps.errorf(hc.field("timeout"), "%s: health_check: timeout: required, positive", what)
		}
		if hc.UnhealthyThreshold < 0 || hc.HealthyThreshold < 0 {
			v.ps.errorf(hc.pos, "%s: health_check: thresholds must not be negative", what)
		}
		if hc.HTTPPath != "" && (!strings.HasPrefix(hc.HTTPPath, "/") || strings.ContainsAny(hc.HTTPPath, " \r\n")) {
			v.ps.errorf(hc.field("http_path"), "%s: health_check: http_path: %q must start with / and hold no spaces", what, hc.HTTPPath)
		}
	}
}

func (v *validator) routes(list []*routeRule) {
	seen := map[string]*routeRule{}
	for i, r := range list {
		if r == nil {
			continue
		}
		if r.Service == "" {
			v.ps.errorf(r.pos, "route #%d: service: required", i+1)
			continue
		}
		what := "route " + r.Service
		if prev, dup := seen[r.Service]; dup {
			v.ps.errorf(r.pos, "%s: defined twice: %s and %s (give a service all its rules in one place)", what, prev.at(), r.at())
			continue
		}
		seen[r.Service] = r
		s, ok := v.rs.services[r.Service]
		if !ok {
			v.ps.errorf(r.field("service"), "%s: unknown service %q", what, r.Service)
			continue
		}
		if s.protocol == protoTCP {
			v.ps.errorf(r.pos, "%s: a tcp service has no routes (a tcp listener sends every connection to it)", what)
			continue
		}
		if len(r.Rules) == 0 {
			v.ps.errorf(r.field("rules"), "%s: rules: give at least one rule (or leave the service out of routes: it then takes all traffic)", what)
			continue
		}
		s.routesAt = r
		names := map[string]pos{}
		for j, ru := range r.Rules {
			if ru == nil {
				v.ps.errorf(r.pos, "%s: rules[%d]: empty rule", what, j)
				continue
			}
			rw := fmt.Sprintf("%s: rule %d", what, j+1)
			if ru.Name != "" {
				if prev, dup := names[ru.Name]; dup {
					v.ps.errorf(ru.field("name"), "%s: name %q used twice (also %s)", rw, ru.Name, prev.at())
				}
				names[ru.Name] = ru.pos
				rw = fmt.Sprintf("%s: rule %s", what, ru.Name)
			}
			cr := &compiledRule{rule: ru}
			v.match(s, ru, rw)
			cr.dests = v.destinations(s, ru, rw)
			if ru.Retries != nil {
				v.retries(ru.Retries, rw)
			}
			s.routes = append(s.routes, cr)
		}
	}
}

func isRPC(protocol string) bool { return protocol == protoBolt || protocol == protoDubbo }

func (v *validator) match(s *service, ru *rule, what string) {
	m := ru.Match
	if m == nil {
		return
	}
	what += ": match"
	n := 0
	for _, p := range []*string{m.Prefix, m.Path, m.Method} {
		if p != nil {
			n++
		}
	}
	if n > 1 {
		v.ps.errorf(m.pos, "%s: give one of prefix, path and method", what)
	}
	rpc := isRPC(s.protocol)
	switch {
	case m.Method != nil && !rpc:
		v.ps.errorf(m.field("method"), "%s: method: only for bolt and dubbo services (%s is %s); match the path instead", what, s.name, s.protocol)
	case m.Method != nil && *m.Method == "":
		v.ps.errorf(m.field("method"), "%s: method: empty", what)
	case m.Version != nil && !rpc:
		v.ps.errorf(m.field("version"), "%s: version: only for bolt and dubbo services (%s is %s); match a header instead", what, s.name, s.protocol)
	case m.Group != nil && !rpc:
		v.ps.errorf(m.field("group"), "%s: group: only for bolt and dubbo services (%s is %s); match a header instead", what, s.name, s.protocol)
	}
	if !rpc {
		if m.Prefix != nil && !strings.HasPrefix(*m.Prefix, "/") {
			v.ps.errorf(m.field("prefix"), "%s: prefix: %q must start with /", what, *m.Prefix)
		}
		if m.Path != nil && !strings.HasPrefix(*m.Path, "/") {
			v.ps.errorf(m.field("path"), "%s: path: %q must start with /", what, *m.Path)
		}
	}
	for i, h := range m.Headers {
		if h == nil {
			continue
		}
		hw := fmt.Sprintf("%s: headers[%d]", what, i)
		if h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n") || strings.LastIndexByte(h.Name, ':') > 0 {
			v.ps.errorf(h.field("name"), "%s: name: %q is not a header name", hw, h.Name)
		}
		k := 0
		for _, p := range []*string{h.Exact, h.Prefix, h.Suffix, h.Regex} {
			if p != nil {
				k++
			}
		}
		if h.Present != nil {
			k++
		}
		if k != 1 {
			v.ps.errorf(h.pos, "%s: give exactly one of exact, prefix, suffix, regex and present", hw)
		}
		if (h.Prefix != nil && *h.Prefix == "") || (h.Suffix != nil && *h.Suffix == "") {
			v.ps.errorf(h.pos, "%s: an empty prefix or suffix matches everything: use present", hw)
		}
		if h.Regex != nil {
			if _, err := regexp.Compile(*h.Regex); err != nil {
				v.ps.errorf(h.field("regex"), "%s: regex: %v", hw, err)
			}
		}
		if h.Present != nil && !*h.Present {
			v.ps.errorf(h.field("present"), "%s: present: false is not supported (match on presence only)", hw)
		}
	}
}

func (v *validator) destinations(s *service, ru *rule, what string) []dest {
	if len(ru.Destinations) == 0 {
		v.ps.errorf(ru.field("destinations"), "%s: destinations: at least one is required", what)
		return nil
	}
	var out []dest
	seen := map[string]bool{}
	var total, weighted int
	bad := false
	for i, d := range ru.Destinations {
		if d == nil {
			bad = true
			continue
		}
		dw := fmt.Sprintf("%s: destination %d", what, i+1)
		svc := d.Service
		if svc == "" {
			svc = s.name
		}
		ts, ok := v.rs.services[svc]
		if !ok {
			v.ps.errorf(d.field("service"), "%s: unknown service %q", dw, svc)
			bad = true
			continue
		}
		if family(ts.protocol) != family(s.protocol) {
			v.ps.errorf(d.field("service"), "%s: service %s is %s; %s is %s", dw, svc, ts.protocol, s.name, s.protocol)
			bad = true
			continue
		}
		name := svc
		if len(d.Subset) > 0 {
			good := true
			for _, k := range sortedKeys(d.Subset) {
				if !labelRE.MatchString(k) || !labelRE.MatchString(d.Subset[k]) {
					v.ps.errorf(d.field("subset"), "%s: subset %s=%q: keys and values are letters, digits and . _ : / @ - only", dw, k, d.Subset[k])
					good = false
				}
			}
			if !good {
				bad = true
				continue
			}
			name = subsetCluster(svc, d.Subset)
			if _, ok := ts.subsets[name]; !ok {
				ts.subsets[name] = subsetUse{labels: d.Subset, at: d.field("subset"), route: s.name}
			}
		}
		if seen[name] {
			v.ps.errorf(d.pos, "%s: %s is already a destination of this rule", dw, name)
			bad = true
			continue
		}
		seen[name] = true
		w := 0
		if d.Weight != nil {
			weighted++
			w = *d.Weight
			if w < 0 || w > 100 {
				v.ps.errorf(d.field("weight"), "%s: weight: %d is outside 0..100", dw, w)
				bad = true
				continue
			}
			total += w
		}
		out = append(out, dest{cluster: name, weight: uint32(w)})
	}
	if bad {
		return nil
	}
	switch {
	case len(out) == 1 && weighted == 0:
		out[0].weight = 100
	case weighted != len(out):
		v.ps.errorf(ru.field("destinations"), "%s: weights: give every destination a weight (percentages adding up to 100)", what)
	case total != 100:
		v.ps.errorf(ru.field("destinations"), "%s: weights add up to %d, want 100", what, total)
	}
	return out
}

// family groups protocols that can share routes: HTTP and gRPC ride one
// HTTP listener, Bolt and Dubbo one RPC listener.
func family(p string) string {
	switch p {
	case protoHTTP, protoGRPC:
		return "http"
	case protoBolt, protoDubbo:
		return "rpc"
	}
	return p
}

// subsetCluster names the cluster of a service's endpoints that carry
// labels: "reviews|version=v2", keys sorted.
func subsetCluster(svc string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(svc)
	for i, k := range sortedKeys(labels) {
		if i == 0 {
			b.WriteByte('|')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + labels[k])
	}
	return b.String()
}

func (v *validator) retries(r *retriesRule, what string) {
	what += ": retries"
	if r.Attempts < 1 || r.Attempts > 10 {
		v.ps.errorf(r.field("attempts"), "%s: attempts: %d is outside 1..10 (retries after the first try)", what, r.Attempts)
	}
	for i, c := range r.RetryOn {
		if !oneOf(c, retryConditions) {
			v.ps.errorf(r.field("retry_on"), "%s: retry_on[%d]: %s", what, i, want(c, retryConditions))
		}
	}
	if r.PerTryTimeout.Set && r.PerTryTimeout.D <= 0 {
		v.ps.errorf(r.field("per_try_timeout"), "%s: per_try_timeout: must be positive", what)
	}
}

func (v *validator) sidecars(list []*sidecarRule) {
	seen := map[string]*sidecarRule{}
	for i, r := range list {
		if r == nil {
			continue
		}
		if r.Name == "" {
			v.ps.errorf(r.pos, "sidecar #%d: name: required", i+1)
			continue
		}
		what := "sidecar " + r.Name
		if prev, dup := seen[r.Name]; dup {
			v.ps.errorf(r.pos, "%s: defined twice: %s and %s", what, prev.at(), r.at())
			continue
		}
		seen[r.Name] = r
		sc := &sidecar{rule: r, name: r.Name}
		if m := r.Match; m != nil {
			if _, err := path.Match(m.NodeID, ""); err != nil {
				v.ps.errorf(m.field("node_id"), "%s: match: node_id: %q is not a glob: %v", what, m.NodeID, err)
			}
			sc.nodeID, sc.metadata = m.NodeID, m.Metadata
		}
		if len(r.Listeners) == 0 {
			v.ps.errorf(r.field("listeners"), "%s: listeners: at least one is required", what)
		}
		names := map[string]pos{}
		addrs := map[string]string{}
		for j, l := range r.Listeners {
			if l == nil {
				continue
			}
			if lst := v.listener(l, fmt.Sprintf("%s: listeners[%d]", what, j), what, names, addrs); lst != nil {
				sc.listeners = append(sc.listeners, lst)
			}
		}
		v.rs.sidecars = append(v.rs.sidecars, sc)
	}
}

func (v *validator) listener(l *listenerRule, what, sidecarWhat string, names map[string]pos, addrs map[string]string) *listener {
	if l.Name == "" {
		v.ps.errorf(l.pos, "%s: name: required", what)
		return nil
	}
	if !nameRE.MatchString(l.Name) {
		v.ps.errorf(l.field("name"), "%s: name: %q: letters, digits and . _ - : $ only", what, l.Name)
		return nil
	}
	what = sidecarWhat + ": listener " + l.Name
	if prev, dup := names[l.Name]; dup {
		v.ps.errorf(l.pos, "%s: defined twice in this sidecar (also %s)", what, prev.at())
		return nil
	}
	names[l.Name] = l.pos
	lst := &listener{rule: l, name: l.Name, protocol: l.Protocol}
	ap, err := netip.ParseAddrPort(l.Address)
	if err != nil || ap.Port() == 0 {
		v.ps.errorf(l.field("address"), "%s: address: %q: want ip:port with a port above 0", what, l.Address)
	} else {
		lst.host, lst.port = ap.Addr().Unmap().String(), uint32(ap.Port())
		key := ap.String()
		if other, dup := addrs[key]; dup {
			v.ps.errorf(l.field("address"), "%s: address %s is also listener %s's", what, key, other)
		}
		addrs[key] = l.Name
	}
	if !oneOf(l.Protocol, listenerProtocols) {
		v.ps.errorf(l.field("protocol"), "%s: protocol: %s", what, want(l.Protocol, listenerProtocols))
		return nil
	}
	if l.Protocol == protoTCP {
		if len(l.Services) != 1 {
			v.ps.errorf(l.field("services"), "%s: services: a tcp listener sends connections to exactly one service, got %d", what, len(l.Services))
			return nil
		}
		if _, ok := v.rs.services[l.Services[0]]; !ok {
			v.ps.errorf(l.field("services"), "%s: services: unknown service %q", what, l.Services[0])
			return nil
		}
		lst.services = l.Services
		return lst
	}
	if l.Services == nil {
		for _, n := range v.rs.names {
			if listenerServes(l.Protocol, v.rs.services[n].protocol) {
				lst.services = append(lst.services, n)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, n := range l.Services {
			s, ok := v.rs.services[n]
			switch {
			case !ok:
				v.ps.errorf(l.field("services"), "%s: services: unknown service %q", what, n)
				continue
			case !listenerServes(l.Protocol, s.protocol):
				v.ps.errorf(l.field("services"), "%s: services: %s is a %s service; a %s listener serves %s", what, n, s.protocol, l.Protocol, strings.Join(served(l.Protocol), " and "))
				continue
			case seen[n]:
				v.ps.errorf(l.field("services"), "%s: services: %s listed twice", what, n)
				continue
			}
			seen[n] = true
			lst.services = append(lst.services, n)
		}
		sort.Strings(lst.services)
	}
	if len(lst.services) == 0 {
		v.ps.warnf(l.pos, "%s: no %s services to serve: every request will find no route", what, strings.Join(served(l.Protocol), " or "))
	}
	// Virtual host domains must be unique within the listener's routes.
	owner := map[string]string{}
	for _, n := range lst.services {
		for _, d := range domains(v.rs.services[n], lst) {
			k := strings.ToLower(d)
			if o, dup := owner[k]; dup && o != n {
				v.ps.errorf(l.field("services"), "%s: services %s and %s both answer to %q: list the listener's services to pick one", what, o, n, d)
				continue
			}
			owner[k] = n
		}
	}
	return lst
}

// served lists the service protocols a listener protocol carries.
func served(listenerProtocol string) []string {
	switch listenerProtocol {
	case protoHTTP:
		return []string{protoHTTP, protoGRPC}
	case protoRPC:
		return []string{protoBolt, protoDubbo}
	}
	return []string{listenerProtocol}
}

func listenerServes(listenerProtocol, serviceProtocol string) bool {
	return oneOf(serviceProtocol, served(listenerProtocol))
}

// domains lists the virtual host domains of s on listener l: its name, for
// HTTP with its port and the listener's port (the Host header a client
// sends when it calls the sidecar), and its extra hosts.
func domains(s *service, l *listener) []string {
	out := []string{s.name}
	if family(s.protocol) == "http" {
		if s.rule.Port > 0 {
			out = append(out, s.name+":"+strconv.Itoa(s.rule.Port))
		}
		if l != nil && l.port > 0 {
			out = append(out, s.name+":"+strconv.Itoa(int(l.port)))
		}
	}
	out = append(out, s.rule.Hosts...)
	seen := map[string]bool{}
	uniq := out[:0]
	for _, d := range out {
		if !seen[strings.ToLower(d)] {
			seen[strings.ToLower(d)] = true
			uniq = append(uniq, d)
		}
	}
	return uniq
}

func oneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

func want(got string, list []string) string {
	if got == "" {
		return "required (" + strings.Join(list, ", ") + ")"
	}
	return fmt.Sprintf("unknown value %q (%s)", got, strings.Join(list, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
