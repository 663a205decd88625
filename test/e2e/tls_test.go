package e2e

// TLS: termination on listeners (SNI chain choice through the TLS
// inspector, a plaintext chain on the same port, mutual TLS) and
// origination to TLS upstreams, with certificates made in the test.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
	"github.com/weftmesh/weft/test/rpcpeer"
)

const (
	tlsSocketName = "envoy.transport_sockets.tls"
	downTLSType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	upTLSType     = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)

// serverSocket is a listener transport_socket serving leaf (files under
// dir); caFile non-empty requires client certificates signed by it.
func serverSocket(dir, name string, leaf tlstest.Leaf, caFile string) M {
	crt, key := leaf.WriteFiles(dir, name)
	common := M{"tls_certificates": []any{M{"certificate_chain": M{"filename": crt}, "private_key": M{"filename": key}}},
		"alpn_protocols": []any{"http/1.1"}}
	tc := M{"@type": downTLSType, "common_tls_context": common}
	if caFile != "" {
		common["validation_context"] = M{"trusted_ca": M{"filename": caFile}}
		tc["require_client_certificate"] = true
	}
	return M{"name": tlsSocketName, "typed_config": tc}
}

// hcmTo is an HTTP connection manager filter routing everything to cluster.
func hcmTo(t *testing.T, cluster string) M {
	return M{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcmConfig{Routes: routeTo(cluster)}.typedConfig(t)}
}

func TestTLSListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA("weft test ca")
	caFile := ca.WriteFile(dir, "ca")
	ua, ub := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
	chain := func(match M, ts M, cluster string) M {
		c := M{"filter_chain_match": match, "filters": []any{hcmTo(t, cluster)}}
		if ts != nil {
			c["transport_socket"] = ts
		}
		return c
	}
	ln := M{
		"name":                     "tls",
		"address":                  M{"socket_address": M{"address": "127.0.0.1", "port_value": 0}},
		"listener_filters":         []any{M{"name": "envoy.filters.listener.tls_inspector"}},
		"listener_filters_timeout": "1s",
		"filter_chains": []any{
			chain(M{"server_names": []any{"a.example.com"}}, serverSocket(dir, "a", ca.Leaf("a.example.com"), ""), "a"),
			chain(M{"server_names": []any{"*.b.example.com"}}, serverSocket(dir, "b", ca.Leaf("*.b.example.com"), ""), "b"),
			chain(M{"server_names": []any{"m.example.com"}}, serverSocket(dir, "m", ca.Leaf("m.example.com"), caFile), "a"),
			chain(M{"transport_protocol": "raw_buffer"}, nil, "b"),
		},
	}
	w := startWeft(t, bootstrap(t, []M{ln}, staticCluster("a", ua.Port), staticCluster("b", ub.Port)))
	addr := w.Listener("tls")
	_, port, _ := net.SplitHostPort(addr)

	// curl: TLS termination to a plain upstream, verified against the CA.
	for host, want := range map[string]string{"a.example.com": "a", "x.b.example.com": "b"} {
		out, _ := curl(t, "-i", "--cacert", caFile, "--resolve", host+":"+port+":127.0.0.1", "https://"+host+":"+port+"/")
		if !strings.Contains(out, "200 OK") || !strings.Contains(strings.ToLower(out), "x-upstream: "+want) {
			t.Errorf("curl https://%s: want upstream %s:\n%s", host, want, out)
		}
	}
	// Plaintext on the same port takes the raw_buffer chain.
	if out, _ := curl(t, "-i", "http://"+addr+"/"); !strings.Contains(strings.ToLower(out), "x-upstream: b") {
		t.Errorf("plaintext: want upstream b:\n%s", out)
	}
	// Go clients: SNI chooses, keep-alive works over TLS.
	goClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs},
		}}
	}
	get := func(c *http.Client, host string) (string, error) {
		req, _ := http.NewRequest("GET", "https://"+host+":"+port+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("X-Upstream"), nil
	}
	c := goClient()
	for i := 0; i < 3; i++ {
		if up, err := get(c, "y.b.example.com"); err != nil || up != "b" {
			t.Fatalf("Go client y.b.example.com: %q %v", up, err)
		}
	}
	// Mutual TLS: no client certificate -> refused and counted; a client
	// certificate from the CA works.
	before := w.metricValue("weft_listener_ssl_connection_error_total", "listener=tls")
	if _, err := get(goClient(), "m.example.com"); err == nil {
		t.Error("mTLS chain served a client without a certificate")
	}
	if up, err := get(goClient(ca.Leaf("client").TLS()), "m.example.com"); err != nil || up != "a" {
		t.Errorf("mTLS with a client certificate: %q %v", up, err)
	}
	waitFor(t, 5*time.Second, "ssl_connection_error to count the refused client", func() bool {
		return w.metricValue("weft_listener_ssl_connection_error_total", "listener=tls") > before
	})
	if n := w.metricValue("weft_listener_ssl_handshake_total", "listener=tls"); n < 4 {
		t.Errorf("ssl_handshake = %v, want >= 4", n)
	}
	// A client that sends nothing is closed at listener_filters_timeout;
	// one that sends garbage shaped like TLS is closed at once.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	_, _ = garbage.Write([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00})
	for name, bad := range map[string]net.Conn{"silent": silent, "garbage": garbage} {
		_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		n, err := bad.Read(make([]byte, 1))
		if n != 0 || err == nil || isTimeoutErr(err) {
			t.Errorf("%s client: read %d, %v after %v; want closed", name, n, err, time.Since(start))
		}
	}
	if up, err := get(goClient(), "a.example.com"); err != nil || up != "a" {
		t.Errorf("after bad clients: %q %v", up, err)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestTLSOrigination(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, other := tlstest.NewCA("upstream ca"), tlstest.NewCA("other ca")
	caFile, otherFile := ca.WriteFile(dir, "ca"), other.WriteFile(dir, "other")
	clientCrt, clientKey := ca.Leaf("weft").WriteFiles(dir, "client")
	// A TLS upstream that requires a client certificate from the CA.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "tls")
		fmt.Fprintf(w, "sni=%s client=%d", r.TLS.ServerName, len(r.TLS.PeerCertificates))
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Leaf("up.example.com").TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	up.StartTLS()
	t.Cleanup(up.Close)
	port := up.Listener.Addr().(*net.TCPAddr).Port
	upstreamTLS := func(trusted string) M {
		return M{"name": tlsSocketName, "typed_config": M{"@type": upTLSType, "sni": "up.example.com",
			"common_tls_context": M{
				"tls_certificates":   []any{M{"certificate_chain": M{"filename": clientCrt}, "private_key": M{"filename": clientKey}}},
				"validation_context": M{"trusted_ca": M{"filename": trusted}},
			}}}
	}
	good := staticCluster("good", port)
	good["transport_socket"] = upstreamTLS(caFile)
	bad := staticCluster("wrongca", port)
	bad["transport_socket"] = upstreamTLS(otherFile)
	logFile := filepath.Join(dir, "access.log")
	h := hcmConfig{Routes: `
- match: {prefix: "/good"}
  route: {cluster: good}
- match: {prefix: "/bad"}
  route: {cluster: wrongca}`, Extra: fmt.Sprintf(`
access_log:
- name: envoy.access_loggers.file
  typed_config: {"@type": %s, path: %q, log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%UPSTREAM_TRANSPORT_FAILURE_REASON%%\n"}}}
`, fileLogType, logFile)}
	_, base := startHTTPProxy(t, h, good, bad)
	for i := 0; i < 3; i++ { // the pooled TLS connection is reused
		body, code := curlCode(t, base+"/good")
		if code != 200 || body != "sni=up.example.com client=1" {
			t.Fatalf("/good: %d %q", code, body)
		}
	}
	if _, code := curlCode(t, base+"/bad"); code != 503 {
		t.Fatalf("/bad: %d, want 503", code)
	}
	line := waitAccessLog(t, logFile, 5*time.Second, "/bad 503")
	if !strings.Contains(line, "UF") || !strings.Contains(line, "certificate signed by unknown authority") {
		t.Errorf("access log for a wrong CA: %q; want UF and the cause", line)
	}
}

// TestTLSRPC: Bolt and Dubbo through a TLS listener whose rpc_proxy takes
// both, so the protocol is detected from the decrypted bytes.
func TestTLSRPC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA("rpc ca")
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			srv := rpcServe(t, p, "up", 0)
			ln := listenerOn("rpc", rpcConfig{Protocols: []string{"bolt", "dubbo"}}.filter(t))
			ln["filter_chains"].([]any)[0].(M)["transport_socket"] = serverSocket(dir, "rpc-"+string(p), ca.Leaf("rpc.example.com"), "")
			w := startWeft(t, bootstrap(t, []M{ln}, staticCluster("up", portOf(t, srv.Addr()))))
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.Listener("rpc"),
				&tls.Config{ServerName: "rpc.example.com", RootCAs: ca.Pool()})
			if err != nil {
				t.Fatal(err)
			}
			c, err := rpcpeer.NewClient(p, conn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			for i := 0; i < 3; i++ {
				resp := rpcCall(t, c, echoReq(fmt.Sprint("hello ", i)))
				if resp.Status != okStatus(p) {
					t.Fatalf("call %d: status %d", i, resp.Status)
				}
			}
		})
	}
}

// TestTLSStaticSecrets: a listener and a cluster take their certificates
// and CAs by name from static_resources.secrets (SDS names without
// sds_config), for mutual TLS on both sides.
func TestTLSStaticSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA("secrets ca")
	caFile := ca.WriteFile(dir, "ca")
	srvCrt, srvKey := ca.Leaf("a.example.com").WriteFiles(dir, "server")
	cliCrt, cliKey := ca.Leaf("weft").WriteFiles(dir, "client")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client=%d", len(r.TLS.PeerCertificates))
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Leaf("up.example.com").TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	up.StartTLS()
	t.Cleanup(up.Close)
	named := func(cert string) M {
		return M{"tls_certificate_sds_secret_configs": []any{M{"name": cert}},
			"validation_context_sds_secret_config": M{"name": "ca"}}
	}
	cl := staticCluster("up", up.Listener.Addr().(*net.TCPAddr).Port)
	cl["transport_socket"] = M{"name": tlsSocketName, "typed_config": M{"@type": upTLSType, "sni": "up.example.com", "common_tls_context": named("client")}}
	ln := httpListener(t, "https", hcmConfig{Routes: routeTo("up")})
	ln["filter_chains"].([]any)[0].(M)["transport_socket"] = M{"name": tlsSocketName, "typed_config": M{
		"@type": downTLSType, "require_client_certificate": true, "common_tls_context": named("server")}}
	pair := func(name, crt, key string) M {
		return M{"name": name, "tls_certificate": M{"certificate_chain": M{"filename": crt}, "private_key": M{"filename": key}}}
	}
	b := M{
		"admin": M{"address": M{"socket_address": M{"address": "127.0.0.1", "port_value": 0}}},
		"static_resources": M{
			"listeners": []any{ln},
			"clusters":  []any{cl},
			"secrets": []any{pair("server", srvCrt, srvKey), pair("client", cliCrt, cliKey),
				M{"name": "ca", "validation_context": M{"trusted_ca": M{"filename": caFile}}}},
		},
	}
	j, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	w := startWeft(t, string(j))
	_, port, _ := net.SplitHostPort(w.Listener("https"))
	// curl with a client certificate: both hops are mutual TLS.
	body, code := curlCode(t, "--cacert", caFile, "--cert", cliCrt, "--key", cliKey,
		"--resolve", "a.example.com:"+port+":127.0.0.1", "https://a.example.com:"+port+"/")
	if code != 200 || body != "client=1" {
		t.Fatalf("mTLS through static secrets: %d %q", code, body)
	}
	// Without a client certificate the listener refuses the handshake.
	if _, _, err := curlErr(t, "--cacert", caFile, "--resolve", "a.example.com:"+port+":127.0.0.1", "https://a.example.com:"+port+"/"); err == nil {
		t.Error("curl without a client certificate was served")
	}
}
