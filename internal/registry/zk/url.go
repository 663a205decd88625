package zk

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/registry"
)

// Dubbo keeps one znode per provider, named after the provider's URL:
//
//	/<root>/<encoded interface>/providers/<encoded URL>
//
// where "encoded" is Java's URLEncoder.encode(s, "UTF-8") (Dubbo's
// URL.encode). The URL itself is Dubbo's URL.toFullString():
//
//	dubbo://10.0.0.1:20880/com.foo.EchoService?application=demo&interface=com.foo.EchoService&side=provider&version=1.0.0
//
// with the parameter values written as they are (Dubbo does not escape
// them: "methods=echo,ping"), so a Dubbo consumer, which decodes the node
// name once and splits the query on '&' and the first '=', reads them back
// unchanged.

// pathParam is the metadata key that carries the URL path when it is not
// the service name (Dubbo allows a path such as "ctx/com.foo.EchoService").
const pathParam = "path"

// dubboEncode escapes s as java.net.URLEncoder.encode(s, "UTF-8") does:
// letters, digits and ".-*_" stay, a space becomes '+', every other byte
// becomes %XX. It names both the service directory and the provider nodes,
// so a node written here has the name Dubbo would give it.
func dubboEncode(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '-', c == '*', c == '_':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// escapeURLPart escapes, inside the URL, only the bytes that would change
// how the URL splits (and '%', so that unescaping gives the value back).
// Everything else is written as is, as Dubbo does.
func escapeURLPart(s, special string) string {
	if !strings.ContainsAny(s, special) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			fmt.Fprintf(&b, "%%%02X", s[i])
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// unescapeURLPart undoes escapeURLPart, and leaves a part that is not
// validly escaped (a Dubbo application's raw value with a stray '%') as is.
// '+' stays a '+': Dubbo reads it literally.
func unescapeURLPart(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

const (
	keySpecial   = "%&="
	valueSpecial = "%&"
	pathSpecial  = "%?"
)

// providerURL is the Dubbo URL of inst: its metadata as parameters, plus
// what Dubbo's consumers expect of a provider (interface, side,
// application, timestamp, anyhost) where the metadata does not say,
// parameters sorted by key.
func providerURL(inst registry.Instance, application, timestamp string) string {
	params := make(map[string]string, len(inst.Metadata)+5)
	path := inst.Service
	for k, v := range inst.Metadata {
		switch {
		case k == "":
		case k == pathParam:
			if v != "" {
				path = strings.TrimPrefix(v, "/")
			}
		default:
			params[k] = v
		}
	}
	for _, d := range [...][2]string{
		{"interface", inst.Service},
		{"side", "provider"},
		{"application", application},
		{"timestamp", timestamp},
		{"anyhost", "false"},
	} {
		if _, ok := params[d[0]]; !ok {
			params[d[0]] = d[1]
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var b strings.Builder
	b.WriteString(inst.Protocol)
	b.WriteString("://")
	b.WriteString(inst.Address)
	b.WriteByte('/')
	b.WriteString(escapeURLPart(path, pathSpecial))
	for i, k := range keys {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(escapeURLPart(k, keySpecial))
		b.WriteByte('=')
		b.WriteString(escapeURLPart(params[k], valueSpecial))
	}
	return b.String()
}

// parseProviderURL reads a provider URL (decoded node name) the way a
// Dubbo consumer does, into an Instance of service.
func parseProviderURL(service, s string) (registry.Instance, error) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return registry.Instance{}, errors.New("no scheme")
	}
	scheme, rest := s[:i], s[i+3:]
	if strings.ContainsAny(scheme, ":/ ?&=") {
		return registry.Instance{}, fmt.Errorf("bad scheme %q", scheme)
	}
	var query, path string
	if j := strings.IndexByte(rest, '?'); j >= 0 {
		rest, query = rest[:j], rest[j+1:]
	}
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest, path = rest[:j], rest[j+1:]
	}
	if j := strings.LastIndexByte(rest, '@'); j >= 0 { // user:password@
		rest = rest[j+1:]
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return registry.Instance{}, fmt.Errorf("bad host:port %q", rest)
	}
	if host == "" || strings.ContainsAny(host, " \t/") {
		return registry.Instance{}, fmt.Errorf("bad host %q", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return registry.Instance{}, fmt.Errorf("bad port %q", port)
	}
	md := make(map[string]string)
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			v = k // Dubbo reads a lone "key" as key=key
		}
		if k = unescapeURLPart(k); k != "" {
			md[k] = unescapeURLPart(v)
		}
	}
	if path = unescapeURLPart(path); path != "" && path != service {
		md[pathParam] = path
	}
	return registry.Instance{
		Service:  service,
		Address:  net.JoinHostPort(host, port),
		Protocol: scheme,
		Metadata: md,
	}, nil
}

// decodeNode reads the provider node named name (an encoded URL).
func decodeNode(service, name string) (registry.Instance, error) {
	s, err := url.QueryUnescape(name)
	if err != nil {
		return registry.Instance{}, err
	}
	return parseProviderURL(service, s)
}
