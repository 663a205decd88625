package xds

import (
	"maps"
	"slices"
	"time"
)

// TypeStatus is what the admin /config_dump shows about one resource type.
type TypeStatus struct {
	TypeURL string
	// Server is the management server's gRPC target; ADS and Delta tell
	// how the type is fetched.
	Server    string
	ADS       bool
	Delta     bool
	Connected bool
	// Version is the version_info (delta: system_version_info) of the
	// update applied last, at LastUpdated; empty before the first.
	Version     string
	LastUpdated time.Time
	// Resources are the applied resources with the version each was last
	// changed in (delta: the server's per-resource version), by name.
	Resources []ResourceVersion
	// Wildcard types fetch every resource; the others fetch Subscribed.
	Wildcard   bool
	Subscribed []string
	// Held is set while an update waits for clusters to warm.
	Held bool
	// LastNACK is the last rejected update, nil when none was.
	LastNACK *NACK
}

// ResourceVersion is one applied resource.
type ResourceVersion struct {
	Name, Version string
}

// NACK describes a rejected update.
type NACK struct {
	Version string // the rejected version_info
	Detail  string // the error_detail sent to the server
	Time    time.Time
}

// publish copies a type's state for Status; the core goroutine owns the
// state itself.
func (c *Client) publish(ts *typeState) {
	st := TypeStatus{
		TypeURL:     ts.kind.url,
		Server:      ts.s.src.Target,
		ADS:         ts.s.ads,
		Delta:       ts.s.src.Delta,
		Connected:   ts.s.live,
		Version:     ts.version,
		LastUpdated: ts.updated,
		Wildcard:    ts.kind.wildcard,
		Subscribed:  slices.Clone(ts.wanted),
		Held:        ts.held != nil,
	}
	for _, n := range slices.Sorted(maps.Keys(ts.resources)) {
		st.Resources = append(st.Resources, ResourceVersion{Name: n, Version: ts.versions[n]})
	}
	if ts.lastNACK != nil {
		n := *ts.lastNACK
		st.LastNACK = &n
	}
	c.mu.Lock()
	c.status[ts.kind.url] = st
	c.mu.Unlock()
}

// Status reports every dynamic type, in the order Envoy requests them
// (clusters, endpoints, listeners, routes, secrets).
func (c *Client) Status() []TypeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []TypeStatus
	for _, t := range typeOrder {
		st, ok := c.status[t]
		if !ok {
			continue
		}
		st.Resources = slices.Clone(st.Resources)
		st.Subscribed = slices.Clone(st.Subscribed)
		if st.LastNACK != nil {
			n := *st.LastNACK
			st.LastNACK = &n
		}
		out = append(out, st)
	}
	return out
}
