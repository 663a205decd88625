package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// M is a JSON/YAML object while building a bootstrap.
type M = map[string]any

// Type URLs used by the configs in these tests.
const (
	hcmType       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	routerType    = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	faultType     = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	mutationType  = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
	tcpProxyType  = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	connLimitType = "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"
	fileLogType   = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
)

// y parses a YAML (or JSON) fragment, so configs can be written in
// Envoy's own YAML flow style and composed as values.
func y(t *testing.T, s string) any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatalf("yaml fragment: %v\n%s", err, s)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatalf("yaml fragment: %v\n%s", err, s)
	}
	return v
}

// ym is y for a fragment that is a map.
func ym(t *testing.T, s string) M {
	t.Helper()
	m, ok := y(t, s).(M)
	if !ok {
		t.Fatalf("yaml fragment is not a map: %s", s)
	}
	return m
}

// hcmConfig describes one HTTP connection manager.
type hcmConfig struct {
	// Routes is a YAML list of routes for one virtual host matching "*".
	Routes string
	// VirtualHosts is a YAML list of virtual hosts; it replaces Routes.
	VirtualHosts string
	// Filters is a YAML list of http filters placed before the router.
	Filters string
	// Extra is a YAML map merged into the HttpConnectionManager.
	Extra string
}

func (h hcmConfig) typedConfig(t *testing.T) M {
	t.Helper()
	vhosts := []any{M{"name": "all", "domains": []any{"*"}, "routes": y(t, h.Routes)}}
	if h.VirtualHosts != "" {
		vhosts = y(t, h.VirtualHosts).([]any)
	}
	var filters []any
	if h.Filters != "" {
		filters = y(t, h.Filters).([]any)
	}
	filters = append(filters, M{"name": "envoy.filters.http.router", "typed_config": M{"@type": routerType}})
	tc := M{
		"@type":        hcmType,
		"stat_prefix":  "ingress",
		"route_config": M{"name": "local", "virtual_hosts": vhosts},
		"http_filters": filters,
	}
	if h.Extra != "" {
		for k, v := range ym(t, h.Extra) {
			tc[k] = v
		}
	}
	return tc
}

// listenerOn wraps network filters into a listener on 127.0.0.1:0.
func listenerOn(name string, filters ...M) M {
	fs := make([]any, len(filters))
	for i, f := range filters {
		fs[i] = f
	}
	return M{
		"name":          name,
		"address":       M{"socket_address": M{"address": "127.0.0.1", "port_value": 0}},
		"filter_chains": []any{M{"filters": fs}},
	}
}

// httpListener is a listener named name with one HTTP connection manager.
func httpListener(t *testing.T, name string, h hcmConfig) M {
	t.Helper()
	return listenerOn(name, M{"name": "envoy.filters.network.http_connection_manager", "typed_config": h.typedConfig(t)})
}

// staticCluster is a STATIC round-robin cluster over 127.0.0.1 ports.
func staticCluster(name string, ports ...int) M {
	eps := make([]any, len(ports))
	for i, p := range ports {
		eps[i] = M{"endpoint": M{"address": M{"socket_address": M{"address": "127.0.0.1", "port_value": p}}}}
	}
	return M{
		"name":            name,
		"type":            "STATIC",
		"connect_timeout": "1s",
		"load_assignment": M{"cluster_name": name, "endpoints": []any{M{"lb_endpoints": eps}}},
	}
}

// with merges a YAML map into a copy of m.
func with(t *testing.T, m M, extra string) M {
	t.Helper()
	out := M{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range ym(t, extra) {
		out[k] = v
	}
	return out
}

// bootstrap renders listeners and clusters as a JSON bootstrap (JSON is
// YAML) with the admin server on a free port.
func bootstrap(t *testing.T, listeners []M, clusters ...M) string {
	t.Helper()
	b := M{
		"admin": M{"address": M{"socket_address": M{"address": "127.0.0.1", "port_value": 0}}},
		"static_resources": M{
			"listeners": listeners,
			"clusters":  clusters,
		},
	}
	j, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// startHTTPProxy starts weft with one HTTP listener "http" and returns it
// with the listener's base URL.
func startHTTPProxy(t *testing.T, h hcmConfig, clusters ...M) (*Weft, string) {
	t.Helper()
	w := startWeft(t, bootstrap(t, []M{httpListener(t, "http", h)}, clusters...))
	return w, "http://" + w.Listener("http")
}

// routeTo is the YAML route list sending every path to cluster.
func routeTo(cluster string) string {
	return fmt.Sprintf(`[{match: {prefix: "/"}, route: {cluster: %s}}]`, cluster)
}

// testUpstream is a real HTTP/1.1 server on loopback that counts the
// connections it accepted and the requests it served.
type testUpstream struct {
	Name  string
	URL   string
	Addr  string
	Port  int
	conns atomic.Int64
	hits  atomic.Int64
	srv   *http.Server
	ln    net.Listener
}

// Conns is how many TCP connections the upstream accepted.
func (u *testUpstream) Conns() int64 { return u.conns.Load() }

// Hits is how many requests reached the handler.
func (u *testUpstream) Hits() int64 { return u.hits.Load() }

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// newUpstream serves h on a fresh loopback port; every response carries
// "X-Upstream: name". opts adjust the server before it starts.
func newUpstream(t *testing.T, name string, h http.Handler, opts ...func(*http.Server)) *testUpstream {
	t.Helper()
	ln := freeListener(t)
	u := &testUpstream{Name: name, Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	u.URL = "http://" + u.Addr
	if h == nil {
		h = echoHandler()
	}
	u.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.hits.Add(1)
			w.Header().Set("X-Upstream", name)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(u.srv)
	}
	go func() { _ = u.srv.Serve(countingListener{ln, &u.conns}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if u.srv.Shutdown(ctx) != nil {
			_ = u.srv.Close()
		}
	})
	return u
}

// echoed is what echoHandler reports about the request it received.
type echoed struct {
	Method           string              `json:"method"`
	Path             string              `json:"path"`
	Host             string              `json:"host"`
	Header           map[string][]string `json:"header"`
	TransferEncoding []string            `json:"transfer_encoding"`
	ContentLength    int64               `json:"content_length"`
	BodyLen          int64               `json:"body_len"`
	BodySHA256       string              `json:"body_sha256"`
}

// echoHandler answers with a JSON description of the request, the body
// reduced to its length and SHA-256.
func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), 500)
			return
		}
		e := echoed{
			Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header,
			TransferEncoding: r.TransferEncoding, ContentLength: r.ContentLength,
			BodyLen: n, BodySHA256: hex.EncodeToString(h.Sum(nil)),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	})
}

// client is an HTTP client with a timeout and its own connections.
func client() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends req and reads the whole response; transport errors are fatal.
func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// get GETs url with extra headers given as "Name: value".
func get(t *testing.T, c *http.Client, url string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	return do(t, c, req)
}

// decodeEcho parses an echoHandler body.
func decodeEcho(t *testing.T, r response) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
		t.Fatalf("not an echo response (status %d): %v\n%s", r.Status, err, r.Body)
	}
	return e
}

// curl runs curl with args and returns stdout and stderr; a non-zero exit
// is fatal.
func curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	stdout, stderr, err := curlErr(t, args...)
	if err != nil {
		t.Fatalf("curl %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

func curlErr(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// randomFile writes n pseudo-random bytes to a temp file and returns its
// path and SHA-256.
func randomFile(t *testing.T, n int) (string, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "body-*")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(newPRNG(uint64(n)), int64(n))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil))
}

// prng is a tiny deterministic byte stream (xorshift64), fast enough for
// multi-megabyte bodies.
type prng struct{ s uint64 }

func newPRNG(seed uint64) *prng { return &prng{s: seed*2654435761 + 88172645463325252} }

func (p *prng) Read(b []byte) (int, error) {
	for i := range b {
		p.s ^= p.s << 13
		p.s ^= p.s >> 7
		p.s ^= p.s << 17
		b[i] = byte(p.s)
	}
	return len(b), nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// waitLogLine polls a file until a line containing every part appears and
// returns that line.
func waitAccessLog(t *testing.T, path string, d time.Duration, parts ...string) string {
	t.Helper()
	var found string
	waitFor(t, d, fmt.Sprintf("a line with %q in %s", parts, path), func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
	lines:
		for sc.Scan() {
			for _, p := range parts {
				if !strings.Contains(sc.Text(), p) {
					continue lines
				}
			}
			found = sc.Text()
			return true
		}
		return false
	})
	return found
}

// gate blocks handlers until released; it counts how many are waiting.
type gate struct {
	ch      chan struct{}
	once    sync.Once
	waiting atomic.Int64
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate opens or d passes.
func (g *gate) wait(d time.Duration) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.ch:
	case <-time.After(d):
	}
}

// metricValue returns the sample of family name whose labels include
// every "k=v" in labels (order free), or -1.
func (w *Weft) metricValue(name string, labels ...string) float64 {
	_, body := w.Admin("/stats/prometheus")
	return promValue(body, name, labels...)
}

func promValue(body, name string, labels ...string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var v float64
		f := strings.Fields(line)
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			return v
		}
	}
	return -1
}

// curlCode runs curl with -w '%{http_code}' appended and returns the body
// and the status code.
func curlCode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, _ := curl(t, append(args, "-w", "\n%{http_code}")...)
	i := strings.LastIndexByte(out, '\n')
	code, err := strconv.Atoi(out[i+1:])
	if err != nil {
		t.Fatalf("curl status %q: %v", out[i+1:], err)
	}
	return out[:i], code
}
