package zk

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/registry"
)

// FuzzDecodeNode: a provider node name from ZooKeeper (written by any
// Dubbo application, or by something broken) never panics the decoder, and
// what it accepts is a valid instance of the watched service that encodes
// back to a node the decoder reads the same way.
func FuzzDecodeNode(f *testing.F) {
	for _, s := range []string{
		"dubbo%3A%2F%2F127.0.0.1%3A20880%2Fcom.foo.EchoService%3Fanyhost%3Dtrue%26application%3Ddemo%26interface%3Dcom.foo.EchoService%26methods%3Decho%2Cping%26side%3Dprovider%26version%3D1.0.0",
		"bolt%3A%2F%2F10.0.0.1%3A12200%2Fcom.foo.EchoService%3Fmeshed%3Dtrue",
		"dubbo%3A%2F%2F%5B%3A%3A1%5D%3A20880%2Fcom.foo.Outer%24Inner",
		"garbage",
		"%zz",
		"dubbo://no-port/com.foo.X",
	} {
		f.Add("com.foo.EchoService", s)
	}
	f.Fuzz(func(t *testing.T, service, name string) {
		if (registry.Instance{Service: service, Protocol: "dubbo", Address: "127.0.0.1:1"}).Validate() != nil {
			return // Watch is only ever called for a valid service name
		}
		inst, err := decodeNode(service, name)
		if err != nil {
			return
		}
		if err := inst.Validate(); err != nil {
			t.Fatalf("decoded an invalid instance %+v from %q: %v", inst, name, err)
		}
		if inst.Service != service {
			t.Fatalf("service %q, want the watched %q", inst.Service, service)
		}
		back := dubboEncode(providerURL(inst, "weft", "1"))
		again, err := decodeNode(service, back)
		if err != nil || again.Key() != inst.Key() || strings.Contains(back, "/") {
			t.Fatalf("re-encoded node %q of %+v: %+v %v", back, inst, again, err)
		}
	})
}
