package xds

import (
	"maps"
	"slices"
	"strings"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// The core goroutine owns all protocol and resource state: streams only
// move bytes and report events, so there is one place where updates are
// ordered, applied, held for warming, ACKed and NACKed.

type evKind int

const (
	evConnected evKind = iota
	evResponse
	evDisconnected
)

type event struct {
	kind  evKind
	s     *stream
	gen   int
	msg   proto.Message
	ready chan struct{} // evConnected: closed once the initial requests are queued
}

// typeState is everything the client knows about one resource type.
type typeState struct {
	kind kind
	s    *stream

	// The applied state. Maps are replaced, never modified, because the
	// Applier may keep them.
	resources map[string]proto.Message
	versions  map[string]string
	version   string
	applied   bool
	// rejected: a response of this type was NACKed. Like Envoy, a
	// rejected first response still ends the wait of the initial fetch.
	rejected bool
	updated  time.Time

	nonce     string // newest response received on the current connection
	wanted    []string
	wantedSet map[string]bool
	held      *update // waiting for clusters to warm (LDS, RDS)

	lastNACK   *NACK
	nackStreak int
	deferred   *pending // a repeated SotW NACK, sent at deferUntil
	deferUntil time.Time
}

func newTypeState(t string, s *stream) *typeState {
	k, _ := kindOf(t)
	return &typeState{kind: k, s: s, resources: map[string]proto.Message{}, versions: map[string]string{}}
}

func (ts *typeState) active() bool { return ts.kind.wildcard || len(ts.wanted) > 0 }

// coreState is the cross-type state of the core goroutine.
type coreState struct {
	warming      map[string]bool // EDS clusters introduced by CDS and not yet received
	warmDeadline time.Time
	initDeadline time.Time
	initExpired  bool
	initDone     bool
	unknownNACK  map[*stream]map[string]bool
}

func (c *Client) loop() {
	if c.cfg.InitialFetchTimeout > 0 {
		c.core.initDeadline = time.Now().Add(c.cfg.InitialFetchTimeout)
	}
	c.core.unknownNACK = map[*stream]map[string]bool{}
	// Static resources may already refer to dynamic routes, endpoints or
	// secrets.
	c.refreshWants()
	for _, s := range c.streams {
		for _, t := range s.types {
			if c.types[t].active() {
				c.startStream(s)
			}
		}
	}
	c.checkInitialized()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var timerC <-chan time.Time
		if d, ok := c.nextDeadline(); ok {
			timer.Reset(max(time.Until(d), 0))
			timerC = timer.C
		} else {
			timer.Stop()
		}
		select {
		case <-c.ctx.Done():
			return
		case ev := <-c.events:
			c.handle(ev)
		case <-timerC:
			c.deadlines(time.Now())
		}
	}
}

func (c *Client) startStream(s *stream) {
	if s.started || s.cc == nil {
		return
	}
	s.started = true
	c.streamWG.Add(1)
	go s.run(c.ctx)
}

func (c *Client) nextDeadline() (time.Time, bool) {
	var d time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	if !c.core.initExpired {
		earlier(c.core.initDeadline)
	}
	if len(c.core.warming) > 0 {
		earlier(c.core.warmDeadline)
	}
	for _, ts := range c.types {
		if ts.deferred != nil {
			earlier(ts.deferUntil)
		}
	}
	return d, !d.IsZero()
}

func (c *Client) deadlines(now time.Time) {
	if !c.core.initExpired && !c.core.initDeadline.IsZero() && !now.Before(c.core.initDeadline) {
		c.core.initExpired = true
		if !c.core.initDone {
			c.core.initDone = true
			close(c.initCh)
			c.log.Warn("xds: initial fetch timed out; starting with what has arrived", "missing", c.missing())
		}
	}
	if len(c.core.warming) > 0 && !c.core.warmDeadline.IsZero() && !now.Before(c.core.warmDeadline) {
		c.log.Warn("xds: clusters did not warm in time; applying held listeners and routes", "clusters", slices.Sorted(maps.Keys(c.core.warming)))
		c.core.warming = nil
	}
	for _, ts := range c.types {
		if ts.deferred != nil && !now.Before(ts.deferUntil) {
			p := ts.deferred
			ts.deferred = nil
			if ts.s.live {
				ts.s.out.put(p)
			}
		}
	}
	c.release()
	c.checkInitialized()
}

func (c *Client) handle(ev event) {
	s := ev.s
	switch ev.kind {
	case evConnected:
		s.live, s.gen = true, ev.gen
		s.out.reset()
		delete(c.core.unknownNACK, s)
		for _, t := range s.types {
			ts := c.types[t]
			ts.nonce = ""
			ts.deferred = nil
			p := c.pendingFor(ts)
			if s.src.Delta {
				// The server can skip what we already have.
				p.initial = map[string]string{}
				for n, v := range ts.versions {
					if ts.kind.wildcard || ts.wantedSet[n] {
						p.initial[n] = v
					}
				}
			}
			s.out.put(p)
			c.publish(ts)
		}
		close(ev.ready)
	case evDisconnected:
		if ev.gen != s.gen {
			return
		}
		s.live = false
		s.out.reset()
		for _, t := range s.types {
			ts := c.types[t]
			// The server sends held updates again after the reconnect,
			// with a nonce of the new stream.
			ts.held = nil
			ts.deferred = nil
			c.publish(ts)
		}
		c.release()
	case evResponse:
		if ev.gen != s.gen || !s.live {
			return
		}
		switch m := ev.msg.(type) {
		case *discoveryv3.DiscoveryResponse:
			c.onSotw(s, m)
		case *discoveryv3.DeltaDiscoveryResponse:
			c.onDelta(s, m)
		}
	}
}

// lookup finds the state of a response's type, or NACKs the response when
// the type is not one this stream carries. A server that keeps sending an
// unknown type is NACKed once per connection: each NACK is a request the
// server may answer with the same response.
func (c *Client) lookup(s *stream, typeURL, nonce string) *typeState {
	if typeURL == "" && !s.ads {
		typeURL = s.types[0]
	}
	if ts := c.types[typeURL]; ts != nil && ts.s == s {
		return ts
	}
	if typeURL == "" {
		c.log.Warn("xds: response without a type_url ignored", "stream", s.label)
		return nil
	}
	seen := c.core.unknownNACK[s]
	if seen == nil {
		seen = map[string]bool{}
		c.core.unknownNACK[s] = seen
	}
	if !seen[typeURL] {
		seen[typeURL] = true
		c.log.Warn("xds: NACK of a response of a type not subscribed on this stream", "stream", s.label, "type", typeURL)
		s.out.put(&pending{typeURL: typeURL, wildcard: true, nonce: nonce,
			errDetail: nackStatus("type " + typeURL + " is not subscribed on this stream")})
	}
	return nil
}

func (c *Client) onSotw(s *stream, resp *discoveryv3.DiscoveryResponse) {
	ts := c.lookup(s, resp.GetTypeUrl(), resp.GetNonce())
	if ts == nil {
		return
	}
	ts.nonce = resp.GetNonce()
	u, err := decodeSotw(ts.kind, resp, ts.wantedSet)
	if err != nil {
		c.nack(ts, resp.GetVersionInfo(), err)
		return
	}
	c.receive(ts, u)
}

func (c *Client) onDelta(s *stream, resp *discoveryv3.DeltaDiscoveryResponse) {
	ts := c.lookup(s, resp.GetTypeUrl(), resp.GetNonce())
	if ts == nil {
		return
	}
	ts.nonce = resp.GetNonce()
	u, err := decodeDelta(ts.kind, resp, ts.wantedSet)
	if err != nil {
		c.nack(ts, resp.GetSystemVersionInfo(), err)
		return
	}
	c.receive(ts, u)
}

// holding reports whether listener and route updates must wait: Envoy
// applies listeners only after the first CDS update and while no cluster
// is warming, so that a listener never routes to a cluster that has no
// endpoints yet.
func (c *Client) holding() bool {
	if cds := c.types[resource.ClusterType]; cds != nil && !cds.applied && !c.core.initExpired {
		return true
	}
	return len(c.core.warming) > 0
}

func (c *Client) receive(ts *typeState, u *update) {
	if (ts.kind.url == resource.ListenerType || ts.kind.url == resource.RouteType) && c.holding() {
		if ts.held != nil {
			u = ts.held.merge(u)
		}
		ts.held = u
		c.log.Debug("xds: update held while clusters warm", "type", ts.kind.url, "version", u.version)
		c.publish(ts)
		return
	}
	c.apply(ts, u)
}

// apply hands one update to the Applier and ACKs or NACKs it.
func (c *Client) apply(ts *typeState, u *update) {
	all := make(map[string]proto.Message, len(ts.resources)+len(u.resources))
	versions := make(map[string]string, len(all))
	var changed, removed []string
	switch {
	case u.delta:
		maps.Copy(all, ts.resources)
		maps.Copy(versions, ts.versions)
		for _, n := range u.removed {
			if _, ok := all[n]; ok {
				delete(all, n)
				delete(versions, n)
				removed = append(removed, n)
			}
		}
		for n, m := range u.resources {
			if !ts.kind.wildcard && !ts.wantedSet[n] {
				continue
			}
			all[n], versions[n] = m, u.versions[n]
			changed = append(changed, n)
		}
	default:
		if !ts.kind.wildcard {
			// Routes, endpoints and secrets are not full-state in SotW:
			// what a response leaves out is unchanged.
			maps.Copy(all, ts.resources)
			maps.Copy(versions, ts.versions)
		} else {
			for n := range ts.resources {
				if _, ok := u.resources[n]; !ok {
					removed = append(removed, n)
				}
			}
		}
		for n, m := range u.resources {
			if !ts.kind.wildcard && !ts.wantedSet[n] {
				continue
			}
			all[n] = m
			if old, ok := ts.resources[n]; ok && proto.Equal(old, m) {
				versions[n] = ts.versions[n]
				continue
			}
			versions[n] = u.version
			changed = append(changed, n)
		}
	}
	slices.Sort(changed)
	slices.Sort(removed)
	if !ts.applied || len(changed)+len(removed) > 0 {
		if err := c.applier.Apply(ts.kind.url, all, changed, removed); err != nil {
			c.nack(ts, u.version, err)
			return
		}
	}
	ts.resources, ts.versions = all, versions
	ts.version, ts.applied, ts.updated = u.version, true, time.Now()
	// ts.nonce stays the newest response's: a held update is older than
	// responses that arrived while it waited, and SotW servers ignore
	// requests that carry a stale nonce.
	ts.nackStreak, ts.deferred = 0, nil
	c.log.Debug("xds: applied", "type", ts.kind.url, "version", u.version, "changed", len(changed), "removed", len(removed))
	c.send(ts, true)
	c.publish(ts)

	c.refreshWants()
	if ts.kind.url == resource.ClusterType {
		c.startWarming()
	}
	c.updateWarming()
	c.release()
	c.checkInitialized()
}

func nackStatus(msg string) *statuspb.Status {
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg}
}

// nack rejects an update. It answers the newest response of the type
// (the rejected one, or a newer one that arrived while it was held): SotW
// servers ignore a request with an older nonce. SotW servers such as
// go-control-plane answer a NACK by sending the rejected version again at
// once, so a repeated NACK of the same version is paced with the back-off
// instead of spinning.
func (c *Client) nack(ts *typeState, version string, err error) {
	now := time.Now()
	repeat := ts.lastNACK != nil && ts.nackStreak > 0 && ts.lastNACK.Version == version && ts.lastNACK.Detail == err.Error()
	ts.lastNACK = &NACK{Version: version, Detail: err.Error(), Time: now}
	ts.nackStreak++
	ts.rejected = true
	defer c.checkInitialized()
	if repeat {
		c.log.Debug("xds: NACK again", "type", ts.kind.url, "version", version, "error", err)
	} else {
		c.log.Warn("xds: NACK", "type", ts.kind.url, "version", version, "error", err)
	}
	p := c.pendingFor(ts)
	p.nonce = ts.nonce
	p.errDetail = nackStatus(err.Error())
	c.publish(ts)
	if !ts.s.live {
		return
	}
	if repeat && !ts.s.src.Delta {
		ts.deferred = p
		ts.deferUntil = now.Add(backoffDelay(c.cfg.Backoff.Base, c.cfg.Backoff.Max, ts.nackStreak-2))
		return
	}
	ts.s.out.put(p)
}

// pendingFor describes the current subscription of a type.
func (c *Client) pendingFor(ts *typeState) *pending {
	p := &pending{typeURL: ts.kind.url, wildcard: ts.kind.wildcard, names: ts.wanted}
	if !ts.s.src.Delta {
		p.version, p.nonce = ts.version, ts.nonce
	}
	return p
}

// send queues the current subscription of a type; ack adds the nonce of
// the response just applied (SotW requests always carry it).
func (c *Client) send(ts *typeState, ack bool) {
	if !ts.s.started {
		if ts.active() {
			c.startStream(ts.s)
		}
		return
	}
	if !ts.s.live {
		return // the connect queues the whole state
	}
	p := c.pendingFor(ts)
	if ack {
		p.nonce = ts.nonce
	}
	if d := ts.deferred; d != nil {
		// A paced NACK rides along with the subscription change.
		p.nonce, p.errDetail = d.nonce, d.errDetail
		ts.deferred = nil
	}
	ts.s.out.put(p)
}

// refreshWants asks the Applier what routes, endpoints and secrets the
// applied config refers to, and (un)subscribes accordingly.
func (c *Client) refreshWants() {
	for _, t := range [...]string{resource.EndpointType, resource.RouteType, resource.SecretType} {
		ts := c.types[t]
		if ts == nil {
			continue
		}
		names := slices.Compact(slices.Sorted(slices.Values(c.applier.Wants(t))))
		names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
		if slices.Equal(names, ts.wanted) {
			continue
		}
		ts.wanted = names
		ts.wantedSet = make(map[string]bool, len(names))
		for _, n := range names {
			ts.wantedSet[n] = true
		}
		c.prune(ts)
		c.send(ts, false)
		c.publish(ts)
	}
}

// prune drops resources nothing refers to any more; the server is told by
// the unsubscription, the Applier by an update with only removals.
func (c *Client) prune(ts *typeState) {
	var removed []string
	for n := range ts.resources {
		if !ts.wantedSet[n] {
			removed = append(removed, n)
		}
	}
	if len(removed) == 0 {
		return
	}
	slices.Sort(removed)
	all := maps.Clone(ts.resources)
	versions := maps.Clone(ts.versions)
	for _, n := range removed {
		delete(all, n)
		delete(versions, n)
	}
	if err := c.applier.Apply(ts.kind.url, all, nil, removed); err != nil {
		c.log.Warn("xds: removing unreferenced resources failed; kept", "type", ts.kind.url, "names", removed, "error", err)
		return
	}
	ts.resources, ts.versions = all, versions
}

// startWarming starts (or extends) the wait for the endpoints of clusters
// the last CDS update introduced.
func (c *Client) startWarming() {
	eds := c.types[resource.EndpointType]
	if eds == nil {
		return
	}
	warm := map[string]bool{}
	for _, n := range eds.wanted {
		if _, ok := eds.resources[n]; !ok {
			warm[n] = true
		}
	}
	if len(warm) == 0 {
		return
	}
	if len(c.core.warming) == 0 {
		c.core.warmDeadline = time.Time{}
		if c.cfg.InitialFetchTimeout > 0 {
			c.core.warmDeadline = time.Now().Add(c.cfg.InitialFetchTimeout)
		}
	}
	c.core.warming = warm
}

func (c *Client) updateWarming() {
	eds := c.types[resource.EndpointType]
	for n := range c.core.warming {
		if eds == nil || !eds.wantedSet[n] {
			delete(c.core.warming, n)
		} else if _, ok := eds.resources[n]; ok {
			delete(c.core.warming, n)
		}
	}
}

// release applies held listener and route updates once nothing warms.
func (c *Client) release() {
	if c.holding() {
		return
	}
	for _, t := range [...]string{resource.ListenerType, resource.RouteType} {
		if ts := c.types[t]; ts != nil && ts.held != nil {
			u := ts.held
			ts.held = nil
			c.apply(ts, u)
		}
	}
}

func (c *Client) checkInitialized() {
	if c.core.initDone || len(c.missing()) > 0 {
		return
	}
	c.core.initDone = true
	close(c.initCh)
	c.log.Info("xds: initial configuration applied")
}

// missing lists what the initial fetch still waits for.
func (c *Client) missing() []string {
	var out []string
	for _, t := range typeOrder {
		ts := c.types[t]
		if ts == nil {
			continue
		}
		if ts.kind.wildcard {
			if !ts.applied && !ts.rejected {
				out = append(out, ts.kind.label+"s")
			}
			continue
		}
		var names []string
		for _, n := range ts.wanted {
			if _, ok := ts.resources[n]; !ok {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			out = append(out, ts.kind.label+" "+strings.Join(names, ","))
		}
	}
	return out
}
