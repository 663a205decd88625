package stream

import (
	"sort"
	"sync"

	"github.com/weftmesh/weft/internal/router"
)

// RouteStore holds the route tables that arrive by RDS, by name. Every
// connection manager naming a route config shares one StaticRoutes for it,
// so a new table applies to the next request of every listener at once
// and no listener is rebuilt for a route change.
type RouteStore struct {
	mu      sync.Mutex
	sources map[string]*StaticRoutes
	ready   map[string]bool
	changed chan struct{} // closed and replaced on every Set
}

// NewRouteStore returns an empty store.
func NewRouteStore() *RouteStore {
	return &RouteStore{sources: map[string]*StaticRoutes{}, ready: map[string]bool{}, changed: make(chan struct{})}
}

// Source returns the shared source for name; its table is nil (every
// request gets "no route") until the route config arrives.
func (s *RouteStore) Source(name string) *StaticRoutes {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, ok := s.sources[name]
	if !ok {
		src = NewStaticRoutes(nil)
		s.sources[name] = src
	}
	return src
}

// Set installs t as the table of name; a nil t marks the route config
// removed (requests get "no route").
func (s *RouteStore) Set(name string, t *router.Table) {
	src := s.Source(name)
	src.Store(t)
	s.mu.Lock()
	if t != nil {
		s.ready[name] = true
	} else {
		delete(s.ready, name)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Missing lists the names that have no table yet.
func (s *RouteStore) Missing(names []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range names {
		if !s.ready[n] {
			out = append(out, n)
		}
	}
	return out
}

// Changed returns a channel closed at the next Set.
func (s *RouteStore) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Names lists the route configs that hold a table.
func (s *RouteStore) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.ready))
	for n := range s.ready {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
