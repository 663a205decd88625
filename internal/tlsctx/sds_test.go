package tlsctx

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

func certSecret(l tlstest.Leaf) *tlsv3.Secret {
	return &tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(l.CertPEM), PrivateKey: inline(l.KeyPEM)}}}
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// TestSDSSources: sds_config is taken over ADS (or self) only, and only
// with an SDS provider; anything else is refused by name.
func TestSDSSources(t *testing.T) {
	const p = "ts.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]"
	for _, tc := range []struct {
		name string
		src  *corev3.ConfigSource
		o    Options
		want string // "" accepts
	}{
		{"ads", ads(), Options{SDS: NewSDS()}, ""},
		{"self", &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}, Options{SDS: NewSDS()}, ""},
		{"path", &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}, Options{SDS: NewSDS()}, p + ".sds_config: path is not supported"},
		{"api_config_source", &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{}}}, Options{SDS: NewSDS()}, p + ".sds_config: api_config_source is not supported"},
		{"no xds", ads(), Options{}, p + ".sds_config: sds_config needs dynamic_resources"},
	} {
		dc := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "c", SdsConfig: tc.src}}}}
		_, err := Server(socket(t, dc), "ts", tc.o)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestSDSRotation: a server config built before its secret fails the
// handshake until the secret arrives, then serves each new handshake the
// current version; a bad version is refused by name and the last good one
// keeps serving.
func TestSDSRotation(t *testing.T) {
	ca := tlstest.NewCA("ca")
	v1, v2 := ca.Leaf("a.example.com"), ca.Leaf("a.example.com")
	sds := NewSDS()
	dc := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "c", SdsConfig: ads()}}}}
	cfg, err := Server(socket(t, dc), "ts", Options{SDS: sds})
	if err != nil {
		t.Fatal(err)
	}
	if got := SDSNames(socket(t, dc)); len(got) != 1 || got[0] != "c" {
		t.Fatalf("SDSNames = %v", got)
	}
	leaf := func() (*tls.Certificate, error) {
		c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "a.example.com"})
		if err != nil {
			return nil, err
		}
		return &c.Certificates[0], nil
	}
	if _, err := leaf(); err == nil || !strings.Contains(err.Error(), `"c" not received`) {
		t.Fatalf("before the secret: %v", err)
	}
	if got := sds.Missing([]string{"c"}); len(got) != 1 {
		t.Fatalf("Missing = %v", got)
	}
	ch := sds.Changed()
	if err := sds.Update(map[string]*tlsv3.Secret{"c": certSecret(v1)}); err != nil {
		t.Fatal(err)
	}
	<-ch
	if c, err := leaf(); err != nil || string(c.Certificate[0]) != string(v1.TLS().Certificate[0]) {
		t.Fatalf("v1: %v", err)
	}
	if err := sds.Update(map[string]*tlsv3.Secret{"c": certSecret(v2)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := leaf(); string(c.Certificate[0]) != string(v2.TLS().Certificate[0]) {
		t.Fatal("v2 not served after rotation")
	}
	bad := certSecret(v2)
	bad.GetTlsCertificate().PrivateKey = inline(v1.KeyPEM)
	if err := sds.Update(map[string]*tlsv3.Secret{"c": bad}); err == nil || !strings.Contains(err.Error(), `secret "c"`) {
		t.Fatalf("bad secret: %v", err)
	}
	if c, _ := leaf(); string(c.Certificate[0]) != string(v2.TLS().Certificate[0]) {
		t.Fatal("the last good version does not serve after a bad one")
	}
	if err := sds.Update(map[string]*tlsv3.Secret{"c": {Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: file("/etc/passwd"), PrivateKey: inline(v1.KeyPEM)}}}}); err == nil || !strings.Contains(err.Error(), "inline") {
		t.Fatalf("a file in an SDS secret: %v", err)
	}
	if err := sds.Update(nil); err != nil || len(sds.Names()) != 0 {
		t.Fatalf("removal: %v %v", err, sds.Names())
	}
}

// TestSDSClient: an upstream context takes its client certificate and CA
// at each handshake; a missing CA fails verification by name.
func TestSDSClient(t *testing.T) {
	ca := tlstest.NewCA("ca")
	sds := NewSDS()
	uc := &tlsv3.UpstreamTlsContext{Sni: "up.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "client", SdsConfig: ads()}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca", SdsConfig: ads()}},
	}}
	cfg, warns, err := Client(socket(t, uc), "ts", Options{SDS: sds})
	if err != nil || len(warns) != 0 {
		t.Fatalf("%v %v", warns, err)
	}
	up := ca.Leaf("up.example.com").TLS()
	leaf, err := x509Leaf(up)
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: leaf}
	if err := cfg.VerifyConnection(cs); err == nil || !strings.Contains(err.Error(), `"ca" not received`) {
		t.Fatalf("before the CA: %v", err)
	}
	if _, err := cfg.GetClientCertificate(nil); err == nil {
		t.Fatal("a client certificate before it arrived")
	}
	caSec := &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.CertPEM)}}}
	if err := sds.Update(map[string]*tlsv3.Secret{"ca": caSec, "client": certSecret(ca.Leaf("weft"))}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.VerifyConnection(cs); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if c, err := cfg.GetClientCertificate(nil); err != nil || c == nil {
		t.Fatalf("client certificate: %v", err)
	}
	other, _ := x509Leaf(ca.Leaf("other.example.com").TLS())
	if err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: other}); err == nil {
		t.Fatal("a certificate for another name passed the sni check")
	}
}

func x509Leaf(c tls.Certificate) ([]*x509.Certificate, error) {
	l, err := x509.ParseCertificate(c.Certificate[0])
	return []*x509.Certificate{l}, err
}
