// Package lb holds Weft's load balancers: round robin, random, least
// request, ring hash and Maglev. Each is a small immutable type built from a
// fixed list of endpoints; the owning cluster rebuilds it when membership or
// health changes, so Pick never takes a lock and never allocates.
package lb

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/weftmesh/weft/api"
)

// Balancer picks one host from the fixed set it was built with. Pick is safe
// for concurrent use, allocation-free, and returns nil only when the set is
// empty. ctx may be nil.
type Balancer interface {
	Pick(ctx api.LBContext) api.Host
}

// Endpoint is a host with its load-balancing weight (0 counts as 1).
type Endpoint struct {
	Host   api.Host
	Weight uint32
}

// Policy names a load-balancing algorithm (Envoy's Cluster.lb_policy).
type Policy int

// The supported policies.
const (
	RoundRobin Policy = iota
	LeastRequest
	Random
	RingHash
	Maglev
)

// String returns the Envoy enum name of p.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case Random:
		return "RANDOM"
	case RingHash:
		return "RING_HASH"
	case Maglev:
		return "MAGLEV"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Defaults and limits from Envoy's cluster.proto.
const (
	DefaultMinRingSize  = 1024
	DefaultMaxRingSize  = 8 * 1024 * 1024
	MaxRingSizeLimit    = 8 * 1024 * 1024
	DefaultTableSize    = 65537
	MaxTableSize        = 5000011
	DefaultChoiceCount  = 2
	maxRoundRobinPeriod = 1 << 14
)

// Config is a parsed, validated load-balancer configuration.
type Config struct {
	Policy Policy
	// MinRingSize and MaxRingSize bound the ring-hash ring.
	MinRingSize, MaxRingSize uint64
	// TableSize is the Maglev lookup table size, a prime.
	TableSize uint64
	// ChoiceCount is how many random candidates least-request compares.
	ChoiceCount uint32
}

// DefaultConfig is round robin with Envoy's defaults for every other knob.
func DefaultConfig() Config {
	return Config{
		Policy:      RoundRobin,
		MinRingSize: DefaultMinRingSize,
		MaxRingSize: DefaultMaxRingSize,
		TableSize:   DefaultTableSize,
		ChoiceCount: DefaultChoiceCount,
	}
}

// ParseConfig reads lb_policy and its per-policy config from c. Errors name
// the offending field path relative to the cluster.
func ParseConfig(c *clusterv3.Cluster) (Config, error) {
	cfg := DefaultConfig()
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		cfg.Policy = RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		cfg.Policy = LeastRequest
		if lr := c.GetLeastRequestLbConfig(); lr != nil && lr.GetChoiceCount() != nil {
			n := lr.GetChoiceCount().GetValue()
			if n < 2 {
				return cfg, fmt.Errorf("least_request_lb_config.choice_count: %d is below 2", n)
			}
			cfg.ChoiceCount = n
		}
	case clusterv3.Cluster_RANDOM:
		cfg.Policy = Random
	case clusterv3.Cluster_RING_HASH:
		cfg.Policy = RingHash
		if rh := c.GetRingHashLbConfig(); rh != nil {
			if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
				return cfg, fmt.Errorf("ring_hash_lb_config.hash_function: %s is not supported (only XX_HASH)", rh.GetHashFunction())
			}
			if v := rh.GetMinimumRingSize(); v != nil {
				cfg.MinRingSize = v.GetValue()
			}
			if v := rh.GetMaximumRingSize(); v != nil {
				cfg.MaxRingSize = v.GetValue()
			}
			if cfg.MaxRingSize > MaxRingSizeLimit {
				return cfg, fmt.Errorf("ring_hash_lb_config.maximum_ring_size: %d exceeds %d", cfg.MaxRingSize, MaxRingSizeLimit)
			}
			if cfg.MinRingSize == 0 {
				return cfg, fmt.Errorf("ring_hash_lb_config.minimum_ring_size: must be positive")
			}
			if cfg.MinRingSize > cfg.MaxRingSize {
				return cfg, fmt.Errorf("ring_hash_lb_config.minimum_ring_size: %d exceeds maximum_ring_size %d", cfg.MinRingSize, cfg.MaxRingSize)
			}
		}
	case clusterv3.Cluster_MAGLEV:
		cfg.Policy = Maglev
		if mg := c.GetMaglevLbConfig(); mg != nil && mg.GetTableSize() != nil {
			n := mg.GetTableSize().GetValue()
			if n > MaxTableSize {
				return cfg, fmt.Errorf("maglev_lb_config.table_size: %d exceeds %d", n, MaxTableSize)
			}
			if !isPrime(n) {
				return cfg, fmt.Errorf("maglev_lb_config.table_size: %d is not prime", n)
			}
			cfg.TableSize = n
		}
	default:
		return cfg, fmt.Errorf("lb_policy: %s is not supported", c.GetLbPolicy())
	}
	return cfg, nil
}

// New builds the balancer cfg.Policy names over eps. eps is not retained
// (the balancer copies what it needs). An empty eps yields a balancer whose
// Pick returns nil.
func New(cfg Config, eps []Endpoint) Balancer {
	if len(eps) == 0 {
		return empty{}
	}
	switch cfg.Policy {
	case Random:
		return newRandom(eps)
	case LeastRequest:
		n := cfg.ChoiceCount
		if n < 2 {
			n = DefaultChoiceCount
		}
		return newLeastRequest(eps, n)
	case RingHash:
		lo, hi := cfg.MinRingSize, cfg.MaxRingSize
		if lo == 0 {
			lo = DefaultMinRingSize
		}
		if hi == 0 || hi < lo {
			hi = max(lo, DefaultMaxRingSize)
		}
		return newRingHash(eps, lo, hi)
	case Maglev:
		m := cfg.TableSize
		if m == 0 || !isPrime(m) {
			m = DefaultTableSize
		}
		return newMaglev(eps, m)
	default:
		return newRoundRobin(eps)
	}
}

type empty struct{}

func (empty) Pick(api.LBContext) api.Host { return nil }

func weightOf(e Endpoint) uint64 {
	if e.Weight == 0 {
		return 1
	}
	return uint64(e.Weight)
}

func hostsOf(eps []Endpoint) []api.Host {
	hs := make([]api.Host, len(eps))
	for i, e := range eps {
		hs[i] = e.Host
	}
	return hs
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// hashKey returns the request's hash key, if any; ctx may be nil.
func hashKey(ctx api.LBContext) (uint64, bool) {
	if ctx == nil {
		return 0, false
	}
	return ctx.HashKey()
}
