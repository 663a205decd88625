package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseFieldPaths(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string // substrings, each must appear in some error line
	}{
		{
			name: "not yaml",
			in:   "static_resources: [",
			want: []string{"not YAML or JSON"},
		},
		{
			name: "unknown field",
			in:   "static_resourcez: {}",
			want: []string{"static_resourcez"},
		},
		{
			name: "port out of range",
			in: `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 70000 } }
    filter_chains: [{ filters: [] }]`,
			want: []string{"static_resources.listeners[0].address.socket_address.port_value"},
		},
		{
			name: "duplicate listener and cluster names",
			in: `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1000 } }
    filter_chains: [{ filters: [] }]
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1000 } }
    filter_chains: [{ filters: [] }]
  clusters:
  - { name: c, connect_timeout: 1s }
  - { name: c, connect_timeout: 1s }`,
			want: []string{
				`static_resources.listeners[1].name: duplicate listener name "l"`,
				"static_resources.listeners[1].address: address 127.0.0.1:1000 already used",
				`static_resources.clusters[1].name: duplicate cluster name "c"`,
			},
		},
		{
			name: "missing filter chains",
			in: `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1000 } }`,
			want: []string{"static_resources.listeners[0].filter_chains: at least one filter chain"},
		},
		{
			name: "cluster with empty name",
			in: `static_resources:
  clusters:
  - { name: "", connect_timeout: 1s }`,
			want: []string{"static_resources.clusters[0].name"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatal("want an error")
			}
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("want *Errors, got %T %v", err, err)
			}
			for _, w := range tc.want {
				found := false
				for _, fe := range ce.List {
					if strings.Contains(fe.Error(), w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error contains %q; got:\n%s", w, strings.ReplaceAll(err.Error(), "; ", "\n"))
				}
			}
		})
	}
}

func TestUnknownExtensionIsParked(t *testing.T) {
	in := `static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1000 } }
    filter_chains:
    - filters:
      - name: acme.filters.network.magic
        typed_config:
          "@type": type.googleapis.com/acme.Magic
          power: 11`
	b, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tc := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	if got := TypeURL(tc); got != "type.googleapis.com/acme.Magic" {
		t.Fatalf("TypeURL = %q", got)
	}
}

func TestExampleParses(t *testing.T) {
	data, err := os.ReadFile("../../examples/http/front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatal(err)
	}
}

func TestSnakePath(t *testing.T) {
	for in, want := range map[string]string{
		"StaticResources": "static_resources",
		"Listeners[0]":    "listeners[0]",
		"SocketAddress":   "socket_address",
		"PortValue":       "port_value",
		"Clusters[key]":   "clusters[key]",
		"LbEndpoints[12]": "lb_endpoints[12]",
	} {
		if got := snakePath(in); got != want {
			t.Errorf("snakePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		`static_resources: {clusters: [{name: a, connect_timeout: 1s}, {name: b, connect_timeoot: 1s}]}`: `static_resources.clusters[1].connect_timeoot: unknown field "connect_timeoot"`,
		`static_resources: {clusters: [{name: a, connect_timeout: soon}]}`:                               `static_resources.clusters[0].connect_timeout: invalid google.protobuf.Duration value "soon"`,
		`admin: {address: {socket_address: {port_value: abc}}}`:                                          `admin.address.socket_address.port_value`,
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s):\n got %v\nwant %s", in, err, want)
		}
	}
}
