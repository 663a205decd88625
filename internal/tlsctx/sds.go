package tlsctx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/config"
)

// SDS is a Provider over the secrets the xDS client receives (SecretType
// over ADS). Handshakes look secrets up at handshake time from an
// atomically swapped snapshot (no lock), so a rotated secret serves the
// next handshake without rebuilding a listener or a cluster.
type SDS struct {
	cur atomic.Pointer[sdsSet]

	mu      sync.Mutex    // serialises Update; guards changed
	changed chan struct{} // closed (and replaced) when a secret arrives or changes
}

type sdsSet struct {
	pbs   map[string]*tlsv3.Secret // the accepted versions
	certs map[string]*tls.Certificate
	cas   map[string]*x509.CertPool
}

var _ Provider = (*SDS)(nil)

// NewSDS returns an SDS holding no secret yet.
func NewSDS() *SDS {
	s := &SDS{changed: make(chan struct{})}
	s.cur.Store(&sdsSet{pbs: map[string]*tlsv3.Secret{}, certs: map[string]*tls.Certificate{}, cas: map[string]*x509.CertPool{}})
	return s
}

// Update installs all, the complete set of secrets received: new and
// changed ones are parsed, missing ones are dropped. A secret that does
// not parse keeps its previous version (or stays missing) while the others
// apply; the error names it.
func (s *SDS) Update(all map[string]*tlsv3.Secret) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := &sdsSet{pbs: map[string]*tlsv3.Secret{}, certs: map[string]*tls.Certificate{}, cas: map[string]*x509.CertPool{}}
	errs := &config.Errors{}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	keep := func(n string) {
		if pb, ok := old.pbs[n]; ok {
			next.pbs[n] = pb
			if c, ok := old.certs[n]; ok {
				next.certs[n] = c
			}
			if p, ok := old.cas[n]; ok {
				next.cas[n] = p
			}
		}
	}
	for _, n := range names {
		sec := all[n]
		if pb, ok := old.pbs[n]; ok && proto.Equal(pb, sec) {
			keep(n)
			continue
		}
		// Only inline data: a filename would be read once here and never
		// watched, which is not what a rotating secret means.
		crt, pool, ok := parseSecret(sec, fmt.Sprintf("secret %q", n), Options{ReadFile: noFiles}, errs)
		if !ok {
			keep(n)
			continue
		}
		next.pbs[n] = sec
		if crt != nil {
			next.certs[n] = crt
		}
		if pool != nil {
			next.cas[n] = pool
		}
	}
	s.cur.Store(next)
	close(s.changed)
	s.changed = make(chan struct{})
	return errs.Err()
}

func noFiles(string) ([]byte, error) {
	return nil, fmt.Errorf("a secret received over SDS takes inline_bytes or inline_string, not a filename")
}

// Changed returns a channel closed at the next Update.
func (s *SDS) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Missing lists the names among names not received (or not valid) yet.
func (s *SDS) Missing(names []string) []string {
	cur := s.cur.Load()
	var out []string
	for _, n := range names {
		if _, ok := cur.pbs[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// Names lists the secrets held, sorted.
func (s *SDS) Names() []string {
	cur := s.cur.Load()
	out := make([]string, 0, len(cur.pbs))
	for n := range cur.pbs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Certificate returns the current version of the named tls_certificate.
func (s *SDS) Certificate(name string) (*tls.Certificate, error) {
	if c, ok := s.cur.Load().certs[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("tls_certificate secret %q not received over SDS yet", name)
}

// CAPool returns the current version of the named validation_context.
func (s *SDS) CAPool(name string) (*x509.CertPool, error) {
	if p, ok := s.cur.Load().cas[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("validation_context secret %q not received over SDS yet", name)
}

// SDSNames lists the secrets a transport socket (a DownstreamTlsContext or
// an UpstreamTlsContext) takes by sds_config: what to subscribe to.
func SDSNames(ts *corev3.TransportSocket) []string {
	tc := ts.GetTypedConfig()
	if ts.GetName() != Name || tc == nil {
		return nil
	}
	var cc *tlsv3.CommonTlsContext
	dc, uc := &tlsv3.DownstreamTlsContext{}, &tlsv3.UpstreamTlsContext{}
	if anypb.UnmarshalTo(tc, dc, proto.UnmarshalOptions{}) == nil {
		cc = dc.GetCommonTlsContext()
	} else if anypb.UnmarshalTo(tc, uc, proto.UnmarshalOptions{}) == nil {
		cc = uc.GetCommonTlsContext()
	}
	var out []string
	for _, s := range cc.GetTlsCertificateSdsSecretConfigs() {
		if s.GetSdsConfig() != nil && s.GetName() != "" {
			out = append(out, s.GetName())
		}
	}
	if s := cc.GetValidationContextSdsSecretConfig(); s.GetSdsConfig() != nil && s.GetName() != "" {
		out = append(out, s.GetName())
	}
	return out
}
