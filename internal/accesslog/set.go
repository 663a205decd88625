package accesslog

import (
	"errors"
	"fmt"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"

	"github.com/weftmesh/weft/api"
)

// Set tracks the loggers one configuration opened so that shutdown can
// flush and close them together: no line written in the last second is
// lost when the process exits.
type Set struct {
	mu   sync.Mutex
	logs []*Logger
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{} }

// FromConfig opens al like FromConfig and tracks the logger.
func (s *Set) FromConfig(al *accesslogv3.AccessLog) (*Logger, error) {
	l, err := FromConfig(al)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.logs = append(s.logs, l)
	s.mu.Unlock()
	return l, nil
}

// Close flushes and closes every tracked logger.
func (s *Set) Close() error {
	s.mu.Lock()
	logs := s.logs
	s.logs = nil
	s.mu.Unlock()
	var errs []error
	for _, l := range logs {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// ForBuildAll opens every access log of a filter being built (see
// ForBuild); an error names the failing entry, "access_log[i]".
func ForBuildAll(bc api.BuildContext, als []*accesslogv3.AccessLog) ([]*Logger, error) {
	out := make([]*Logger, 0, len(als))
	for i, al := range als {
		l, err := ForBuild(bc, al)
		if err != nil {
			return nil, fmt.Errorf("access_log[%d]: %w", i, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// ForBuild opens al for a filter being built: through the build's Set when
// it offers one (so the app closes it at shutdown), else on its own.
func ForBuild(bc api.BuildContext, al *accesslogv3.AccessLog) (*Logger, error) {
	var s *Set
	if bc != nil && bc.Service(&s) {
		return s.FromConfig(al)
	}
	return FromConfig(al)
}
