package controlplane

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// files builds sources named "rules/<name>" in name order.
func files(kv ...string) []sourceFile {
	var out []sourceFile
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, sourceFile{name: "rules/" + kv[i], data: []byte(kv[i+1])})
	}
	return out
}

const baseServices = `services:
- name: reviews
  protocol: http
  port: 9080
  endpoints:
  - address: 127.0.0.1:9081
    labels: {version: v1}
  - address: 127.0.0.1:9082
    labels: {version: v2}
- name: ratings
  protocol: http
  endpoints: [{address: 127.0.0.1:9091}]
- name: com.foo.EchoService
  protocol: bolt
  endpoints:
  - {address: 127.0.0.1:12201, labels: {version: "1.0"}}
- name: db
  protocol: tcp
  endpoints: [{address: 127.0.0.1:5432}]
`

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name  string
		files []sourceFile
		want  []string // each must appear in one error, in order
	}{{
		name:  "yaml syntax",
		files: files("s.yaml", "services:\n- name: a\n  protocol: http\n  x: : y\n"),
		want:  []string{"rules/s.yaml:4: YAML syntax: mapping values are not allowed in this context"},
	}, {
		name:  "unknown field",
		files: files("s.yaml", "services:\n- name: a\n  protocol: http\n  prot: x\n"),
		want:  []string{`rules/s.yaml:4: services[0]: unknown field "prot" (known: endpoints, hosts, name, port, protocol, traffic_policy)`},
	}, {
		name:  "unknown top-level field",
		files: files("s.yaml", "service:\n- name: a\n"),
		want:  []string{`rules/s.yaml:1: top level: unknown field "service" (known: routes, services, sidecars)`},
	}, {
		name:  "wrong kind",
		files: files("s.yaml", "services:\n- name: a\n  protocol: http\n  endpoints: 127.0.0.1:80\n"),
		want:  []string{`rules/s.yaml:4: services[0].endpoints: want a list, got "127.0.0.1:80"`},
	}, {
		name:  "not an integer",
		files: files("s.yaml", "services:\n- name: a\n  protocol: http\n  port: eighty\n"),
		want:  []string{`rules/s.yaml:4: services[0].port: want an integer, got "eighty"`},
	}, {
		name:  "duplicate key",
		files: files("s.yaml", "services:\n- name: a\n  protocol: http\n  name: b\n"),
		want:  []string{`rules/s.yaml:4: services[0]: "name" given twice (also line 2)`},
	}, {
		name:  "merge key",
		files: files("s.yaml", "x: &x {protocol: http}\nservices:\n- name: a\n  <<: *x\n"),
		want:  []string{`rules/s.yaml:1: top level: unknown field "x"`, `rules/s.yaml:4: services[0]: merge keys (<<) are not supported`},
	}, {
		name:  "bad protocol and address",
		files: files("s.yaml", "services:\n- name: a\n  protocol: htp\n  endpoints:\n  - address: localhost:80\n  - address: 10.0.0.1\n"),
		want: []string{
			`rules/s.yaml:3: service a: protocol: unknown value "htp" (http, grpc, bolt, dubbo, tcp)`,
			`rules/s.yaml:5: service a: endpoints[0]: address: "localhost:80": want ip:port`,
			`rules/s.yaml:6: service a: endpoints[1]: address: "10.0.0.1": want ip:port`,
		},
	}, {
		name:  "duplicate service across files",
		files: files("a.yaml", "services:\n- name: a\n  protocol: http\n", "b.yaml", "\n\nservices:\n- name: a\n  protocol: http\n"),
		want:  []string{"rules/b.yaml:4: service a: defined twice: rules/a.yaml:2 and rules/b.yaml:4"},
	}, {
		name:  "unknown service in route",
		files: files("s.yaml", baseServices, "r.yaml", "routes:\n- service: reviws\n  rules:\n  - destinations: [{}]\n"),
		want:  []string{`rules/r.yaml:2: route reviws: unknown service "reviws"`},
	}, {
		name: "unknown destination service and subset syntax",
		files: files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules:
  - destinations:
    - service: ratingz
`),
		want: []string{`rules/r.yaml:5: route reviews: rule 1: destination 1: unknown service "ratingz"`},
	}, {
		name: "bad duration",
		files: files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules:
  - destinations: [{}]
    timeout: 3 seconds
`),
		want: []string{`rules/r.yaml:5: routes[0].rules[0].timeout: bad duration "3 seconds" (want e.g. 500ms, 2s, 1m)`},
	}, {
		name: "weights",
		files: files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules:
  - name: a
    destinations:
    - {subset: {version: v1}, weight: 80}
    - {subset: {version: v2}, weight: 10}
  - name: b
    destinations:
    - {subset: {version: v1}, weight: 80}
    - {subset: {version: v2}}
  - name: c
    destinations:
    - {subset: {version: v1}, weight: 180}
  - name: d
    destinations:
    - {subset: {version: v1}}
    - {subset: {version: v1}}
`),
		want: []string{
			"rules/r.yaml:5: route reviews: rule a: weights add up to 90, want 100",
			"rules/r.yaml:9: route reviews: rule b: weights: give every destination a weight",
			"rules/r.yaml:14: route reviews: rule c: destination 1: weight: 180 is outside 0..100",
			"rules/r.yaml:18: route reviews: rule d: destination 2: reviews|version=v1 is already a destination of this rule",
		},
	}, {
		name: "route duplicates and tcp",
		files: files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules: [{destinations: [{}]}]
- service: reviews
  rules: [{destinations: [{}]}]
- service: db
  rules: [{destinations: [{}]}]
- service: ratings
`),
		want: []string{
			"rules/r.yaml:4: route reviews: defined twice: rules/r.yaml:2 and rules/r.yaml:4",
			"rules/r.yaml:6: route db: a tcp service has no routes",
			"rules/r.yaml:8: route ratings: rules: give at least one rule",
		},
	}, {
		name: "match rules",
		files: files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules:
  - match: {method: get}
    destinations: [{}]
  - match: {prefix: api}
    destinations: [{}]
  - match:
      headers:
      - {name: x, regex: "("}
      - {name: y}
      - {name: z, exact: a, prefix: b}
    destinations: [{}]
  - match: {prefix: /a, path: /b}
    destinations: [{service: com.foo.EchoService}]
- service: com.foo.EchoService
  rules:
  - match: {method: echo, version: "1.0", group: blue}
    retries: {attempts: 2, retry_on: [5xx, sometimes], per_try_timeout: 0s}
    destinations: [{}]
`),
		want: []string{
			"rules/r.yaml:4: route reviews: rule 1: match: method: only for bolt and dubbo services (reviews is http)",
			`rules/r.yaml:6: route reviews: rule 2: match: prefix: "api" must start with /`,
			"rules/r.yaml:10: route reviews: rule 3: match: headers[0]: regex: error parsing regexp",
			"rules/r.yaml:11: route reviews: rule 3: match: headers[1]: give exactly one of exact, prefix, suffix, regex and present",
			"rules/r.yaml:12: route reviews: rule 3: match: headers[2]: give exactly one",
			"rules/r.yaml:14: route reviews: rule 4: match: give one of prefix, path and method",
			"rules/r.yaml:15: route reviews: rule 4: destination 1: service com.foo.EchoService is bolt; reviews is http",
			`rules/r.yaml:19: route com.foo.EchoService: rule 1: retries: retry_on[1]: unknown value "sometimes"`,
			"rules/r.yaml:19: route com.foo.EchoService: rule 1: retries: per_try_timeout: must be positive",
		},
	}, {
		name: "sidecars",
		files: files("s.yaml", baseServices, "sc.yaml", `sidecars:
- name: web
  match: {node_id: "web-[", metadata: {app: web}}
  listeners:
  - {name: a, address: 127.0.0.1:15001, protocol: http, services: [reviews, com.foo.EchoService, nope]}
  - {name: b, address: 127.0.0.1:15001, protocol: bolt}
  - {name: a, address: 127.0.0.1:15003, protocol: http}
  - {name: c, address: 127.0.0.1:15004, protocol: tcp, services: [db, reviews]}
  - {name: d, address: "127.0.0.1:0", protocol: ftp}
- name: web
  listeners: [{name: a, address: 127.0.0.1:1, protocol: http}]
- name: empty
`),
		want: []string{
			`rules/sc.yaml:3: sidecar web: match: node_id: "web-[" is not a glob`,
			"rules/sc.yaml:5: sidecar web: listener a: services: com.foo.EchoService is a bolt service; a http listener serves http and grpc",
			`rules/sc.yaml:5: sidecar web: listener a: services: unknown service "nope"`,
			"rules/sc.yaml:6: sidecar web: listener b: address 127.0.0.1:15001 is also listener a's",
			"rules/sc.yaml:7: sidecar web: listener a: defined twice in this sidecar (also rules/sc.yaml:5)",
			"rules/sc.yaml:8: sidecar web: listener c: services: a tcp listener sends connections to exactly one service, got 2",
			`rules/sc.yaml:9: sidecar web: listener d: address: "127.0.0.1:0": want ip:port with a port above 0`,
			`rules/sc.yaml:9: sidecar web: listener d: protocol: unknown value "ftp"`,
			"rules/sc.yaml:10: sidecar web: defined twice: rules/sc.yaml:2 and rules/sc.yaml:10",
			"rules/sc.yaml:12: sidecar empty: listeners: at least one is required",
		},
	}, {
		name: "domain conflict on a listener",
		files: files("s.yaml", baseServices+`- name: echo-local
  protocol: bolt
  hosts: [com.foo.EchoService]
  endpoints: [{address: 127.0.0.1:12300}]
`, "sc.yaml", `sidecars:
- name: provider
  listeners:
  - {name: ingress, address: 0.0.0.0:12220, protocol: bolt}
`),
		want: []string{`rules/sc.yaml:4: sidecar provider: listener ingress: services com.foo.EchoService and echo-local both answer to "com.foo.EchoService"`},
	}, {
		name: "traffic policy",
		files: files("s.yaml", `services:
- name: a
  protocol: http
  traffic_policy:
    lb_policy: fastest
    connect_timeout: 0s
    circuit_breakers: {max_connections: -1}
    health_check: {timeout: 1s, http_path: healthz}
`),
		want: []string{
			`rules/s.yaml:5: service a: traffic_policy: lb_policy: unknown value "fastest"`,
			"rules/s.yaml:6: service a: traffic_policy: connect_timeout: must be positive",
			"rules/s.yaml:7: service a: traffic_policy: circuit_breakers: max_connections: -1 is outside",
			"rules/s.yaml:8: service a: traffic_policy: health_check: interval: required, positive",
			`rules/s.yaml:8: service a: traffic_policy: health_check: http_path: "healthz" must start with /`,
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, _ := loadRules(tc.files, nil)
			var got []string
			for _, p := range errs {
				got = append(got, p.String())
			}
			i := 0
			for _, g := range got {
				if i < len(tc.want) && strings.HasPrefix(g, tc.want[i]) {
					i++
				}
			}
			if i != len(tc.want) || len(got) != len(tc.want) {
				t.Errorf("errors:\n  %s\nwant (prefixes, in order):\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestSubsetWithoutEndpointsWarns: a destination subset no endpoint has is
// a warning, and the rules load.
func TestSubsetWithoutEndpointsWarns(t *testing.T) {
	m, errs, warns := loadRules(files("s.yaml", baseServices, "r.yaml", `routes:
- service: reviews
  rules:
  - destinations:
    - {subset: {version: v3}}
`), nil)
	if len(errs) > 0 || m == nil {
		t.Fatalf("errors: %v", errs)
	}
	want := "rules/r.yaml:5: route reviews: destination subset version=v3: no endpoints of service reviews have label version=v3"
	if len(warns) != 1 || warns[0].String() != want || !warns[0].Warning {
		t.Fatalf("warnings = %v, want %q", warns, want)
	}
}

// TestMergeFiles: services, routes and sidecars of several files (and
// several documents of one file) make one rule set.
func TestMergeFiles(t *testing.T) {
	m, errs, _ := loadRules(files(
		"a.yaml", "services:\n- {name: a, protocol: http, endpoints: [{address: 10.0.0.1:80}]}\n---\nservices:\n- {name: b, protocol: http}\n",
		"b.yaml", "routes:\n- service: a\n  rules: [{destinations: [{service: b}]}]\n",
		"c.yaml", "# only comments\n",
		"d.yaml", "sidecars:\n- name: s\n  listeners: [{name: l, address: 127.0.0.1:15001, protocol: http}]\n",
	), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := strings.Join(m.rules.names, ","); got != "a,b" {
		t.Errorf("services %s", got)
	}
	if len(m.rules.services["a"].routes) != 1 || len(m.rules.sidecars) != 1 || len(m.rules.files) != 4 {
		t.Errorf("routes %d sidecars %d files %d", len(m.rules.services["a"].routes), len(m.rules.sidecars), len(m.rules.files))
	}
	if got := m.rules.sidecars[0].listeners[0].services; strings.Join(got, ",") != "a,b" {
		t.Errorf("default visibility %v, want every http service", got)
	}
}

// TestLabelsKeepText: YAML numbers in labels keep their text.
func TestLabelsKeepText(t *testing.T) {
	m, errs, _ := loadRules(files("a.yaml", "services:\n- name: a\n  protocol: bolt\n  endpoints: [{address: 10.0.0.1:80, labels: {version: 1.10, canary: true}}]\n"), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	l := m.rules.services["a"].endpoints[0].labels
	if l["version"] != "1.10" || l["canary"] != "true" {
		t.Errorf("labels %v", l)
	}
}

// TestAliasBomb: a file whose aliases multiply the nodes to decode is
// refused quickly with a message, not decoded.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n- &s\n  name: s\n  protocol: http\n  endpoints:\n  - &e\n    address: 10.0.0.1:80\n    labels: {")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "k%d: v, ", i)
	}
	b.WriteString("}\n")
	for i := 0; i < 99; i++ {
		b.WriteString("  - *e\n")
	}
	for i := 0; i < 99; i++ {
		b.WriteString("- *s\n")
	}
	start := time.Now()
	_, errs, _ := loadRules(files("bomb.yaml", b.String()), nil)
	found := false
	for _, e := range errs {
		if strings.Contains(e.Message, "too many aliases") {
			found = true
		}
	}
	if !found {
		t.Fatalf("errors %v, want the alias budget error", errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestCheckDir(t *testing.T) {
	warns, err := Check("../../examples/control-plane/rules")
	if err != nil {
		t.Fatalf("the example rules: %v", err)
	}
	for _, w := range warns {
		t.Errorf("example warning: %s", w)
	}
	if _, err := Check(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no rule files") {
		t.Errorf("empty dir: %v", err)
	}
}
