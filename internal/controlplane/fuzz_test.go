package controlplane

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// FuzzParseRules feeds arbitrary bytes to the whole rule pipeline (YAML,
// decoding, validation, compilation). It must never panic, and whatever
// it accepts must compile to resources that pass the xDS validation rules.
func FuzzParseRules(f *testing.F) {
	for _, n := range []string{"services.yaml", "routes.yaml", "sidecars.yaml"} {
		b, err := os.ReadFile(filepath.Join(exampleRules, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(baseServices))
	f.Add(richRules[0].data)
	f.Add([]byte("services:\n- name: a\n  protocol: http\n  x: : y\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("services: [{name: a, protocol: bolt, endpoints: [{address: '[::1]:1', labels: {v: 1}}]}]\nroutes: [{service: a, rules: [{match: {method: m, version: '1', headers: [{name: x, regex: '.*'}]}, destinations: [{subset: {v: '1'}}]}]}]\nsidecars: [{name: s, listeners: [{name: l, address: '127.0.0.1:1', protocol: rpc}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, errs, _ := loadRules([]sourceFile{{name: "f.yaml", data: data}}, nil)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.String() == "" {
					t.Fatal("empty problem")
				}
			}
			return
		}
		for _, g := range append(append([]*group(nil), m.groups...), m.none) {
			for _, tt := range []types.ResponseType{types.Cluster, types.Endpoint, types.Listener, types.Route} {
				for n, r := range g.snapshot.Resources[tt].Items {
					if v, ok := r.Resource.(interface{ ValidateAll() error }); ok {
						if err := v.ValidateAll(); err != nil {
							t.Fatalf("accepted rules compile to an invalid %s: %v", n, err)
						}
					}
				}
			}
		}
	})
}
