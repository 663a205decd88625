// Package embedded is the registry backend that needs nothing installed:
// a small HTTP/JSON server on loopback (Server, run by `weft registry` and
// `weft demo`) that several sidecars share, and its client (Registry, a
// registry.Registry).
//
// The API. Bodies are JSON; every error is {"error": "...", "code": "..."}
// with code bad_request (400), unknown_session (404: create a new session),
// not_found (404), method_not_allowed (405), conflict (409), too_large
// (413: bodies are limited to 64 KiB) or limit (507: MaxServices,
// MaxInstancesPerService, or too many sessions).
//
//	POST   /v1/sessions                            201 {"id", "ttl_ms"}
//	PUT    /v1/sessions/{id}                       heartbeat: 200 {"id", "ttl_ms"}
//	DELETE /v1/sessions/{id}                       204; the session's instances go at once
//	GET    /v1/services                            200 {"services": [{"service", "instances", "revision"}]}
//	GET    /v1/services/{service}                  200 {"service", "revision", "epoch", "instances": [...]}
//	       ?index=N&wait=30s&epoch=E               long poll, see below
//	PUT    /v1/services/{service}/instances        body: an Instance; 200 {"revision"}
//	DELETE /v1/services/{service}/instances/{key}  200 {"revision"}
//
// Register and deregister name the session in the X-Weft-Session header
// or ?session=. Registering replaces the instance of the same key (even
// one of another session, which then no longer owns it); registering it
// unchanged is no change. Deregistering is idempotent; without a session
// it removes any owner's instance, with one it answers 409 for another
// session's. {key} is Instance.Key() path-escaped: dubbo:%2F%2F10.0.0.1:20880.
// Any call naming a session keeps it alive like a heartbeat. A session
// neither heartbeated nor used for ServerOptions.SessionTTL expires, and
// its instances are removed.
//
// Revisions come from one counter of the server: a service's revision is
// the counter at its last change, 0 for one it does not hold (never seen,
// or emptied and forgotten). Without
// ?index= a GET answers at once. With it, it answers as soon as the
// service's revision is not N (a change, or an index of another server),
// else after ?wait= (a duration or plain seconds; default 30s, at most
// 60s) with the same revision. Instances are sorted by key. epoch is
// random per server start; a poll carrying another server's epoch is
// answered at once too, except that a server younger than its session
// TTL holds such polls until that age: its state was lost in the restart
// and its clients are registering again, so the watchers of the previous
// server keep their last list meanwhile instead of seeing it empty.
package embedded

import (
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// SessionHeader carries the session id of a register or deregister call
// (the "session" query parameter works too).
const SessionHeader = "X-Weft-Session"

// Limits of the API.
const (
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes = 64 << 10
	// DefaultWait is a long poll's wait when ?wait= is absent.
	DefaultWait = 30 * time.Second
	// MaxWait caps ?wait=.
	MaxWait = 60 * time.Second
)

// Error codes of the JSON error bodies.
const (
	codeBadRequest     = "bad_request"
	codeTooLarge       = "too_large"
	codeUnknownSession = "unknown_session"
	codeNotFound       = "not_found"
	codeMethod         = "method_not_allowed"
	codeConflict       = "conflict"
	codeLimit          = "limit"
	codeClosed         = "closed"
)

// sessionJSON answers session calls.
type sessionJSON struct {
	ID    string `json:"id"`
	TTLMs int64  `json:"ttl_ms"`
}

// serviceJSON answers GET /v1/services/{service}.
type serviceJSON struct {
	Service   string              `json:"service"`
	Revision  uint64              `json:"revision"`
	Epoch     string              `json:"epoch"`
	Instances []registry.Instance `json:"instances"`
}

// revisionJSON answers register and deregister.
type revisionJSON struct {
	Revision uint64 `json:"revision"`
}

// serviceSummary is one row of GET /v1/services.
type serviceSummary struct {
	Service   string `json:"service"`
	Instances int    `json:"instances"`
	Revision  uint64 `json:"revision"`
}

type servicesJSON struct {
	Services []serviceSummary `json:"services"`
}

// errorJSON is every error body.
type errorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}
