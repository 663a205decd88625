// Package tlsctx turns Envoy's DownstreamTlsContext and UpstreamTlsContext
// into crypto/tls configs: certificates and CAs are loaded at config time
// (files or inline), every field Weft does not implement is refused by its
// path, and the loading goes through a Provider so that SDS secrets can
// later be served by name.
package tlsctx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/config"
)

// Name is the transport socket that carries a TLS context.
const Name = "envoy.transport_sockets.tls"

// RawBuffer is the plain-TCP transport socket.
const RawBuffer = "envoy.transport_sockets.raw_buffer"

// Provider returns certificates and CA pools by secret name: Static over
// static_resources.secrets, SDS over the secrets the xDS client receives.
type Provider interface {
	// Certificate returns the named tls_certificate secret.
	Certificate(name string) (*tls.Certificate, error)
	// CAPool returns the named validation_context secret's trusted CAs.
	CAPool(name string) (*x509.CertPool, error)
}

// ErrNoSDS refuses a secret fetched by sds_config when there is no xDS
// client (Options.SDS is nil). Secrets named without sds_config come from
// static_resources.secrets.
var ErrNoSDS = errors.New("sds_config needs dynamic_resources with an ADS config source (without it, name a static_resources.secrets entry and leave sds_config out)")

// Options are what the parsers need besides the proto.
type Options struct {
	// ReadFile reads a DataSource filename; nil is os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Secrets serves secrets named without sds_config (static_resources.secrets);
	// nil refuses every such reference.
	Secrets Provider
	// SDS serves secrets named with sds_config (ads: {} or self: {}),
	// looked up at every handshake so that a rotated secret applies at
	// once; nil refuses sds_config (no xDS client).
	SDS Provider
}

// maxFile bounds a certificate, key or CA file.
const maxFile = 1 << 20

func (o Options) read(name string) ([]byte, error) {
	if o.ReadFile != nil {
		return o.ReadFile(name)
	}
	// Only regular files, bounded: a FIFO or a device never blocks or
	// floods the config load.
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err == nil && len(b) > maxFile {
		err = fmt.Errorf("%s: larger than %d bytes", name, maxFile)
	}
	return b, err
}

// ALPN Weft speaks.
var speaks = map[string]bool{"http/1.1": true, "h2": true}

// Server parses a filter chain's transport_socket into a server config.
// path is the transport_socket's field path; errors are *config.Errors.
func Server(ts *corev3.TransportSocket, path string, o Options) (*tls.Config, error) {
	errs := &config.Errors{}
	dc := &tlsv3.DownstreamTlsContext{}
	if !unpack(ts, path, dc, errs) {
		return nil, errs.Err()
	}
	p := path + ".typed_config"
	refuseFields(dc, p, errs, "common_tls_context", "require_client_certificate")
	cfg := &tls.Config{}
	refs := common(dc.GetCommonTlsContext(), p+".common_tls_context", cfg, o, errs, true)
	if len(cfg.Certificates) == 0 && len(refs.certs) == 0 && len(errs.List) == 0 {
		errs.Add(p+".common_tls_context.tls_certificates", "a server needs a certificate")
	}
	hasCA := cfg.ClientCAs != nil || refs.ca != ""
	if dc.GetRequireClientCertificate().GetValue() {
		if !hasCA && len(errs.List) == 0 {
			errs.Add(p+".require_client_certificate", "needs common_tls_context.validation_context.trusted_ca")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	} else if hasCA {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = nil
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if refs.any() {
		cfg.GetConfigForClient = sdsServer(cfg, refs, o.SDS)
	}
	return cfg, nil
}

// Client parses a cluster's transport_socket into a client config. The
// warnings say what is accepted but weak (no server verification).
func Client(ts *corev3.TransportSocket, path string, o Options) (*tls.Config, []string, error) {
	errs := &config.Errors{}
	uc := &tlsv3.UpstreamTlsContext{}
	if !unpack(ts, path, uc, errs) {
		return nil, nil, errs.Err()
	}
	p := path + ".typed_config"
	if uc.GetAllowRenegotiation() {
		errs.Add(p+".allow_renegotiation", "TLS renegotiation is not supported")
	}
	refuseFields(uc, p, errs, "common_tls_context", "sni", "allow_renegotiation")
	cfg := &tls.Config{ServerName: uc.GetSni()}
	refs := common(uc.GetCommonTlsContext(), p+".common_tls_context", cfg, o, errs, false)
	if len(refs.certs) == 1 {
		// Looked up at each handshake: a rotated client certificate serves
		// the next upstream connection; a missing one fails the handshake
		// (the pool reports it as a connect failure, UF).
		name, sds := refs.certs[0], o.SDS
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return sds.Certificate(name)
		}
	}
	var warns []string
	if refs.ca != "" {
		// The chain (and the sni name, if any) is verified against the CA
		// current at each handshake.
		name, sds := refs.ca, o.SDS
		cfg.InsecureSkipVerify = true
		chain := verifyWith(func() (*x509.CertPool, error) { return sds.CAPool(name) }, cfg.ServerName)
		sans := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := chain(cs); err != nil {
				return err
			}
			if sans != nil {
				return sans(cs)
			}
			return nil
		}
	} else if cfg.RootCAs == nil {
		// Envoy does not verify an upstream without a validation context.
		cfg.InsecureSkipVerify = true
		warns = append(warns, p+": no validation_context: the upstream's certificate is not verified")
	} else if cfg.ServerName == "" {
		// No sni: verify the chain only, as Envoy does (it checks names
		// only when told which). With sni, the name is verified too.
		cfg.InsecureSkipVerify = true
		roots := cfg.RootCAs
		chain := verifyWith(func() (*x509.CertPool, error) { return roots, nil }, "")
		sans := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := chain(cs); err != nil {
				return err
			}
			if sans != nil {
				return sans(cs)
			}
			return nil
		}
	}
	if err := errs.Err(); err != nil {
		return nil, nil, err
	}
	return cfg, warns, nil
}

func unpack(ts *corev3.TransportSocket, path string, m proto.Message, errs *config.Errors) bool {
	if ts.GetName() != Name {
		errs.Add(path+".name", "transport socket %q is not supported (only %s and %s)", ts.GetName(), Name, RawBuffer)
		return false
	}
	tc := ts.GetTypedConfig()
	if tc == nil {
		errs.Add(path+".typed_config", "a TLS context is required")
		return false
	}
	if err := anypb.UnmarshalTo(tc, m, proto.UnmarshalOptions{}); err != nil {
		errs.Add(path+".typed_config", "want %s, got %q", m.ProtoReflect().Descriptor().FullName(), config.TypeURL(tc))
		return false
	}
	return true
}

// refuseFields refuses every set field of m not in allowed, by path:
// never silently ignore what Weft does not do.
func refuseFields(m proto.Message, path string, errs *config.Errors, allowed ...string) {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	var names []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !ok[string(fd.Name())] {
			names = append(names, string(fd.Name()))
		}
		return true
	})
	sort.Strings(names)
	for _, n := range names {
		errs.Add(path+"."+n, "not supported")
	}
}

// sdsRefs are the secrets a context takes by sds_config, served by
// Options.SDS at handshake time.
type sdsRefs struct {
	certs []string
	ca    string
}

func (r sdsRefs) any() bool { return len(r.certs) > 0 || r.ca != "" }

// sdsServer resolves a server context's SDS secrets at each handshake:
// the ClientHello gets base with the current certificates and CAs, so a
// rotated secret applies to the next handshake and a missing one fails it.
func sdsServer(base *tls.Config, r sdsRefs, p Provider) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = slices.Clip(c.Certificates) // never append into base's array
		for _, n := range r.certs {
			crt, err := p.Certificate(n)
			if err != nil {
				return nil, err
			}
			c.Certificates = append(c.Certificates, *crt)
		}
		if r.ca != "" {
			pool, err := p.CAPool(r.ca)
			if err != nil {
				return nil, err
			}
			c.ClientCAs = pool
		}
		return c, nil
	}
}

// sdsSource checks an sds_config reference: only over the ADS stream.
func sdsSource(s *tlsv3.SdsSecretConfig, sp string, o Options, errs *config.Errors) bool {
	if s.GetName() == "" {
		errs.Add(sp+".name", "required")
		return false
	}
	if o.SDS == nil {
		errs.Add(sp+".sds_config", "%v", ErrNoSDS)
		return false
	}
	src := s.GetSdsConfig()
	if src.GetAds() != nil || src.GetSelf() != nil {
		return true
	}
	kind := "an empty config source"
	m := src.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("config_source_specifier")); fd != nil {
		kind = string(fd.Name())
	}
	errs.Add(sp+".sds_config", "%s is not supported: only ads: {} (or self: {}), over the bootstrap's ADS stream", kind)
	return false
}

func common(cc *tlsv3.CommonTlsContext, path string, cfg *tls.Config, o Options, errs *config.Errors, server bool) sdsRefs {
	var refs sdsRefs
	if cc == nil {
		return refs
	}
	refuseFields(cc, path, errs, "tls_params", "tls_certificates", "validation_context", "alpn_protocols",
		"tls_certificate_sds_secret_configs", "validation_context_sds_secret_config")
	params(cc.GetTlsParams(), path+".tls_params", cfg, errs)
	for i, c := range cc.GetTlsCertificates() {
		if crt, ok := certificate(c, fmt.Sprintf("%s.tls_certificates[%d]", path, i), o, errs); ok {
			cfg.Certificates = append(cfg.Certificates, *crt)
		}
	}
	for i, s := range cc.GetTlsCertificateSdsSecretConfigs() {
		sp := fmt.Sprintf("%s.tls_certificate_sds_secret_configs[%d]", path, i)
		if s.GetSdsConfig() != nil {
			if sdsSource(s, sp, o, errs) {
				refs.certs = append(refs.certs, s.GetName())
			}
			continue
		}
		if o.Secrets == nil {
			errs.Add(sp, "%v", errNoStatic)
			continue
		}
		crt, err := o.Secrets.Certificate(s.GetName())
		if err != nil {
			errs.Add(sp, "%v", err)
			continue
		}
		cfg.Certificates = append(cfg.Certificates, *crt)
	}
	if !server && len(cfg.Certificates)+len(refs.certs) > 1 {
		errs.Add(path+".tls_certificates", "an upstream context takes at most one client certificate")
	}
	var pool *x509.CertPool
	if s := cc.GetValidationContextSdsSecretConfig(); s != nil {
		sp := path + ".validation_context_sds_secret_config"
		if s.GetSdsConfig() != nil {
			if sdsSource(s, sp, o, errs) {
				refs.ca = s.GetName()
			}
		} else if o.Secrets == nil {
			errs.Add(sp, "%v", errNoStatic)
		} else if p, err := o.Secrets.CAPool(s.GetName()); err != nil {
			errs.Add(sp, "%v", err)
		} else {
			pool = p
		}
	}
	if vc := cc.GetValidationContext(); vc != nil {
		vp := path + ".validation_context"
		refuseFields(vc, vp, errs, "trusted_ca", "match_typed_subject_alt_names")
		if ms := vc.GetMatchTypedSubjectAltNames(); len(ms) > 0 {
			if check, ok := sanMatchers(ms, vp+".match_typed_subject_alt_names", errs); ok {
				prev := cfg.VerifyConnection
				cfg.VerifyConnection = func(cs tls.ConnectionState) error {
					if prev != nil {
						if err := prev(cs); err != nil {
							return err
						}
					}
					if len(cs.PeerCertificates) == 0 || check(cs.PeerCertificates[0]) {
						return nil
					}
					return errors.New("tls: the peer certificate matches no match_typed_subject_alt_names")
				}
			}
		}
		if vc.GetTrustedCa() == nil {
			errs.Add(vp+".trusted_ca", "required (system roots are not supported)")
		} else if p, ok := caPool(vc.GetTrustedCa(), vp+".trusted_ca", o, errs); ok {
			pool = p
		}
	}
	if pool != nil {
		if server {
			cfg.ClientCAs = pool
		} else {
			cfg.RootCAs = pool
		}
	}
	for i, a := range cc.GetAlpnProtocols() {
		if !speaks[a] {
			errs.Add(fmt.Sprintf("%s.alpn_protocols[%d]", path, i), "%q: Weft speaks only h2 and http/1.1 over TLS", a)
			continue
		}
		cfg.NextProtos = append(cfg.NextProtos, a)
	}
	return refs
}

// errNoStatic refuses a secret named without sds_config where no
// static_resources.secrets are given.
var errNoStatic = errors.New("no static_resources.secrets to take it from")

// certificate loads a TlsCertificate: chain and key, which must match.
func certificate(c *tlsv3.TlsCertificate, path string, o Options, errs *config.Errors) (*tls.Certificate, bool) {
	refuseFields(c, path, errs, "certificate_chain", "private_key")
	chain, ok1 := data(c.GetCertificateChain(), path+".certificate_chain", o, errs)
	key, ok2 := data(c.GetPrivateKey(), path+".private_key", o, errs)
	if !ok1 || !ok2 {
		return nil, false
	}
	crt, err := tls.X509KeyPair(chain, key)
	if err != nil {
		errs.Add(path, "%v", err)
		return nil, false
	}
	return &crt, true
}

// caPool loads PEM CA certificates.
func caPool(ds *corev3.DataSource, path string, o Options, errs *config.Errors) (*x509.CertPool, bool) {
	pem, ok := data(ds, path, o, errs)
	if !ok {
		return nil, false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		errs.Add(path, "no PEM certificate found")
		return nil, false
	}
	return pool, true
}

var versions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: tls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: tls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

func params(tp *tlsv3.TlsParameters, path string, cfg *tls.Config, errs *config.Errors) {
	// Envoy's defaults: TLS 1.2 to 1.3.
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS13
	if tp == nil {
		return
	}
	refuseFields(tp, path, errs, "tls_minimum_protocol_version", "tls_maximum_protocol_version")
	if v := tp.GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		cfg.MinVersion = versions[v]
	}
	if v := tp.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		cfg.MaxVersion = versions[v]
	}
	if cfg.MinVersion == 0 || cfg.MaxVersion == 0 || cfg.MinVersion > cfg.MaxVersion {
		errs.Add(path, "minimum protocol version above the maximum")
	}
}

// data reads a DataSource: a file, or inline bytes or string.
func data(ds *corev3.DataSource, path string, o Options, errs *config.Errors) ([]byte, bool) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		b, err := o.read(s.Filename)
		if err != nil {
			errs.Add(path+".filename", "%v", err)
			return nil, false
		}
		return b, true
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, true
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), true
	case nil:
		errs.Add(path, "required: filename, inline_bytes or inline_string")
	default:
		errs.Add(path, "only filename, inline_bytes or inline_string are supported")
	}
	return nil, false
}

// verifyWith verifies the peer's chain against the roots current at the
// handshake, and its name when dnsName is set.
func verifyWith(roots func() (*x509.CertPool, error), dnsName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the upstream sent no certificate")
		}
		pool, err := roots()
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: dnsName})
		if err != nil {
			return fmt.Errorf("tls: failed to verify certificate: %w", err)
		}
		return nil
	}
}

// sanMatchers compiles match_typed_subject_alt_names: a certificate
// passes when any SAN of a matcher's type matches it (DNS, URI, EMAIL,
// IP_ADDRESS; OTHER_NAME is refused).
func sanMatchers(ms []*tlsv3.SubjectAltNameMatcher, path string, errs *config.Errors) (func(*x509.Certificate) bool, bool) {
	type one struct {
		typ   tlsv3.SubjectAltNameMatcher_SanType
		match func(string) bool
	}
	var all []one
	ok := true
	for i, m := range ms {
		mp := fmt.Sprintf("%s[%d]", path, i)
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_URI,
			tlsv3.SubjectAltNameMatcher_EMAIL, tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
		default:
			errs.Add(mp+".san_type", "%s is not supported (DNS, URI, EMAIL, IP_ADDRESS)", m.GetSanType())
			ok = false
			continue
		}
		f, err := stringMatcher(m.GetMatcher())
		if err != nil {
			errs.Add(mp+".matcher", "%v", err)
			ok = false
			continue
		}
		all = append(all, one{m.GetSanType(), f})
	}
	return func(c *x509.Certificate) bool {
		for _, m := range all {
			var sans []string
			switch m.typ {
			case tlsv3.SubjectAltNameMatcher_DNS:
				sans = c.DNSNames
			case tlsv3.SubjectAltNameMatcher_EMAIL:
				sans = c.EmailAddresses
			case tlsv3.SubjectAltNameMatcher_URI:
				for _, u := range c.URIs {
					sans = append(sans, u.String())
				}
			case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
				for _, ip := range c.IPAddresses {
					sans = append(sans, ip.String())
				}
			}
			for _, s := range sans {
				if m.match(s) {
					return true
				}
			}
		}
		return false
	}, ok
}

// stringMatcher compiles an Envoy StringMatcher (exact, prefix, suffix,
// contains, safe_regex; ignore_case).
func stringMatcher(m *matcherv3.StringMatcher) (func(string) bool, error) {
	fold := m.GetIgnoreCase()
	norm := func(s string) string {
		if fold {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		want := norm(p.Exact)
		return func(s string) bool { return norm(s) == want }, nil
	case *matcherv3.StringMatcher_Prefix:
		want := norm(p.Prefix)
		return func(s string) bool { return strings.HasPrefix(norm(s), want) }, nil
	case *matcherv3.StringMatcher_Suffix:
		want := norm(p.Suffix)
		return func(s string) bool { return strings.HasSuffix(norm(s), want) }, nil
	case *matcherv3.StringMatcher_Contains:
		want := norm(p.Contains)
		return func(s string) bool { return strings.Contains(norm(s), want) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("safe_regex: %v", err)
		}
		return re.MatchString, nil
	}
	return nil, errors.New("exact, prefix, suffix, contains or safe_regex required")
}
