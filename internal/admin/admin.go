// Package admin serves Weft's admin API (Envoy's admin endpoints: /ready,
// /stats, /stats/prometheus, /config_dump, /clusters, /logging,
// /healthcheck/fail|ok, /debug/pprof) on its own net/http server. It is
// not on the request path; everything it shows comes from providers the
// wiring passes in.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weftmesh/weft/internal/stats"
)

// DefaultAddress is where the admin server listens when Options.Address
// is empty: loopback only, Envoy's usual port.
const DefaultAddress = "127.0.0.1:9901"

// Options configures the admin server. Every provider is optional; an
// endpoint whose provider is nil answers 404.
type Options struct {
	// Address is "ip:port" (":0" picks a free port); "" means
	// DefaultAddress. The caller parses Envoy's bootstrap admin.address.
	Address string
	// Stats is exported on /stats and /stats/prometheus.
	Stats *stats.Store
	// Collectors are extra Prometheus collectors for /stats/prometheus.
	// The Go runtime and process collectors are always included.
	Collectors []prometheus.Collector
	// LogLevel is the process log level that /logging reads and sets.
	LogLevel *slog.LevelVar
	// Logger logs admin errors and level changes; nil means slog.Default().
	Logger *slog.Logger
	// ConfigDump returns the current configuration as JSON.
	ConfigDump func() ([]byte, error)
	// Clusters returns the clusters and hosts as a JSON-able value. For
	// the text form of /clusters its JSON must have the shape of
	// []ClusterStatus (or {"cluster_statuses": [...]}).
	Clusters func() any
	// Listeners returns the listeners with their bound addresses, for
	// /listeners (a JSON list of {"name", "address"}).
	Listeners func() []ListenerInfo
	// Ready reports whether the server finished initialising; nil means
	// always ready.
	Ready func() bool
	// OnHealthCheck is called with true after POST /healthcheck/fail and
	// with false after POST /healthcheck/ok, e.g. to start draining.
	OnHealthCheck func(failed bool)
	// Quit enables POST /quitquitquit; it is called after the response
	// is sent.
	Quit func()
}

// Server is the admin HTTP server.
type Server struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	registry *prometheus.Registry
	mux      *http.ServeMux
	hcFailed atomic.Bool

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
}

// Timeouts of the admin http.Server. WriteTimeout must exceed the longest
// CPU profile or trace a caller may ask for (?seconds=, 30 by default).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 5 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// New builds the server; Start makes it listen.
func New(opts Options) *Server {
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	s := &Server{opts: opts, log: opts.Logger, level: opts.LogLevel, registry: prometheus.NewRegistry()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "admin")
	if s.level == nil {
		s.level = new(slog.LevelVar)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if opts.Stats != nil {
		cs = append(cs, opts.Stats.Collector())
	}
	for _, c := range append(cs, opts.Collectors...) {
		if err := s.registry.Register(c); err != nil {
			s.log.Error("metrics collector not registered", "err", err)
		}
	}
	s.mux = s.routes()
	return s
}

// Handler returns the admin handler, for tests and for embedding. It
// rejects cross-origin browser POSTs (a page elsewhere cannot make a
// visitor's browser flip /healthcheck/fail); curl and scripts are
// unaffected.
func (s *Server) Handler() http.Handler { return http.NewCrossOriginProtection().Handler(s.mux) }

// Registry returns the Prometheus registry behind /stats/prometheus.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// SetDraining makes /ready answer 503 DRAINING from now on (shutdown).
func (s *Server) SetDraining() { s.hcFailed.Store(true) }

// HealthCheckFailed reports whether /healthcheck/fail is in force.
func (s *Server) HealthCheckFailed() bool { return s.hcFailed.Load() }

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /ready", s.handleReady)
	mux.HandleFunc("POST /healthcheck/fail", s.handleHealthCheck(true))
	mux.HandleFunc("POST /healthcheck/ok", s.handleHealthCheck(false))
	mux.HandleFunc("GET /stats", s.handleStats)
	mux.Handle("GET /stats/prometheus", s.prometheusHandler())
	mux.HandleFunc("GET /config_dump", s.handleConfigDump)
	mux.HandleFunc("GET /clusters", s.handleClusters)
	mux.HandleFunc("GET /listeners", s.handleListeners)
	mux.HandleFunc("GET /logging", s.handleLogging)
	mux.HandleFunc("POST /logging", s.handleLogging)
	mux.HandleFunc("POST /quitquitquit", s.handleQuit)
	// pprof is mounted on this mux only; the package's init also
	// registers on http.DefaultServeMux, which Weft never serves.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Start listens on the configured address and serves in the background.
// It returns once the port is bound, so Addr is known.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("admin: already started")
	}
	ln, err := net.Listen("tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.opts.Address, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}(s.srv, s.served)
	s.log.Info("admin listening", "address", ln.Addr().String())
	return nil
}

// Addr returns the bound address ("127.0.0.1:9901"), or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends,
// and waits for the serve goroutine to exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.served
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close() // ctx ended first: cut the remaining connections
	}
	<-done // Serve returns as soon as Shutdown or Close closed the listener
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// promLogger adapts slog to promhttp's error logger.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("prometheus exposition", "err", fmt.Sprint(v...)) }

func (s *Server) prometheusHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog:            promLogger{s.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// ListenerInfo is one row of /listeners.
type ListenerInfo struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// handleListeners lists listeners as "name::address" lines, or JSON with
// ?format=json (Envoy's /listeners).
func (s *Server) handleListeners(w http.ResponseWriter, r *http.Request) {
	if s.opts.Listeners == nil {
		http.NotFound(w, r)
		return
	}
	ls := s.opts.Listeners()
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ls)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range ls {
		fmt.Fprintf(w, "%s::%s\n", l.Name, l.Address)
	}
}
