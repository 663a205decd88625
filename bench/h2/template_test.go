// Package h2 holds the HTTP/2 and gRPC benchmark (run.sh, backend, grpcload);
// this test keeps its weft bootstrap template a valid Envoy v3 bootstrap of
// the shape run.sh relies on.
package h2

import (
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The router filter's config type must be registered for its Any to resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

const protocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

func TestTemplateIsValidBootstrap(t *testing.T) {
	raw, err := os.ReadFile("weft.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer(
		"@@H2C_PORT@@", "20001",
		"@@GRPC_PORT@@", "20002",
		"@@H1_UPSTREAM_PORT@@", "20003",
		"@@GRPC_UPSTREAM_PORT@@", "20004",
		"@@ADMIN_PORT@@", "20005",
	).Replace(string(raw))
	if strings.Contains(filled, "@@") {
		t.Fatalf("unreplaced placeholder left in template")
	}
	js, err := yaml.YAMLToJSON([]byte(filled))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("not an Envoy v3 bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("bootstrap fails validation: %v", err)
	}

	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != 20005 {
		t.Errorf("admin = %v, want 127.0.0.1:20005", admin)
	}

	// listener name -> port, cluster it routes to.
	wantListeners := []struct {
		name    string
		port    uint32
		cluster string
	}{
		{"h2c", 20001, "upstream_h1"},
		{"grpc", 20002, "upstream_h2"},
	}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != len(wantListeners) {
		t.Fatalf("%d listeners, want %d", len(listeners), len(wantListeners))
	}
	for i, want := range wantListeners {
		l := listeners[i]
		sa := l.GetAddress().GetSocketAddress()
		if l.GetName() != want.name || sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != want.port {
			t.Errorf("listener %d = %s on %s:%d, want %s on 127.0.0.1:%d",
				i, l.GetName(), sa.GetAddress(), sa.GetPortValue(), want.name, want.port)
		}
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatalf("listener %s: filter is not an HttpConnectionManager: %v", want.name, err)
		}
		if hcm.GetStatPrefix() != "bench" {
			t.Errorf("listener %s: stat_prefix = %q, want bench", want.name, hcm.GetStatPrefix())
		}
		if hcm.GetCodecType() != hcmv3.HttpConnectionManager_AUTO {
			t.Errorf("listener %s: codec_type = %v, want AUTO", want.name, hcm.GetCodecType())
		}
		if hcm.GetAccessLog() != nil {
			t.Errorf("listener %s: access log configured; the benchmark wants none", want.name)
		}
		route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
		if route.GetMatch().GetPrefix() != "/" || route.GetRoute().GetCluster() != want.cluster {
			t.Errorf("listener %s: route = %v, want prefix / -> %s", want.name, route, want.cluster)
		}
		if f := hcm.GetHttpFilters(); len(f) != 1 || f[0].GetName() != "envoy.filters.http.router" {
			t.Errorf("listener %s: http_filters = %v, want only the router", want.name, f)
		}
	}

	// cluster name -> upstream port, whether it speaks HTTP/2 upstream.
	wantClusters := []struct {
		name  string
		port  uint32
		http2 bool
	}{
		{"upstream_h1", 20003, false},
		{"upstream_h2", 20004, true},
	}
	clusters := b.GetStaticResources().GetClusters()
	if len(clusters) != len(wantClusters) {
		t.Fatalf("%d clusters, want %d", len(clusters), len(wantClusters))
	}
	for i, want := range wantClusters {
		c := clusters[i]
		if c.GetName() != want.name || c.GetType().String() != "STATIC" {
			t.Errorf("cluster %d = %s (%v), want STATIC %s", i, c.GetName(), c.GetType(), want.name)
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != want.port {
			t.Errorf("cluster %s: endpoint %s:%d, want 127.0.0.1:%d", want.name, sa.GetAddress(), sa.GetPortValue(), want.port)
		}
		opts, ok := c.GetTypedExtensionProtocolOptions()[protocolOptionsKey]
		if !want.http2 {
			if ok || len(c.GetTypedExtensionProtocolOptions()) != 0 {
				t.Errorf("cluster %s: has protocol options; want none (HTTP/1.1 upstream)", want.name)
			}
			continue
		}
		if !ok {
			t.Fatalf("cluster %s: no %s", want.name, protocolOptionsKey)
		}
		var po upstreamhttpv3.HttpProtocolOptions
		if err := opts.UnmarshalTo(&po); err != nil {
			t.Fatalf("cluster %s: %s: %v", want.name, protocolOptionsKey, err)
		}
		if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("cluster %s: explicit_http_config.http2_protocol_options not set", want.name)
		}
	}
}
