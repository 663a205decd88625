package tlsctx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/weftmesh/weft/internal/config"
)

// Static is a Provider over static_resources.secrets, loaded once.
type Static struct {
	certs map[string]*tls.Certificate
	cas   map[string]*x509.CertPool
}

var _ Provider = (*Static)(nil)

// NewStatic loads secrets (static_resources.secrets, at path): each is a
// tls_certificate or a validation_context with trusted_ca. Errors name
// the field path.
func NewStatic(secrets []*tlsv3.Secret, path string, o Options) (*Static, error) {
	errs := &config.Errors{}
	st := &Static{certs: map[string]*tls.Certificate{}, cas: map[string]*x509.CertPool{}}
	seen := map[string]bool{}
	for i, sec := range secrets {
		sp := fmt.Sprintf("%s[%d]", path, i)
		name := sec.GetName()
		switch {
		case name == "":
			errs.Add(sp+".name", "required")
			continue
		case seen[name]:
			errs.Add(sp+".name", "duplicate secret name %q", name)
			continue
		}
		seen[name] = true
		crt, pool, ok := parseSecret(sec, sp, o, errs)
		switch {
		case !ok:
		case crt != nil:
			st.certs[name] = crt
		default:
			st.cas[name] = pool
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return st, nil
}

// Certificate returns the named tls_certificate secret.
func (s *Static) Certificate(name string) (*tls.Certificate, error) {
	if c, ok := s.certs[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("no tls_certificate secret %q in static_resources.secrets", name)
}

// CAPool returns the named validation_context secret's CAs.
func (s *Static) CAPool(name string) (*x509.CertPool, error) {
	if p, ok := s.cas[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("no validation_context secret %q in static_resources.secrets", name)
}

// parseSecret loads a tls_certificate or a validation_context (trusted_ca
// only) secret; exactly one of crt and pool is set when ok.
func parseSecret(sec *tlsv3.Secret, sp string, o Options, errs *config.Errors) (crt *tls.Certificate, pool *x509.CertPool, ok bool) {
	n := len(errs.List)
	switch t := sec.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		crt, ok = certificate(t.TlsCertificate, sp+".tls_certificate", o, errs)
		return crt, nil, ok && len(errs.List) == n
	case *tlsv3.Secret_ValidationContext:
		vp := sp + ".validation_context"
		refuseFields(t.ValidationContext, vp, errs, "trusted_ca")
		pool, ok = caPool(t.ValidationContext.GetTrustedCa(), vp+".trusted_ca", o, errs)
		return nil, pool, ok && len(errs.List) == n
	}
	errs.Add(sp, "only tls_certificate and validation_context secrets are supported")
	return nil, nil, false
}
