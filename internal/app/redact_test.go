package app

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestRedactKeys: private keys, inline or in a transport socket's Any or
// in static secrets, never reach the config dump; the rest does.
func TestRedactKeys(t *testing.T) {
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	cert := &tlsv3.TlsCertificate{CertificateChain: inline("CHAIN-PEM"), PrivateKey: inline("KEY-PEM-SECRET")}
	dc, err := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{
		Listeners: []*listenerv3.Listener{{Name: "l", FilterChains: []*listenerv3.FilterChain{{
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: dc}},
		}}}},
		Secrets: []*tlsv3.Secret{{Name: "s", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: proto.Clone(cert).(*tlsv3.TlsCertificate)}}},
	}}
	before := proto.Clone(b)
	out, err := protojson.Marshal(redact(b))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "KEY-PEM-SECRET") {
		t.Fatalf("a private key reached the dump: %s", out)
	}
	if strings.Count(string(out), "CHAIN-PEM") != 2 {
		t.Fatalf("the certificate chains are gone: %s", out)
	}
	if !proto.Equal(b, before) {
		t.Fatal("redact changed the running config")
	}
}
