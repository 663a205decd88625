package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// sdkServer is the local API applications (through an SDK) talk to; see
// docs/mesh.md for the contract. JSON over HTTP/1.1 on loopback, so any
// language can use it without a library.
type sdkServer struct {
	a   *Agent
	ln  net.Listener
	srv *http.Server
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// maxWait bounds a long poll.
const maxWait = 60 * time.Second

func newSDKServer(a *Agent, address string) (*sdkServer, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	s := &sdkServer{a: a, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/publish", s.publish)
	mux.HandleFunc("POST /v1/unpublish", s.unpublish)
	mux.HandleFunc("POST /v1/subscribe", s.subscribe)
	mux.HandleFunc("GET /v1/subscriptions", s.poll)
	mux.HandleFunc("GET /v1/status", s.status)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	return s, nil
}

func (s *sdkServer) start()       { go func() { _ = s.srv.Serve(s.ln) }() }
func (s *sdkServer) addr() string { return s.ln.Addr().String() }
func (s *sdkServer) close() {
	_ = s.srv.Close()
	_ = s.ln.Close() // Close alone misses a listener Serve never took
}

// PublishRequest is the body of POST /v1/publish.
type PublishRequest struct {
	Service  string            `json:"service"`
	Protocol string            `json:"protocol"`
	Port     int               `json:"port"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// SubscribeRequest is the body of POST /v1/subscribe and /v1/unpublish.
type SubscribeRequest struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
}

// Subscription is what subscribe and the long poll answer.
type Subscription struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	// Address is the sidecar's egress the application calls.
	Address string `json:"address"`
	// Known is false until the registry has answered once.
	Known     bool                `json:"known"`
	Revision  uint64              `json:"revision"`
	Instances []registry.Instance `json:"instances"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, err)
			return false
		}
		writeErr(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func status(err error) int {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errNotServing):
		return http.StatusUnprocessableEntity
	case errors.Is(err, registry.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *sdkServer) publish(w http.ResponseWriter, r *http.Request) {
	var req PublishRequest
	if !decode(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	pub, err := s.a.Publish(ctx, req.Service, req.Protocol, req.Port, req.Metadata)
	if err != nil {
		writeErr(w, status(err), err)
		return
	}
	s.a.mu.Lock()
	out := *pub
	s.a.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *sdkServer) unpublish(w http.ResponseWriter, r *http.Request) {
	var req SubscribeRequest
	if !decode(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.a.Unpublish(ctx, req.Service, req.Protocol); err != nil {
		writeErr(w, status(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "unpublished"})
}

func (s *sdkServer) subscribe(w http.ResponseWriter, r *http.Request) {
	var req SubscribeRequest
	if !decode(w, r, &req) {
		return
	}
	if _, err := s.a.Subscribe(req.Service, req.Protocol); err != nil {
		writeErr(w, status(err), err)
		return
	}
	sub, _ := s.a.snapshot(subKey{req.Service, req.Protocol})
	writeJSON(w, http.StatusOK, sub)
}

// poll is the long poll: it answers at once when the subscription's
// revision is past index, else when it changes or after wait.
func (s *sdkServer) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	k := subKey{q.Get("service"), q.Get("protocol")}
	index, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait := 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeErr(w, http.StatusBadRequest, errors.New("wait: not a duration"))
			return
		}
		wait = min(d, maxWait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		sub, changed := s.a.snapshot(k)
		if changed == nil {
			writeErr(w, http.StatusNotFound, errors.New("not subscribed: POST /v1/subscribe first"))
			return
		}
		if sub.Revision > index {
			writeJSON(w, http.StatusOK, sub)
			return
		}
		select {
		case <-changed:
		case <-t.C:
			writeJSON(w, http.StatusOK, sub)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *sdkServer) status(w http.ResponseWriter, r *http.Request) {
	a := s.a
	a.mu.Lock()
	pubs := make([]publication, 0, len(a.published))
	for _, k := range sortedPubs(a.published) {
		pubs = append(pubs, *a.published[k])
	}
	keys := sortedSubs(a.subs)
	a.mu.Unlock()
	subs := make([]Subscription, 0, len(keys))
	for _, k := range keys {
		if sub, ch := a.snapshot(k); ch != nil {
			subs = append(subs, sub)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"published": pubs, "subscribed": subs})
}

// snapshot returns a subscription's state and the channel closed on its
// next change (nil when there is no such subscription).
func (a *Agent) snapshot(k subKey) (Subscription, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.subs[k]
	if s == nil {
		return Subscription{}, nil
	}
	out := Subscription{Service: k.service, Protocol: k.protocol, Known: s.known, Revision: s.revision,
		Instances: append([]registry.Instance{}, s.instances...)}
	if eg := a.egress[k.protocol]; eg != nil {
		out.Address = eg.addr
	}
	return out, s.changed
}
