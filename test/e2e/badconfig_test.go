package e2e

// Bad configs: `weft validate` and `weft start` must both refuse them with
// a non-zero exit and an error naming the field path, and must not start
// serving. A few configs are valid but cannot run (a port already taken):
// validate accepts them and start fails clearly.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// bcConfig fills the slots of bcTemplate; zero fields take valid defaults.
type bcConfig struct {
	ListenerPort   string // port_value of the listener
	NetworkFilters string // extra network filters before the HCM, YAML list items
	Match          string // the route's match
	RouteCluster   string // the route's cluster
	HTTPFilters    string // the whole http_filters list
	ExtraListeners string // more listeners, YAML list items
	LbPolicy       string
	EndpointAddr   string // "-" for an empty address
	EndpointPort   string
	HCMType        string // typed_config @type of the HCM filter
}

const bcRouter = `
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`

const bcTemplate = `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: {{.ListenerPort}} } }
    filter_chains:
    - filters:{{.NetworkFilters}}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {{.HCMType}}
          stat_prefix: in
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { {{.Match}} }
                route: { cluster: {{.RouteCluster}} }
          http_filters:{{.HTTPFilters}}{{.ExtraListeners}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    lb_policy: {{.LbPolicy}}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: "{{.EndpointAddr}}", port_value: {{.EndpointPort}} } } }
`

func (c bcConfig) render(t *testing.T) string {
	t.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ListenerPort, "0")
	def(&c.Match, `prefix: "/"`)
	def(&c.RouteCluster, "up")
	def(&c.HTTPFilters, bcRouter)
	def(&c.LbPolicy, "ROUND_ROBIN")
	if c.EndpointAddr == "" {
		c.EndpointAddr = "127.0.0.1"
	} else if c.EndpointAddr == "-" {
		c.EndpointAddr = ""
	}
	def(&c.EndpointPort, "8080")
	def(&c.HCMType, "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
	return render(t, bcTemplate, c)
}

// bcRun runs the weft binary with args until it exits or d passes; a
// process still running at d is killed and reported as not exited.
func bcRun(t *testing.T, d time.Duration, args ...string) (exitCode int, stdout, stderr string, exited bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, weftBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, out.String(), errb.String(), false
	case err == nil:
		return 0, out.String(), errb.String(), true
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String(), true
	}
	t.Fatalf("running weft: %v", err)
	return 0, "", "", false
}

// bcWrite writes cfg to a fresh file and returns its path.
func bcWrite(t *testing.T, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "weft.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bcStartArgs runs start with ports from the config (0) and a log level
// that shows warnings; --admin-address-path tells us if it got as far as
// serving.
func bcStartArgs(t *testing.T, file string) ([]string, string) {
	addrFile := filepath.Join(t.TempDir(), "admin.addr")
	return []string{"start", "-c", file, "--admin-address-path", addrFile, "--log-level", "info"}, addrFile
}

func TestBadConfigRefused(t *testing.T) {
	t.Parallel()
	const pathPrefix = "static_resources.listeners[0].filter_chains[0].filters[0]"
	cases := []struct {
		name  string
		cfg   string
		want  []string // every one must appear in stderr; "a|b" takes either
		clear []string // should appear too; if not, the message is a known weakness (BUG skip)
	}{
		{
			name: "unknown cluster in a route",
			cfg:  bcConfig{RouteCluster: "nope"}.render(t),
			want: []string{pathPrefix + ".typed_config", `unknown cluster "nope"`},
		},
		{
			name: "unknown network filter",
			cfg: bcConfig{NetworkFilters: `
      - name: envoy.filters.network.nope
        typed_config: { "@type": type.googleapis.com/nope.v3.Nope }`}.render(t),
			want: []string{pathPrefix, `unknown network filter "envoy.filters.network.nope"`},
		},
		{
			name: "unknown http filter",
			cfg: bcConfig{HTTPFilters: `
          - name: envoy.filters.http.nope
            typed_config: { "@type": type.googleapis.com/nope.v3.Nope }` + bcRouter}.render(t),
			want: []string{pathPrefix + ".typed_config.http_filters[0]", `unknown http filter "envoy.filters.http.nope"`},
		},
		{
			name: "router filter not last",
			cfg: bcConfig{HTTPFilters: bcRouter + `
          - name: envoy.filters.http.header_mutation
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation }`}.render(t),
			want: []string{pathPrefix + ".typed_config.http_filters[0]", "router filter must be the last"},
		},
		{
			name: "no http filters",
			cfg:  bcConfig{HTTPFilters: " []"}.render(t),
			want: []string{pathPrefix + ".typed_config.http_filters", "envoy.filters.http.router"},
		},
		{
			name: "bad regex in safe_regex",
			cfg:  bcConfig{Match: `safe_regex: { regex: "a(b" }`}.render(t),
			want: []string{"safe_regex", "routes[0]"},
		},
		{
			name: "dynamic_resources with REST and an unknown xDS cluster",
			cfg: bcConfig{}.render(t) + `
node: {id: x}
dynamic_resources:
  ads_config: {api_type: REST, grpc_services: [{envoy_grpc: {cluster_name: nope}}]}
  lds_config: {ads: {}}`,
			want: []string{"dynamic_resources.ads_config.api_type", "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", `unknown cluster "nope"`},
		},
		{
			name: "rds without dynamic_resources",
			cfg: `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          rds: {route_config_name: r, config_source: {ads: {}}}
          http_filters:` + bcRouter,
			want: []string{"static_resources.listeners[0]", `route config "r" needs dynamic_resources`},
		},
		{
			name: "listener port_value 70000",
			cfg:  bcConfig{ListenerPort: "70000"}.render(t),
			want: []string{"static_resources.listeners[0].address.socket_address.port_value"},
		},
		{
			name: "endpoint port_value 70000",
			cfg:  bcConfig{EndpointPort: "70000"}.render(t),
			want: []string{"static_resources.clusters[0]", "port_value"},
		},
		{
			name: "duplicate listener names",
			cfg: bcConfig{ExtraListeners: `
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: up }`}.render(t),
			want: []string{"static_resources.listeners[1].name", `duplicate listener name "in"`},
		},
		{
			name: "empty endpoint address",
			cfg:  bcConfig{EndpointAddr: "-"}.render(t), // "-" renders as ""
			want: []string{"static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"},
		},
		{
			name: "blank endpoint address",
			cfg:  bcConfig{EndpointAddr: " "}.render(t),
			want: []string{`static_resources.clusters[0]|cluster "up"`, "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"},
		},
		{
			name: "invalid YAML",
			cfg:  "static_resources:\n  listeners: [\n  - name: {\n",
			want: []string{"YAML"},
		},
		{
			name:  "unknown field",
			cfg:   strings.Replace(bcConfig{}.render(t), "connect_timeout: 1s", "connect_timeoot: 1s", 1),
			want:  []string{"connect_timeoot"},
			clear: []string{"static_resources.clusters[0]"},
		},
		{
			name:  "network filter typed_config of another filter's type",
			cfg:   bcConfig{HCMType: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}.render(t),
			want:  []string{"http_filters"},
			clear: []string{pathPrefix},
		},
		{
			name: "http filter typed_config of another filter's type",
			cfg: bcConfig{HTTPFilters: `
          - name: envoy.filters.http.fault
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: up }` + bcRouter}.render(t),
			want:  []string{pathPrefix + ".typed_config.http_filters[0]"},
			clear: []string{"TcpProxy"},
		},
		{
			name: "unsupported lb_policy",
			cfg:  bcConfig{LbPolicy: "CLUSTER_PROVIDED"}.render(t),
			want: []string{`static_resources.clusters[0]|cluster "up"`, "lb_policy", "CLUSTER_PROVIDED"},
		},
		{
			name: "listener TLS certificate file missing",
			cfg:  bcTLS(t, bcConfig{}.render(t), `{certificate_chain: {filename: /nonexistent/a.crt}, private_key: {filename: /nonexistent/a.key}}`, ""),
			want: []string{"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename", "no such file"},
		},
		{
			name: "listener TLS key does not match the certificate",
			cfg:  bcTLS(t, bcConfig{}.render(t), bcMismatchedPair(t), ""),
			want: []string{"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]", "private key does not match public key"},
		},
		{
			name: "listener TLS unsupported field",
			cfg:  bcTLS(t, bcConfig{}.render(t), bcMatchedPair(t), "session_timeout: 10s"),
			want: []string{"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.session_timeout", "not supported"},
		},
		{
			name: "listener TLS certificate by SDS",
			cfg: strings.Replace(bcConfig{}.render(t), "    - filters:", `    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {tls_certificate_sds_secret_configs: [{name: server, sds_config: {ads: {}}}]}
      filters:`, 1),
			want: []string{"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]", "sds_config needs dynamic_resources"},
		},
		{
			name: "listener TLS certificate secret not in static_resources.secrets",
			cfg: strings.Replace(bcConfig{}.render(t), "    - filters:", `    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {tls_certificate_sds_secret_configs: [{name: nope}]}
      filters:`, 1),
			want: []string{"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]", `no tls_certificate secret "nope"`},
		},
		{
			name: "static secret with a key that does not match",
			cfg:  bcConfig{}.render(t) + "  secrets:\n  - name: s\n    tls_certificate: " + bcMismatchedPair(t) + "\n",
			want: []string{"static_resources.secrets[0].tls_certificate", "private key does not match public key"},
		},
		{
			name: "upstream TLS renegotiation",
			cfg: strings.Replace(bcConfig{}.render(t), "    connect_timeout: 1s\n", `    connect_timeout: 1s
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, allow_renegotiation: true}
`, 1),
			want: []string{`static_resources.clusters[0]|cluster "up"`, "transport_socket.typed_config.allow_renegotiation", "renegotiation"},
		},
		{
			name:  "bad duration",
			cfg:   strings.Replace(bcConfig{}.render(t), "connect_timeout: 1s", "connect_timeout: soon", 1),
			want:  []string{`"soon"`},
			clear: []string{"static_resources.clusters[0].connect_timeout"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := bcWrite(t, tc.cfg)
			var unclear []string
			for _, cmd := range []string{"validate", "start"} {
				args := []string{"validate", "-c", file}
				addrFile := ""
				if cmd == "start" {
					args, addrFile = bcStartArgs(t, file)
				}
				code, _, stderr, exited := bcRun(t, 10*time.Second, args...)
				if !exited {
					t.Errorf("%s: still running after 10s; it accepted the config", cmd)
					continue
				}
				if code == 0 {
					t.Errorf("%s: exit code 0; stderr:\n%s", cmd, stderr)
				}
				for _, w := range tc.want {
					if !bcContains(stderr, w) {
						t.Errorf("%s: stderr lacks %q:\n%s", cmd, w, stderr)
					}
				}
				for _, w := range tc.clear {
					if !strings.Contains(stderr, w) {
						unclear = append(unclear, fmt.Sprintf("%s: stderr lacks %q: %s", cmd, w, strings.TrimSpace(stderr)))
					}
				}
				if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
					t.Errorf("%s: crashed:\n%s", cmd, stderr)
				}
				if addrFile != "" {
					if _, err := os.Stat(addrFile); err == nil {
						t.Errorf("start: got as far as serving (admin address written)")
					}
				}
			}
			if len(unclear) > 0 && !t.Failed() {
				t.Skipf("BUG: refused, but the error does not say where:\n%s", strings.Join(unclear, "\n"))
			}
		})
	}
}

// bcContains reports whether s contains one of the "|"-separated
// alternatives of want.
func bcContains(s, want string) bool {
	for _, w := range strings.Split(want, "|") {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func TestBadConfigOptionalHTTPFilterAccepted(t *testing.T) {
	t.Parallel()
	cfg := bcConfig{HTTPFilters: `
          - name: envoy.filters.http.nope
            is_optional: true
            typed_config: { "@type": type.googleapis.com/nope.v3.Nope }` + bcRouter}.render(t)
	file := bcWrite(t, cfg)
	code, stdout, stderr, exited := bcRun(t, 10*time.Second, "validate", "-c", file)
	if !exited || code != 0 {
		t.Fatalf("validate: exit %d (exited %v)\nstdout: %s\nstderr: %s", code, exited, stdout, stderr)
	}
	if !strings.Contains(stderr, "warning:") || !strings.Contains(stderr, "envoy.filters.http.nope") {
		t.Errorf("validate accepted the optional filter without a warning naming it:\n%s", stderr)
	}
	w := startWeft(t, cfg)
	waitFor(t, 5*time.Second, "a warning about the skipped filter", func() bool {
		out := w.Output()
		return strings.Contains(out, "level=WARN") && strings.Contains(out, "envoy.filters.http.nope")
	})
	biAlive(t, w)
}

func TestBadConfigListenerPortInUse(t *testing.T) {
	t.Parallel()
	taken := freeListener(t)
	port := fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)
	file := bcWrite(t, bcConfig{ListenerPort: port}.render(t))

	code, _, stderr, exited := bcRun(t, 10*time.Second, "validate", "-c", file)
	if !exited || code != 0 {
		t.Errorf("validate: exit %d (exited %v); the file is valid, only the port is busy\n%s", code, exited, stderr)
	}
	args, addrFile := bcStartArgs(t, file)
	code, _, stderr, exited = bcRun(t, 10*time.Second, args...)
	if !exited {
		t.Fatalf("start: still running after 10s with its listener port taken")
	}
	if code == 0 {
		t.Errorf("start: exit code 0 with its listener port taken")
	}
	for _, w := range []string{`listener "in"`, "127.0.0.1:" + port, "address already in use"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("start: stderr lacks %q:\n%s", w, stderr)
		}
	}
	if _, err := os.Stat(addrFile); err == nil {
		t.Errorf("start: wrote the admin address although it cannot serve")
	}
}

func TestBadConfigMissingFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{
		{"validate", "-c", missing},
		{"start", "-c", missing},
		{"start"}, // no -c at all
	} {
		code, _, stderr, exited := bcRun(t, 10*time.Second, args...)
		if !exited || code == 0 {
			t.Errorf("%v: exit %d (exited %v), want a failure", args, code, exited)
			continue
		}
		want := missing
		if len(args) == 1 {
			want = "config"
		}
		if !strings.Contains(stderr, want) {
			t.Errorf("%v: stderr does not name %q:\n%s", args, want, stderr)
		}
		if len(args) > 1 && !strings.Contains(stderr, "no such file") {
			t.Errorf("%v: stderr does not say the file is missing:\n%s", args, stderr)
		}
	}
}

// bcTLS puts a DownstreamTlsContext with the given tls_certificates entry
// (and extra fields) on the first filter chain of a rendered config.
func bcTLS(t *testing.T, cfg, cert, extra string) string {
	t.Helper()
	if extra != "" {
		extra = ", " + extra
	}
	return strings.Replace(cfg, "    - filters:", fmt.Sprintf(`    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: {tls_certificates: [%s]}%s}
      filters:`, cert, extra), 1)
}

// bcMatchedPair is a tls_certificates entry with a good certificate and
// key written to files.
func bcMatchedPair(t *testing.T) string {
	crt, key := tlstest.NewCA("ca").Leaf("a.example.com").WriteFiles(t.TempDir(), "a")
	return fmt.Sprintf("{certificate_chain: {filename: %q}, private_key: {filename: %q}}", crt, key)
}

// bcMismatchedPair is a tls_certificates entry whose key belongs to
// another certificate.
func bcMismatchedPair(t *testing.T) string {
	ca := tlstest.NewCA("ca")
	dir := t.TempDir()
	crt, _ := ca.Leaf("a.example.com").WriteFiles(dir, "a")
	_, key := ca.Leaf("b.example.com").WriteFiles(dir, "b")
	return fmt.Sprintf("{certificate_chain: {filename: %q}, private_key: {filename: %q}}", crt, key)
}
