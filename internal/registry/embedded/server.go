package embedded

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// ServerOptions configures a Server. Zero values mean the defaults.
type ServerOptions struct {
	// SessionTTL is how long a session lives without a heartbeat
	// (default 10s). Clients heartbeat at a third of it.
	SessionTTL time.Duration
	// MaxServices bounds the services that have instances (default 100000).
	MaxServices int
	// MaxInstancesPerService bounds one service's instances (default 10000).
	MaxInstancesPerService int
	// Logger receives session expiries and server errors; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of ServerOptions.
const (
	DefaultSessionTTL             = 10 * time.Second
	DefaultMaxServices            = 100000
	DefaultMaxInstancesPerService = 10000
)

// maxSessions bounds live sessions, so that a runaway client cannot grow
// the server without end (sessions expire, but only after SessionTTL).
const maxSessions = 100000

// Timeouts of the http.Server. There is no ReadTimeout or WriteTimeout:
// long polls hold a request for up to MaxWait; bodies get a read deadline
// of their own.
const (
	readHeaderTimeout = 10 * time.Second
	bodyReadTimeout   = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Server is the embedded registry server. Its state lives in memory only:
// a restarted server is empty, and its clients register again.
type Server struct {
	opts  ServerOptions
	log   *slog.Logger
	epoch string // random per Server: tells clients the server restarted
	start time.Time
	srv   *http.Server
	h     http.Handler
	done  chan struct{} // closed by Close: wakes long polls, stops the reaper
	reap  sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	rev      uint64 // the last revision handed out, shared by all services
	services map[string]*service
	nonEmpty int // services with at least one instance
	sessions map[string]*session
}

// service is one service's instances and its change notification.
type service struct {
	name      string
	rev       uint64 // 0 until the first change
	instances map[string]*entry
	changed   chan struct{} // closed and replaced on every change
	watchers  int           // long polls waiting on changed
	counted   bool          // counted in Server.nonEmpty
}

type entry struct {
	inst    registry.Instance
	session *session
}

type session struct {
	id      string
	expires time.Time
	owned   map[ownedKey]struct{}
}

type ownedKey struct{ service, key string }

// NewServer builds a server and starts its session reaper; Serve serves it
// on a listener, or Handler can be mounted elsewhere. Close stops it.
func NewServer(o ServerOptions) *Server {
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.MaxServices <= 0 {
		o.MaxServices = DefaultMaxServices
	}
	if o.MaxInstancesPerService <= 0 {
		o.MaxInstancesPerService = DefaultMaxInstancesPerService
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		opts:     o,
		log:      o.Logger.With("component", "registry-server"),
		epoch:    randomID(8),
		start:    time.Now(),
		done:     make(chan struct{}),
		services: map[string]*service{},
		sessions: map[string]*session{},
	}
	s.h = http.HandlerFunc(s.route)
	s.srv = &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.reap.Add(1)
	go s.reaper()
	return s
}

// Handler returns the API handler.
func (s *Server) Handler() http.Handler { return s.h }

// Serve serves the API on ln until Close; it closes ln. It returns nil
// after Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server: listeners and connections are closed, long
// polls end, the state is dropped. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	err := s.srv.Close()
	s.reap.Wait()
	return err
}

// reaper expires sessions that were not heartbeated within SessionTTL.
func (s *Server) reaper() {
	defer s.reap.Done()
	every := s.opts.SessionTTL / 4
	if every < 5*time.Millisecond {
		every = 5 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, sess := range s.sessions {
				if now.After(sess.expires) {
					s.log.Info("registry session expired", "session", sess.id, "instances", len(sess.owned))
					s.dropSessionLocked(sess)
				}
			}
			s.mu.Unlock()
		}
	}
}

// dropSessionLocked removes a session and every instance it owns.
func (s *Server) dropSessionLocked(sess *session) {
	delete(s.sessions, sess.id)
	changed := map[*service]bool{}
	for k := range sess.owned {
		svc := s.services[k.service]
		if svc == nil {
			continue
		}
		if e := svc.instances[k.key]; e != nil && e.session == sess {
			delete(svc.instances, k.key)
			changed[svc] = true
		}
	}
	sess.owned = nil
	for svc := range changed {
		s.changedLocked(svc)
	}
}

// liveSessionLocked returns the session id names if it has not expired.
func (s *Server) liveSessionLocked(id string, now time.Time) *session {
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	if now.After(sess.expires) {
		s.dropSessionLocked(sess)
		return nil
	}
	return sess
}

// serviceLocked returns the entry of a service, creating an empty one.
func (s *Server) serviceLocked(name string) *service {
	svc := s.services[name]
	if svc == nil {
		svc = &service{name: name, instances: map[string]*entry{}, changed: make(chan struct{})}
		s.services[name] = svc
	}
	return svc
}

// changedLocked gives svc a new revision and wakes its long polls. It must
// be called after every change of svc.instances (and only then).
func (s *Server) changedLocked(svc *service) {
	s.rev++
	svc.rev = s.rev
	close(svc.changed)
	svc.changed = make(chan struct{})
	s.tidyLocked(svc)
}

// tidyLocked keeps nonEmpty right and forgets a service that has neither
// instances nor waiting long polls. Forgetting is safe: a service created
// again gets a newer revision than any it had, and a poll that comes with
// an index of the forgotten one sees revision 0 and gets an answer at once.
func (s *Server) tidyLocked(svc *service) {
	switch has := len(svc.instances) > 0; {
	case has && !svc.counted:
		svc.counted = true
		s.nonEmpty++
	case !has && svc.counted:
		svc.counted = false
		s.nonEmpty--
	}
	if len(svc.instances) == 0 && svc.watchers == 0 && s.services[svc.name] == svc {
		delete(s.services, svc.name)
	}
}

// route dispatches on the escaped path, so that instance keys (which hold
// "//") travel as one escaped segment.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	parts := strings.Split(strings.TrimSuffix(raw, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, "bad path escape: "+err.Error())
			return
		}
		parts[i] = u
	}
	if len(parts) < 2 || parts[0] != "v1" {
		writeError(w, http.StatusNotFound, codeNotFound, "no such endpoint: "+r.URL.Path)
		return
	}
	method := func(allowed ...string) bool {
		for _, m := range allowed {
			if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, codeMethod, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return false
	}
	switch {
	case parts[1] == "sessions" && len(parts) == 2:
		if method(http.MethodPost) {
			s.createSession(w, r)
		}
	case parts[1] == "sessions" && len(parts) == 3:
		if method(http.MethodPut, http.MethodDelete) {
			if r.Method == http.MethodPut {
				s.heartbeat(w, r, parts[2])
			} else {
				s.deleteSession(w, r, parts[2])
			}
		}
	case parts[1] == "services" && len(parts) == 2:
		if method(http.MethodGet) {
			s.listServices(w, r)
		}
	case parts[1] == "services" && len(parts) == 3:
		if method(http.MethodGet) {
			s.watch(w, r, parts[2])
		}
	case parts[1] == "services" && len(parts) == 4 && parts[3] == "instances":
		if method(http.MethodPut) {
			s.register(w, r, parts[2])
		}
	case parts[1] == "services" && len(parts) == 5 && parts[3] == "instances":
		if method(http.MethodDelete) {
			s.deregister(w, r, parts[2], parts[4])
		}
	default:
		writeError(w, http.StatusNotFound, codeNotFound, "no such endpoint: "+r.URL.Path)
	}
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	// A body is allowed (for forward compatibility) but not used.
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		writeBodyError(w, err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, codeClosed, "registry server closing")
		return
	}
	if len(s.sessions) >= maxSessions {
		s.mu.Unlock()
		writeError(w, http.StatusInsufficientStorage, codeLimit, fmt.Sprintf("too many sessions (%d)", maxSessions))
		return
	}
	sess := &session{id: randomID(16), expires: time.Now().Add(s.opts.SessionTTL), owned: map[ownedKey]struct{}{}}
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, sessionJSON{ID: sess.id, TTLMs: s.opts.SessionTTL.Milliseconds()})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, id string) {
	now := time.Now()
	s.mu.Lock()
	sess := s.liveSessionLocked(id, now)
	if sess != nil {
		sess.expires = now.Add(s.opts.SessionTTL)
	}
	s.mu.Unlock()
	if sess == nil {
		writeUnknownSession(w, id)
		return
	}
	writeJSON(w, http.StatusOK, sessionJSON{ID: id, TTLMs: s.opts.SessionTTL.Milliseconds()})
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sess := s.liveSessionLocked(id, time.Now())
	if sess != nil {
		s.dropSessionLocked(sess)
	}
	s.mu.Unlock()
	if sess == nil {
		writeUnknownSession(w, id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := servicesJSON{Services: make([]serviceSummary, 0, s.nonEmpty)}
	for _, svc := range s.services {
		if len(svc.instances) > 0 {
			out.Services = append(out.Services, serviceSummary{Service: svc.name, Instances: len(svc.instances), Revision: svc.rev})
		}
	}
	s.mu.Unlock()
	sort.Slice(out.Services, func(a, b int) bool { return out.Services[a].Service < out.Services[b].Service })
	writeJSON(w, http.StatusOK, out)
}

// watch answers GET /v1/services/{service}, long polling with ?index=.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, name string) {
	if err := checkService(name); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	var index uint64
	hasIndex := q.Has("index")
	if hasIndex {
		n, err := strconv.ParseUint(q.Get("index"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("bad index %q: want a revision (a non-negative integer)", q.Get("index")))
			return
		}
		index = n
	}
	wait := DefaultWait
	if q.Has("wait") {
		d, err := parseWait(q.Get("wait"))
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
		wait = d
	}
	epoch := q.Get("epoch")
	if epoch != "" && epoch != s.epoch {
		// The client knew an earlier server: this one restarted and lost
		// its state. Its clients re-register within a session TTL, so
		// answer once that has passed rather than with a list still
		// filling up (the client keeps its last list meanwhile).
		if d := time.Until(s.start.Add(s.opts.SessionTTL)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-s.done:
			case <-r.Context().Done():
			}
			t.Stop()
			if r.Context().Err() != nil {
				return
			}
		}
	}

	s.mu.Lock()
	svc := s.services[name]
	var rev uint64
	if svc != nil {
		rev = svc.rev
	}
	if hasIndex && rev == index && (epoch == "" || epoch == s.epoch) && wait > 0 && !s.closed {
		svc = s.serviceLocked(name)
		svc.watchers++
		ch := svc.changed
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-s.done:
		case <-r.Context().Done():
		}
		t.Stop()
		s.mu.Lock()
		svc.watchers--
		s.tidyLocked(svc)
		if r.Context().Err() != nil {
			s.mu.Unlock()
			return // the client is gone
		}
	}
	out := s.snapshotLocked(name)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// snapshotLocked is a service's current state, instances sorted.
func (s *Server) snapshotLocked(name string) serviceJSON {
	out := serviceJSON{Service: name, Epoch: s.epoch, Instances: []registry.Instance{}}
	if svc := s.services[name]; svc != nil {
		out.Revision = svc.rev
		for _, e := range svc.instances {
			out.Instances = append(out.Instances, e.inst)
		}
	}
	registry.Sort(out.Instances)
	return out
}

// register answers PUT /v1/services/{service}/instances.
func (s *Server) register(w http.ResponseWriter, r *http.Request, name string) {
	id := sessionID(r)
	if id == "" {
		writeError(w, http.StatusBadRequest, codeBadRequest, "missing session: send the "+SessionHeader+" header or ?session=")
		return
	}
	var inst registry.Instance
	if err := readJSON(w, r, &inst); err != nil {
		writeBodyError(w, err)
		return
	}
	if inst.Service == "" {
		inst.Service = name
	}
	if inst.Service != name {
		writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("instance service %q does not match the path's %q", inst.Service, name))
		return
	}
	if err := inst.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	if len(inst.Metadata) == 0 {
		inst.Metadata = nil
	}
	key := inst.Key()
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.liveSessionLocked(id, now)
	if sess == nil {
		writeUnknownSession(w, id)
		return
	}
	sess.expires = now.Add(s.opts.SessionTTL) // any use keeps a session alive
	svc := s.services[name]
	if (svc == nil || len(svc.instances) == 0) && s.nonEmpty >= s.opts.MaxServices {
		writeError(w, http.StatusInsufficientStorage, codeLimit, fmt.Sprintf("too many services (max %d)", s.opts.MaxServices))
		return
	}
	svc = s.serviceLocked(name)
	old := svc.instances[key]
	if old == nil && len(svc.instances) >= s.opts.MaxInstancesPerService {
		writeError(w, http.StatusInsufficientStorage, codeLimit, fmt.Sprintf("too many instances of %s (max %d)", name, s.opts.MaxInstancesPerService))
		s.tidyLocked(svc)
		return
	}
	if old != nil && old.session == sess && sameInstance(old.inst, inst) {
		writeJSON(w, http.StatusOK, revisionJSON{Revision: svc.rev}) // no change
		return
	}
	if old != nil && old.session != sess {
		delete(old.session.owned, ownedKey{name, key})
	}
	svc.instances[key] = &entry{inst: inst, session: sess}
	sess.owned[ownedKey{name, key}] = struct{}{}
	s.changedLocked(svc)
	writeJSON(w, http.StatusOK, revisionJSON{Revision: svc.rev})
}

// deregister answers DELETE /v1/services/{service}/instances/{key}.
func (s *Server) deregister(w http.ResponseWriter, r *http.Request, name, key string) {
	if err := checkService(name); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	id := sessionID(r)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var sess *session
	if id != "" {
		if sess = s.liveSessionLocked(id, now); sess == nil {
			writeUnknownSession(w, id)
			return
		}
		sess.expires = now.Add(s.opts.SessionTTL)
	}
	svc := s.services[name]
	if svc == nil {
		writeJSON(w, http.StatusOK, revisionJSON{})
		return
	}
	e := svc.instances[key]
	if e == nil {
		writeJSON(w, http.StatusOK, revisionJSON{Revision: svc.rev})
		return
	}
	if sess != nil && e.session != sess {
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("instance %s of %s belongs to another session", key, name))
		return
	}
	delete(e.session.owned, ownedKey{name, key})
	delete(svc.instances, key)
	s.changedLocked(svc)
	writeJSON(w, http.StatusOK, revisionJSON{Revision: svc.rev})
}

func sessionID(r *http.Request) string {
	if id := r.Header.Get(SessionHeader); id != "" {
		return id
	}
	return r.URL.Query().Get("session")
}

// checkService applies Instance.Validate's rule for service names.
func checkService(name string) error {
	if name == "" || strings.ContainsAny(name, "/ \t\r\n") {
		return fmt.Errorf("bad service name %q", name)
	}
	return nil
}

func parseWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		// Plain integers are seconds.
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			return 0, fmt.Errorf("bad wait %q: want a duration such as 30s", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, fmt.Errorf("bad wait %q: negative", v)
	}
	return min(d, MaxWait), nil
}

// sameInstance reports whether two instances of the same key are equal.
func sameInstance(a, b registry.Instance) bool {
	return registry.Equal([]registry.Instance{a}, []registry.Instance{b})
}

// readJSON decodes exactly one JSON value from a bounded body.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body: want a JSON instance")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func writeBodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
		return
	}
	writeError(w, http.StatusBadRequest, codeBadRequest, "bad JSON body: "+err.Error())
}

func writeUnknownSession(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, codeUnknownSession, fmt.Sprintf("unknown or expired session %q: create a new one", id))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorJSON{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed","code":"internal"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
