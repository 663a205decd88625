package router

import (
	"errors"
	"strings"
	"testing"
)

// vh wraps routes YAML (a list of routes) in a one-vhost configuration.
func vh(routes string) string {
	return "virtual_hosts:\n- name: v\n  domains: ['*']\n  routes:\n" + indent(routes, "  ")
}

func indent(s, pfx string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pfx + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"bad route regex", `
virtual_hosts:
- {name: a, domains: [a], routes: [{match: {prefix: /}, route: {cluster: c}}]}
- {name: b, domains: [b], routes: [{match: {prefix: /}, route: {cluster: c}}]}
- {name: c, domains: [c], routes: [{match: {safe_regex: {regex: "("}}, route: {cluster: c}}]}
`, "virtual_hosts[2].routes[0].match.safe_regex: error parsing regexp: missing closing ): `(`"},
		{"bad header regex", vh(`
- match: {prefix: /, headers: [{name: a, present_match: true}, {name: b, string_match: {safe_regex: {regex: "a**"}}}]}
  route: {cluster: c}`), "virtual_hosts[0].routes[0].match.headers[1].string_match.safe_regex: error parsing regexp: invalid nested repetition operator: `**`"},
		{"bad legacy header regex", vh(`
- match: {prefix: /, headers: [{name: b, safe_regex_match: {regex: "[z-a]"}}]}
  route: {cluster: c}`), "virtual_hosts[0].routes[0].match.headers[0].safe_regex_match: error parsing regexp: invalid character class range: `z-a`"},
		{"empty header prefix", vh(`
- match: {prefix: /, query_parameters: [{name: q, string_match: {prefix: ""}}]}
  route: {cluster: c}`), "virtual_hosts[0].routes[0].match.query_parameters[0].string_match.prefix: must not be empty"},
		{"vhost without name", `virtual_hosts: [{domains: [a]}]`, "virtual_hosts[0].name: must not be empty"},
		{"vhost without domains", `virtual_hosts: [{name: a}]`, "virtual_hosts[0].domains: must not be empty"},
		{"duplicate domain", `
virtual_hosts:
- {name: a, domains: [foo.com]}
- {name: b, domains: [x.com, FOO.com]}
`, `virtual_hosts[1].domains[1]: duplicate domain "foo.com" (already in virtual host "a")`},
		{"two defaults", `
virtual_hosts:
- {name: a, domains: ["*"]}
- {name: b, domains: ["*"]}
`, `virtual_hosts[1].domains[0]: duplicate domain "*" (already in virtual host "a")`},
		{"duplicate vhost name", `
virtual_hosts:
- {name: a, domains: [a]}
- {name: a, domains: [b]}
`, `virtual_hosts[1].name: duplicate virtual host name "a"`},
		{"no action", vh(`- match: {prefix: /}`), "virtual_hosts[0].routes[0]: one of route, redirect or direct_response must be set"},
		{"no match", vh(`- route: {cluster: c}`), "virtual_hosts[0].routes[0].match: must be set"},
		{"no path specifier", vh(`- {match: {headers: [{name: a}]}, route: {cluster: c}}`), "virtual_hosts[0].routes[0].match: one of prefix, path, safe_regex or path_separated_prefix must be set"},
		{"empty cluster", vh(`- {match: {prefix: /}, route: {cluster: ""}}`), "virtual_hosts[0].routes[0].route.cluster: must not be empty"},
		{"no cluster", vh(`- {match: {prefix: /}, route: {timeout: 1s}}`), "virtual_hosts[0].routes[0].route: one of cluster, cluster_header or weighted_clusters must be set"},
		{"path_separated_prefix slash", vh(`- {match: {path_separated_prefix: /a/}, route: {cluster: c}}`), "virtual_hosts[0].routes[0].match.path_separated_prefix: must be non-empty, without '?' or '#', and must not end with '/'"},
		{"unsupported operator", vh(`
- match: {prefix: /}
  route: {cluster: c}
  request_headers_to_add: [{header: {key: x-a, value: "%REQ(x-foo)%"}}]`), "virtual_hosts[0].routes[0].request_headers_to_add[0].header.value: unsupported command operator %REQ(x-foo)% (only %DOWNSTREAM_REMOTE_ADDRESS% and %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% are supported)"},
		{"unterminated operator", `
virtual_hosts:
- name: v
  domains: ["*"]
  response_headers_to_add: [{header: {key: x-a, value: ok}}, {header: {key: x-b, value: "100%"}}]
`, "virtual_hosts[0].response_headers_to_add[1].header.value: unterminated command operator (write %% for a literal %)"},
		{"pseudo header", `request_headers_to_add: [{header: {key: ":path", value: /x}}]`, `request_headers_to_add[0].header.key: header ":path" may not be modified (pseudo-headers and host are reserved)`},
		{"remove host", `response_headers_to_remove: [a, Host]`, `response_headers_to_remove[1]: header "host" may not be modified (pseudo-headers and host are reserved)`},
		{"append and append_action", vh(`
- match: {prefix: /}
  route: {cluster: c}
  response_headers_to_add: [{header: {key: x-a, value: a}, append: true, append_action: OVERWRITE_IF_EXISTS}]`), "virtual_hosts[0].routes[0].response_headers_to_add[0]: append and append_action are mutually exclusive"},
		{"zero weights", vh(`
- match: {prefix: /}
  route: {weighted_clusters: {clusters: [{name: a, weight: 0}, {name: b}]}}`), "virtual_hosts[0].routes[0].route.weighted_clusters.clusters: sum of weights must be greater than 0"},
		{"total weight mismatch", vh(`
- match: {prefix: /}
  route: {weighted_clusters: {total_weight: 100, clusters: [{name: a, weight: 30}, {name: b, weight: 30}]}}`), "virtual_hosts[0].routes[0].route.weighted_clusters.total_weight: is 100 but the weights add up to 60"},
		{"weighted cluster header", vh(`
- match: {prefix: /}
  route: {weighted_clusters: {clusters: [{name: a, weight: 1}, {cluster_header: x, weight: 1}]}}`), "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1].cluster_header: not supported by Weft"},
		{"unknown retry_on", vh(`
- match: {prefix: /}
  route: {cluster: c, retry_policy: {retry_on: "5xx,bogus"}}`), `virtual_hosts[0].routes[0].route.retry_policy.retry_on: unknown retry condition "bogus"`},
		{"unsupported retry_on", `
virtual_hosts:
- {name: v, domains: ["*"], retry_policy: {retry_on: "unavailable"}}
`, `virtual_hosts[0].retry_policy.retry_on: retry condition "unavailable" is not supported by Weft`},
		{"retry back-off", vh(`
- match: {prefix: /}
  route: {cluster: c, retry_policy: {retry_back_off: {base_interval: 1s, max_interval: 0.5s}}}`), "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.max_interval: must be greater than or equal to base_interval"},
		{"negative timeout", vh(`- {match: {prefix: /}, route: {cluster: c, timeout: -1s}}`), "virtual_hosts[0].routes[0].route.timeout: must not be negative"},
		{"non-forwarding", vh(`- {match: {prefix: /}, non_forwarding_action: {}}`), "virtual_hosts[0].routes[0].non_forwarding_action: not supported by Weft"},
		{"filter action", vh(`- {match: {prefix: /}, filter_action: {}}`), "virtual_hosts[0].routes[0].filter_action: not supported by Weft"},
		{"metadata match", vh(`- {match: {prefix: /}, route: {cluster: c, metadata_match: {}}}`), "virtual_hosts[0].routes[0].route.metadata_match: not supported by Weft"},
		{"connect matcher", vh(`- {match: {connect_matcher: {}}, route: {cluster: c}}`), "virtual_hosts[0].routes[0].match.connect_matcher: not supported by Weft"},
		{"cookie matcher", vh(`- {match: {prefix: /, cookies: [{name: a, string_match: {exact: b}}]}, route: {cluster: c}}`), "virtual_hosts[0].routes[0].match.cookies: not supported by Weft"},
		{"require tls", `virtual_hosts: [{name: v, domains: [a], require_tls: ALL}]`, "virtual_hosts[0].require_tls: not supported by Weft"},
		{"mirror without cluster", vh(`- {match: {prefix: /}, route: {cluster: c, request_mirror_policies: [{cluster: m}, {}]}}`), "virtual_hosts[0].routes[0].route.request_mirror_policies[1]: one of cluster or cluster_header must be set"},
		{"hash policy empty header", vh(`- {match: {prefix: /}, route: {cluster: c, hash_policy: [{header: {}}]}}`), "virtual_hosts[0].routes[0].route.hash_policy[0].header.header_name: must not be empty"},
		{"direct status", vh(`- {match: {prefix: /}, direct_response: {status: 100}}`), "virtual_hosts[0].routes[0].direct_response.status: 100 is not in [200, 599]"},
		{"direct body too big", "max_direct_response_body_size_bytes: 4\n" + vh(`- {match: {prefix: /}, direct_response: {status: 200, body: {inline_string: "12345"}}}`), "virtual_hosts[0].routes[0].direct_response.body: response body is 5 bytes; maximum is 4 (max_direct_response_body_size_bytes)"},
		{"direct body file", vh(`- {match: {prefix: /}, direct_response: {status: 200, body: {filename: /etc/passwd}}}`), "virtual_hosts[0].routes[0].direct_response.body.filename: not supported by Weft"},
		{"rewrite group", vh(`
- match: {prefix: /}
  route: {cluster: c, regex_rewrite: {pattern: {regex: "(a)"}, substitution: "\\2"}}`), `virtual_hosts[0].routes[0].route.regex_rewrite.substitution: \2 refers to a group the pattern does not have (it has 1)`},
		{"both rewrites", vh(`
- match: {prefix: /}
  route: {cluster: c, prefix_rewrite: /x, regex_rewrite: {pattern: {regex: a}, substitution: b}}`), "virtual_hosts[0].routes[0].route: only one of prefix_rewrite and regex_rewrite may be set"},
		{"redirect regex", vh(`- {match: {prefix: /}, redirect: {regex_rewrite: {pattern: {regex: "+"}, substitution: b}}}`), "virtual_hosts[0].routes[0].redirect.regex_rewrite.pattern: error parsing regexp: missing argument to repetition operator: `+`"},
		{"vhds", `vhds: {config_source: {ads: {}}}`, "vhds: not supported by Weft"},
		// Caught by the generated proto rules rather than Weft's own checks.
		{"proto rule", vh(`- {match: {prefix: /}, route: {cluster: c, priority: 7}}`), "virtual_hosts[0].routes[0].route.priority: value must be one of the defined enum values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(parseRC(t, tt.src))
			if err == nil {
				t.Fatalf("Compile succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError", err)
			}
			if errors.Unwrap(err) == nil || !strings.HasPrefix(tt.want, fe.Field) {
				t.Errorf("FieldError{Field: %q} does not lead the message", fe.Field)
			}
		})
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil); err == nil {
		t.Fatal("Compile(nil) succeeded")
	}
}

func TestCompileEmpty(t *testing.T) {
	tbl := mustCompile(t, "name: empty\ninternal_only_headers: [X-Internal]")
	if got := tbl.InternalOnlyHeaders(); len(got) != 1 || got[0] != "x-internal" {
		t.Errorf("InternalOnlyHeaders = %q", got)
	}
	if r := tbl.Route(req(":authority", "a", ":path", "/")); r != nil {
		t.Fatalf("empty table matched %v", r)
	}
}
