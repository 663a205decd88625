// Package headermutation is envoy.filters.http.header_mutation: ordered
// request and response header edits applied on every L7 protocol.
package headermutation

import (
	"fmt"

	mrv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	hmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/router"
)

// Name is the filter's registered name.
const Name = "envoy.filters.http.header_mutation"

// TypeURL is its typed_config type.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"

func init() { api.StreamFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

var _ api.StreamFilterFactory = factory{}

// Filter applies the compiled edits; it is stateless and shared.
type Filter struct {
	req, resp *router.HeaderOps
}

var _ api.StreamFilter = (*Filter)(nil)

// Parse implements api.StreamFilterFactory.
func (factory) Parse(b []byte, _ string) (any, error) {
	pb := &hmv3.HeaderMutation{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := pb.ValidateAll(); err != nil {
		return nil, err
	}
	m := pb.GetMutations()
	if len(m.GetQueryParameterMutations()) > 0 {
		return nil, fmt.Errorf("mutations.query_parameter_mutations: not supported")
	}
	req, err := compile("mutations.request_mutations", m.GetRequestMutations())
	if err != nil {
		return nil, err
	}
	resp, err := compile("mutations.response_mutations", m.GetResponseMutations())
	if err != nil {
		return nil, err
	}
	return &Filter{req: req, resp: resp}, nil
}

func compile(field string, ms []*mrv3.HeaderMutation) (*router.HeaderOps, error) {
	muts := make([]router.HeaderMutation, 0, len(ms))
	for i, m := range ms {
		switch a := m.GetAction().(type) {
		case *mrv3.HeaderMutation_Remove:
			muts = append(muts, router.HeaderMutation{Remove: a.Remove})
		case *mrv3.HeaderMutation_Append:
			muts = append(muts, router.HeaderMutation{Add: a.Append})
		default:
			return nil, fmt.Errorf("%s[%d]: only remove and append are supported", field, i)
		}
	}
	return router.CompileHeaderMutations(field, muts)
}

// Build implements api.StreamFilterFactory.
func (factory) Build(parsed any, _ api.BuildContext) (api.StreamFilter, error) {
	return parsed.(*Filter), nil
}

// OnRequest implements api.StreamFilter.
func (f *Filter) OnRequest(s api.Stream) api.Status {
	f.req.Apply(s.RequestHeaders(), vars{s})
	return api.Continue
}

// OnResponse implements api.StreamFilter.
func (f *Filter) OnResponse(s api.Stream) api.Status {
	if h := s.ResponseHeaders(); h != nil {
		f.resp.Apply(h, vars{s})
	}
	return api.Continue
}

// vars exposes the stream's peer to %DOWNSTREAM_REMOTE_ADDRESS%.
type vars struct{ s api.Stream }

func (v vars) DownstreamRemoteAddress() string { return v.s.RemoteAddr().String() }
