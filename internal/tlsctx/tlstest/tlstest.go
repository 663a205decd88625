// Package tlstest makes throwaway certificates for tests: a CA and leaf
// certificates it signs, as PEM, generated with crypto/x509.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority for tests.
type CA struct {
	CertPEM []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// Leaf is a certificate and its key, as PEM.
type Leaf struct {
	CertPEM, KeyPEM []byte
}

func serial() *big.Int { return must(rand.Int(rand.Reader, big.NewInt(1<<62))) }

// NewCA makes a self-signed CA named cn.
func NewCA(cn string) *CA {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))
	return &CA{CertPEM: pemBlock("CERTIFICATE", der), cert: must(x509.ParseCertificate(der)), key: key}
}

// Leaf signs a certificate for the given names: DNS names, IP addresses,
// or URIs (spiffe://...). It serves as a server and a client certificate.
func (ca *CA) Leaf(names ...string) Leaf {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "weft test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if u, err := url.Parse(n); err == nil && u.Scheme != "" {
			tmpl.URIs = append(tmpl.URIs, u)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key))
	kd := must(x509.MarshalECPrivateKey(key))
	return Leaf{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("EC PRIVATE KEY", kd)}
}

// Pool is a cert pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// TLS is the leaf as a tls.Certificate.
func (l Leaf) TLS() tls.Certificate { return must(tls.X509KeyPair(l.CertPEM, l.KeyPEM)) }

// WriteFiles writes the leaf's cert and key under dir as name.crt and
// name.key and returns their paths.
func (l Leaf) WriteFiles(dir, name string) (certFile, keyFile string) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	mustDo(os.WriteFile(certFile, l.CertPEM, 0o600))
	mustDo(os.WriteFile(keyFile, l.KeyPEM, 0o600))
	return certFile, keyFile
}

// WriteFile writes the CA certificate to dir/name.crt and returns the path.
func (ca *CA) WriteFile(dir, name string) string {
	p := filepath.Join(dir, name+".crt")
	mustDo(os.WriteFile(p, ca.CertPEM, 0o600))
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func must[T any](v T, err error) T {
	mustDo(err)
	return v
}

func mustDo(err error) {
	if err != nil {
		panic(err)
	}
}
