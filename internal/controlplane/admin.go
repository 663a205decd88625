package controlplane

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
)

// Status is what /status shows: the rules being served, the last refused
// rule set, and every connected node with what it was sent and ACKed.
type Status struct {
	// Ready is true once good rules are loaded and nodes get snapshots.
	Ready    bool   `json:"ready"`
	RulesDir string `json:"rules_dir"`
	// Rules describes the rule set being served; nil before the first
	// good one.
	Rules *RulesStatus `json:"rules"`
	// LastError is the last refused rule set, nil when the files on disk
	// are the ones being served.
	LastError *ErrorStatus `json:"last_error"`
	// Warnings of the rules being served (subsets without endpoints,
	// listeners with nothing to serve, registry instances skipped).
	Warnings []Problem      `json:"warnings"`
	Registry *RegistryState `json:"registry,omitempty"`
	// Pushes counts rebuilds that changed the snapshot of at least one
	// node.
	Pushes uint64 `json:"pushes"`
	// NodeCount counts the connected nodes, InSync those that ACKed every
	// type of their current snapshot, Nacking those whose last answer to
	// some type was a NACK.
	NodeCount int          `json:"node_count"`
	InSync    int          `json:"in_sync"`
	Nacking   int          `json:"nacking"`
	Nodes     []NodeStatus `json:"nodes"`
}

// RulesStatus describes a loaded rule set.
type RulesStatus struct {
	// Version is a hash of the files' names and contents.
	Version  string     `json:"version"`
	LoadedAt time.Time  `json:"loaded_at"`
	Files    []FileInfo `json:"files"`
	Services int        `json:"services"`
	Routes   int        `json:"routes"`
	Sidecars []string   `json:"sidecars"`
	// Groups maps each sidecar rule to the version of its snapshot ("" is
	// the nodes that match no sidecar).
	Groups map[string]string `json:"groups"`
}

// ErrorStatus is a refused rule set.
type ErrorStatus struct {
	At       time.Time `json:"at"`
	Problems []Problem `json:"problems"`
	// Messages are the problems as "file:line: message".
	Messages []string `json:"messages"`
	scan     bool     // the directory could not be read
}

// RegistryState shows the registry feed.
type RegistryState struct {
	Kind string `json:"kind,omitempty"`
	// Services maps each watched service to its instance count; -1 until
	// the registry first answered.
	Services map[string]int `json:"services"`
}

// NodeStatus is one connected node.
type NodeStatus struct {
	ID       string            `json:"id"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Sidecar is the sidecar rule it matched, "" for none.
	Sidecar string `json:"sidecar"`
	Streams int    `json:"streams"`
	// SnapshotVersion is the version of the snapshot set for it.
	SnapshotVersion string `json:"snapshot_version"`
	// Types maps "clusters", "endpoints", "listeners", "routes" to the
	// versions sent and ACKed.
	Types          map[string]TypeStatus `json:"types"`
	ConnectedSince time.Time             `json:"connected_since"`
}

// TypeStatus is the xDS state of one resource type of one node.
type TypeStatus struct {
	// Want is the version of this type in the node's snapshot.
	Want    string    `json:"want"`
	Sent    string    `json:"sent"`
	Acked   string    `json:"acked"`
	AckedAt time.Time `json:"acked_at,omitzero"`
	// NackVersion and NackError are the last refused version and the
	// node's reason, until it ACKs that version.
	NackVersion string    `json:"nack_version,omitempty"`
	NackError   string    `json:"nack_error,omitempty"`
	NackAt      time.Time `json:"nack_at,omitzero"`
}

// Status returns the current state. With node != "" only that node is
// listed.
func (s *Server) Status(node string) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Ready: s.ready, RulesDir: s.opts.RulesDir, Pushes: s.pushes, Warnings: s.warnings, Nodes: []NodeStatus{}}
	if st.Warnings == nil {
		st.Warnings = []Problem{}
	}
	if m := s.model; m != nil {
		rs := &RulesStatus{Version: m.rules.version, LoadedAt: s.loadedAt, Files: m.rules.files,
			Services: len(m.rules.names), Groups: map[string]string{"": m.none.version}, Sidecars: []string{}}
		for _, n := range m.rules.names {
			if m.rules.services[n].routesAt != nil {
				rs.Routes++
			}
		}
		for _, g := range m.groups {
			rs.Sidecars = append(rs.Sidecars, g.sidecar.name)
			rs.Groups[g.sidecar.name] = g.version
		}
		st.Rules = rs
	}
	if e := s.lastErr; e != nil {
		c := *e
		c.Messages = make([]string, len(e.Problems))
		for i, p := range e.Problems {
			c.Messages[i] = p.String()
		}
		st.LastError = &c
	}
	if s.opts.Registry != nil {
		rg := &RegistryState{Kind: s.opts.RegistryName, Services: map[string]int{}}
		for n := range s.watches {
			rg.Services[n] = -1
			if s.answered[n] {
				rg.Services[n] = len(s.instances[n])
			}
		}
		st.Registry = rg
	}
	for _, ns := range s.sortedNodesLocked() {
		st.NodeCount++
		sync, nacking := ns.group != nil && ns.version == ns.group.version, false
		for url, v := range nodeWant(ns) {
			t := ns.types[shortType(url)]
			if t == nil || t.Acked != v {
				sync = false
			}
		}
		for _, t := range ns.types {
			if t.NackVersion != "" || t.NackError != "" {
				nacking = true
			}
		}
		if sync {
			st.InSync++
		}
		if nacking {
			st.Nacking++
		}
		if node != "" && ns.id != node {
			continue
		}
		n := NodeStatus{ID: ns.id, Metadata: ns.meta, Streams: ns.streams, SnapshotVersion: ns.version,
			Types: map[string]TypeStatus{}, ConnectedSince: ns.since}
		if ns.group != nil && ns.group.sidecar != nil {
			n.Sidecar = ns.group.sidecar.name
		}
		for k, v := range ns.types {
			n.Types[k] = *v
		}
		for url, v := range nodeWant(ns) {
			t := n.Types[shortType(url)]
			t.Want = v
			n.Types[shortType(url)] = t
		}
		st.Nodes = append(st.Nodes, n)
	}
	return st
}

// nodeWant is the version of each type of the snapshot set for a node.
func nodeWant(ns *nodeState) map[string]string {
	if ns.group == nil || ns.version != ns.group.version {
		return nil
	}
	return ns.group.versions
}

// adminHandler serves /status, /ready and /config_dump.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		st := s.Status(q.Get("node"))
		if q.Get("nodes") == "0" {
			st.Nodes = []NodeStatus{}
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if s.Ready() {
			http.Error(w, "ready", http.StatusOK)
			return
		}
		http.Error(w, "not ready: no good rules loaded yet, or waiting for the registry", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /config_dump", s.configDump)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("weft control plane\n\n/status             rules, last error, nodes and their ACKs (?node=ID for one, ?nodes=0 for none)\n" +
			"/ready              200 once snapshots are served\n/config_dump?node=ID[&meta.KEY=VALUE]  the resources a node gets\n"))
	})
	return mux
}

// configDump shows the resources a node gets: a connected node's own, or
// what a node with that id (and meta.KEY=VALUE metadata) would get.
func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("node")
	meta := map[string]string{}
	for k, v := range q {
		if len(k) > 5 && k[:5] == "meta." && len(v) > 0 {
			meta[k[5:]] = v[0]
		}
	}
	s.mu.Lock()
	m := s.model
	if ns := s.nodes[id]; ns != nil && len(meta) == 0 {
		meta = ns.meta
	}
	s.mu.Unlock()
	if m == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no good rules loaded yet"})
		return
	}
	g := m.groupFor(id, meta)
	out := map[string]any{"node": id, "version": g.version, "sidecar": ""}
	if g.sidecar != nil {
		out["sidecar"] = g.sidecar.name
	}
	for _, t := range []struct {
		name string
		t    types.ResponseType
	}{{"clusters", types.Cluster}, {"endpoints", types.Endpoint}, {"listeners", types.Listener}, {"routes", types.Route}} {
		res := g.snapshot.Resources[t.t]
		names := make([]string, 0, len(res.Items))
		for n := range res.Items {
			names = append(names, n)
		}
		sort.Strings(names)
		list := make([]json.RawMessage, 0, len(names))
		for _, n := range names {
			b, err := protojson.Marshal(res.Items[n].Resource)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
				return
			}
			list = append(list, b)
		}
		out[t.name] = map[string]any{"version": res.Version, "resources": list}
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
