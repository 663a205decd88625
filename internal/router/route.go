package router

import (
	"github.com/weftmesh/weft/internal/xxhash"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/api"
)

// DefaultTimeout is the upstream request timeout of a route that sets none,
// as in Envoy.
const DefaultTimeout = 15 * time.Second

// Route is one compiled route. Every field is computed by Compile and must
// be treated as read-only: a Route is shared by all requests that match it.
//
// Exactly one action is set: Cluster, ClusterHeader, WeightedClusters
// (forward upstream), DirectResponse or Redirect (answer locally).
type Route struct {
	// Name is the configured route name, possibly empty.
	Name string
	// StatName names the route in stats: Name, or "<vhost name>/<index>".
	StatName string
	// Index is the position of the route in VirtualHost.Routes.
	Index int
	// VirtualHost is the virtual host that owns the route.
	VirtualHost *VirtualHost

	// Cluster is the upstream cluster of a single-cluster route.
	Cluster string
	// ClusterHeader names the request header holding the cluster name.
	ClusterHeader string
	// WeightedClusters split traffic by weight; see PickCluster.
	WeightedClusters []ClusterWeight
	// TotalWeight is the sum of the WeightedClusters weights.
	TotalWeight uint64
	// ClusterNotFoundStatus is the status to answer when the cluster does
	// not exist: 503 (default), 404 or 500.
	ClusterNotFoundStatus int

	// Timeout is the whole-request upstream timeout; DefaultTimeout unless
	// configured; 0 disables it.
	Timeout time.Duration
	// IdleTimeout overrides the connection manager's stream idle timeout
	// when HasIdleTimeout; 0 then disables it.
	IdleTimeout time.Duration
	// HasIdleTimeout reports whether idle_timeout was configured.
	HasIdleTimeout bool
	// RetryPolicy is the route's retry policy, or the virtual host's when
	// the route has none; nil means no retries.
	RetryPolicy *RetryPolicy
	// MirrorPolicies are the route's request mirror policies, or else the
	// virtual host's, or else the route configuration's.
	MirrorPolicies []MirrorPolicy
	// HashPolicies feed consistent-hash load balancing; see Hash.
	HashPolicies []HashPolicy

	// PrefixRewrite replaces the matched path prefix; see RewritePath.
	PrefixRewrite string
	// RegexRewrite rewrites the path part; see RewritePath.
	RegexRewrite *RegexRewrite
	// HostRewriteLiteral replaces :authority upstream when non-empty.
	HostRewriteLiteral string
	// HostRewriteHeader names a request header whose value replaces
	// :authority upstream when present.
	HostRewriteHeader string
	// AutoHostRewrite asks for :authority to be set to the chosen upstream
	// host's hostname.
	AutoHostRewrite bool

	// RequestHeaders are the request header mutations of the route, its
	// virtual host and the route configuration, in Envoy's order. nil when
	// there are none (Apply on nil is a no-op).
	RequestHeaders *HeaderOps
	// ResponseHeaders are the response header mutations, likewise.
	ResponseHeaders *HeaderOps

	// DirectResponse, when set, is answered locally.
	DirectResponse *DirectResponse
	// Redirect, when set, is answered locally; see RedirectLocation.
	Redirect *Redirect

	// PerFilterConfig is typed_per_filter_config merged over the route
	// configuration, virtual host and route (most specific wins per
	// filter name), kept raw for the filters to parse. Read-only.
	PerFilterConfig map[string]*anypb.Any

	m   *routeMatch // points into VirtualHost.matches
	cum []uint64    // cumulative weights of WeightedClusters
}

// ClusterWeight is one entry of a weighted-cluster route.
type ClusterWeight struct {
	// Name is the cluster name.
	Name string
	// Weight is the configured weight.
	Weight uint32
	// HostRewriteLiteral replaces :authority for this cluster when set.
	HostRewriteLiteral string
	// RequestHeaders is the complete request header mutation chain for
	// requests sent to this cluster (its own level, then the route's);
	// use it instead of Route.RequestHeaders.
	RequestHeaders *HeaderOps
	// ResponseHeaders is the matching response chain.
	ResponseHeaders *HeaderOps
	// PerFilterConfig is Route.PerFilterConfig overlaid with this
	// cluster's typed_per_filter_config.
	PerFilterConfig map[string]*anypb.Any
}

// DirectResponse is a locally answered route.
type DirectResponse struct {
	// Status is the HTTP status, 200..599.
	Status int
	// Body is the response body, possibly empty.
	Body string
}

// Redirect is a route answered with an HTTP redirect.
type Redirect struct {
	// Scheme replaces the request scheme when non-empty ("https" for
	// https_redirect).
	Scheme string
	// Host replaces the request host when non-empty.
	Host string
	// Port replaces the request port when non-zero.
	Port uint32
	// Path replaces the whole path when non-empty; a query in it replaces
	// the request's query.
	Path string
	// PrefixRewrite replaces the matched prefix of the path when non-empty.
	PrefixRewrite string
	// RegexRewrite rewrites the path part when set.
	RegexRewrite *RegexRewrite
	// StripQuery drops the request's query string.
	StripQuery bool
	// Status is 301, 302, 303, 307 or 308.
	Status int
}

// RegexRewrite is a compiled regex_rewrite: every match of Pattern in the
// path part is replaced by Substitution, in Go's regexp expansion syntax
// (Envoy's RE2 "\1" is converted to "${1}").
type RegexRewrite struct {
	Pattern      *regexp.Regexp
	Substitution string
}

// PickCluster returns the cluster for a random value rnd: Cluster for a
// single-cluster route, else the weighted cluster that rnd mod TotalWeight
// falls into (Envoy's selection). It returns "" for ClusterHeader and local
// routes. It does not allocate.
func (r *Route) PickCluster(rnd uint64) string {
	if cw := r.PickWeighted(rnd); cw != nil {
		return cw.Name
	}
	return r.Cluster
}

// PickWeighted returns the weighted cluster for rnd, or nil when the route
// is not a weighted-cluster route.
func (r *Route) PickWeighted(rnd uint64) *ClusterWeight {
	if len(r.cum) == 0 {
		return nil
	}
	v := rnd % r.TotalWeight
	lo, hi := 0, len(r.cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if v < r.cum[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return &r.WeightedClusters[lo]
}

// ClusterFor resolves the upstream cluster name for a request: the
// ClusterHeader value, else PickCluster(rnd). It returns "" when the
// header is missing or the route answers locally.
func (r *Route) ClusterFor(h api.HeaderMap, rnd uint64) string {
	if r.ClusterHeader != "" {
		v, _ := h.Get(r.ClusterHeader)
		return v
	}
	return r.PickCluster(rnd)
}

// RewritePath returns the upstream :path for the request :path path:
// PrefixRewrite replaces the part the route matched (the prefix for prefix
// and path_separated_prefix routes, the whole path part for path and
// safe_regex routes); RegexRewrite substitutes in the path part. The query
// string is kept. Without a rewrite path is returned as is.
func (r *Route) RewritePath(path string) string {
	if r.PrefixRewrite != "" {
		return r.rewritePrefix(path, r.PrefixRewrite)
	}
	if r.RegexRewrite != nil {
		return r.RegexRewrite.apply(path)
	}
	return path
}

func (r *Route) rewritePrefix(path, with string) string {
	n := len(r.m.key)
	if r.m.kind == pathExact || r.m.kind == pathRegex {
		n = pathEnd(path)
	}
	if n > len(path) {
		return path
	}
	return with + path[n:]
}

func (rr *RegexRewrite) apply(path string) string {
	end := strings.IndexByte(path, '?')
	if end < 0 {
		end = len(path)
	}
	return rr.Pattern.ReplaceAllString(path[:end], rr.Substitution) + path[end:]
}

// RedirectLocation builds the Location of a Redirect route for the request
// h, following Envoy: scheme from the redirect, else x-forwarded-proto,
// :scheme or "http"; host from the redirect, else :authority with the port
// replaced by Port, or dropped when it is the default port of either
// scheme across a scheme change; path from Path, PrefixRewrite or
// RegexRewrite; the query dropped with StripQuery unless Path has one. It
// returns "" when the route is not a redirect.
func (r *Route) RedirectLocation(h api.HeaderMap) string {
	rd := r.Redirect
	if rd == nil {
		return ""
	}
	reqScheme, ok := h.Get("x-forwarded-proto")
	if !ok {
		if reqScheme, ok = h.Get(":scheme"); !ok {
			reqScheme = "http"
		}
	}
	reqScheme = lowerASCII(reqScheme)
	scheme := reqScheme
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host := rd.Host
	if host == "" {
		if host, ok = h.Get(":authority"); !ok {
			host, _ = h.Get("host")
		}
		host = redirectHost(host, reqScheme, scheme, rd.Port)
	}
	if rd.Port != 0 {
		host = string(stripPort([]byte(host))) + ":" + strconv.FormatUint(uint64(rd.Port), 10)
	}
	path, _ := h.Get(":path")
	pathHasQuery := false
	switch {
	case rd.Path != "":
		pathHasQuery = strings.IndexByte(rd.Path, '?') >= 0
		if pathHasQuery {
			path = rd.Path
		} else if q := strings.IndexByte(path, '?'); q >= 0 {
			path = rd.Path + path[q:]
		} else {
			path = rd.Path
		}
	case rd.PrefixRewrite != "":
		path = r.rewritePrefix(path, rd.PrefixRewrite)
	case rd.RegexRewrite != nil:
		path = rd.RegexRewrite.apply(path)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if rd.StripQuery && !pathHasQuery {
		if q := strings.IndexByte(path, '?'); q >= 0 {
			path = path[:q]
		}
	}
	return scheme + "://" + host + path
}

// redirectHost drops the request port when the redirect sets a new one, or
// when it is the default port of the old or new scheme and the scheme
// changes, or the default port of the (unchanged) scheme.
func redirectHost(host, oldScheme, newScheme string, newPort uint32) string {
	stripped := string(stripPort([]byte(host)))
	if len(stripped) == len(host) {
		return host
	}
	port := host[len(stripped)+1:]
	switch {
	case newPort != 0,
		port == defaultPort(newScheme),
		oldScheme != newScheme && port == defaultPort(oldScheme):
		return stripped
	}
	return host
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// RetryOn is a set of retry conditions.
type RetryOn uint16

// The retry conditions Weft implements, named as in Envoy's retry_on.
const (
	// Retry5xx retries on any 5xx response, connect failure, reset or
	// refused stream.
	Retry5xx RetryOn = 1 << iota
	// RetryGatewayError retries on 502, 503, 504, connect failure, reset.
	RetryGatewayError
	// RetryConnectFailure retries when connecting upstream fails.
	RetryConnectFailure
	// RetryReset retries when the upstream resets or disconnects.
	RetryReset
	// RetryRetriable4xx retries on 409.
	RetryRetriable4xx
	// RetryRefusedStream retries on an HTTP/2 REFUSED_STREAM reset.
	RetryRefusedStream
	// RetryRetriableStatusCodes retries on RetryPolicy.RetriableStatusCodes.
	RetryRetriableStatusCodes
)

// Has reports whether every condition of c is in r.
func (r RetryOn) Has(c RetryOn) bool { return r&c == c }

// String lists the conditions comma-separated, in Envoy's spelling.
func (r RetryOn) String() string {
	var b strings.Builder
	for bit := Retry5xx; bit <= RetryRetriableStatusCodes; bit <<= 1 {
		if r&bit == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(bit.name())
	}
	return b.String()
}

func (r RetryOn) name() string {
	switch r {
	case Retry5xx:
		return "5xx"
	case RetryGatewayError:
		return "gateway-error"
	case RetryConnectFailure:
		return "connect-failure"
	case RetryReset:
		return "reset"
	case RetryRetriable4xx:
		return "retriable-4xx"
	case RetryRefusedStream:
		return "refused-stream"
	case RetryRetriableStatusCodes:
		return "retriable-status-codes"
	}
	return ""
}

// Default back-off intervals of a retry policy, as in Envoy.
const (
	DefaultRetryBackOffBase = 25 * time.Millisecond
	DefaultRetryBackOffMax  = 10 * DefaultRetryBackOffBase
)

// RetryPolicy is a compiled retry policy.
type RetryPolicy struct {
	// RetryOn is the set of retry conditions.
	RetryOn RetryOn
	// NumRetries is the number of retries allowed; 1 unless configured.
	NumRetries uint32
	// PerTryTimeout bounds each attempt; 0 means the route Timeout only.
	PerTryTimeout time.Duration
	// PerTryIdleTimeout bounds idle time of each attempt; 0 means none.
	PerTryIdleTimeout time.Duration
	// RetriableStatusCodes are the statuses retried with
	// RetryRetriableStatusCodes.
	RetriableStatusCodes []uint32
	// BackOffBase and BackOffMax bound the jittered exponential back-off
	// between attempts (25ms and 10x base unless configured).
	BackOffBase, BackOffMax time.Duration
}

// RetriableStatus reports whether a response with status code should be
// retried under the policy.
func (p *RetryPolicy) RetriableStatus(code int) bool {
	switch {
	case p.RetryOn&Retry5xx != 0 && code >= 500 && code <= 599:
		return true
	case p.RetryOn&RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.RetryOn&RetryRetriable4xx != 0 && code == 409:
		return true
	case p.RetryOn&RetryRetriableStatusCodes != 0:
		for _, c := range p.RetriableStatusCodes {
			if int(c) == code {
				return true
			}
		}
	}
	return false
}

// ResetKind classifies an upstream failure without a response.
type ResetKind uint8

const (
	// ResetConnectFailure: the upstream connection could not be made.
	ResetConnectFailure ResetKind = iota
	// ResetRefusedStream: the upstream refused the stream (HTTP/2).
	ResetRefusedStream
	// ResetOther: any other reset or disconnect.
	ResetOther
)

// RetriableReset reports whether a failure of kind k should be retried.
func (p *RetryPolicy) RetriableReset(k ResetKind) bool {
	on := p.RetryOn
	if on&(Retry5xx|RetryGatewayError|RetryReset) != 0 {
		return true
	}
	switch k {
	case ResetConnectFailure:
		return on&RetryConnectFailure != 0
	case ResetRefusedStream:
		return on&RetryRefusedStream != 0
	}
	return false
}

// MirrorPolicy is a compiled request mirror (shadow) policy.
type MirrorPolicy struct {
	// Cluster is the shadow cluster.
	Cluster string
	// ClusterHeader names a request header holding the shadow cluster.
	ClusterHeader string
	// Numerator / Denominator is the fraction of requests mirrored
	// (1/1 when no runtime_fraction is configured).
	Numerator, Denominator uint32
	// HostRewriteLiteral replaces :authority of mirrored requests.
	HostRewriteLiteral string
	// DisableShadowHostSuffixAppend keeps :authority free of "-shadow".
	DisableShadowHostSuffixAppend bool
}

// Probability is the fraction of requests mirrored, in [0, 1].
func (m *MirrorPolicy) Probability() float64 {
	if m.Denominator == 0 {
		return 0
	}
	return min(1, float64(m.Numerator)/float64(m.Denominator))
}

// Sample reports whether the request with random value rnd is mirrored.
func (m *MirrorPolicy) Sample(rnd uint64) bool {
	if m.Denominator == 0 {
		return false
	}
	return rnd%uint64(m.Denominator) < uint64(m.Numerator)
}

// HashPolicyKind is what a hash policy hashes.
type HashPolicyKind uint8

// Hash policy kinds.
const (
	// HashHeader hashes the first value of the request header Name.
	HashHeader HashPolicyKind = iota + 1
	// HashCookie hashes the value of the cookie Name.
	HashCookie
	// HashSourceIP hashes the downstream source IP.
	HashSourceIP
	// HashQueryParameter hashes the first value of query parameter Name.
	HashQueryParameter
)

// HashPolicy is one compiled hash_policy entry.
type HashPolicy struct {
	// Kind is what is hashed.
	Kind HashPolicyKind
	// Name is the header, cookie or query parameter name.
	Name string
	// Terminal stops evaluation once a hash has been produced.
	Terminal bool
	// CookieTTL and CookiePath describe the cookie Envoy would generate
	// when it is missing; Weft leaves generation to the proxy.
	CookieTTL  time.Duration
	CookiePath string
	// Rewrite, for HashHeader, rewrites the value before hashing.
	Rewrite *RegexRewrite
}

// Hash computes the consistent-hash key of a request as Envoy does: each
// policy that yields a value mixes its xxHash64 into the key (rotating the
// previous key one bit left), and a terminal policy that produced a key
// ends the evaluation. srcIP is the downstream IP without port. ok is false
// when no policy yielded a value. It allocates only for header rewrites.
func (r *Route) Hash(h api.HeaderMap, srcIP string) (key uint64, ok bool) {
	for i := range r.HashPolicies {
		p := &r.HashPolicies[i]
		var v string
		var found bool
		switch p.Kind {
		case HashHeader:
			if v, found = h.Get(p.Name); found && p.Rewrite != nil {
				v = p.Rewrite.Pattern.ReplaceAllString(v, p.Rewrite.Substitution)
			}
		case HashCookie:
			if c, has := h.Get("cookie"); has {
				v, found = cookieValue(c, p.Name)
			}
		case HashSourceIP:
			v, found = srcIP, srcIP != ""
		case HashQueryParameter:
			if path, has := h.Get(":path"); has {
				v, found = queryParam(path, p.Name)
			}
		}
		if found {
			n := xxhash.Sum64(v, 0)
			if ok {
				key = (key<<1 | key>>63) ^ n
			} else {
				key, ok = n, true
			}
		}
		if p.Terminal && ok {
			break
		}
	}
	return key, ok
}

// cookieValue finds cookie name in a Cookie header value; surrounding
// double quotes are removed.
func cookieValue(header, name string) (string, bool) {
	for header != "" {
		part := header
		if i := strings.IndexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			header = ""
		}
		part = strings.TrimLeft(part, " \t")
		eq := strings.IndexByte(part, '=')
		if eq < 0 || part[:eq] != name {
			continue
		}
		v := strings.TrimRight(part[eq+1:], " \t")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}
