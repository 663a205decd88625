package controlplane

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// The registry feed (SPEC R2): every service of the rules is watched in the
// registry, and its instances become endpoints of the service beside the
// static ones. A registry outage changes nothing: the backends keep
// reporting the last list.

// watchRetry is the pause before watching a service again after Watch
// failed.
const watchRetry = time.Second

// syncWatchesLocked starts a watch for every service of the rules and
// stops those of services that are gone.
func (s *Server) syncWatchesLocked() {
	if s.opts.Registry == nil || !s.started || s.closed || s.model == nil {
		return
	}
	want := map[string]bool{}
	for _, n := range s.model.rules.names {
		want[n] = true
		if _, ok := s.watches[n]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		s.watches[n] = cancel
		s.wg.Add(1)
		go s.watch(ctx, n)
	}
	changed := false
	for n, cancel := range s.watches {
		if want[n] {
			continue
		}
		cancel()
		delete(s.watches, n)
		delete(s.answered, n)
		if _, ok := s.instances[n]; ok {
			changed = true
		}
	}
	if changed {
		next := map[string][]registry.Instance{}
		for n, l := range s.instances {
			if want[n] {
				next[n] = l
			}
		}
		s.instances = next
	}
}

// watch follows one service until ctx ends.
func (s *Server) watch(ctx context.Context, service string) {
	defer s.wg.Done()
	for {
		err := s.opts.Registry.Watch(ctx, service, func(list []registry.Instance) {
			s.updateInstances(ctx, service, list)
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, registry.ErrClosed) {
			s.log.Error("registry closed: no more endpoint updates", "service", service)
			return
		}
		s.log.Warn("registry watch failed; retrying", "service", service, "err", err)
		t := time.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// updateInstances stores a service's instances (copy on write: compiles
// read the map without the lock) and asks for a rebuild when they changed.
func (s *Server) updateInstances(ctx context.Context, service string, list []registry.Instance) {
	list = slices.Clone(list)
	registry.Sort(list)
	s.mu.Lock()
	if ctx.Err() != nil || s.closed {
		s.mu.Unlock()
		return
	}
	first := !s.answered[service]
	s.answered[service] = true
	old, had := s.instances[service]
	if had && registry.Equal(old, list) {
		s.mu.Unlock()
		if first {
			s.poke()
		}
		return
	}
	next := maps.Clone(s.instances)
	next[service] = list
	s.instances = next
	s.mu.Unlock()
	s.log.Debug("registry update", "service", service, "instances", len(list))
	s.poke()
}

// poke asks the run loop to recompile.
func (s *Server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
