package rpcproxy

import (
	"strings"
	"testing"

	_ "github.com/weftmesh/weft/extensions/codecs/bolt"
	_ "github.com/weftmesh/weft/extensions/codecs/dubbo"
	_ "github.com/weftmesh/weft/extensions/filters/stream/fault"
)

const goodConfig = `{
  "stat_prefix": "egress",
  "protocols": ["bolt", "dubbo"],
  "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
    "routes": [{"match": {"prefix": ""}, "route": {"cluster": "up", "timeout": "3s"}}]}]},
  "rpc_filters": [{"name": "envoy.filters.http.fault", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    "abort": {"header_abort": {}, "percentage": {"numerator": 100}}}}],
  "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}],
  "max_frame_bytes": 1048576,
  "idle_timeout": "30s",
  "upstream": {"max_requests_per_connection": 64, "heartbeat_interval": "15s", "heartbeat_misses": 3}
}`

func TestParseGood(t *testing.T) {
	p, err := parseJSON([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.cfg.Codecs) != 2 || p.cfg.Codecs[0].Name() != "bolt" || p.cfg.Codecs[1].Name() != "dubbo" {
		t.Errorf("codecs %v", p.cfg.Codecs)
	}
	if p.cfg.Pool.MaxRequestsPerConn != 64 || p.cfg.IdleTimeout.String() != "30s" || len(p.filters) != 1 || len(p.logs) != 1 {
		t.Errorf("parsed %+v", p.cfg)
	}
	if refs := p.ClusterRefs(); len(refs) != 1 || refs[0] != "up" {
		t.Errorf("cluster refs %v", refs)
	}
}

func TestParseErrorsNamePaths(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{"protocols": ["bolt"], "route_config": {}}`, "stat_prefix: required"},
		{`{"stat_prefix": "x", "route_config": {}}`, "protocols: name at least one protocol"},
		{`{"stat_prefix": "x", "protocols": ["thrift"], "route_config": {}}`, `protocols[0]: unknown protocol "thrift"`},
		{`{"stat_prefix": "x", "protocols": ["bolt", "bolt"], "route_config": {}}`, `protocols[1]: "bolt" listed twice`},
		{`{"stat_prefix": "x", "protocols": ["bolt"]}`, "route_config: required"},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {"virtual_hosts": [{"name": "a"}]}}`, "route_config.virtual_hosts[0].domains"},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "idle_timeout": "soon"}`, `idle_timeout: not a duration: "soon"`},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "max_frame_bytes": -1}`, "max_frame_bytes: must not be negative"},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "max_header_bytes": 40000}`, "max_header_bytes: at most 32767"},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "upstrem": {}}`, `unknown field "upstrem"`},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "rpc_filters": [{"name": "nope"}]}`, `rpc_filters[0]: unknown http filter "nope"`},
		{`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {}, "upstream": {"heartbeat_interval": "-1s"}}`, "upstream.heartbeat_interval: not a duration"},
	} {
		_, err := parseJSON([]byte(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.cfg, err, tc.want)
		}
	}
}

// FuzzParse: the config parser never panics, and whatever it accepts has
// at least one codec and a route table.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{"stat_prefix": "x", "protocols": ["dubbo"], "route_config": {}}`))
	f.Add([]byte(`{"stat_prefix": "x", "protocols": ["bolt"], "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [{"match": {"path": "echo"}, "direct_response": {"status": 403}}]}]}}`))
	f.Add([]byte(`{"upstream": {"idle_timeout": "0s"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseJSON(b)
		if err != nil {
			return
		}
		if len(p.cfg.Codecs) == 0 || p.table == nil || p.cfg.StatPrefix == "" {
			t.Fatalf("accepted an incomplete config: %+v", p.cfg)
		}
	})
}
