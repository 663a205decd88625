// Package http1 holds the HTTP/1.1 benchmark scripts; this test keeps their
// weft bootstrap template a valid Envoy v3 bootstrap.
package http1

import (
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The router filter's config type must be registered for its Any to resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

func TestTemplateIsValidBootstrap(t *testing.T) {
	raw, err := os.ReadFile("weft.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer(
		"@@LISTEN_PORT@@", "20001",
		"@@UPSTREAM_PORT@@", "20002",
		"@@ADMIN_PORT@@", "20003",
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

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"admin address", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(), "127.0.0.1"},
		{"admin port", b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(), uint32(20003)},
		{"listeners", len(b.GetStaticResources().GetListeners()), 1},
		{"listener port", b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue(), uint32(20001)},
		{"clusters", len(b.GetStaticResources().GetClusters()), 1},
		{"cluster name", b.GetStaticResources().GetClusters()[0].GetName(), "upstream"},
		{"cluster type", b.GetStaticResources().GetClusters()[0].GetType().String(), "STATIC"},
		{"endpoint port", b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].
			GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(), uint32(20002)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	var hcm hcmv3.HttpConnectionManager
	filter := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	if err := filter.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatalf("listener filter is not an HttpConnectionManager: %v", err)
	}
	if hcm.GetStatPrefix() != "bench" {
		t.Errorf("stat_prefix = %q, want bench", hcm.GetStatPrefix())
	}
	if hcm.GetAccessLog() != nil {
		t.Errorf("access log configured; the benchmark wants none")
	}
	route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	if route.GetMatch().GetPrefix() != "/" || route.GetRoute().GetCluster() != "upstream" {
		t.Errorf("route = %v, want prefix / -> upstream", route)
	}
	if f := hcm.GetHttpFilters(); len(f) != 1 || f[0].GetName() != "envoy.filters.http.router" {
		t.Errorf("http_filters = %v, want only the router", f)
	}
}
