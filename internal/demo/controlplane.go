package demo

// The control-plane part of the demo: `weft control-plane` runs inside the
// demo process on rules written to <Dir>/rules, fed with endpoints by the
// demo's registry, and sidecar-xds takes every listener, route, cluster and
// endpoint from it over ADS:
//
//   - HTTP to "backend" through sidecar-xds is split 80/20 between the two
//     backend sidecars (by their version label), and x-demo-user: tester
//     always gets v2;
//   - Bolt calls to the catalog service through sidecar-xds reach the
//     providers the registry knows (the meshed one's sidecar and the plain
//     one), with no endpoint written in the rules.
//
// Editing the rule files changes the routes in about a second.

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/weftmesh/weft/internal/app"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/controlplane"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
)

const sidecarXDS = "sidecar-xds"

// cpDemo is the running control plane and its registry client.
type cpDemo struct {
	srv   *controlplane.Server
	reg   registry.Registry
	rules string
}

// startControlPlane writes the demo's rules and starts the control plane;
// httpPort and boltPort are sidecar-xds's egress listeners, backends the
// ports of the two backend sidecars (v1, v2).
func startControlPlane(log *slog.Logger, dir, registryAddr string, httpPort, boltPort int, backends [2]int) (*cpDemo, error) {
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{
		"services.yaml": fmt.Sprintf(`# The demo's services. The catalog service has no endpoints here: the
# control plane takes them from the registry (its providers register there).
services:
- name: backend
  protocol: http
  endpoints:
  - {address: 127.0.0.1:%d, labels: {version: v1}}   # sidecar-backend-1
  - {address: 127.0.0.1:%d, labels: {version: v2}}   # sidecar-backend-2
  traffic_policy: {lb_policy: round_robin, connect_timeout: 1s}
- name: %s
  protocol: bolt
`, backends[0], backends[1], catalogService),
		"routes.yaml": `# Edit me: the change reaches sidecar-xds in about a second.
routes:
- service: backend
  rules:
  - name: testers-see-v2
    match: {headers: [{name: x-demo-user, exact: tester}]}
    destinations: [{subset: {version: v2}}]
  - name: canary
    destinations:
    - {subset: {version: v1}, weight: 80}
    - {subset: {version: v2}, weight: 20}
    timeout: 3s
    retries: {attempts: 2, retry_on: [connect-failure, 5xx]}
`,
		"sidecars.yaml": fmt.Sprintf(`sidecars:
- name: xds
  match: {node_id: %s}
  listeners:
  - {name: http_egress, address: "127.0.0.1:%d", protocol: http, services: [backend]}
  - {name: bolt_egress, address: "127.0.0.1:%d", protocol: bolt}
`, sidecarXDS, httpPort, boltPort),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(rules, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	reg := embedded.New(embedded.Options{Address: registryAddr, Logger: log.With("component", "control-plane-registry")})
	srv, err := controlplane.New(controlplane.Options{RulesDir: rules, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		Registry: reg, RegistryName: "embedded", Logger: log.With("component", "control-plane")})
	if err != nil {
		_ = reg.Close()
		return nil, fmt.Errorf("control plane: %w", err)
	}
	srv.Start()
	return &cpDemo{srv: srv, reg: reg, rules: rules}, nil
}

func (c *cpDemo) close() {
	_ = c.srv.Close()
	_ = c.reg.Close()
}

// startXDSSidecar runs sidecar-xds: a bootstrap with nothing but the
// control plane's address.
func (c *cpDemo) startXDSSidecar(o Options, adminPort int) (*app.App, error) {
	cfg, err := controlplane.SidecarBootstrap(sidecarXDS, c.srv.XDSAddr(), adminPort, false)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(o.Dir, sidecarXDS+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	b, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("demo config %s: %w", sidecarXDS, err)
	}
	a, err := app.New(b, app.Options{Logger: o.Logger.With("sidecar", sidecarXDS), LogLevel: o.LogLevel, DrainTimeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sidecarXDS, err)
	}
	a.Start()
	return a, nil
}
