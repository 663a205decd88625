package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/test/rpcpeer"
)

// plainConsumer is an application without a sidecar as Dubbo and SOFARPC
// clients are: it follows the registry itself and calls providers
// directly, round robin. switchTo(addr) moves it behind a sidecar (every
// call to addr); switchTo("") moves it back.
type plainConsumer struct {
	t     *testing.T
	p     rpcpeer.Protocol
	reg   registry.Registry
	mu    sync.Mutex
	list  []registry.Instance
	conns map[string]*rpcpeer.Client
	via   string
	next  atomic.Uint64
}

func newPlainConsumer(t *testing.T, p rpcpeer.Protocol, regAddr, service string) *plainConsumer {
	c := &plainConsumer{t: t, p: p, reg: embedded.New(embedded.Options{Address: regAddr}), conns: map[string]*rpcpeer.Client{}}
	t.Cleanup(func() { _ = c.reg.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		_ = c.reg.Watch(ctx, service, func(l []registry.Instance) {
			var mine []registry.Instance
			for _, in := range l {
				if in.Protocol == string(p) {
					mine = append(mine, in)
				}
			}
			c.mu.Lock()
			c.list = mine
			c.mu.Unlock()
			once.Do(func() { close(ready) })
		})
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the plain consumer never heard from the registry")
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, cl := range c.conns {
			_ = cl.Close()
		}
	})
	return c
}

func (c *plainConsumer) switchTo(addr string) {
	c.mu.Lock()
	c.via = addr
	c.mu.Unlock()
}

// target picks where the next call goes.
func (c *plainConsumer) target() (*rpcpeer.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := c.via
	if addr == "" {
		if len(c.list) == 0 {
			return nil, context.DeadlineExceeded
		}
		addr = c.list[c.next.Add(1)%uint64(len(c.list))].Address
	}
	cl := c.conns[addr]
	if cl == nil {
		var err error
		if cl, err = rpcpeer.Dial(c.p, addr); err != nil {
			return nil, err
		}
		c.conns[addr] = cl
	}
	return cl, nil
}

// load calls service continuously from 8 goroutines until stop and counts
// every failure (transport error or non-success status).
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(c *plainConsumer, service string) *load {
	l := &load{stop: make(chan struct{})}
	for g := 0; g < 8; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				cl, err := c.target()
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					var r *rpcpeer.Response
					r, err = cl.Call(ctx, &rpcpeer.Request{Service: service, Method: "echo", Body: []byte("migrate")})
					cancel()
					if err == nil && r.Status != okStatus(c.p) {
						err = context.Canceled
						l.lastErr.Store(string(r.Body))
					}
				}
				if err != nil {
					l.failed.Add(1)
					if l.lastErr.Load() == nil {
						l.lastErr.Store(err.Error())
					}
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// TestMigrationDualMode moves a provider instance and a consumer onto the
// mesh and back off it, in both orders, with load running all along through
// one registry shared by plain and meshed applications: no request may
// fail.
func TestMigrationDualMode(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	for _, order := range []string{"provider-first", "consumer-first"} {
		for _, p := range rpcProtocols {
			t.Run(order+"/"+string(p), func(t *testing.T) {
				t.Parallel()
				service := "com.example.migrate." + order + "." + string(p) + ".Echo"
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				// Two plain providers that register themselves.
				p1, p2 := rpcServe(t, p, "p1", 0), rpcServe(t, p, "p2", 0)
				reg1, reg2 := embedded.New(embedded.Options{Address: reg}), embedded.New(embedded.Options{Address: reg})
				t.Cleanup(func() { _ = reg1.Close(); _ = reg2.Close() })
				plain1 := registry.Instance{Service: service, Protocol: string(p), Address: p1.Addr()}
				for _, x := range []struct {
					r registry.Registry
					i registry.Instance
				}{{reg1, plain1}, {reg2, registry.Instance{Service: service, Protocol: string(p), Address: p2.Addr()}}} {
					if err := x.r.Register(ctx, x.i); err != nil {
						t.Fatal(err)
					}
				}
				cons := newPlainConsumer(t, p, reg, service)
				waitList := func(what string, ok func([]registry.Instance) bool) {
					t.Helper()
					deadline := time.Now().Add(10 * time.Second)
					for {
						cons.mu.Lock()
						l := append([]registry.Instance(nil), cons.list...)
						cons.mu.Unlock()
						if ok(l) {
							return
						}
						if time.Now().After(deadline) {
							t.Fatalf("%s: consumer's list %v", what, l)
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
				waitList("two plain providers", func(l []registry.Instance) bool { return len(l) == 2 })
				ld := startLoad(cons, service)
				phase := func(name string) {
					time.Sleep(700 * time.Millisecond)
					t.Logf("%s: %d ok, %d failed so far", name, ld.ok.Load(), ld.failed.Load())
				}
				phase("plain")

				var side1, sideC *meshSidecar
				var pub *sdk.Published
				// Provider p1 onto the mesh: its sidecar publishes it
				// (registering the sidecar's ingress), then p1's own
				// registration goes.
				providerOn := func() {
					side1 = startMeshSidecar(t, reg)
					var err error
					pub, err = side1.sdk.Publish(ctx, sdk.Publication{Service: service, Protocol: string(p), Port: portOf(t, p1.Addr())})
					if err != nil {
						t.Fatal(err)
					}
					waitList("the meshed p1 listed", func(l []registry.Instance) bool { return len(l) == 3 })
					if err := reg1.Deregister(ctx, plain1); err != nil {
						t.Fatal(err)
					}
					waitList("plain p1 gone", func(l []registry.Instance) bool { return len(l) == 2 })
					phase("provider meshed")
				}
				// The consumer onto the mesh: it subscribes through its own
				// sidecar and calls the egress.
				consumerOn := func() {
					sideC = startMeshSidecar(t, reg)
					sub := waitInstances(t, sideC.sdk, service, string(p), 2)
					cons.switchTo(sub.Address)
					phase("consumer meshed")
				}
				// The provider back: p1 registers itself again, its sidecar
				// unpublishes (deregister, drain grace) and stops.
				providerOff := func() {
					if err := reg1.Register(ctx, plain1); err != nil {
						t.Fatal(err)
					}
					waitList("plain p1 back", func(l []registry.Instance) bool { return len(l) == 3 })
					if err := side1.sdk.Unpublish(ctx, service, string(p)); err != nil {
						t.Fatal(err)
					}
					waitList("the meshed p1 gone", func(l []registry.Instance) bool { return len(l) == 2 })
					side1.w.Signal(syscall.SIGTERM)
					if !side1.w.Wait(10 * time.Second) {
						t.Fatal("p1's sidecar did not stop")
					}
					phase("provider back to plain")
				}
				// The consumer back: direct calls again, sidecar off.
				consumerOff := func() {
					cons.switchTo("")
					time.Sleep(300 * time.Millisecond) // calls already on the way to the sidecar finish
					sideC.w.Signal(syscall.SIGTERM)
					if !sideC.w.Wait(10 * time.Second) {
						t.Fatal("the consumer's sidecar did not stop")
					}
					phase("consumer back to plain")
				}
				bothMeshed := func() {
					// Traffic really crosses both sidecars.
					if v := sideC.w.metricValue("weft_rpc_downstream_rq_total", "stat_prefix=mesh_egress_"+string(p)); v <= 0 {
						t.Errorf("the consumer's sidecar carried no requests (%v)", v)
					}
					if v := side1.w.metricValue("weft_rpc_downstream_rq_total", "stat_prefix=mesh_ingress_"+string(p)); v <= 0 {
						t.Errorf("p1's sidecar carried no requests (%v)", v)
					}
				}
				if order == "provider-first" {
					providerOn()
					consumerOn()
					bothMeshed()
					providerOff()
					consumerOff()
				} else {
					consumerOn()
					providerOn()
					bothMeshed()
					consumerOff()
					providerOff()
				}

				close(ld.stop)
				ld.wg.Wait()
				if ld.failed.Load() > 0 || ld.ok.Load() < 200 {
					t.Fatalf("migration under load: %d ok, %d failed (first error: %v)", ld.ok.Load(), ld.failed.Load(), ld.lastErr.Load())
				}
				if pub.Instance.Address == p1.Addr() {
					t.Errorf("the sidecar registered the application's port")
				}
				t.Logf("migration under load: %d requests, none failed", ld.ok.Load())
			})
		}
	}
}
