package upstream

import (
	"maps"
	"reflect"
	"testing"
)

// TestParseCLAMetadataMemo checks that consecutive endpoints with equal
// string metadata share one flattened map, and that any difference (a
// value, a key, a namespace, a non-string value) gets its own, correct map.
func TestParseCLAMetadataMemo(t *testing.T) {
	type md = map[string]map[string]any
	tests := []struct {
		name  string
		metas []md
		want  []map[string]string
		share []bool // share[i]: endpoint i reuses endpoint i-1's map
	}{
		{
			name:  "equal strings share",
			metas: []md{{"istio": {"workload": "a"}}, {"istio": {"workload": "a"}}, {"istio": {"workload": "a"}}},
			want:  []map[string]string{{"istio.workload": "a"}, {"istio.workload": "a"}, {"istio.workload": "a"}},
			share: []bool{false, true, true},
		},
		{
			name:  "different value",
			metas: []md{{"istio": {"workload": "a"}}, {"istio": {"workload": "b"}}, {"istio": {"workload": "b"}}},
			want:  []map[string]string{{"istio.workload": "a"}, {"istio.workload": "b"}, {"istio.workload": "b"}},
			share: []bool{false, false, true},
		},
		{
			name:  "different key or namespace",
			metas: []md{{"istio": {"workload": "a"}}, {"istio": {"other": "a"}}, {"envoy.lb": {"other": "a"}}},
			want:  []map[string]string{{"istio.workload": "a"}, {"istio.other": "a"}, {"envoy.lb.other": "a"}},
			share: []bool{false, false, false},
		},
		{
			name:  "extra key",
			metas: []md{{"istio": {"workload": "a"}}, {"istio": {"workload": "a", "x": "y"}}},
			want:  []map[string]string{{"istio.workload": "a"}, {"istio.workload": "a", "istio.x": "y"}},
			share: []bool{false, false},
		},
		{
			name:  "non-string values are flattened anew",
			metas: []md{{"envoy.lb": {"n": 3.0, "on": true}}, {"envoy.lb": {"n": 4.0, "on": true}}},
			want:  []map[string]string{{"envoy.lb.n": "3", "envoy.lb.on": "true"}, {"envoy.lb.n": "4", "envoy.lb.on": "true"}},
			share: []bool{false, false},
		},
		{
			name:  "none, then some, then none",
			metas: []md{nil, {"istio": {"workload": "a"}}, nil},
			want:  []map[string]string{nil, {"istio.workload": "a"}, nil},
			share: []bool{false, false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []ep
			for i, m := range tt.metas {
				eps = append(eps, ep{addr: "10.0.0." + string(rune('1'+i)) + ":80", meta: m})
			}
			got, err := parseCLA(cla(t, "c", eps...), true)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range got {
				if !maps.Equal(e.meta, tt.want[i]) {
					t.Errorf("endpoint %d: meta %v, want %v", i, e.meta, tt.want[i])
				}
				if i == 0 || e.meta == nil {
					continue
				}
				shared := reflect.ValueOf(e.meta).UnsafePointer() == reflect.ValueOf(got[i-1].meta).UnsafePointer()
				if shared != tt.share[i] {
					t.Errorf("endpoint %d: shares the previous map = %v, want %v", i, shared, tt.share[i])
				}
			}
		})
	}
}
