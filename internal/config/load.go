// Package config loads an Envoy v3 bootstrap (YAML or JSON), validates it
// with the generated protoc-gen-validate rules plus Weft's own cross-checks,
// and reports every error with its field path.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed configs Weft understands must be linked for protojson to
	// resolve their Any type URLs.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// typedStructURL is where unknown extension configs are parked so that the
// file still parses and the unknown name can be refused (or skipped when
// optional) with a clear message later.
const typedStructURL = "type.googleapis.com/xds.type.v3.TypedStruct"

// Load reads and validates a bootstrap file.
func Load(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return b, nil
}

// Parse decodes YAML or JSON bytes into a bootstrap and validates it. The
// returned error is an *Errors listing every problem found.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &Errors{List: []FieldError{{Path: "", Msg: "not YAML or JSON: " + err.Error()}}}
	}
	js, err = parkUnknownAnys(js)
	if err != nil {
		return nil, &Errors{List: []FieldError{{Path: "", Msg: err.Error()}}}
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, &Errors{List: []FieldError{decodeError(js, err)}}
	}
	if err := Validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// parkUnknownAnys rewrites every JSON object whose "@type" is not linked
// into this binary as an xds.type.v3.TypedStruct carrying the original type
// URL, so the rest of the file can still be decoded and checked.
func parkUnknownAnys(js []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	changed := false
	var walk func(x any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = walk(e)
			}
			if tu, ok := t["@type"].(string); ok && tu != typedStructURL {
				name := tu[strings.LastIndex(tu, "/")+1:]
				if _, err := protoregistry.GlobalTypes.FindMessageByURL(tu); err != nil {
					if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflectName(name)); err != nil {
						changed = true
						delete(t, "@type")
						return map[string]any{"@type": typedStructURL, "type_url": tu, "value": t}
					}
				}
			}
			return t
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
			return t
		default:
			return x
		}
	}
	v = walk(v)
	if !changed {
		return js, nil
	}
	return json.Marshal(v)
}

// TypeURL returns the effective type URL of a typed config: the parked URL
// for an unknown extension, the Any's own otherwise.
func TypeURL(a *anypb.Any) string {
	if a == nil {
		return ""
	}
	if a.GetTypeUrl() == typedStructURL {
		ts := &xdstypev3.TypedStruct{}
		if err := a.UnmarshalTo(ts); err == nil {
			return ts.GetTypeUrl()
		}
	}
	return a.GetTypeUrl()
}

// Errors is the list of every problem in a config, each with its path.
type Errors struct {
	List []FieldError
}

// FieldError is one problem at one field path.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *Errors) Error() string {
	parts := make([]string, len(e.List))
	for i, fe := range e.List {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Add records a problem.
func (e *Errors) Add(path, format string, args ...any) {
	e.List = append(e.List, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// AddErr records err at path, flattening nested validation errors.
func (e *Errors) AddErr(path string, err error) {
	var ce *Errors
	if errors.As(err, &ce) {
		for _, fe := range ce.List {
			e.List = append(e.List, FieldError{Path: join(path, fe.Path), Msg: fe.Msg})
		}
		return
	}
	e.List = append(e.List, flattenPGV(path, err)...)
}

// Err returns e or nil when empty.
func (e *Errors) Err() error {
	if len(e.List) == 0 {
		return nil
	}
	return e
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}
