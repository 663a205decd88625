// Package demo runs `weft demo`: a small mesh on loopback made of sample
// services, a sidecar beside each, and a trickle of load, so a person can
// curl it and watch the admin pages.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
}
type sidecarSpec struct {
	Name                  string
	ListenPort, AdminPort int
	AccessLog             string
	Fault                 bool
	Routes                []routeSpec
	Clusters              []clusterSpec
}

// Run starts the mesh and blocks until ctx ends, then drains it.
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
	}
	// Sample services: two instances of "backend", one "frontend" that
	// calls the backend through its own sidecar.
	b1, err := startService("backend-1", nil)
	if err != nil {
		return err
	}
	defer b1.Close()
	b2, err := startService("backend-2", nil)
	if err != nil {
		return err
	}
	defer b2.Close()
	egress := fmt.Sprintf("http://127.0.0.1:%d", o.BasePort)
	fe, err := startService("frontend", &egress)
	if err != nil {
		return err
	}
	defer fe.Close()

	p := o.BasePort
	specs := []sidecarSpec{
		{
			// The frontend's sidecar: ingress from clients and egress to
			// the backend's sidecars.
			Name: "sidecar-frontend", ListenPort: p, AdminPort: o.AdminBase, Fault: true,
			Routes: []routeSpec{
				{"backend", "/backend", "backend"},
				{"frontend", "/", "frontend"},
			},
			Clusters: []clusterSpec{
				{"backend", "ROUND_ROBIN", []int{p + 1, p + 2}},
				{"frontend", "ROUND_ROBIN", []int{port(fe)}},
			},
		},
		{
			Name: "sidecar-backend-1", ListenPort: p + 1, AdminPort: o.AdminBase + 1,
			Routes:   []routeSpec{{"local", "/", "local"}},
			Clusters: []clusterSpec{{"local", "ROUND_ROBIN", []int{port(b1)}}},
		},
		{
			Name: "sidecar-backend-2", ListenPort: p + 2, AdminPort: o.AdminBase + 2,
			Routes:   []routeSpec{{"local", "/", "local"}},
			Clusters: []clusterSpec{{"local", "ROUND_ROBIN", []int{port(b2)}}},
		},
	}
	tmpl := template.Must(template.New("sidecar").Parse(sidecarTmpl))
	var apps []*app.App
	defer func() {
		for _, a := range apps {
			a.Shutdown(context.Background())
		}
	}()
	for _, sp := range specs {
		sp.AccessLog = filepath.Join(o.Dir, sp.Name+".access.log")
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
			return fmt.Errorf("%s: %w (is another demo running? try --base-port)", sp.Name, err)
		}
		a.Start()
		apps = append(apps, a)
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, `Weft demo mesh is up (configs and access logs in %s)

  client -> sidecar-frontend :%d -> frontend app
                              \-> /backend -> sidecar-backend-1 :%d -> backend-1
                                           -> sidecar-backend-2 :%d -> backend-2

Try:
  curl http://127.0.0.1:%d/                 # frontend, which calls the backend through its sidecar
  curl http://127.0.0.1:%d/backend/hello    # straight to a backend, round robin
  open http://127.0.0.1:%d/                 # admin of sidecar-frontend (stats, clusters, config)
  curl http://127.0.0.1:%d/stats/prometheus
  curl http://127.0.0.1:%d/clusters

Background load: %d requests/s. Ctrl-C to stop (the sidecars drain first).
`, o.Dir, p, p+1, p+2, p, p, o.AdminBase, o.AdminBase, o.AdminBase, o.RPS)
	}
	if o.RPS > 0 {
		go load(ctx, fmt.Sprintf("http://127.0.0.1:%d/", p), o.RPS)
	}
	<-ctx.Done()
	return nil
}

func port(s *service) int { return s.ln.Addr().(*net.TCPAddr).Port }

// service is a sample application on a loopback port.
type service struct {
	srv *http.Server
	ln  net.Listener
}

func (s *service) Close() { _ = s.srv.Close() }

// startService runs a sample HTTP service. With upstream set it is a
// frontend that calls the backend through its sidecar's egress.
func startService(name string, upstream *string) (*service, error) {
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
			if resp, err := c.Get(url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
	}
}
