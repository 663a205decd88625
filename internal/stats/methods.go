package stats

import (
	"strings"
	"sync"
)

// MethodTable hands out the per service and method stats. Lookups take a
// read lock and allocate nothing; the number of distinct pairs is bounded
// (label cardinality), later pairs share the "other" entry.
type MethodTable struct {
	store  *Store
	prefix string
	max    int
	mu     sync.RWMutex
	m      map[methodKey]*RPCMethodStats
	other  map[string]*RPCMethodStats // per protocol
	unr    map[string]*RPCMethodStats // per protocol
}

type methodKey struct{ protocol, service, method string }

// OtherLabel is the service and method label of the pairs past the bound.
const OtherLabel = "other"

// UnroutedLabel is the service and method label of requests no route took.
const UnroutedLabel = "unrouted"

// Init readies the table: stats of store under statPrefix, at most max
// distinct (protocol, service, method) entries.
func (ms *MethodTable) Init(store *Store, statPrefix string, max int) {
	ms.store, ms.prefix, ms.max = store, statPrefix, max
	ms.m = map[methodKey]*RPCMethodStats{}
	ms.other = map[string]*RPCMethodStats{}
	ms.unr = map[string]*RPCMethodStats{}
}

// Unrouted returns the shared entry of requests that matched no route.
func (ms *MethodTable) Unrouted(protocol string) *RPCMethodStats {
	ms.mu.RLock()
	s := ms.unr[protocol]
	ms.mu.RUnlock()
	if s != nil {
		return s
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s = ms.unr[protocol]; s == nil {
		s = ms.store.RPCMethod(ms.prefix, protocol, UnroutedLabel, UnroutedLabel)
		ms.unr[protocol] = s
	}
	return s
}

func (ms *MethodTable) Get(protocol, service, method string) *RPCMethodStats {
	k := methodKey{protocol, service, method}
	ms.mu.RLock()
	s := ms.m[k]
	ms.mu.RUnlock()
	if s != nil {
		return s
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s = ms.m[k]; s != nil {
		return s
	}
	if len(ms.m) >= ms.max {
		if s = ms.other[protocol]; s == nil {
			s = ms.store.RPCMethod(ms.prefix, protocol, OtherLabel, OtherLabel)
			ms.other[protocol] = s
		}
		return s
	}
	// The key's strings view the request frame: keep copies.
	k = methodKey{strings.Clone(protocol), strings.Clone(service), strings.Clone(method)}
	s = ms.store.RPCMethod(ms.prefix, k.protocol, k.service, k.method)
	ms.m[k] = s
	return s
}
