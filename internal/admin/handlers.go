package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/stats"
)

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// handleReady answers like Envoy: LIVE (200), or 503 with DRAINING after
// /healthcheck/fail and INITIALIZING before Ready reports true.
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.hcFailed.Load():
		writeText(w, http.StatusServiceUnavailable, "DRAINING\n")
	case s.opts.Ready != nil && !s.opts.Ready():
		writeText(w, http.StatusServiceUnavailable, "INITIALIZING\n")
	default:
		writeText(w, http.StatusOK, "LIVE\n")
	}
}

func (s *Server) handleHealthCheck(fail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		was := s.hcFailed.Swap(fail)
		if was != fail {
			s.log.Info("health check state changed", "failed", fail)
			if s.opts.OnHealthCheck != nil {
				s.opts.OnHealthCheck(fail)
			}
		}
		writeText(w, http.StatusOK, "OK\n")
	}
}

func (s *Server) handleQuit(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Quit == nil {
		writeText(w, http.StatusNotFound, "quitquitquit is not enabled\n")
		return
	}
	writeText(w, http.StatusOK, "OK\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.log.Info("quit requested on the admin API")
	go s.opts.Quit()
}

func (s *Server) handleConfigDump(w http.ResponseWriter, _ *http.Request) {
	if s.opts.ConfigDump == nil {
		writeText(w, http.StatusNotFound, "config dump is not available\n")
		return
	}
	b, err := s.opts.ConfigDump()
	if err != nil {
		s.log.Error("config dump", "err", err)
		writeText(w, http.StatusInternalServerError, "config dump: "+err.Error()+"\n")
		return
	}
	writeJSON(w, b)
}

// Levels accepted by /logging, Envoy's names mapped onto slog levels.
var logLevels = []struct {
	name  string
	level slog.Level
}{
	{"trace", slog.LevelDebug - 4},
	{"debug", slog.LevelDebug},
	{"info", slog.LevelInfo},
	{"warning", slog.LevelWarn},
	{"warn", slog.LevelWarn},
	{"error", slog.LevelError},
	{"critical", slog.LevelError + 4},
	{"off", slog.Level(math.MaxInt32)},
}

func levelName(l slog.Level) string {
	for _, x := range logLevels {
		if x.level == l {
			return x.name
		}
	}
	return strings.ToLower(l.String())
}

func validLevels() string {
	names := make([]string, len(logLevels))
	for i, x := range logLevels {
		names[i] = x.name
	}
	return strings.Join(names, ", ")
}

// handleLogging shows the level (GET) and sets it (POST ?level=NAME).
func (s *Server) handleLogging(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	name := r.FormValue("level") // the query, or the index page's form
	if name == "" {
		writeText(w, http.StatusOK, "active level: "+levelName(s.level.Level())+"\nvalid levels: "+validLevels()+"\n")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeText(w, http.StatusMethodNotAllowed, "changing the log level needs POST\n")
		return
	}
	for _, x := range logLevels {
		if strings.EqualFold(name, x.name) {
			old := s.level.Level()
			s.level.Set(x.level)
			s.log.Warn("log level changed", "from", levelName(old), "to", x.name)
			writeText(w, http.StatusOK, "active level: "+x.name+"\n")
			return
		}
	}
	writeText(w, http.StatusBadRequest, fmt.Sprintf("unknown log level %q; valid levels: %s\n", name, validLevels()))
}

// quantiles are the percentiles shown for histograms, as Envoy shows them.
var quantiles = []float64{0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100}

// handleStats prints Envoy-style "name: value" lines. Query parameters:
// filter=REGEX keeps matching names, usedonly drops zero values, and
// format=json or format=prometheus change the output.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch q.Get("format") {
	case "", "text", "json":
	case "prometheus":
		s.prometheusHandler().ServeHTTP(w, r)
		return
	default:
		writeText(w, http.StatusBadRequest, "format must be text, json or prometheus\n")
		return
	}
	var filter *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			writeText(w, http.StatusBadRequest, "invalid filter: "+err.Error()+"\n")
			return
		}
		filter = re
	}
	_, usedOnly := q["usedonly"]
	var samples []stats.Sample
	if s.opts.Stats != nil {
		for _, sm := range s.opts.Stats.Samples() {
			if filter != nil && !filter.MatchString(sm.Name) {
				continue
			}
			if usedOnly && ((sm.Histogram == nil && sm.Value == 0) || (sm.Histogram != nil && sm.Histogram.Count() == 0)) {
				continue
			}
			samples = append(samples, sm)
		}
	}
	if q.Get("format") == "json" {
		writeJSON(w, statsJSON(samples))
		return
	}
	var b bytes.Buffer
	for _, sm := range samples {
		b.WriteString(sm.Name)
		b.WriteString(": ")
		if sm.Histogram == nil {
			b.WriteString(strconv.FormatInt(sm.Value, 10))
		} else if sm.Histogram.Count() == 0 {
			b.WriteString("No recorded values")
		} else {
			for i, p := range quantiles {
				if i > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "P%s(%s)", fmtFloat(p), fmtMS(sm.Histogram, p/100))
			}
		}
		b.WriteByte('\n')
	}
	writeText(w, http.StatusOK, b.String())
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// fmtMS formats a histogram quantile in milliseconds.
func fmtMS(h *stats.Histogram, q float64) string {
	ms := float64(h.Quantile(q).Nanoseconds()) / 1e6
	return strconv.FormatFloat(ms, 'g', 6, 64)
}

// statsJSON renders samples in the shape of Envoy's /stats?format=json.
func statsJSON(samples []stats.Sample) []byte {
	type value struct {
		Name  string `json:"name"`
		Value int64  `json:"value"`
	}
	type qv struct {
		Cumulative float64 `json:"cumulative"`
	}
	type computed struct {
		Name   string  `json:"name"`
		Count  uint64  `json:"count"`
		SumMS  float64 `json:"sum_ms"`
		Values []qv    `json:"values"`
	}
	type hists struct {
		SupportedQuantiles []float64  `json:"supported_quantiles"`
		ComputedQuantiles  []computed `json:"computed_quantiles"`
	}
	out := struct {
		Stats []any `json:"stats"`
	}{Stats: []any{}}
	h := hists{SupportedQuantiles: quantiles, ComputedQuantiles: []computed{}}
	for _, sm := range samples {
		if sm.Histogram == nil {
			out.Stats = append(out.Stats, value{sm.Name, sm.Value})
			continue
		}
		c := computed{Name: sm.Name, Count: sm.Histogram.Count(), SumMS: float64(sm.Histogram.Sum().Nanoseconds()) / 1e6}
		for _, p := range quantiles {
			c.Values = append(c.Values, qv{float64(sm.Histogram.Quantile(p/100).Nanoseconds()) / 1e6})
		}
		h.ComputedQuantiles = append(h.ComputedQuantiles, c)
	}
	out.Stats = append(out.Stats, map[string]hists{"histograms": h})
	b, _ := json.MarshalIndent(out, "", "  ") // plain structs: cannot fail
	return b
}

// ClusterStatus is the shape /clusters renders as text: Clusters may
// return []ClusterStatus, or any value whose JSON has the same shape.
type ClusterStatus struct {
	Name        string `json:"name"`
	AddedViaAPI bool   `json:"added_via_api"`
	// CircuitBreakers are the default-priority thresholds, e.g.
	// "max_connections": 1024.
	CircuitBreakers map[string]uint64 `json:"circuit_breakers,omitempty"`
	Hosts           []HostStatus      `json:"host_statuses"`
}

// HostStatus is one host of a ClusterStatus.
type HostStatus struct {
	// Address is "ip:port".
	Address string `json:"address"`
	// HealthFlags are Envoy's flags ("/failed_active_hc/failed_outlier_check");
	// empty means healthy.
	HealthFlags string `json:"health_flags,omitempty"`
	Weight      uint32 `json:"weight,omitempty"`
	Zone        string `json:"zone,omitempty"`
	// Stats are the host's counters and gauges by name (cx_active,
	// rq_total, ...).
	Stats map[string]int64 `json:"stats,omitempty"`
}

// handleClusters renders Clusters as Envoy-like "cluster::host::key::value"
// lines, or as JSON with ?format=json.
func (s *Server) handleClusters(w http.ResponseWriter, r *http.Request) {
	if s.opts.Clusters == nil {
		writeText(w, http.StatusNotFound, "clusters are not available\n")
		return
	}
	v := s.opts.Clusters()
	if r.URL.Query().Get("format") == "json" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			writeText(w, http.StatusInternalServerError, "clusters: "+err.Error()+"\n")
			return
		}
		writeJSON(w, b)
		return
	}
	list, err := asClusterStatuses(v)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "clusters: "+err.Error()+"; use ?format=json\n")
		return
	}
	writeText(w, http.StatusOK, clustersText(list))
}

func asClusterStatuses(v any) ([]ClusterStatus, error) {
	switch x := v.(type) {
	case []ClusterStatus:
		return x, nil
	case nil:
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var list []ClusterStatus
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var wrapped struct {
		ClusterStatuses *[]ClusterStatus `json:"cluster_statuses"`
	}
	if err := json.Unmarshal(b, &wrapped); err != nil || wrapped.ClusterStatuses == nil {
		return nil, errors.New("value does not have the shape of []admin.ClusterStatus")
	}
	return *wrapped.ClusterStatuses, nil
}

func clustersText(list []ClusterStatus) string {
	var b strings.Builder
	line := func(parts ...string) {
		b.WriteString(strings.Join(parts, "::"))
		b.WriteByte('\n')
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	for _, c := range list {
		for _, k := range sortedKeys(c.CircuitBreakers) {
			line(c.Name, "default_priority", k, strconv.FormatUint(c.CircuitBreakers[k], 10))
		}
		line(c.Name, "added_via_api", strconv.FormatBool(c.AddedViaAPI))
		for _, h := range c.Hosts {
			for _, k := range sortedKeys(h.Stats) {
				line(c.Name, h.Address, k, strconv.FormatInt(h.Stats[k], 10))
			}
			flags := h.HealthFlags
			if flags == "" {
				flags = "healthy"
			}
			line(c.Name, h.Address, "health_flags", flags)
			weight := h.Weight
			if weight == 0 {
				weight = 1
			}
			line(c.Name, h.Address, "weight", strconv.FormatUint(uint64(weight), 10))
			line(c.Name, h.Address, "zone", h.Zone)
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
