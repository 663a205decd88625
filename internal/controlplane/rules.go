package controlplane

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// This file is the rule file format, as written in YAML. docs/control-plane.md
// documents every field; keep the two in step.

// ruleFile is one YAML document of a rule file.
type ruleFile struct {
	Services []*serviceRule `yaml:"services"`
	Routes   []*routeRule   `yaml:"routes"`
	Sidecars []*sidecarRule `yaml:"sidecars"`
}

// pos is where a rule was written, and the line of each of its fields.
type pos struct {
	File string
	Line int
	keys map[string]int
}

func (p *pos) setPos(file string, line int) { p.File, p.Line = file, line }

func (p *pos) setKey(key string, line int) {
	if p.keys == nil {
		p.keys = map[string]int{}
	}
	p.keys[key] = line
}

// field is the position of one field of the rule (the rule's own when the
// field was not written).
func (p pos) field(name string) pos {
	if l, ok := p.keys[name]; ok {
		return pos{File: p.File, Line: l}
	}
	return pos{File: p.File, Line: p.Line}
}

// at formats the position as "file:line".
func (p pos) at() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// duration is a Go duration string ("1.5s", "300ms").
type duration struct {
	D   time.Duration
	Set bool
}

func (d *duration) parseScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q (want e.g. 500ms, 2s, 1m)", s)
	}
	if v < 0 {
		return fmt.Errorf("bad duration %q: negative", s)
	}
	d.D, d.Set = v, true
	return nil
}

type serviceRule struct {
	pos
	Name          string             `yaml:"name"`
	Protocol      string             `yaml:"protocol"`
	Port          int                `yaml:"port"`
	Hosts         []string           `yaml:"hosts"`
	Endpoints     []*endpointRule    `yaml:"endpoints"`
	TrafficPolicy *trafficPolicyRule `yaml:"traffic_policy"`
}

type endpointRule struct {
	pos
	Address string            `yaml:"address"`
	Labels  map[string]string `yaml:"labels"`
	Weight  int               `yaml:"weight"`
}

type trafficPolicyRule struct {
	pos
	LBPolicy        string               `yaml:"lb_policy"`
	ConnectTimeout  duration             `yaml:"connect_timeout"`
	CircuitBreakers *circuitBreakersRule `yaml:"circuit_breakers"`
	HealthCheck     *healthCheckRule     `yaml:"health_check"`
}

type circuitBreakersRule struct {
	pos
	MaxConnections     *int `yaml:"max_connections"`
	MaxPendingRequests *int `yaml:"max_pending_requests"`
	MaxRequests        *int `yaml:"max_requests"`
	MaxRetries         *int `yaml:"max_retries"`
}

type healthCheckRule struct {
	pos
	Interval           duration `yaml:"interval"`
	Timeout            duration `yaml:"timeout"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	HTTPPath           string   `yaml:"http_path"`
}

type routeRule struct {
	pos
	Service string  `yaml:"service"`
	Rules   []*rule `yaml:"rules"`
}

type rule struct {
	pos
	Name         string             `yaml:"name"`
	Match        *matchRule         `yaml:"match"`
	Destinations []*destinationRule `yaml:"destinations"`
	Timeout      duration           `yaml:"timeout"`
	Retries      *retriesRule       `yaml:"retries"`
}

type matchRule struct {
	pos
	Prefix  *string        `yaml:"prefix"`
	Path    *string        `yaml:"path"`
	Method  *string        `yaml:"method"`
	Headers []*headerMatch `yaml:"headers"`
	Version *string        `yaml:"version"`
	Group   *string        `yaml:"group"`
}

type headerMatch struct {
	pos
	Name    string  `yaml:"name"`
	Exact   *string `yaml:"exact"`
	Prefix  *string `yaml:"prefix"`
	Suffix  *string `yaml:"suffix"`
	Regex   *string `yaml:"regex"`
	Present *bool   `yaml:"present"`
}

type destinationRule struct {
	pos
	Service string            `yaml:"service"`
	Subset  map[string]string `yaml:"subset"`
	Weight  *int              `yaml:"weight"`
}

type retriesRule struct {
	pos
	Attempts      int      `yaml:"attempts"`
	RetryOn       []string `yaml:"retry_on"`
	PerTryTimeout duration `yaml:"per_try_timeout"`
}

type sidecarRule struct {
	pos
	Name      string          `yaml:"name"`
	Match     *nodeMatchRule  `yaml:"match"`
	Listeners []*listenerRule `yaml:"listeners"`
}

type nodeMatchRule struct {
	pos
	NodeID   string            `yaml:"node_id"`
	Metadata map[string]string `yaml:"metadata"`
}

type listenerRule struct {
	pos
	Name     string   `yaml:"name"`
	Address  string   `yaml:"address"`
	Protocol string   `yaml:"protocol"`
	Services []string `yaml:"services"`
}

// Problem is one error or warning about the rules, at a file and line.
type Problem struct {
	// File is the rule file as a path under the rules directory as given
	// (e.g. "rules/routes.yaml"); empty for the directory itself.
	File string `json:"file,omitempty"`
	// Line is 1-based; 0 when the problem concerns the whole file.
	Line int `json:"line,omitempty"`
	// Message says what is wrong and where in the rule.
	Message string `json:"message"`
	// Warning marks problems that do not refuse the rules.
	Warning bool `json:"warning,omitempty"`
}

// String formats the problem as "file:line: message".
func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Line == 0:
		return p.File + ": " + p.Message
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
}

// RulesError is a refused rule set: every error found, in file and line
// order.
type RulesError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *RulesError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// maxProblems bounds what one load reports.
const maxProblems = 200

type problems struct {
	list []Problem
}

func (ps *problems) add(p Problem) {
	if len(ps.list) < maxProblems {
		ps.list = append(ps.list, p)
	} else if len(ps.list) == maxProblems {
		ps.list = append(ps.list, Problem{Message: "too many problems; the rest are not shown"})
	}
}

func (ps *problems) errorAt(file string, line int, format string, args ...any) {
	ps.add(Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) warnAt(file string, line int, format string, args ...any) {
	ps.add(Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...), Warning: true})
}

func (ps *problems) errorf(p pos, format string, args ...any) {
	ps.errorAt(p.File, p.Line, format, args...)
}

func (ps *problems) warnf(p pos, format string, args ...any) {
	ps.warnAt(p.File, p.Line, format, args...)
}

// split separates errors from warnings, each sorted by file and line.
func (ps *problems) split() (errs, warns []Problem) {
	for _, p := range ps.list {
		if p.Warning {
			warns = append(warns, p)
		} else {
			errs = append(errs, p)
		}
	}
	sortProblems(errs)
	sortProblems(warns)
	return errs, warns
}

func sortProblems(l []Problem) {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return l[i].File < l[j].File
		}
		return l[i].Line < l[j].Line
	})
}
