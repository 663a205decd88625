package mesh

import (
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/bolt"
	"github.com/weftmesh/weft/internal/codec/dubbo"
)

// The codecs register from extensions/ (cmd links them); register test
// stand-ins once so config checks see the protocol names.
func init() {
	if _, ok := api.Codecs.Lookup("bolt", ""); !ok {
		api.Codecs.Register("bolt", nil, func(api.CodecLimits) api.Codec { return &bolt.Codec{} })
	}
	if _, ok := api.Codecs.Lookup("dubbo", ""); !ok {
		api.Codecs.Register("dubbo", nil, func(api.CodecLimits) api.Codec { return dubbo.Codec{} })
	}
}

const goodConfig = `{"sdk_address": "127.0.0.1:13330", "advertise_ip": "10.0.0.7",
  "registry": {"kind": "etcd", "endpoints": ["http://127.0.0.1:2379"], "ttl": "5s"},
  "ingress": {"bolt": "0.0.0.0:12220"}, "egress": {"bolt": "127.0.0.1:12200", "dubbo": "127.0.0.1:20880"},
  "drain_grace": "3s", "metadata": {"zone": "z1"}}`

func TestParseConfig(t *testing.T) {
	c, err := ParseJSON([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry.ttl != 5*time.Second || c.drainGrace != 3*time.Second || c.Metadata["zone"] != "z1" || c.AdvertiseIP != "10.0.0.7" {
		t.Errorf("parsed %+v", c)
	}
	for _, tc := range []struct{ cfg, want string }{
		{`{"registry": {"kind": "consul"}, "egress": {"bolt": "127.0.0.1:1"}}`, `registry.kind: unknown registry "consul"`},
		{`{"registry": {"kind": "embedded"}, "egress": {"bolt": "127.0.0.1:1"}}`, "registry.address: required"},
		{`{"registry": {"kind": "etcd"}, "egress": {"bolt": "127.0.0.1:1"}}`, "registry.endpoints: required"},
		{`{"registry": {"kind": "zookeeper"}, "egress": {"bolt": "127.0.0.1:1"}}`, "registry.servers: required"},
		{`{"registry": {"address": "127.0.0.1:1"}}`, "at least one ingress or egress"},
		{`{"registry": {"address": "127.0.0.1:1"}, "egress": {"thrift": "127.0.0.1:1"}}`, `egress.thrift: unknown protocol "thrift"`},
		{`{"registry": {"address": "127.0.0.1:1"}, "ingress": {"bolt": "nowhere"}}`, `ingress.bolt: "nowhere": want host:port`},
		{`{"registry": {"address": "127.0.0.1:1"}, "egress": {"bolt": "127.0.0.1:1"}, "sdk_address": "0.0.0.0:1"}`, "sdk_address: \"0.0.0.0:1\": the SDK API listens on a loopback address only"},
		{`{"registry": {"address": "127.0.0.1:1"}, "egress": {"bolt": "127.0.0.1:1"}, "advertise_ip": "host"}`, `advertise_ip: "host" is not an IP address`},
		{`{"registry": {"address": "127.0.0.1:1", "ttl": "soon"}, "egress": {"bolt": "127.0.0.1:1"}}`, `registry.ttl: not a duration`},
		{`{"registry": {"address": "127.0.0.1:1"}, "egress": {"bolt": "127.0.0.1:1"}, "sdk": 1}`, `unknown field "sdk"`},
	} {
		_, err := ParseJSON([]byte(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.cfg, err, tc.want)
		}
	}
}

// FuzzParseConfig: the agent's config parser never panics, and what it
// accepts is complete.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{"registry": {"address": "127.0.0.1:1"}, "egress": {"dubbo": "127.0.0.1:0"}}`))
	f.Add([]byte(`{"registry": {"kind": "zookeeper", "servers": ["a:1"]}, "ingress": {"bolt": ":0"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseJSON(b)
		if err != nil {
			return
		}
		if c.SDKAddress == "" || c.Registry.Kind == "" || len(c.Ingress)+len(c.Egress) == 0 || c.Registry.ttl <= 0 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
	})
}
