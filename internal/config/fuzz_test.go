package config

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the bootstrap parser: it must never
// panic, and whatever it accepts must validate again.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../examples/http/front-proxy.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"static_resources":{"clusters":[{"name":"c","connect_timeout":"1s"}]}}`))
	f.Add([]byte("admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}"))
	f.Add([]byte(`static_resources: {listeners: [{name: l, address: {socket_address: {port_value: 1}}, filter_chains: [{filters: [{name: x, typed_config: {"@type": "type.googleapis.com/acme.X", a: 1}}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		if err := Validate(b); err != nil {
			t.Fatalf("accepted config fails validation: %v", err)
		}
	})
}
