package e2e

// SDS over ADS: listener and cluster certificates and CAs from the xDS
// server, rotated without a config change; a bad secret is NACKed and the
// previous version keeps serving.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
}

func tlsSocket(t *testing.T, m proto.Message) *corev3.TransportSocket {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func inlineDS(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func certSecret(name string, l tlstest.Leaf) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineDS(l.CertPEM), PrivateKey: inlineDS(l.KeyPEM)}}}
}

func caSecret(name string, ca *tlstest.CA) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inlineDS(ca.CertPEM)}}}
}

func leafSerial(t *testing.T, l tlstest.Leaf) string {
	t.Helper()
	b, _ := pem.Decode(l.CertPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestXDSSDSListener: a listener's server certificate comes over SDS. It
// warms until the secret arrives, serves it, a rotated secret serves new
// connections while an open keep-alive connection goes on with the old
// one, and a bad secret is NACKed by name with the last good one serving.
func TestXDSSDSListener(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA("sds ca")
	v1, v2 := ca.Leaf("a.example.com"), ca.Leaf("a.example.com")
	up := namedUpstream(t, "a")
	m := startMgmt(t)
	addr := freeAddr(t)
	ln := xdsHTTPListener(t, "https", addr, "routes", "https")
	ln.FilterChains[0].TransportSocket = tlsSocket(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("server-cert")},
		AlpnProtocols:                  []string{"http/1.1"},
	}})
	base := []types.Resource{xdsEDSCluster("backend"), xdsEndpoints("backend", up.Port), xdsRoutes("routes", "v1", map[string]uint32{"backend": 1}),
		xdsHTTPListener(t, "http", freeAddr(t), "routes", "http")}
	with := func(extra ...types.Resource) map[resourcev3.Type][]types.Resource {
		return snapshot(append(append([]types.Resource(nil), base...), append([]types.Resource{ln}, extra...)...)...)
	}
	dialCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com", NextProtos: []string{"http/1.1"}}
	// serial dials a new connection and returns the server's certificate
	// serial, or the handshake error.
	serial := func() (string, error) {
		d := &net.Dialer{Timeout: time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, dialCfg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	// Start without the TLS listener (startup waits for what the first
	// config names), then add it before its secret.
	m.set("0", snapshot(base...))
	w := startWeft(t, xdsBootstrap(m, false))
	m.set("1", with())
	m.waitAck("1", resourcev3.ListenerType)
	// The listener warms: no certificate yet, so no handshake succeeds.
	if s, err := serial(); err == nil {
		t.Fatalf("handshake before the secret arrived: served serial %s", s)
	}
	m.set("2", with(certSecret("server-cert", v1)))
	waitFor(t, 15*time.Second, "the SDS certificate serving", func() bool {
		s, err := serial()
		return err == nil && s == leafSerial(t, v1)
	})
	m.waitAck("2", resourcev3.SecretType)
	// A keep-alive connection opened on v1.
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: dialCfg.Clone(), MaxIdleConnsPerHost: 1}}
	t.Cleanup(keep.CloseIdleConnections)
	kget := func() (*http.Response, string) {
		t.Helper()
		r, err := keep.Get("https://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body) // drained: the connection is reused
		return r, string(b)
	}
	if r, _ := kget(); r.StatusCode != 200 || r.TLS.PeerCertificates[0].SerialNumber.String() != leafSerial(t, v1) {
		t.Fatalf("keep-alive on v1: %d", r.StatusCode)
	}
	// Rotation: new connections get v2 at once; the open one is untouched.
	m.set("3", with(certSecret("server-cert", v2)))
	waitFor(t, 15*time.Second, "the rotated certificate serving", func() bool {
		s, err := serial()
		return err == nil && s == leafSerial(t, v2)
	})
	if r, _ := kget(); r.StatusCode != 200 || r.TLS.PeerCertificates[0].SerialNumber.String() != leafSerial(t, v1) {
		t.Fatalf("the keep-alive connection after rotation: %d, want 200 on the v1 connection", r.StatusCode)
	}
	// A secret whose key does not match its certificate: NACKed by name,
	// v2 keeps serving.
	bad := certSecret("server-cert", v2)
	bad.GetTlsCertificate().PrivateKey = inlineDS(ca.Leaf("x").KeyPEM)
	m.set("4", with(bad))
	waitFor(t, 15*time.Second, "a NACK of the bad secret", func() bool {
		for _, n := range m.nackList() {
			if n.TypeURL == resourcev3.SecretType && strings.Contains(n.Detail, `"server-cert"`) {
				return true
			}
		}
		return false
	})
	if s, err := serial(); err != nil || s != leafSerial(t, v2) {
		t.Fatalf("after the bad secret: serial %s, %v; want v2 still serving", s, err)
	}
	dump := configDumpXDS(t, w)
	if !strings.Contains(dump, "server-cert") || strings.Contains(dump, "PRIVATE KEY") || strings.Contains(dump, "BEGIN CERTIFICATE") {
		t.Errorf("/config_dump: want the secret's name only:\n%s", dump)
	}
}

// TestXDSSDSCluster: a cluster verifies its TLS upstream with a CA from
// SDS: 503 until the CA arrives, then served.
func TestXDSSDSCluster(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA("upstream ca")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "tls-up")
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Leaf("up.example.com").TLS()}}
	up.StartTLS()
	t.Cleanup(up.Close)
	m := startMgmt(t)
	addr := freeAddr(t)
	cl := xdsEDSCluster("backend")
	cl.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "up.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sdsRef("upstream-ca")},
	}})
	res := []types.Resource{cl, xdsEndpoints("backend", up.Listener.Addr().(*net.TCPAddr).Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "v1", map[string]uint32{"backend": 1})}
	// Start with the cluster in plain TCP (startup waits for what the
	// first config names), then switch it to TLS before its CA arrives.
	m.set("0", snapshot(append([]types.Resource{xdsEDSCluster("backend")}, res[1:]...)...))
	startWeft(t, xdsBootstrap(m, false))
	m.set("1", snapshot(res...))
	m.waitAck("1", resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType)
	waitFor(t, 15*time.Second, "routes served", func() bool { return get(t, client(), "http://"+addr+"/").Status != 404 })
	if r := get(t, client(), "http://"+addr+"/"); r.Status != 503 {
		t.Fatalf("before the CA arrived: %d %q, want 503", r.Status, r.Body)
	}
	m.set("2", snapshot(append(res, caSecret("upstream-ca", ca))...))
	waitFor(t, 15*time.Second, "the upstream verified with the SDS CA", func() bool {
		r := get(t, client(), "http://"+addr+"/")
		return r.Status == 200 && r.Body == "tls-up"
	})
	// A rotated CA is taken (it applies to new upstream connections).
	m.set("3", snapshot(append(res, caSecret("upstream-ca", tlstest.NewCA("other")))...))
	m.waitAck("3", resourcev3.SecretType)
	if n := m.nackList(); len(n) > 0 {
		t.Fatalf("NACKs: %+v", n)
	}
}
