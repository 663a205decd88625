package router

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// FieldError is a configuration error at one field of a RouteConfiguration.
// Callers wrap it once with the resource name.
type FieldError struct {
	// Field is the path of the offending field in proto field names, e.g.
	// "virtual_hosts[2].routes[0].match.safe_regex"; empty for the whole
	// configuration.
	Field string
	// Err says what is wrong.
	Err error
}

// Error formats the error as "<field>: <problem>".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

func unsupported(field string) error {
	return &FieldError{Field: field, Err: errors.New("not supported by Weft")}
}

// join appends a field name to a path.
func join(p, f string) string {
	if p == "" {
		return f
	}
	return p + "." + f
}

func index(p, f string, i int) string { return join(p, f) + "[" + strconv.Itoa(i) + "]" }

// defaultMaxDirectBody is Envoy's default max_direct_response_body_size_bytes.
const defaultMaxDirectBody = 4096

// Compile validates rc and compiles it into a Table. It checks everything
// Weft relies on and rejects what Weft does not implement (rather than
// silently routing differently), then runs the proto's generated
// validation rules; the first problem is returned as a *FieldError naming
// the field path. rc is not retained.
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, &FieldError{Err: errors.New("route configuration is nil")}
	}
	c := &compiler{rc: rc}
	t, err := c.table()
	if err != nil {
		return nil, err
	}
	if err := rc.Validate(); err != nil {
		return nil, protoValidationError(err)
	}
	return t, nil
}

// CompileValidated is Compile for a route configuration whose generated
// validation rules the caller has already run (the xDS client runs
// ValidateAll on every resource): a second pass costs about a sixth of a
// 50,000-route update.
func CompileValidated(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, &FieldError{Err: errors.New("route configuration is nil")}
	}
	c := &compiler{rc: rc}
	return c.table()
}

type compiler struct {
	rc           *routev3.RouteConfiguration
	mostSpecific bool
	maxBody      int
	req, resp    *headerLevel
	mirrors      []MirrorPolicy
}

// vhostCtx is what a route inherits from its virtual host.
type vhostCtx struct {
	v         *VirtualHost
	req, resp *headerLevel
	retry     *RetryPolicy
	mirrors   []MirrorPolicy
	pfc       map[string]*anypb.Any
}

func (c *compiler) table() (*Table, error) {
	rc := c.rc
	switch {
	case rc.Vhds != nil:
		return nil, unsupported("vhds")
	case rc.IgnorePathParametersInPathMatching:
		return nil, unsupported("ignore_path_parameters_in_path_matching")
	case len(rc.RouteSpecifiers) > 0:
		return nil, unsupported("route_specifiers")
	}
	c.mostSpecific = rc.MostSpecificHeaderMutationsWins
	c.maxBody = defaultMaxDirectBody
	if rc.MaxDirectResponseBodySizeBytes != nil {
		c.maxBody = int(rc.MaxDirectResponseBodySizeBytes.GetValue())
	}
	var err error
	if c.req, err = headerLevelOf("", rc.RequestHeadersToAdd, "request_headers_to_add", rc.RequestHeadersToRemove, "request_headers_to_remove"); err != nil {
		return nil, err
	}
	if c.resp, err = headerLevelOf("", rc.ResponseHeadersToAdd, "response_headers_to_add", rc.ResponseHeadersToRemove, "response_headers_to_remove"); err != nil {
		return nil, err
	}
	if c.mirrors, err = mirrorsOf("request_mirror_policies", rc.RequestMirrorPolicies); err != nil {
		return nil, err
	}

	t := &Table{
		name:       rc.Name,
		hostHeader: ":authority",
		ignorePort: rc.IgnorePortInHostMatching,
		exact:      make(map[string]*VirtualHost),
	}
	if rc.VhostHeader != "" {
		t.hostHeader = lowerASCII(rc.VhostHeader)
	}
	for _, h := range rc.InternalOnlyHeaders {
		t.internalOnly = append(t.internalOnly, lowerASCII(h))
	}

	suffixes := map[int]map[string]*VirtualHost{}
	prefixes := map[int]map[string]*VirtualHost{}
	domainOwner := map[string]string{} // lower-case domain -> vhost name
	names := map[string]bool{}
	for i, vh := range rc.VirtualHosts {
		p := index("", "virtual_hosts", i)
		v, err := c.vhost(p, vh)
		if err != nil {
			return nil, err
		}
		if names[v.Name] {
			return nil, fieldErr(join(p, "name"), "duplicate virtual host name %q", v.Name)
		}
		names[v.Name] = true
		for j, d := range v.Domains {
			if owner, dup := domainOwner[d]; dup {
				return nil, fieldErr(index(p, "domains", j), "duplicate domain %q (already in virtual host %q)", d, owner)
			}
			domainOwner[d] = v.Name
			switch {
			case d == "*":
				t.def = v
			case d[0] == '*':
				addWildcard(suffixes, d[1:], v)
			case d[len(d)-1] == '*':
				addWildcard(prefixes, d[:len(d)-1], v)
			default:
				t.exact[d] = v
			}
		}
		t.vhosts = append(t.vhosts, v)
	}
	t.suffixes = buckets(suffixes)
	t.prefixes = buckets(prefixes)
	t.onlyDefault = t.def != nil && len(t.exact) == 0 && len(t.suffixes) == 0 && len(t.prefixes) == 0
	return t, nil
}

func addWildcard(m map[int]map[string]*VirtualHost, key string, v *VirtualHost) {
	b := m[len(key)]
	if b == nil {
		b = map[string]*VirtualHost{}
		m[len(key)] = b
	}
	b[key] = v
}

// buckets orders wildcard buckets longest first, so the most specific
// wildcard wins as in Envoy.
func buckets(m map[int]map[string]*VirtualHost) []wildcardBucket {
	out := make([]wildcardBucket, 0, len(m))
	for n, b := range m {
		out = append(out, wildcardBucket{n: n, m: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	return out
}

func (c *compiler) vhost(p string, vh *routev3.VirtualHost) (*VirtualHost, error) {
	if vh == nil {
		return nil, fieldErr(p, "must be set")
	}
	switch {
	case vh.Name == "":
		return nil, fieldErr(join(p, "name"), "must not be empty")
	case len(vh.Domains) == 0:
		return nil, fieldErr(join(p, "domains"), "must not be empty")
	case vh.Matcher != nil:
		return nil, unsupported(join(p, "matcher"))
	case vh.RequireTls != routev3.VirtualHost_NONE:
		return nil, unsupported(join(p, "require_tls"))
	case vh.RetryPolicyTypedConfig != nil:
		return nil, unsupported(join(p, "retry_policy_typed_config"))
	case len(vh.RouteSpecifiers) > 0:
		return nil, unsupported(join(p, "route_specifiers"))
	}
	v := &VirtualHost{Name: vh.Name}
	for j, d := range vh.Domains {
		if d == "" {
			return nil, fieldErr(index(p, "domains", j), "must not be empty")
		}
		v.Domains = append(v.Domains, lowerASCII(d))
	}
	vc := &vhostCtx{v: v, mirrors: c.mirrors}
	var err error
	if vc.req, err = headerLevelOf(p, vh.RequestHeadersToAdd, "request_headers_to_add", vh.RequestHeadersToRemove, "request_headers_to_remove"); err != nil {
		return nil, err
	}
	if vc.resp, err = headerLevelOf(p, vh.ResponseHeadersToAdd, "response_headers_to_add", vh.ResponseHeadersToRemove, "response_headers_to_remove"); err != nil {
		return nil, err
	}
	if vc.retry, err = retryPolicyOf(join(p, "retry_policy"), vh.RetryPolicy); err != nil {
		return nil, err
	}
	if len(vh.RequestMirrorPolicies) > 0 {
		if vc.mirrors, err = mirrorsOf(join(p, "request_mirror_policies"), vh.RequestMirrorPolicies); err != nil {
			return nil, err
		}
	}
	vc.pfc = mergePFC(c.rc.TypedPerFilterConfig, vh.TypedPerFilterConfig)

	if len(vh.Routes) > 1<<31-1 {
		return nil, fieldErr(join(p, "routes"), "too many routes")
	}
	for j, r := range vh.Routes {
		rt, err := c.route(index(p, "routes", j), j, r, vc)
		if err != nil {
			return nil, err
		}
		v.Routes = append(v.Routes, rt)
	}
	v.buildIndex()
	return v, nil
}

// buildIndex fills the radix trees and the regex list, and moves the
// routes' matchers into one array so that checking a candidate's headers
// touches memory next to its neighbours'.
func (v *VirtualHost) buildIndex() {
	none := int32(len(v.Routes))
	v.matches = make([]routeMatch, len(v.Routes))
	for i, r := range v.Routes {
		v.matches[i] = *r.m
		r.m = &v.matches[i]
	}
	var cs, ci *rnode
	for i, r := range v.Routes {
		if r.m.kind == pathRegex {
			v.regex = append(v.regex, int32(i))
			continue
		}
		conds := r.m.grpc || len(r.m.headers) > 0 || len(r.m.query) > 0
		e := entry{idx: int32(i), kind: r.m.kind, conds: conds}
		if r.m.ci {
			if ci == nil {
				ci = &rnode{}
			}
			ci.insert(lowerASCII(r.m.key), e)
		} else {
			if cs == nil {
				cs = &rnode{}
			}
			cs.insert(r.m.key, e)
		}
	}
	if cs != nil {
		cs.finish(none)
		v.cs = flatten(cs, false)
	}
	if ci != nil {
		ci.finish(none)
		v.ci = flatten(ci, true)
	}
}

func (c *compiler) route(p string, j int, r *routev3.Route, vc *vhostCtx) (*Route, error) {
	if r == nil {
		return nil, fieldErr(p, "must be set")
	}
	if len(r.RouteSpecifiers) > 0 {
		return nil, unsupported(join(p, "route_specifiers"))
	}
	rt := &Route{
		Name:        r.Name,
		StatName:    r.Name,
		Index:       j,
		VirtualHost: vc.v,
	}
	if rt.StatName == "" {
		rt.StatName = vc.v.Name + "/" + strconv.Itoa(j)
	}
	m, err := matchOf(join(p, "match"), r.Match)
	if err != nil {
		return nil, err
	}
	rt.m = m

	req, err := headerLevelOf(p, r.RequestHeadersToAdd, "request_headers_to_add", r.RequestHeadersToRemove, "request_headers_to_remove")
	if err != nil {
		return nil, err
	}
	resp, err := headerLevelOf(p, r.ResponseHeadersToAdd, "response_headers_to_add", r.ResponseHeadersToRemove, "response_headers_to_remove")
	if err != nil {
		return nil, err
	}
	rt.RequestHeaders = chain(c.mostSpecific, req, vc.req, c.req)
	rt.ResponseHeaders = chain(c.mostSpecific, resp, vc.resp, c.resp)
	rt.PerFilterConfig = mergePFC(vc.pfc, r.TypedPerFilterConfig)

	switch a := r.Action.(type) {
	case *routev3.Route_Route:
		err = c.routeAction(join(p, "route"), a.Route, rt, vc, req, resp)
	case *routev3.Route_Redirect:
		rt.Redirect, err = redirectOf(join(p, "redirect"), a.Redirect)
	case *routev3.Route_DirectResponse:
		rt.DirectResponse, err = c.directResponse(join(p, "direct_response"), a.DirectResponse)
	case *routev3.Route_FilterAction:
		err = unsupported(join(p, "filter_action"))
	case *routev3.Route_NonForwardingAction:
		err = unsupported(join(p, "non_forwarding_action"))
	default:
		err = fieldErr(p, "one of route, redirect or direct_response must be set")
	}
	if err != nil {
		return nil, err
	}
	return rt, nil
}

func matchOf(p string, m *routev3.RouteMatch) (*routeMatch, error) {
	if m == nil {
		return nil, fieldErr(p, "must be set")
	}
	rm := &routeMatch{}
	switch ps := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.key = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.key = pathExact, ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		s := ps.PathSeparatedPrefix
		if s == "" || strings.ContainsAny(s, "?#") || s[len(s)-1] == '/' {
			return nil, fieldErr(join(p, "path_separated_prefix"), "must be non-empty, without '?' or '#', and must not end with '/'")
		}
		rm.kind, rm.key = pathSeparated, s
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexOf(join(p, "safe_regex"), ps.SafeRegex, true)
		if err != nil {
			return nil, err
		}
		rm.kind, rm.re = pathRegex, re
	case *routev3.RouteMatch_ConnectMatcher_:
		return nil, unsupported(join(p, "connect_matcher"))
	case *routev3.RouteMatch_PathMatchPolicy:
		return nil, unsupported(join(p, "path_match_policy"))
	default:
		return nil, fieldErr(p, "one of prefix, path, safe_regex or path_separated_prefix must be set")
	}
	if rm.kind != pathRegex && m.CaseSensitive != nil && !m.CaseSensitive.Value {
		rm.ci = true
	}
	switch {
	case m.TlsContext != nil:
		return nil, unsupported(join(p, "tls_context"))
	case len(m.DynamicMetadata) > 0:
		return nil, unsupported(join(p, "dynamic_metadata"))
	case len(m.FilterState) > 0:
		return nil, unsupported(join(p, "filter_state"))
	case len(m.Cookies) > 0:
		return nil, unsupported(join(p, "cookies"))
	}
	// runtime_fraction is ignored: Weft has no runtime, so it always matches.
	rm.grpc = m.Grpc != nil
	for i, h := range m.Headers {
		hm, err := headerMatcherOf(index(p, "headers", i), h)
		if err != nil {
			return nil, err
		}
		rm.headers = append(rm.headers, *hm)
	}
	for i, q := range m.QueryParameters {
		qm, err := queryMatcherOf(index(p, "query_parameters", i), q)
		if err != nil {
			return nil, err
		}
		rm.query = append(rm.query, *qm)
	}
	return rm, nil
}

// regexOf compiles a RegexMatcher with Go's RE2-compatible regexp. With
// full the expression must match the whole input, as RE2::FullMatch does in
// Envoy. The unanchored form is compiled first so that syntax errors quote
// the configured expression.
func regexOf(p string, rm *matcherv3.RegexMatcher, full bool) (*regexp.Regexp, error) {
	if rm == nil {
		return nil, fieldErr(p, "must be set")
	}
	re, err := regexp.Compile(rm.Regex)
	if err != nil {
		return nil, &FieldError{Field: p, Err: err}
	}
	if !full {
		return re, nil
	}
	if re, err = regexp.Compile("^(?:" + rm.Regex + ")$"); err != nil {
		return nil, &FieldError{Field: p, Err: err}
	}
	return re, nil
}

func stringMatcherOf(p string, sm *matcherv3.StringMatcher) (stringMatcher, error) {
	var m stringMatcher
	if sm == nil {
		return m, fieldErr(p, "must be set")
	}
	m.ignoreCase = sm.IgnoreCase
	nonEmpty := func(f, v string) error {
		if v == "" {
			return fieldErr(join(p, f), "must not be empty")
		}
		return nil
	}
	var err error
	switch mp := sm.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = strExact, mp.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value, err = strPrefix, mp.Prefix, nonEmpty("prefix", mp.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value, err = strSuffix, mp.Suffix, nonEmpty("suffix", mp.Suffix)
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value, err = strContains, mp.Contains, nonEmpty("contains", mp.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		m.kind = strRegex
		m.re, err = regexOf(join(p, "safe_regex"), mp.SafeRegex, true)
		m.ignoreCase = false // ignore_case has no effect on safe_regex in Envoy
	case *matcherv3.StringMatcher_Custom:
		err = unsupported(join(p, "custom"))
	default:
		err = fieldErr(p, "one of exact, prefix, suffix, contains or safe_regex must be set")
	}
	if m.ignoreCase {
		m.value = lowerASCII(m.value)
	}
	return m, err
}

func headerMatcherOf(p string, h *routev3.HeaderMatcher) (*headerMatcher, error) {
	if h == nil {
		return nil, fieldErr(p, "must be set")
	}
	m := &headerMatcher{
		name:           lowerASCII(h.Name),
		invert:         h.InvertMatch,
		missingAsEmpty: h.TreatMissingHeaderAsEmpty,
	}
	if m.name == "" {
		return nil, fieldErr(join(p, "name"), "must not be empty")
	}
	lit := func(f string, k stringKind, v string) error {
		if v == "" {
			return fieldErr(join(p, f), "must not be empty")
		}
		m.kind, m.str = hdrString, stringMatcher{kind: k, value: v}
		return nil
	}
	var err error
	switch s := h.HeaderMatchSpecifier.(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" {
			m.kind = hdrAny // Envoy: an empty exact_match matches any value
		} else {
			m.kind, m.str = hdrString, stringMatcher{kind: strExact, value: s.ExactMatch}
		}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		m.kind, m.str.kind = hdrString, strRegex
		m.str.re, err = regexOf(join(p, "safe_regex_match"), s.SafeRegexMatch, true)
	case *routev3.HeaderMatcher_RangeMatch:
		if s.RangeMatch == nil {
			return nil, fieldErr(join(p, "range_match"), "must be set")
		}
		m.kind, m.start, m.end = hdrRange, s.RangeMatch.Start, s.RangeMatch.End
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind, m.present = hdrPresent, s.PresentMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		err = lit("prefix_match", strPrefix, s.PrefixMatch)
	case *routev3.HeaderMatcher_SuffixMatch:
		err = lit("suffix_match", strSuffix, s.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		err = lit("contains_match", strContains, s.ContainsMatch)
	case *routev3.HeaderMatcher_StringMatch:
		m.kind = hdrString
		m.str, err = stringMatcherOf(join(p, "string_match"), s.StringMatch)
	default:
		// No specifier: the header must be present, as in Envoy.
		m.kind, m.present = hdrPresent, true
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func queryMatcherOf(p string, q *routev3.QueryParameterMatcher) (*queryMatcher, error) {
	if q == nil {
		return nil, fieldErr(p, "must be set")
	}
	if q.Name == "" {
		return nil, fieldErr(join(p, "name"), "must not be empty")
	}
	m := &queryMatcher{name: q.Name}
	switch s := q.QueryParameterMatchSpecifier.(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		var err error
		if m.str, err = stringMatcherOf(join(p, "string_match"), s.StringMatch); err != nil {
			return nil, err
		}
	default:
		// present_match (whatever its value) or nothing: presence only.
		m.present = true
	}
	return m, nil
}

func (c *compiler) routeAction(p string, a *routev3.RouteAction, rt *Route, vc *vhostCtx, req, resp *headerLevel) error {
	if a == nil {
		return fieldErr(p, "must be set")
	}
	switch cs := a.ClusterSpecifier.(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return fieldErr(join(p, "cluster"), "must not be empty")
		}
		rt.Cluster = cs.Cluster
	case *routev3.RouteAction_ClusterHeader:
		if cs.ClusterHeader == "" {
			return fieldErr(join(p, "cluster_header"), "must not be empty")
		}
		rt.ClusterHeader = lowerASCII(cs.ClusterHeader)
	case *routev3.RouteAction_WeightedClusters:
		if err := c.weighted(join(p, "weighted_clusters"), cs.WeightedClusters, rt, vc, req, resp); err != nil {
			return err
		}
	case *routev3.RouteAction_ClusterSpecifierPlugin:
		return unsupported(join(p, "cluster_specifier_plugin"))
	case *routev3.RouteAction_InlineClusterSpecifierPlugin:
		return unsupported(join(p, "inline_cluster_specifier_plugin"))
	default:
		return fieldErr(p, "one of cluster, cluster_header or weighted_clusters must be set")
	}
	switch a.ClusterNotFoundResponseCode {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		rt.ClusterNotFoundStatus = 503
	case routev3.RouteAction_NOT_FOUND:
		rt.ClusterNotFoundStatus = 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		rt.ClusterNotFoundStatus = 500
	default:
		return fieldErr(join(p, "cluster_not_found_response_code"), "unknown value %d", a.ClusterNotFoundResponseCode)
	}
	switch {
	case a.MetadataMatch != nil:
		return unsupported(join(p, "metadata_match"))
	case a.PathRewritePolicy != nil:
		return unsupported(join(p, "path_rewrite_policy"))
	case a.PathRewrite != "":
		return unsupported(join(p, "path_rewrite"))
	case a.RetryPolicyTypedConfig != nil:
		return unsupported(join(p, "retry_policy_typed_config"))
	case a.InternalRedirectPolicy != nil:
		return unsupported(join(p, "internal_redirect_policy"))
	case a.InternalRedirectAction == routev3.RouteAction_HANDLE_INTERNAL_REDIRECT:
		return unsupported(join(p, "internal_redirect_action"))
	case a.PrefixRewrite != "" && a.RegexRewrite != nil:
		return fieldErr(p, "only one of prefix_rewrite and regex_rewrite may be set")
	}
	rt.PrefixRewrite = a.PrefixRewrite
	if a.RegexRewrite != nil {
		rr, err := regexRewriteOf(join(p, "regex_rewrite"), a.RegexRewrite)
		if err != nil {
			return err
		}
		rt.RegexRewrite = rr
	}
	switch hr := a.HostRewriteSpecifier.(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		rt.HostRewriteLiteral = hr.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		rt.AutoHostRewrite = hr.AutoHostRewrite.GetValue()
	case *routev3.RouteAction_HostRewriteHeader:
		rt.HostRewriteHeader = lowerASCII(hr.HostRewriteHeader)
	case *routev3.RouteAction_HostRewritePathRegex:
		return unsupported(join(p, "host_rewrite_path_regex"))
	default:
		return unsupported(join(p, "host_rewrite"))
	}

	rt.Timeout = DefaultTimeout
	if a.Timeout != nil {
		d, err := durationOf(join(p, "timeout"), a.Timeout)
		if err != nil {
			return err
		}
		rt.Timeout = d
	}
	if a.IdleTimeout != nil {
		d, err := durationOf(join(p, "idle_timeout"), a.IdleTimeout)
		if err != nil {
			return err
		}
		rt.IdleTimeout, rt.HasIdleTimeout = d, true
	}
	rt.RetryPolicy = vc.retry
	if a.RetryPolicy != nil {
		rp, err := retryPolicyOf(join(p, "retry_policy"), a.RetryPolicy)
		if err != nil {
			return err
		}
		rt.RetryPolicy = rp
	}
	rt.MirrorPolicies = vc.mirrors
	if len(a.RequestMirrorPolicies) > 0 {
		ms, err := mirrorsOf(join(p, "request_mirror_policies"), a.RequestMirrorPolicies)
		if err != nil {
			return err
		}
		rt.MirrorPolicies = ms
	}
	for i, hp := range a.HashPolicy {
		pol, err := hashPolicyOf(index(p, "hash_policy", i), hp)
		if err != nil {
			return err
		}
		if pol != nil {
			rt.HashPolicies = append(rt.HashPolicies, *pol)
		}
	}
	return nil
}

func (c *compiler) weighted(p string, wc *routev3.WeightedCluster, rt *Route, vc *vhostCtx, req, resp *headerLevel) error {
	if wc == nil || len(wc.Clusters) == 0 {
		return fieldErr(join(p, "clusters"), "must not be empty")
	}
	if wc.RandomValueSpecifier != nil {
		return unsupported(join(p, "random_value_specifier"))
	}
	var total uint64
	for i, cw := range wc.Clusters {
		pc := index(p, "clusters", i)
		if cw == nil {
			return fieldErr(pc, "must be set")
		}
		switch {
		case cw.ClusterHeader != "":
			return unsupported(join(pc, "cluster_header"))
		case cw.Name == "":
			return fieldErr(join(pc, "name"), "must not be empty")
		case cw.MetadataMatch != nil:
			return unsupported(join(pc, "metadata_match"))
		}
		out := ClusterWeight{Name: cw.Name, Weight: cw.Weight.GetValue()}
		switch hr := cw.HostRewriteSpecifier.(type) {
		case nil:
		case *routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral:
			out.HostRewriteLiteral = hr.HostRewriteLiteral
		default:
			return unsupported(join(pc, "host_rewrite_specifier"))
		}
		cwReq, err := headerLevelOf(pc, cw.RequestHeadersToAdd, "request_headers_to_add", cw.RequestHeadersToRemove, "request_headers_to_remove")
		if err != nil {
			return err
		}
		cwResp, err := headerLevelOf(pc, cw.ResponseHeadersToAdd, "response_headers_to_add", cw.ResponseHeadersToRemove, "response_headers_to_remove")
		if err != nil {
			return err
		}
		out.RequestHeaders, out.ResponseHeaders = rt.RequestHeaders, rt.ResponseHeaders
		if cwReq != nil {
			out.RequestHeaders = chain(c.mostSpecific, cwReq, req, vc.req, c.req)
		}
		if cwResp != nil {
			out.ResponseHeaders = chain(c.mostSpecific, cwResp, resp, vc.resp, c.resp)
		}
		out.PerFilterConfig = mergePFC(rt.PerFilterConfig, cw.TypedPerFilterConfig)
		total += uint64(out.Weight)
		rt.WeightedClusters = append(rt.WeightedClusters, out)
		rt.cum = append(rt.cum, total)
	}
	if total == 0 {
		return fieldErr(join(p, "clusters"), "sum of weights must be greater than 0")
	}
	if wc.TotalWeight != nil && uint64(wc.TotalWeight.Value) != total {
		return fieldErr(join(p, "total_weight"), "is %d but the weights add up to %d", wc.TotalWeight.Value, total)
	}
	rt.TotalWeight = total
	return nil
}

func durationOf(p string, d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, &FieldError{Field: p, Err: err}
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fieldErr(p, "must not be negative")
	}
	return v, nil
}

// retryCondition maps a retry_on token to its condition. known is true
// for every condition Envoy defines; the ones Weft does not implement have
// bit 0 and are rejected by name.
func retryCondition(tok string) (bit RetryOn, known bool) {
	switch tok {
	case "5xx":
		return Retry5xx, true
	case "gateway-error":
		return RetryGatewayError, true
	case "connect-failure":
		return RetryConnectFailure, true
	case "reset":
		return RetryReset, true
	case "retriable-4xx":
		return RetryRetriable4xx, true
	case "refused-stream":
		return RetryRefusedStream, true
	case "retriable-status-codes":
		return RetryRetriableStatusCodes, true
	case "reset-before-request", "envoy-ratelimited", "retriable-headers", "http3-post-connect-failure",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable":
		return 0, true
	}
	return 0, false
}

func retryPolicyOf(p string, rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	if rp == nil {
		return nil, nil
	}
	pol := &RetryPolicy{
		NumRetries:  1,
		BackOffBase: DefaultRetryBackOffBase,
		BackOffMax:  DefaultRetryBackOffMax,
	}
	for _, tok := range strings.Split(rp.RetryOn, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		bit, known := retryCondition(tok)
		switch {
		case !known:
			return nil, fieldErr(join(p, "retry_on"), "unknown retry condition %q", tok)
		case bit == 0:
			return nil, fieldErr(join(p, "retry_on"), "retry condition %q is not supported by Weft", tok)
		}
		pol.RetryOn |= bit
	}
	switch {
	case len(rp.RetriableHeaders) > 0:
		return nil, unsupported(join(p, "retriable_headers"))
	case len(rp.RetriableRequestHeaders) > 0:
		return nil, unsupported(join(p, "retriable_request_headers"))
	case rp.RateLimitedRetryBackOff != nil:
		return nil, unsupported(join(p, "rate_limited_retry_back_off"))
	}
	if rp.NumRetries != nil {
		pol.NumRetries = rp.NumRetries.Value
	}
	var err error
	if rp.PerTryTimeout != nil {
		if pol.PerTryTimeout, err = durationOf(join(p, "per_try_timeout"), rp.PerTryTimeout); err != nil {
			return nil, err
		}
	}
	if rp.PerTryIdleTimeout != nil {
		if pol.PerTryIdleTimeout, err = durationOf(join(p, "per_try_idle_timeout"), rp.PerTryIdleTimeout); err != nil {
			return nil, err
		}
	}
	for i, code := range rp.RetriableStatusCodes {
		if code < 100 || code > 599 {
			return nil, fieldErr(index(p, "retriable_status_codes", i), "%d is not an HTTP status", code)
		}
	}
	pol.RetriableStatusCodes = append([]uint32(nil), rp.RetriableStatusCodes...)
	if bo := rp.RetryBackOff; bo != nil {
		pb := join(p, "retry_back_off")
		if bo.BaseInterval == nil {
			return nil, fieldErr(join(pb, "base_interval"), "must be set")
		}
		if pol.BackOffBase, err = durationOf(join(pb, "base_interval"), bo.BaseInterval); err != nil {
			return nil, err
		}
		if pol.BackOffBase <= 0 {
			return nil, fieldErr(join(pb, "base_interval"), "must be greater than 0")
		}
		pol.BackOffMax = 10 * pol.BackOffBase
		if bo.MaxInterval != nil {
			if pol.BackOffMax, err = durationOf(join(pb, "max_interval"), bo.MaxInterval); err != nil {
				return nil, err
			}
			if pol.BackOffMax < pol.BackOffBase {
				return nil, fieldErr(join(pb, "max_interval"), "must be greater than or equal to base_interval")
			}
		}
	}
	return pol, nil
}

func mirrorsOf(p string, list []*routev3.RouteAction_RequestMirrorPolicy) ([]MirrorPolicy, error) {
	var out []MirrorPolicy
	for i, mp := range list {
		pm := p + "[" + strconv.Itoa(i) + "]"
		if mp == nil {
			return nil, fieldErr(pm, "must be set")
		}
		switch {
		case mp.Cluster == "" && mp.ClusterHeader == "":
			return nil, fieldErr(pm, "one of cluster or cluster_header must be set")
		case mp.Cluster != "" && mp.ClusterHeader != "":
			return nil, fieldErr(pm, "only one of cluster and cluster_header may be set")
		case len(mp.RequestHeadersMutations) > 0:
			return nil, unsupported(join(pm, "request_headers_mutations"))
		}
		m := MirrorPolicy{
			Cluster:                       mp.Cluster,
			ClusterHeader:                 lowerASCII(mp.ClusterHeader),
			Numerator:                     1,
			Denominator:                   1,
			HostRewriteLiteral:            mp.HostRewriteLiteral,
			DisableShadowHostSuffixAppend: mp.DisableShadowHostSuffixAppend,
		}
		if rf := mp.RuntimeFraction; rf != nil {
			n, d, err := fractionOf(join(join(pm, "runtime_fraction"), "default_value"), rf.DefaultValue)
			if err != nil {
				return nil, err
			}
			m.Numerator, m.Denominator = n, d
		}
		out = append(out, m)
	}
	return out, nil
}

// fractionOf converts a FractionalPercent, capping it at 100%.
func fractionOf(p string, fp *typev3.FractionalPercent) (num, den uint32, err error) {
	if fp == nil {
		return 0, 0, fieldErr(p, "must be set")
	}
	switch fp.Denominator {
	case typev3.FractionalPercent_HUNDRED:
		den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10_000
	case typev3.FractionalPercent_MILLION:
		den = 1_000_000
	default:
		return 0, 0, fieldErr(join(p, "denominator"), "unknown value %d", fp.Denominator)
	}
	return min(fp.Numerator, den), den, nil
}

func hashPolicyOf(p string, hp *routev3.RouteAction_HashPolicy) (*HashPolicy, error) {
	if hp == nil {
		return nil, fieldErr(p, "must be set")
	}
	pol := &HashPolicy{Terminal: hp.Terminal}
	switch s := hp.PolicySpecifier.(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		h := s.Header
		if h.GetHeaderName() == "" {
			return nil, fieldErr(join(p, "header.header_name"), "must not be empty")
		}
		pol.Kind, pol.Name = HashHeader, lowerASCII(h.HeaderName)
		if h.RegexRewrite != nil {
			rr, err := regexRewriteOf(join(p, "header.regex_rewrite"), h.RegexRewrite)
			if err != nil {
				return nil, err
			}
			pol.Rewrite = rr
		}
	case *routev3.RouteAction_HashPolicy_Cookie_:
		ck := s.Cookie
		if ck.GetName() == "" {
			return nil, fieldErr(join(p, "cookie.name"), "must not be empty")
		}
		pol.Kind, pol.Name, pol.CookiePath = HashCookie, ck.Name, ck.Path
		if ck.Ttl != nil {
			d, err := durationOf(join(p, "cookie.ttl"), ck.Ttl)
			if err != nil {
				return nil, err
			}
			pol.CookieTTL = d
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !s.ConnectionProperties.GetSourceIp() {
			return nil, nil // hashes nothing, as in Envoy
		}
		pol.Kind = HashSourceIP
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		if s.QueryParameter.GetName() == "" {
			return nil, fieldErr(join(p, "query_parameter.name"), "must not be empty")
		}
		pol.Kind, pol.Name = HashQueryParameter, s.QueryParameter.Name
	case *routev3.RouteAction_HashPolicy_FilterState_:
		return nil, unsupported(join(p, "filter_state"))
	default:
		return nil, fieldErr(p, "one of header, cookie, connection_properties or query_parameter must be set")
	}
	return pol, nil
}

func regexRewriteOf(p string, rr *matcherv3.RegexMatchAndSubstitute) (*RegexRewrite, error) {
	if rr == nil {
		return nil, fieldErr(p, "must be set")
	}
	re, err := regexOf(join(p, "pattern"), rr.Pattern, false)
	if err != nil {
		return nil, err
	}
	sub, err := re2Substitution(rr.Substitution, re.NumSubexp())
	if err != nil {
		return nil, &FieldError{Field: join(p, "substitution"), Err: err}
	}
	return &RegexRewrite{Pattern: re, Substitution: sub}, nil
}

// re2Substitution converts an RE2 rewrite string ("\1", "\\") into Go's
// Expand syntax ("${1}", "$$").
func re2Substitution(s string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '$':
			b.WriteString("$$")
		case '\\':
			if i+1 == len(s) {
				return "", errors.New(`trailing '\' (write \\ for a backslash)`)
			}
			i++
			n := s[i]
			switch {
			case n == '\\':
				b.WriteByte('\\')
			case n >= '0' && n <= '9':
				g := int(n - '0')
				if g > groups {
					return "", fmt.Errorf(`\%d refers to a group the pattern does not have (it has %d)`, g, groups)
				}
				b.WriteString("${" + strconv.Itoa(g) + "}")
			default:
				return "", fmt.Errorf(`invalid escape \%c (write \\ for a backslash)`, n)
			}
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), nil
}

func redirectOf(p string, rd *routev3.RedirectAction) (*Redirect, error) {
	if rd == nil {
		return nil, fieldErr(p, "must be set")
	}
	out := &Redirect{Host: rd.HostRedirect, Port: rd.PortRedirect, StripQuery: rd.StripQuery}
	if out.Port > 65535 {
		return nil, fieldErr(join(p, "port_redirect"), "%d is not a port", out.Port)
	}
	switch s := rd.SchemeRewriteSpecifier.(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		out.Scheme = lowerASCII(s.SchemeRedirect)
	}
	switch s := rd.PathRewriteSpecifier.(type) {
	case nil:
	case *routev3.RedirectAction_PathRedirect:
		out.Path = s.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		out.PrefixRewrite = s.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		rr, err := regexRewriteOf(join(p, "regex_rewrite"), s.RegexRewrite)
		if err != nil {
			return nil, err
		}
		out.RegexRewrite = rr
	default:
		return nil, unsupported(join(p, "path_rewrite"))
	}
	switch rd.ResponseCode {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.Status = 301
	case routev3.RedirectAction_FOUND:
		out.Status = 302
	case routev3.RedirectAction_SEE_OTHER:
		out.Status = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.Status = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.Status = 308
	default:
		return nil, fieldErr(join(p, "response_code"), "unknown value %d", rd.ResponseCode)
	}
	return out, nil
}

func (c *compiler) directResponse(p string, dr *routev3.DirectResponseAction) (*DirectResponse, error) {
	if dr == nil {
		return nil, fieldErr(p, "must be set")
	}
	if dr.Status < 200 || dr.Status > 599 {
		return nil, fieldErr(join(p, "status"), "%d is not in [200, 599]", dr.Status)
	}
	if dr.BodyFormat != nil {
		return nil, unsupported(join(p, "body_format"))
	}
	out := &DirectResponse{Status: int(dr.Status)}
	if dr.Body != nil {
		switch b := dr.Body.Specifier.(type) {
		case nil:
		case *corev3.DataSource_InlineString:
			out.Body = b.InlineString
		case *corev3.DataSource_InlineBytes:
			out.Body = string(b.InlineBytes)
		case *corev3.DataSource_Filename:
			return nil, unsupported(join(p, "body.filename"))
		case *corev3.DataSource_EnvironmentVariable:
			return nil, unsupported(join(p, "body.environment_variable"))
		default:
			return nil, unsupported(join(p, "body"))
		}
		if len(out.Body) > c.maxBody {
			return nil, fieldErr(join(p, "body"), "response body is %d bytes; maximum is %d (max_direct_response_body_size_bytes)", len(out.Body), c.maxBody)
		}
	}
	return out, nil
}

// headerLevelOf compiles one level of header mutations; nil when empty.
func headerLevelOf(p string, adds []*corev3.HeaderValueOption, addField string, removes []string, removeField string) (*headerLevel, error) {
	if len(adds) == 0 && len(removes) == 0 {
		return nil, nil
	}
	l := &headerLevel{}
	for i, r := range removes {
		key := lowerASCII(r)
		if err := modifiable(key); err != nil {
			return nil, &FieldError{Field: index(p, removeField, i), Err: err}
		}
		l.remove = append(l.remove, key)
	}
	for i, o := range adds {
		pa := index(p, addField, i)
		if o == nil || o.Header == nil {
			return nil, fieldErr(join(pa, "header"), "must be set")
		}
		key := lowerASCII(o.Header.Key)
		if err := modifiable(key); err != nil {
			return nil, &FieldError{Field: join(pa, "header.key"), Err: err}
		}
		value := o.Header.Value
		if value == "" && len(o.Header.RawValue) > 0 {
			value = string(o.Header.RawValue)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fieldErr(join(pa, "header.value"), "must not contain CR, LF or NUL")
		}
		parts, err := parseHeaderValue(value)
		if err != nil {
			return nil, &FieldError{Field: join(pa, "header.value"), Err: err}
		}
		a := headerAdd{key: key, value: parts, keepEmpty: o.KeepEmptyValue}
		switch {
		case o.Append != nil && o.AppendAction != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			return nil, fieldErr(pa, "append and append_action are mutually exclusive")
		case o.Append != nil && o.Append.Value:
			a.action = appendIfExistsOrAdd
		case o.Append != nil:
			a.action = overwriteIfExistsOrAdd
		default:
			switch o.AppendAction {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				a.action = appendIfExistsOrAdd
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				a.action = addIfAbsent
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				a.action = overwriteIfExistsOrAdd
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				a.action = overwriteIfExists
			default:
				return nil, fieldErr(join(pa, "append_action"), "unknown value %d", o.AppendAction)
			}
		}
		l.add = append(l.add, a)
	}
	return l, nil
}

// modifiable rejects what Envoy refuses to add or remove: pseudo-headers
// and host.
func modifiable(key string) error {
	switch {
	case key == "":
		return errors.New("header name must not be empty")
	case key[0] == ':' || key == "host":
		return fmt.Errorf("header %q may not be modified (pseudo-headers and host are reserved)", key)
	}
	return nil
}

// mergePFC overlays over onto base (more specific wins per filter name),
// sharing a map when only one side has entries.
func mergePFC(base, over map[string]*anypb.Any) map[string]*anypb.Any {
	if len(over) == 0 {
		return base
	}
	if len(base) == 0 {
		return over
	}
	m := make(map[string]*anypb.Any, len(base)+len(over))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}

// pgvError is the shape of the protoc-gen-validate error types.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
}

// protoValidationError turns a generated validation error chain into a
// FieldError with a snake_case field path.
func protoValidationError(err error) error {
	var path []string
	reason := err.Error()
	for {
		v, ok := err.(pgvError)
		if !ok {
			break
		}
		path = append(path, snakeField(v.Field()))
		reason = v.Reason()
		cause := v.Cause()
		if cause == nil {
			break
		}
		if _, ok := cause.(pgvError); !ok {
			reason += ": " + cause.Error()
			break
		}
		err = cause
	}
	return &FieldError{Field: strings.Join(path, "."), Err: errors.New(reason)}
}

// snakeField converts a generated field name like "VirtualHosts[0]" to
// "virtual_hosts[0]"; anything from the first '[' on is kept.
func snakeField(f string) string {
	name, rest := f, ""
	if i := strings.IndexByte(f, '['); i >= 0 {
		name, rest = f[:i], f[i:]
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if 'A' <= ch && ch <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			ch += 'a' - 'A'
		}
		b.WriteByte(ch)
	}
	return b.String() + rest
}
