package stream

import (
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
)

// gRPC status codes Weft generates (grpc/codes).
const (
	grpcOK                = 0
	grpcCancelled         = 1
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// isGRPC reports a gRPC (or Triple) request by its content type.
func isGRPC(contentType string) bool {
	return strings.HasPrefix(contentType, "application/grpc")
}

// grpcStatusFor maps a local reply to the gRPC status a client should see:
// Envoy's HTTP-to-gRPC mapping, refined by why Weft answered (the response
// flags): a timeout is DEADLINE_EXCEEDED, a full circuit breaker
// RESOURCE_EXHAUSTED.
func grpcStatusFor(status int, flags *accesslog.Flags) int {
	switch {
	case flags.Has(api.FlagUpstreamRequestTimeout):
		return grpcDeadlineExceeded
	case flags.Has(api.FlagUpstreamOverflow):
		return grpcResourceExhausted
	case flags.Has(api.FlagNoRoute):
		return grpcUnimplemented
	}
	switch status {
	case 400:
		return grpcInternal
	case 401:
		return grpcUnauthenticated
	case 403:
		return grpcPermissionDenied
	case 404:
		return grpcUnimplemented
	case 408, 504:
		return grpcDeadlineExceeded
	case 429:
		return grpcResourceExhausted
	case 502, 503:
		return grpcUnavailable
	}
	if status >= 200 && status < 300 {
		return grpcOK
	}
	return grpcUnknown
}

// grpcEncodeMessage percent-encodes a grpc-message value (gRPC over
// HTTP/2 spec: bytes outside printable ASCII, and '%').
func grpcEncodeMessage(m string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= ' ' && c <= '~' && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(m)+8), m[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return m
	}
	return string(b)
}

// parseGRPCTimeout parses a grpc-timeout value: at most 8 digits and a
// unit (H, M, S, m, u, n).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// requestTimeout is the deadline a gRPC client asked for: grpc-timeout, or
// Triple's millisecond headers (tri-service-timeout, and dubbo-go's
// Triple-Timeout-Ms) from clients that send no grpc-timeout.
func requestTimeout(h api.HeaderMap) (time.Duration, bool) {
	if v, ok := h.Get("grpc-timeout"); ok {
		return parseGRPCTimeout(v)
	}
	for _, k := range [...]string{"tri-service-timeout", "triple-timeout-ms"} {
		if v, ok := h.Get(k); ok {
			ms, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || ms == 0 {
				return 0, false
			}
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	return 0, false
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def
	}
	return n
}

// grpcMethod splits a gRPC path "/package.Service/Method".
func grpcMethod(path string) (service, method string) {
	p := strings.TrimPrefix(path, "/")
	service, method, _ = strings.Cut(p, "/")
	return service, method
}

// recordGRPC counts a finished gRPC stream per service, method and gRPC
// status (weft_rpc_method_*{protocol="grpc"}; Triple requests count as
// protocol "triple").
func (c *Config) recordGRPC(s *h2stream) {
	if !s.grpc {
		return
	}
	proto := "grpc"
	if isTriple(&s.stream) {
		proto = "triple"
	}
	var ms = c.methods.Unrouted(proto)
	if s.route != nil {
		svc, m := grpcMethod(s.req.Target)
		ms = c.methods.Get(proto, svc, m)
	}
	ms.Requests.Inc()
	code := s.trail
	switch {
	case code >= 0:
	case s.flags.Has(api.FlagDownstreamReset):
		code = grpcCancelled // the client went away or cancelled
	default:
		code = grpcUnknown // no status: the stream was cut
	}
	if code != grpcOK {
		ms.Errors.Inc()
	}
	ms.Status(code).Inc()
	ms.Latency.Observe(time.Since(s.start))
}

// isTriple reports a Triple (Dubbo 3) request: one with tri- metadata.
func isTriple(s *stream) bool {
	triple := false
	s.req.Range(func(k, _ string) bool {
		if len(k) > 4 && strings.EqualFold(k[:4], "tri-") {
			triple = true
			return false
		}
		return true
	})
	return triple
}

// routeView is what the route table matches a request on. With RPC
// routing (Triple), a gRPC request is routed like Bolt and Dubbo are: the
// virtual host domain is the service, the path the method, and "version"
// and "group" come from tri-service-version and tri-service-group.
func (c *Config) routeView(s *h2stream) api.HeaderMap {
	if !c.RPCRouting || !s.grpc {
		return &s.req
	}
	svc, m := grpcMethod(s.req.Target)
	return &rpcView{HeaderMap: &s.req, service: svc, method: m}
}

// rpcView shows an HTTP/2 gRPC request with the RPC proxy's routing
// fields; writes go to the request itself.
type rpcView struct {
	api.HeaderMap
	service, method string
}

func (v *rpcView) Get(k string) (string, bool) {
	switch strings.ToLower(k) {
	case ":authority", "host":
		return v.service, true
	case ":path":
		return v.method, true
	case "version":
		if s, ok := v.HeaderMap.Get("version"); ok {
			return s, ok
		}
		return v.HeaderMap.Get("tri-service-version")
	case "group":
		if s, ok := v.HeaderMap.Get("group"); ok {
			return s, ok
		}
		return v.HeaderMap.Get("tri-service-group")
	}
	return v.HeaderMap.Get(k)
}
