// Package demo runs `weft demo`: a small mesh on loopback made of sample
// services, a sidecar beside each, and a trickle of load, so a person can
// curl it and watch the admin pages. Its parts: HTTP services, Bolt and
// Dubbo providers behind statically configured sidecars (rpc.go), a gRPC
// server behind a sidecar that speaks HTTP/2 to it (grpc.go), meshed and
// plain Bolt applications sharing an embedded service registry through
// the sidecars' mesh agents (mesh.go), and a sidecar configured by the
// control plane (controlplane.go).
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/weftmesh/weft/internal/app"
	"github.com/weftmesh/weft/internal/config"
)

//go:embed sidecar.yaml.tmpl
var sidecarTmpl string

// Options configure the demo.
type Options struct {
	BasePort  int // frontend sidecar listener; admin ports start at 9901
	AdminBase int
	RPS       int       // background load through the mesh; 0 disables
	Out       io.Writer // where the banner goes
	Logger    *slog.Logger
	LogLevel  *slog.LevelVar // shared by the sidecars, so /logging changes them
	Dir       string         // where configs and access logs are written
}

type routeSpec struct{ Name, Prefix, Cluster string }
type clusterSpec struct {
	Name, LB string
	Ports    []int
	HTTP2    bool // speak HTTP/2 (h2c) to the hosts, as gRPC needs
}

// rpcRouteSpec sends every method of the service Domain ("*": any) to
// Cluster.
type rpcRouteSpec struct{ Name, Domain, Cluster string }

// rpcSpec is a sidecar's RPC proxy listener.
type rpcSpec struct {
	Port       int
	StatPrefix string
	Protocols  []string
	Services   []rpcRouteSpec
	AccessLog  string
}

// meshSpec is a sidecar's mesh agent: its SDK API, the registry, and its
// ingress and egress listeners by protocol.
type meshSpec struct {
	SDKPort         int
	Registry        string
	Ingress, Egress map[string]int // protocol -> port
	DrainGrace      time.Duration
	Metadata        map[string]string
}

type sidecarSpec struct {
	Name                  string
	ListenPort, AdminPort int // ListenPort 0: no HTTP listener
	AccessLog             string
	Fault                 bool
	Routes                []routeSpec
	RPC                   *rpcSpec
	Clusters              []clusterSpec
	Mesh                  *meshSpec
}

// Names of the RPC part of the mesh.
const (
	boltApp         = "bolt-echo"
	dubboApp        = "dubbo-greeting"
	egressPrefix    = "egress"  // stat_prefix of the frontend sidecar's RPC listener
	ingressPrefix   = "ingress" // stat_prefix of the providers' sidecars
	sidecarFrontend = "sidecar-frontend"
)

// Ports of the mesh, as offsets from Options.BasePort and AdminBase. The
// registry takes a free port.
const (
	basePorts  = 13 // base: frontend, +1, +2: backends, +3: RPC egress, +4, +5: RPC providers, +6..+9: registry part, +10, +11: sidecar-xds, +12: sidecar-grpc
	adminPorts = 9  // one per sidecar: +0..+6 the static ones, +7: sidecar-xds, +8: sidecar-grpc
)

// Run starts the mesh and blocks until ctx ends, then drains it: the
// callers stop first, then the plain provider deregisters, the sidecars
// deregister (the mesh agents) and drain, then the sample services and
// the registry close.
func Run(ctx context.Context, o Options) error {
	if o.BasePort == 0 {
		o.BasePort = 10000
	}
	if o.AdminBase == 0 {
		o.AdminBase = 9901
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "weft-demo-")
		if err != nil {
			return err
		}
		o.Dir = d
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	p := o.BasePort
	// The RPC callers run inside the demo process; the frontend app shows
	// their results on /rpc.
	rpcEgress := fmt.Sprintf("127.0.0.1:%d", p+3)
	grpcCall := newGRPCCaller(fmt.Sprintf("127.0.0.1:%d", p), o.RPS)
	callers := map[string]*caller{
		"bolt":  newCaller(echoService+":"+echoVersion, rpcEgress, o.RPS, echoCaller, to(rpcEgress)),
		"dubbo": newCaller(greetingService, rpcEgress, o.RPS, func() rpcProtocol { return &dubboCaller{} }, to(rpcEgress)),
		"grpc":  grpcCall.c,
	}
	rpcStatus := func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]any{}
		for name, c := range callers {
			out[name] = c.stats()
		}
		if o.RPS <= 0 {
			out["note"] = "no RPC callers: background load is off (--rps 0)"
		}
		w.Header().Set("content-type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}

	// The service registry of the mesh agents and the plain applications,
	// closed last.
	mesh, err := startRegistry(o.Logger, o.RPS)
	if err != nil {
		return err
	}
	defer mesh.closeRegistry()
	// The control plane, fed by the registry; closed after the sidecars.
	cp, err := startControlPlane(o.Logger, o.Dir, mesh.registry, p+10, p+11, [2]int{p + 1, p + 2})
	if err != nil {
		return err
	}
	defer cp.close()

	// Sample services: two instances of "backend", one "frontend" that
	// calls the backend through its own sidecar, the RPC providers, the
	// catalog's providers, and the gRPC server.
	b1, err := startService("backend-1", nil, nil)
	if err != nil {
		return err
	}
	defer b1.Close()
	b2, err := startService("backend-2", nil, nil)
	if err != nil {
		return err
	}
	defer b2.Close()
	egress := fmt.Sprintf("http://127.0.0.1:%d", p)
	fe, err := startService("frontend", &egress, map[string]http.HandlerFunc{"/rpc": rpcStatus, "/mesh": mesh.status})
	if err != nil {
		return err
	}
	defer fe.Close()
	boltSrv, err := startTCPServer(boltEcho(echoService, boltApp))
	if err != nil {
		return err
	}
	defer boltSrv.Close()
	dubboSrv, err := startTCPServer(dubboGreeting(dubboApp))
	if err != nil {
		return err
	}
	defer dubboSrv.Close()
	catalogMeshedSrv, err := startTCPServer(boltEcho(catalogService, catalogMeshed))
	if err != nil {
		return err
	}
	defer catalogMeshedSrv.Close()
	catalogPlainSrv, err := startTCPServer(boltEcho(catalogService, catalogPlain))
	if err != nil {
		return err
	}
	defer catalogPlainSrv.Close()
	grpcSrv, err := startGRPCServer(grpcApp)
	if err != nil {
		return err
	}
	defer grpcSrv.Close()

	specs := []sidecarSpec{
		{
			// The frontend's sidecar: ingress from clients and egress to
			// the backend's sidecars; gRPC (h2c on the same listener) to
			// sidecar-grpc; RPC egress to the providers'.
			Name: sidecarFrontend, ListenPort: p, AdminPort: o.AdminBase, Fault: true,
			Routes: []routeSpec{
				{"backend", "/backend", "backend"},
				{"grpc-test", "/" + grpcTestService + "/", "grpc"},
				{"grpc-health", "/" + grpcHealthSvc + "/", "grpc"},
				{"frontend", "/", "frontend"},
			},
			RPC: &rpcSpec{
				Port: p + 3, StatPrefix: egressPrefix, Protocols: []string{"bolt", "dubbo"},
				Services: []rpcRouteSpec{
					{"echo", echoService, boltApp},
					{"greeting", greetingService, dubboApp},
				},
			},
			Clusters: []clusterSpec{
				{Name: "backend", LB: "ROUND_ROBIN", Ports: []int{p + 1, p + 2}},
				{Name: "frontend", LB: "ROUND_ROBIN", Ports: []int{port(fe)}},
				{Name: "grpc", LB: "ROUND_ROBIN", Ports: []int{p + 12}, HTTP2: true},
				{Name: boltApp, LB: "ROUND_ROBIN", Ports: []int{p + 4}},
				{Name: dubboApp, LB: "ROUND_ROBIN", Ports: []int{p + 5}},
			},
		},
		{
			Name: "sidecar-backend-1", ListenPort: p + 1, AdminPort: o.AdminBase + 1,
			Routes:   []routeSpec{{"local", "/", "local"}},
			Clusters: []clusterSpec{{Name: "local", LB: "ROUND_ROBIN", Ports: []int{port(b1)}}},
		},
		{
			Name: "sidecar-backend-2", ListenPort: p + 2, AdminPort: o.AdminBase + 2,
			Routes:   []routeSpec{{"local", "/", "local"}},
			Clusters: []clusterSpec{{Name: "local", LB: "ROUND_ROBIN", Ports: []int{port(b2)}}},
		},
		{
			Name: "sidecar-" + boltApp, AdminPort: o.AdminBase + 3,
			RPC: &rpcSpec{Port: p + 4, StatPrefix: ingressPrefix, Protocols: []string{"bolt"},
				Services: []rpcRouteSpec{{"local", "*", "local"}}},
			Clusters: []clusterSpec{{Name: "local", LB: "ROUND_ROBIN", Ports: []int{boltSrv.port()}}},
		},
		{
			Name: "sidecar-" + dubboApp, AdminPort: o.AdminBase + 4,
			RPC: &rpcSpec{Port: p + 5, StatPrefix: ingressPrefix, Protocols: []string{"dubbo"},
				Services: []rpcRouteSpec{{"local", "*", "local"}}},
			Clusters: []clusterSpec{{Name: "local", LB: "ROUND_ROBIN", Ports: []int{dubboSrv.port()}}},
		},
		{
			// The meshed provider's sidecar: a mesh agent with a Bolt
			// ingress, and nothing configured statically.
			Name: sidecarCatalog, AdminPort: o.AdminBase + 5,
			Mesh: &meshSpec{SDKPort: p + 8, Registry: mesh.registry, Ingress: map[string]int{catalogProtocol: p + 6},
				DrainGrace: meshDrainGrace, Metadata: map[string]string{"zone": "demo"}},
		},
		{
			// The meshed consumer's sidecar: a mesh agent with a Bolt
			// egress.
			Name: sidecarConsumer, AdminPort: o.AdminBase + 6,
			Mesh: &meshSpec{SDKPort: p + 9, Registry: mesh.registry, Egress: map[string]int{catalogProtocol: p + 7},
				DrainGrace: meshDrainGrace, Metadata: map[string]string{"zone": "demo"}},
		},
		{
			// The gRPC server's sidecar: its HTTP listener (HTTP/1.1 or
			// h2c, codec_type AUTO) sends everything to the server over
			// HTTP/2.
			Name: sidecarGRPC, ListenPort: p + 12, AdminPort: o.AdminBase + 8,
			Routes:   []routeSpec{{"local", "/", "local"}},
			Clusters: []clusterSpec{{Name: "local", LB: "ROUND_ROBIN", Ports: []int{grpcSrv.port()}, HTTP2: true}},
		},
	}
	// sidecar-xds is configured by the control plane, not built from a
	// spec; its ports are checked with the others.
	xdsPorts := sidecarSpec{Name: sidecarXDS, ListenPort: p + 10, AdminPort: o.AdminBase + 7, RPC: &rpcSpec{Port: p + 11}}
	if err := checkPorts(append(specs[:len(specs):len(specs)], xdsPorts)); err != nil {
		return err
	}
	tmpl := template.Must(template.New("sidecar").Parse(sidecarTmpl))
	var apps []*app.App
	sdkAddr := map[string]string{} // sidecar -> its mesh agent's SDK API
	defer func() {
		for _, a := range apps {
			a.Shutdown(context.Background())
		}
	}()
	for _, sp := range specs {
		sp.AccessLog = filepath.Join(o.Dir, sp.Name+".access.log")
		if sp.RPC != nil {
			sp.RPC.AccessLog = filepath.Join(o.Dir, sp.Name+".rpc.access.log")
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, sp); err != nil {
			return err
		}
		path := filepath.Join(o.Dir, sp.Name+".yaml")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
		b, err := config.Load(path)
		if err != nil {
			return fmt.Errorf("demo config %s: %w", sp.Name, err)
		}
		a, err := app.New(b, app.Options{Logger: o.Logger.With("sidecar", sp.Name), LogLevel: o.LogLevel, DrainTimeout: 2 * time.Second})
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
				return fmt.Errorf("%s: %w (is another demo running? try --base-port and --admin-port)", sp.Name, err)
			}
			return fmt.Errorf("%s: %w", sp.Name, err)
		}
		a.Start()
		apps = append(apps, a)
		if sp.Mesh != nil {
			if sdkAddr[sp.Name] = a.MeshSDKAddr(); sdkAddr[sp.Name] == "" {
				return fmt.Errorf("%s: %w", sp.Name, errNoSDK)
			}
		}
	}
	xa, err := cp.startXDSSidecar(o, o.AdminBase+7)
	if err != nil {
		return err
	}
	apps = append(apps, xa)
	// The registry part: the meshed provider publishes, the plain one
	// registers, the meshed consumer subscribes, the plain one follows
	// the registry. Undone before the sidecars drain.
	defer mesh.stop()
	if err := mesh.start(ctx, sdkAddr[sidecarCatalog], sdkAddr[sidecarConsumer], catalogMeshedSrv.port(), catalogPlainSrv.port()); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	if o.Out != nil {
		if err := bannerTmpl.Execute(o.Out, map[string]any{
			"Dir": o.Dir, "P": p, "P1": p + 1, "P2": p + 2, "P3": p + 3, "P4": p + 4, "P5": p + 5,
			"P6": p + 6, "P7": p + 7, "SDKProvider": sdkAddr[sidecarCatalog], "SDKConsumer": sdkAddr[sidecarConsumer],
			"Admin": o.AdminBase, "Admin3": o.AdminBase + 3, "Admin4": o.AdminBase + 4,
			"Admin5": o.AdminBase + 5, "Admin6": o.AdminBase + 6, "RPS": o.RPS,
			"Echo": echoService + ":" + echoVersion, "Greeting": greetingService,
			"Bolt": boltApp, "Dubbo": dubboApp, "Egress": egressPrefix,
			"Registry": mesh.registry, "Catalog": catalogService, "CatalogPlainPort": catalogPlainSrv.port(),
			"CatalogMeshed": catalogMeshed, "CatalogPlain": catalogPlain,
			"SidecarCatalog": sidecarCatalog, "SidecarConsumer": sidecarConsumer,
			"P10": p + 10, "P11": p + 11, "Admin7": o.AdminBase + 7, "Rules": cp.rules, "CPAdmin": cp.srv.AdminAddr(),
			"P12": p + 12, "Admin8": o.AdminBase + 8, "GRPCPort": grpcSrv.port(), "GRPCApp": grpcApp,
			"TestService": grpcTestService, "Health": grpcHealthSvc, "SidecarGRPC": sidecarGRPC,
		}); err != nil {
			return err
		}
	}
	// Stopped before the sidecars drain (defers run last first), so no
	// call is cut off by the drain.
	var wg sync.WaitGroup
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer func() { stopLoad(); wg.Wait() }()
	if o.RPS > 0 {
		all := []*caller{callers["bolt"], callers["dubbo"], mesh.meshed, mesh.plain}
		wg.Add(2 + len(all))
		go func() { defer wg.Done(); load(loadCtx, fmt.Sprintf("http://127.0.0.1:%d/", p), o.RPS) }()
		go func() { defer wg.Done(); grpcCall.run(loadCtx) }()
		for _, c := range all {
			go func() { defer wg.Done(); c.run(loadCtx) }()
		}
	}
	<-ctx.Done()
	return nil
}

var bannerTmpl = template.Must(template.New("banner").Parse(`Weft demo mesh is up (configs and access logs in {{.Dir}})

  HTTP:
  client -> sidecar-frontend :{{.P}} -> frontend app
                              \-> /backend -> sidecar-backend-1 :{{.P1}} -> backend-1
                                           -> sidecar-backend-2 :{{.P2}} -> backend-2
  gRPC (h2c on the same port as HTTP; the path picks the route; HTTP/2 on every hop):
  grpc caller -> sidecar-frontend :{{.P}} -> /{{.TestService}}/*, /{{.Health}}/* -> {{.SidecarGRPC}} :{{.P12}} -> {{.GRPCApp}} :{{.GRPCPort}}
  RPC (Bolt and Dubbo on one port; the service name picks the route):
  bolt caller  --\                                    /-> sidecar-{{.Bolt}} :{{.P4}} -> {{.Bolt}} ({{.Echo}})
                  >-> sidecar-frontend :{{.P3}} (rpc) -<
  dubbo caller --/                                    \-> sidecar-{{.Dubbo}} :{{.P5}} -> {{.Dubbo}} ({{.Greeting}})
  Registry ({{.Catalog}} over Bolt; one embedded registry at {{.Registry}}):
  meshed consumer -> {{.SidecarConsumer}} :{{.P7}} (egress) --\   /-> {{.SidecarCatalog}} :{{.P6}} (ingress) -> {{.CatalogMeshed}}
                                                                 >-<
  plain consumer (follows the registry, calls directly) --------/   \-> {{.CatalogPlain}} :{{.CatalogPlainPort}} (registers itself)
  Each consumer reaches both providers, round robin: meshed->meshed, meshed->plain, plain->meshed, plain->plain.
  Control plane (weft control-plane in this process; rules in {{.Rules}}; endpoints also from the registry):
  client -> sidecar-xds :{{.P10}} (Host: backend) -> 80% sidecar-backend-1 (v1) / 20% sidecar-backend-2 (v2); x-demo-user: tester -> v2
  bolt   -> sidecar-xds :{{.P11}} -> the {{.Catalog}} providers the registry knows

Try:
  curl http://127.0.0.1:{{.P}}/                 # frontend, which calls the backend through its sidecar
  curl http://127.0.0.1:{{.P}}/backend/hello    # straight to a backend, round robin
  curl http://127.0.0.1:{{.P}}/rpc              # the Bolt, Dubbo and gRPC callers' last replies, through the mesh
  curl -s http://127.0.0.1:{{.Admin}}/stats/prometheus | grep 'weft_rpc_method_responses_total{.*protocol="grpc"'   # gRPC calls per method and grpc-status
  curl http://127.0.0.1:{{.P}}/mesh             # the meshed and the plain consumer: calls ok and failed, which provider answered
  curl -s http://{{.SDKProvider}}/v1/status   # SDK API of {{.SidecarCatalog}}: what it published
  curl -s http://{{.SDKConsumer}}/v1/status   # SDK API of {{.SidecarConsumer}}: its subscription and the providers it knows
  curl http://{{.Registry}}/v1/services/{{.Catalog}}   # the registry's instances
  curl -H 'Host: backend' http://127.0.0.1:{{.P10}}/hello   # through sidecar-xds: mostly backend-1, sometimes backend-2
  curl -H 'Host: backend' -H 'x-demo-user: tester' http://127.0.0.1:{{.P10}}/hello   # always backend-2
  $EDITOR {{.Rules}}/routes.yaml              # change the weights; sidecar-xds follows in about a second
  curl http://{{.CPAdmin}}/status             # the control plane: rules version, errors with file:line, nodes and their ACKs
  curl http://127.0.0.1:{{.Admin7}}/config_dump   # sidecar-xds: what it received, versions, last NACK
  open http://127.0.0.1:{{.Admin}}/                 # admin of sidecar-frontend (stats, clusters, config)
  curl http://127.0.0.1:{{.Admin}}/stats/prometheus
  curl http://127.0.0.1:{{.Admin}}/stats | grep rpc # RPC proxy stats: rpc.{{.Egress}}.* and per protocol, service and method
  curl http://127.0.0.1:{{.Admin}}/clusters
  (admin of sidecar-{{.Bolt}} :{{.Admin3}}, sidecar-{{.Dubbo}} :{{.Admin4}}, {{.SidecarCatalog}} :{{.Admin5}}, {{.SidecarConsumer}} :{{.Admin6}}, sidecar-xds :{{.Admin7}}, {{.SidecarGRPC}} :{{.Admin8}})

{{if gt .RPS 0}}Background load: {{.RPS}} requests/s over HTTP, and as many calls/s over Bolt, over Dubbo, over gRPC and from each catalog consumer.
{{- else}}Background load: off (--rps 0), so the RPC and gRPC callers and the catalog consumers are idle too.{{end}} Ctrl-C to stop (the sidecars deregister and drain first).
`))

// checkPorts reports a port of the mesh that is already taken, before any
// sidecar binds: a clear error instead of a half-started mesh.
func checkPorts(specs []sidecarSpec) error {
	type use struct {
		what string
		port int
	}
	for _, sp := range specs {
		ports := []use{{"listener", sp.ListenPort}, {"admin", sp.AdminPort}}
		if sp.RPC != nil {
			ports = append(ports, use{"RPC listener", sp.RPC.Port})
		}
		if m := sp.Mesh; m != nil {
			ports = append(ports, use{"mesh agent SDK API", m.SDKPort})
			for _, side := range []struct {
				name  string
				ports map[string]int
			}{{"ingress", m.Ingress}, {"egress", m.Egress}} {
				for _, proto := range sortedProtocols(side.ports) {
					ports = append(ports, use{"mesh " + side.name + " (" + proto + ")", side.ports[proto]})
				}
			}
		}
		for _, p := range ports {
			if p.port == 0 {
				continue
			}
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
			if err != nil {
				return fmt.Errorf("%s: %s port %d: %w (is another demo or weft running? try --base-port and --admin-port)", sp.Name, p.what, p.port, err)
			}
			_ = ln.Close()
		}
	}
	return nil
}

func sortedProtocols(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func port(s *service) int { return s.ln.Addr().(*net.TCPAddr).Port }

// service is a sample application on a loopback port.
type service struct {
	srv *http.Server
	ln  net.Listener
}

func (s *service) Close() { _ = s.srv.Close() }

// startService runs a sample HTTP service. With upstream set it is a
// frontend that calls the backend through its sidecar's egress. extra adds
// handlers by path.
func startService(name string, upstream *string, extra map[string]http.HandlerFunc) (*service, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 3 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"service": name, "path": r.URL.Path, "time": time.Now().Format(time.RFC3339Nano)}
		if upstream != nil {
			resp, err := client.Get(*upstream + "/backend/hello")
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				out["error"] = err.Error()
			} else {
				var v any
				_ = json.NewDecoder(resp.Body).Decode(&v)
				_ = resp.Body.Close()
				out["backend"] = v
			}
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	for path, h := range extra {
		mux.HandleFunc(path, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &service{srv: srv, ln: ln}, nil
}

// load sends rps requests per second until ctx ends.
func load(ctx context.Context, url string, rps int) {
	c := &http.Client{Timeout: 3 * time.Second}
	t := time.NewTicker(time.Second / time.Duration(rps))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return
			}
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
	}
}
