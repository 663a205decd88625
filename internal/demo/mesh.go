package demo

// The registry part of the demo: an embedded service registry in the demo
// process, and the Bolt service com.weftmesh.demo.CatalogService with two
// providers and two consumers sharing it:
//
//   - a meshed provider: its sidecar's mesh agent publishes it (sdk.Publish)
//     and registers the sidecar's ingress address;
//   - a plain provider: it registers its own address itself;
//   - a meshed consumer: it subscribes through its sidecar (sdk.Subscribe)
//     and calls the egress address it got; the sidecar follows the registry
//     and balances over the providers;
//   - a plain consumer: it follows the registry itself and calls the
//     providers directly, round robin.
//
// So every pair runs: meshed->meshed, meshed->plain, plain->meshed and
// plain->plain. The providers and the callers are those of the RPC part
// (rpc.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
	"github.com/weftmesh/weft/sdk"
)

// Names of the registry part.
const (
	catalogService  = "com.weftmesh.demo.CatalogService" // Bolt
	catalogVersion  = "1.0"
	catalogMethod   = "lookup"
	catalogProtocol = "bolt"
	catalogMeshed   = "catalog-meshed" // the provider behind a sidecar
	catalogPlain    = "catalog-plain"  // the provider that registers itself
	sidecarCatalog  = "sidecar-" + catalogMeshed
	sidecarConsumer = "sidecar-meshed-consumer"

	// meshDrainGrace is how long the meshed provider's sidecar keeps
	// serving after deregistering at shutdown.
	meshDrainGrace = time.Second
)

// catalogCaller is the Bolt caller of both consumers.
func catalogCaller() rpcProtocol {
	return &boltCaller{service: catalogService, version: catalogVersion, method: catalogMethod, arg: "item #", app: "catalog"}
}

// meshDemo is the registry part: the registry server, the plain provider's
// registration, the consumers and what they know of the providers.
type meshDemo struct {
	log      *slog.Logger
	srv      *embedded.Server
	served   chan error
	registry string // the registry's address

	meshed, plain *caller

	cancel context.CancelFunc // stops the watches
	wg     sync.WaitGroup
	// The plain provider's and the plain consumer's registry clients.
	provReg, consReg *embedded.Registry

	mu      sync.Mutex
	egress  string         // the meshed consumer's: what sdk.Subscribe answered
	viaSide []sdk.Instance // the providers its sidecar knows (sdk.Watch)
	direct  []string       // the plain consumer's providers (registry.Watch)
	listed  []registry.Instance
}

// startRegistry serves the embedded registry on a free loopback port and
// makes the consumers (idle until start).
func startRegistry(log *slog.Logger, rps int) (*meshDemo, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	m := &meshDemo{
		log:      log,
		srv:      embedded.NewServer(embedded.ServerOptions{Logger: log.With("registry", "embedded")}),
		served:   make(chan error, 1),
		registry: ln.Addr().String(),
	}
	go func() { m.served <- m.srv.Serve(ln) }()
	m.meshed = newCaller(catalogService+":"+catalogVersion, "its sidecar's egress (sdk.Subscribe)", rps, catalogCaller, m.meshedTargets)
	m.plain = newCaller(catalogService+":"+catalogVersion, "the providers, direct, round robin (registry "+m.registry+")", rps, catalogCaller, m.plainTargets)
	return m, nil
}

// closeRegistry stops the registry server.
func (m *meshDemo) closeRegistry() {
	_ = m.srv.Close()
	if err := <-m.served; err != nil {
		m.log.Warn("demo registry", "err", err)
	}
}

// start publishes the meshed provider through its sidecar (SDK API at
// provSDK), registers the plain provider at its own address, subscribes the
// meshed consumer through its sidecar (SDK API at consSDK) and starts
// following the registry for the plain consumer. stop undoes it, also
// after a failed start.
func (m *meshDemo) start(ctx context.Context, provSDK, consSDK string, meshedPort, plainPort int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md := func(app string) map[string]string { return map[string]string{"app": app, "version": catalogVersion} }

	// The meshed provider publishes through its sidecar, which registers
	// its own ingress address.
	pub, err := sdk.New(provSDK).Publish(ctx, sdk.Publication{Service: catalogService, Protocol: catalogProtocol, Port: meshedPort, Metadata: md(catalogMeshed)})
	if err != nil {
		return fmt.Errorf("%s: publish: %w", catalogMeshed, err)
	}
	if !pub.Registered {
		m.log.Warn("the meshed provider is not registered yet", "instance", pub.Instance.Address)
	}
	// The plain provider registers its own address; closing the client
	// (stop) deregisters it.
	m.provReg = embedded.New(embedded.Options{Address: m.registry, Logger: m.log.With("app", catalogPlain)})
	inst := registry.Instance{Service: catalogService, Protocol: catalogProtocol, Address: fmt.Sprintf("127.0.0.1:%d", plainPort), Metadata: md(catalogPlain)}
	if err := m.provReg.Register(ctx, inst); err != nil {
		return fmt.Errorf("%s: register: %w", catalogPlain, err)
	}

	// The consumers learn of the providers in the background: the
	// sidecar's subscription (long polls of the SDK API) and the registry
	// itself. Calls start once a consumer knows a provider.
	wctx, stopWatches := context.WithCancel(context.Background())
	m.cancel = stopWatches
	side := sdk.New(consSDK)
	sub, err := side.Subscribe(ctx, catalogService, catalogProtocol)
	if err != nil {
		return fmt.Errorf("meshed consumer: subscribe: %w", err)
	}
	m.mu.Lock()
	m.egress = sub.Address
	m.mu.Unlock()
	m.consReg = embedded.New(embedded.Options{Address: m.registry, Logger: m.log.With("app", "plain-consumer")})
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		_ = side.Watch(wctx, catalogService, catalogProtocol, func(s *sdk.Subscription) {
			if !s.Known {
				return
			}
			m.mu.Lock()
			m.viaSide = s.Instances
			m.mu.Unlock()
		})
	}()
	go func() {
		defer m.wg.Done()
		_ = m.consReg.Watch(wctx, catalogService, func(list []registry.Instance) {
			var addrs []string
			var mine []registry.Instance
			for _, in := range list {
				if in.Protocol == catalogProtocol {
					addrs = append(addrs, in.Address)
					mine = append(mine, in)
				}
			}
			m.mu.Lock()
			m.direct, m.listed = addrs, mine
			m.mu.Unlock()
		})
	}()
	return nil
}

// stop ends the watches, the plain consumer's registry client, and the
// plain provider's registration (its client deregisters on Close). The
// callers have stopped before.
func (m *meshDemo) stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	for _, r := range []*embedded.Registry{m.consReg, m.provReg} {
		if r != nil {
			if err := r.Close(); err != nil {
				m.log.Warn("demo registry client", "err", err)
			}
		}
	}
}

// meshedTargets: the egress address, once the sidecar knows a provider.
func (m *meshDemo) meshedTargets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.egress == "" || len(m.viaSide) == 0 {
		return nil
	}
	return []string{m.egress}
}

// plainTargets: the providers' addresses as the registry lists them.
func (m *meshDemo) plainTargets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.direct
}

// consumerStatus is what /mesh shows of a consumer.
type consumerStatus struct {
	callerStats
	// Providers are the instances the consumer (or its sidecar) knows.
	Providers []string `json:"providers"`
}

func describe(addr string, md map[string]string) string {
	s := addr + " (" + md["app"]
	if md["meshed"] == "true" {
		s += ", meshed: its sidecar's ingress"
	}
	return s + ")"
}

// status serves /mesh.
func (m *meshDemo) status(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	var viaSide, direct []string
	for _, in := range m.viaSide {
		viaSide = append(viaSide, describe(in.Address, in.Metadata))
	}
	for _, in := range m.listed {
		direct = append(direct, describe(in.Address, in.Metadata))
	}
	egress := m.egress
	m.mu.Unlock()
	sort.Strings(viaSide)
	sort.Strings(direct)
	meshed, plain := m.meshed.stats(), m.plain.stats()
	if egress != "" {
		meshed.Via = egress + " (" + sidecarConsumer + " egress, from sdk.Subscribe)"
	}
	out := map[string]any{
		"registry":        m.registry,
		"service":         catalogService,
		"meshed_consumer": consumerStatus{meshed, nonNil(viaSide)},
		"plain_consumer":  consumerStatus{plain, nonNil(direct)},
	}
	if m.meshed.rps <= 0 {
		out["note"] = "no calls: background load is off (--rps 0)"
	}
	w.Header().Set("content-type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// errNoSDK reports a mesh sidecar without an SDK API (a config mistake).
var errNoSDK = errors.New("the sidecar runs no mesh agent")
