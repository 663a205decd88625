package tlsctx

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

func socket(t *testing.T, m proto.Message) *corev3.TransportSocket {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{Name: Name, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func file(name string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: name}}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(b)}}
}

func TestServer(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA("ca")
	leaf, other := ca.Leaf("a.example.com"), ca.Leaf("b.example.com")
	crt, key := leaf.WriteFiles(dir, "a")
	caFile := ca.WriteFile(dir, "ca")
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	good := func() *tlsv3.DownstreamTlsContext {
		return &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(crt), PrivateKey: file(key)}},
		}}
	}
	const p = "ts.typed_config.common_tls_context"
	cases := []struct {
		name    string
		edit    func(*tlsv3.DownstreamTlsContext)
		wantErr string // "" accepts
		check   func(*tls.Config) bool
	}{
		{"files", func(*tlsv3.DownstreamTlsContext) {}, "", func(c *tls.Config) bool {
			return len(c.Certificates) == 1 && c.ClientAuth == tls.NoClientCert && c.MinVersion == tls.VersionTLS12
		}},
		{"inline", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsCertificates[0] = &tlsv3.TlsCertificate{CertificateChain: inline(leaf.CertPEM), PrivateKey: inline(leaf.KeyPEM)}
		}, "", nil},
		{"mtls", func(d *tlsv3.DownstreamTlsContext) {
			d.RequireClientCertificate = wrapperspb.Bool(true)
			d.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(caFile)}}
			d.CommonTlsContext.AlpnProtocols = []string{"http/1.1"}
			d.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3}
		}, "", func(c *tls.Config) bool {
			return c.ClientAuth == tls.RequireAndVerifyClientCert && c.ClientCAs != nil && c.NextProtos[0] == "http/1.1" && c.MinVersion == tls.VersionTLS13
		}},
		{"missing file", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsCertificates[0].CertificateChain = file(filepath.Join(dir, "nope.crt"))
		}, p + ".tls_certificates[0].certificate_chain.filename: open", nil},
		{"bad pem", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsCertificates[0].CertificateChain = file(bad)
		}, p + ".tls_certificates[0]: tls: failed to find any PEM data", nil},
		{"key does not match", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsCertificates[0].PrivateKey = inline(other.KeyPEM)
		}, p + ".tls_certificates[0]: tls: private key does not match public key", nil},
		{"no certificate", func(d *tlsv3.DownstreamTlsContext) { d.CommonTlsContext.TlsCertificates = nil }, p + ".tls_certificates: a server needs a certificate", nil},
		{"sds", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: "x"}}
		}, p + ".tls_certificate_sds_secret_configs[0]: no static_resources.secrets", nil},
		{"h3 alpn", func(d *tlsv3.DownstreamTlsContext) { d.CommonTlsContext.AlpnProtocols = []string{"h3"} }, p + ".alpn_protocols[0]", nil},
		{"unsupported field", func(d *tlsv3.DownstreamTlsContext) { d.RequireSni = wrapperspb.Bool(true) }, "ts.typed_config.require_sni: not supported", nil},
		{"mtls without ca", func(d *tlsv3.DownstreamTlsContext) { d.RequireClientCertificate = wrapperspb.Bool(true) }, "ts.typed_config.require_client_certificate", nil},
		{"crl", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(caFile), Crl: file(caFile)}}
		}, p + ".validation_context.crl: not supported", nil},
		{"versions", func(d *tlsv3.DownstreamTlsContext) {
			d.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3, TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_2}
		}, p + ".tls_params: minimum protocol version above the maximum", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.edit(d)
			cfg, err := Server(socket(t, d), "ts", Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil && !tc.check(cfg) {
					t.Fatalf("unexpected config %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Server(&corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}, "ts", Options{}); err == nil || !strings.Contains(err.Error(), "ts.name") {
		t.Fatalf("unknown socket: %v", err)
	}
}

func TestClient(t *testing.T) {
	ca := tlstest.NewCA("ca")
	leaf := ca.Leaf("client")
	caDS := inline(ca.CertPEM)
	verified := &tlsv3.UpstreamTlsContext{Sni: "a.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates:       []*tlsv3.TlsCertificate{{CertificateChain: inline(leaf.CertPEM), PrivateKey: inline(leaf.KeyPEM)}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: caDS}},
	}}
	cfg, warns, err := Client(socket(t, verified), "ts", Options{})
	if err != nil || len(warns) != 0 || cfg.InsecureSkipVerify || cfg.ServerName != "a.example.com" || len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("verified: %+v %v %v", cfg, warns, err)
	}
	noSNI := proto.Clone(verified).(*tlsv3.UpstreamTlsContext)
	noSNI.Sni = ""
	cfg, _, err = Client(socket(t, noSNI), "ts", Options{})
	if err != nil || cfg.VerifyConnection == nil {
		t.Fatalf("no sni: chain verification expected: %+v %v", cfg, err)
	}
	cfg, warns, err = Client(socket(t, &tlsv3.UpstreamTlsContext{}), "ts", Options{})
	if err != nil || !cfg.InsecureSkipVerify || len(warns) != 1 {
		t.Fatalf("unverified: %+v %v %v", cfg, warns, err)
	}
	_, _, err = Client(socket(t, &tlsv3.UpstreamTlsContext{AllowRenegotiation: true}), "ts", Options{})
	if err == nil || !strings.Contains(err.Error(), "ts.typed_config.allow_renegotiation") {
		t.Fatalf("renegotiation: %v", err)
	}
	_, _, err = Client(socket(t, &tlsv3.DownstreamTlsContext{}), "ts", Options{})
	if err == nil || !strings.Contains(err.Error(), "ts.typed_config: want") {
		t.Fatalf("wrong type: %v", err)
	}
}

// TestSubjectAltNames: match_typed_subject_alt_names passes a peer whose
// DNS or URI SAN matches, refuses others, on both sides of a handshake.
func TestSubjectAltNames(t *testing.T) {
	ca := tlstest.NewCA("ca")
	server := ca.Leaf("a.example.com")
	sans := []*tlsv3.SubjectAltNameMatcher{
		{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://weft/ns/prod/"}}},
		{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "Client.Example.com"}, IgnoreCase: true}},
	}
	dc := &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(server.CertPEM), PrivateKey: inline(server.KeyPEM)}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(ca.CertPEM), MatchTypedSubjectAltNames: sans}},
	}}
	scfg, err := Server(socket(t, dc), "ts", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		ok    bool
	}{
		{[]string{"spiffe://weft/ns/prod/sa/web"}, true},
		{[]string{"client.example.com"}, true},
		{[]string{"spiffe://weft/ns/dev/sa/web", "other.example.com"}, false},
	} {
		ccfg := &tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Leaf(tc.names...).TLS()}}
		if err := handshake(scfg, ccfg); (err == nil) != tc.ok {
			t.Errorf("client %v: err = %v, want ok=%v", tc.names, err, tc.ok)
		}
	}
	// Upstream side without sni: the chain and the SANs are verified.
	uc := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(ca.CertPEM), MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".example.com"}}}}}},
	}}
	ccfg, _, err := Client(socket(t, uc), "ts", Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain := func(l tlstest.Leaf) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{l.TLS()}} }
	if err := handshake(plain(server), ccfg); err != nil {
		t.Errorf("upstream a.example.com: %v", err)
	}
	if err := handshake(plain(ca.Leaf("a.example.org")), ccfg); err == nil {
		t.Error("upstream a.example.org passed a .example.com matcher")
	}
	if err := handshake(plain(tlstest.NewCA("other").Leaf("a.example.com")), ccfg); err == nil {
		t.Error("upstream from another CA passed")
	}
	bad := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_OTHER_NAME, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}}
	uc.CommonTlsContext.GetValidationContext().MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{bad}
	if _, _, err := Client(socket(t, uc), "ts", Options{}); err == nil || !strings.Contains(err.Error(), "match_typed_subject_alt_names[0].san_type") {
		t.Errorf("OTHER_NAME: %v", err)
	}
}

// handshake runs a TLS handshake between the two configs over loopback and
// returns the client's error, or the server's.
func handshake(server, client *tls.Config) error {
	a, b := tcpPair()
	defer a.Close()
	defer b.Close()
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	serr := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of a refused certificate on read.
			_, err = s.Write([]byte("x"))
		}
		serr <- err
		_ = b.Close()
	}()
	c := tls.Client(a, client)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	_ = a.Close() // a refused client must not leave the server waiting
	if e := <-serr; err == nil {
		err = e
	}
	return err
}

// tcpPair is a connected loopback TCP pair (buffered, unlike net.Pipe, so
// an alert written by one side never waits for the other to read).
func tcpPair() (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	b, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	return a, b
}

// TestStaticSecrets: certificates and CAs named without sds_config come
// from static_resources.secrets; a missing name, a secret fetched by
// sds_config, or a bad secret is refused with its path.
func TestStaticSecrets(t *testing.T) {
	ca := tlstest.NewCA("ca")
	leaf := ca.Leaf("a.example.com")
	secrets := []*tlsv3.Secret{
		{Name: "server", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inline(leaf.CertPEM), PrivateKey: inline(leaf.KeyPEM)}}},
		{Name: "ca", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.CertPEM)}}},
	}
	st, err := NewStatic(secrets, "static_resources.secrets", Options{})
	if err != nil {
		t.Fatal(err)
	}
	dc := func(cert string, sds bool) *tlsv3.DownstreamTlsContext {
		ref := &tlsv3.SdsSecretConfig{Name: cert}
		if sds {
			ref.SdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
		}
		return &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{ref},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca"}},
		}}
	}
	cfg, err := Server(socket(t, dc("server", false)), "ts", Options{Secrets: st})
	if err != nil || len(cfg.Certificates) != 1 || cfg.ClientCAs == nil {
		t.Fatalf("by name: %+v %v", cfg, err)
	}
	const p = "ts.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]"
	for _, tc := range []struct {
		name string
		d    *tlsv3.DownstreamTlsContext
		o    Options
		want string
	}{
		{"unknown name", dc("nope", false), Options{Secrets: st}, p + `: no tls_certificate secret "nope"`},
		{"sds_config", dc("server", true), Options{Secrets: st}, p + ".sds_config: sds_config needs dynamic_resources"},
		{"no secrets", dc("server", false), Options{}, p + ": no static_resources.secrets"},
		{"a CA is not a certificate", dc("ca", false), Options{Secrets: st}, p + `: no tls_certificate secret "ca"`},
	} {
		if _, err := Server(socket(t, tc.d), "ts", tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	bad := []*tlsv3.Secret{
		secrets[0], secrets[0],
		{Name: "k", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inline(leaf.CertPEM), PrivateKey: inline(ca.Leaf("x").KeyPEM)}}},
		{Name: "t", Type: &tlsv3.Secret_SessionTicketKeys{}},
	}
	_, err = NewStatic(bad, "s", Options{})
	for _, want := range []string{`s[1].name: duplicate secret name "server"`, "s[2].tls_certificate: tls: private key does not match", "s[3]: only tls_certificate and validation_context"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad secrets: err = %v, want %q", err, want)
		}
	}
}

// TestReadOnlyRegularFiles: a device or FIFO named as a certificate file is
// refused, not read forever.
func TestReadOnlyRegularFiles(t *testing.T) {
	if _, err := (Options{}).read("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("/dev/zero: %v", err)
	}
}
