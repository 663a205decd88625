package api

import (
	"fmt"
	"sort"
	"sync"
)

// Registry is a typed, name- and type-URL-keyed table of extension factories.
// Register panics on a duplicate: two extensions silently shadowing each other
// is a build defect, not a runtime condition.
type Registry[F any] struct {
	kind   string
	mu     sync.RWMutex
	byName map[string]F
	byType map[string]F
}

// NewRegistry returns an empty registry; kind names it in panics and errors.
func NewRegistry[F any](kind string) *Registry[F] {
	return &Registry[F]{kind: kind, byName: map[string]F{}, byType: map[string]F{}}
}

// Register adds f under name and under each of typeURLs. It panics on a
// duplicate name or type URL.
func (r *Registry[F]) Register(name string, typeURLs []string, f F) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		panic(fmt.Sprintf("%s %q registered twice", r.kind, name))
	}
	for _, t := range typeURLs {
		if _, dup := r.byType[t]; dup {
			panic(fmt.Sprintf("%s type %q registered twice", r.kind, t))
		}
	}
	r.byName[name] = f
	for _, t := range typeURLs {
		r.byType[t] = f
	}
}

// Lookup finds a factory the way Envoy does: by the typed_config's type URL
// when there is one (the name is then only a label, and a type no factory
// registered is unknown even if the name is known, so another filter's
// config is never parsed as this one's), else by name.
func (r *Registry[F]) Lookup(name, typeURL string) (F, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if typeURL != "" {
		f, ok := r.byType[typeURL]
		return f, ok
	}
	f, ok := r.byName[name]
	return f, ok
}

// Names lists the registered names, sorted.
func (r *Registry[F]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
