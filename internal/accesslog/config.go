package accesslog

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/weftmesh/weft/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the access loggers FromConfig understands.
const (
	FileTypeURL   = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
	StdoutTypeURL = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	StderrTypeURL = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
)

// FromConfig builds a logger from an Envoy access_log entry: typed_config
// FileAccessLog (path plus format, json_format, typed_json_format or
// log_format), StdoutAccessLog or StderrAccessLog. The filter may be a
// status_code_filter, duration_filter, response_flag_filter,
// header_filter, or an and_filter/or_filter of those; runtime keys are
// not supported (the default value is used). Any other filter or logger
// type is an error naming its field path.
func FromConfig(al *accesslogv3.AccessLog) (*Logger, error) {
	if al == nil {
		return nil, errors.New("accesslog: nil config")
	}
	l, err := fromConfig(al)
	if err != nil {
		return nil, fmt.Errorf("accesslog %q: %w", al.GetName(), err)
	}
	return l, nil
}

// Spec is a parsed access log config: where it writes, how, and which
// entries it keeps. Check returns it without opening anything.
type Spec struct {
	Path   string
	Format *Format
	filter func(*Entry) bool
}

// Check parses and validates al without opening its file, for config
// validation.
func Check(al *accesslogv3.AccessLog) (*Spec, error) {
	if al == nil {
		return nil, errors.New("accesslog: nil config")
	}
	sp, err := parseConfig(al)
	if err != nil {
		return nil, fmt.Errorf("accesslog %q: %w", al.GetName(), err)
	}
	return sp, nil
}

func fromConfig(al *accesslogv3.AccessLog) (*Logger, error) {
	sp, err := parseConfig(al)
	if err != nil {
		return nil, err
	}
	l, err := Open(sp.Path, sp.Format)
	if err != nil {
		return nil, err
	}
	l.filter = sp.filter
	return l, nil
}

func parseConfig(al *accesslogv3.AccessLog) (*Spec, error) {
	var filter func(*Entry) bool
	if al.GetFilter() != nil {
		f, err := compileFilter(al.GetFilter(), "filter")
		if err != nil {
			return nil, err
		}
		filter = f
	}
	tc := al.GetTypedConfig()
	if tc == nil {
		return nil, errors.New("typed_config is required")
	}
	var (
		path   string
		format *Format
		err    error
	)
	switch typeName(tc.GetTypeUrl()) {
	case typeName(FileTypeURL):
		var fc filev3.FileAccessLog
		if err := unmarshal(tc, &fc); err != nil {
			return nil, err
		}
		path = fc.GetPath()
		format, err = fileFormat(&fc)
	case typeName(StdoutTypeURL):
		var sc streamv3.StdoutAccessLog
		if err := unmarshal(tc, &sc); err != nil {
			return nil, err
		}
		path = "/dev/stdout"
		format, err = substitutionFormat(sc.GetLogFormat(), "typed_config.log_format")
	case typeName(StderrTypeURL):
		var sc streamv3.StderrAccessLog
		if err := unmarshal(tc, &sc); err != nil {
			return nil, err
		}
		path = "/dev/stderr"
		format, err = substitutionFormat(sc.GetLogFormat(), "typed_config.log_format")
	default:
		return nil, fmt.Errorf("typed_config: unsupported access logger type %q", tc.GetTypeUrl())
	}
	if err != nil {
		return nil, err
	}
	return &Spec{Path: path, Format: format, filter: filter}, nil
}

// typeName strips the host part of a type URL.
func typeName(url string) string { return url[strings.LastIndexByte(url, '/')+1:] }

// validator is implemented by the generated Envoy messages.
type validator interface{ Validate() error }

func unmarshal(a *anypb.Any, m proto.Message) error {
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return fmt.Errorf("typed_config: %w", err)
	}
	if v, ok := m.(validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("typed_config: %w", err)
		}
	}
	return nil
}

func fileFormat(fc *filev3.FileAccessLog) (*Format, error) {
	switch f := fc.GetAccessLogFormat().(type) {
	case nil:
		return Compile(DefaultFormat)
	case *filev3.FileAccessLog_Format:
		if f.Format == "" {
			return Compile(DefaultFormat)
		}
		return Compile(f.Format)
	case *filev3.FileAccessLog_JsonFormat:
		return compileJSONStruct(f.JsonFormat)
	case *filev3.FileAccessLog_TypedJsonFormat:
		return compileJSONStruct(f.TypedJsonFormat)
	case *filev3.FileAccessLog_LogFormat:
		return substitutionFormat(f.LogFormat, "typed_config.log_format")
	default:
		return nil, fmt.Errorf("typed_config: unsupported access_log_format %T", f)
	}
}

// substitutionFormat compiles a SubstitutionFormatString; nil means the
// default format.
func substitutionFormat(sf *corev3.SubstitutionFormatString, path string) (*Format, error) {
	if sf == nil {
		return Compile(DefaultFormat)
	}
	if len(sf.GetFormatters()) > 0 {
		return nil, fmt.Errorf("%s.formatters: custom formatter extensions are not supported", path)
	}
	var (
		f   *Format
		err error
	)
	switch x := sf.GetFormat().(type) {
	case nil:
		f, err = Compile(DefaultFormat)
	case *corev3.SubstitutionFormatString_TextFormat:
		f, err = Compile(x.TextFormat)
	case *corev3.SubstitutionFormatString_JsonFormat:
		f, err = compileJSONStruct(x.JsonFormat)
	case *corev3.SubstitutionFormatString_TextFormatSource:
		var src string
		src, err = dataSource(x.TextFormatSource, path+".text_format_source")
		if err == nil {
			f, err = Compile(src)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported format %T", path, x)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.omitEmpty = sf.GetOmitEmptyValues()
	return f, nil
}

func dataSource(ds *corev3.DataSource, path string) (string, error) {
	switch x := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return x.InlineString, nil
	case *corev3.DataSource_InlineBytes:
		return string(x.InlineBytes), nil
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(x.Filename)
		if err != nil {
			return "", fmt.Errorf("%s.filename: %w", path, err)
		}
		return string(b), nil
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(x.EnvironmentVariable)
		if !ok {
			return "", fmt.Errorf("%s.environment_variable: %q is not set", path, x.EnvironmentVariable)
		}
		return v, nil
	default:
		return "", fmt.Errorf("%s: a specifier is required", path)
	}
}

// compileFilter turns an AccessLogFilter into a predicate.
func compileFilter(f *accesslogv3.AccessLogFilter, path string) (func(*Entry) bool, error) {
	switch x := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		cmp, err := comparison(x.StatusCodeFilter.GetComparison(), path+".status_code_filter.comparison")
		if err != nil {
			return nil, err
		}
		return func(e *Entry) bool { return cmp(int64(e.Status)) }, nil
	case *accesslogv3.AccessLogFilter_DurationFilter:
		cmp, err := comparison(x.DurationFilter.GetComparison(), path+".duration_filter.comparison")
		if err != nil {
			return nil, err
		}
		return func(e *Entry) bool { return cmp(e.Duration.Milliseconds()) }, nil
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		return responseFlagFilter(x.ResponseFlagFilter.GetFlags(), path+".response_flag_filter.flags")
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		return headerFilter(x.HeaderFilter.GetHeader(), path+".header_filter.header")
	case *accesslogv3.AccessLogFilter_AndFilter:
		subs, err := compileFilters(x.AndFilter.GetFilters(), path+".and_filter.filters")
		if err != nil {
			return nil, err
		}
		return func(e *Entry) bool {
			for _, s := range subs {
				if !s(e) {
					return false
				}
			}
			return true
		}, nil
	case *accesslogv3.AccessLogFilter_OrFilter:
		subs, err := compileFilters(x.OrFilter.GetFilters(), path+".or_filter.filters")
		if err != nil {
			return nil, err
		}
		return func(e *Entry) bool {
			for _, s := range subs {
				if s(e) {
					return true
				}
			}
			return false
		}, nil
	case nil:
		return nil, fmt.Errorf("%s: a filter specifier is required", path)
	default:
		name := strings.TrimPrefix(fmt.Sprintf("%T", x), "*accesslogv3.AccessLogFilter_")
		return nil, fmt.Errorf("%s: %s is not supported (supported: status_code_filter, duration_filter, response_flag_filter, header_filter, and_filter, or_filter)", path, snake(name))
	}
}

func compileFilters(fs []*accesslogv3.AccessLogFilter, path string) ([]func(*Entry) bool, error) {
	if len(fs) < 2 {
		return nil, fmt.Errorf("%s: at least two filters are required", path)
	}
	out := make([]func(*Entry) bool, 0, len(fs))
	for i, f := range fs {
		c, err := compileFilter(f, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// snake turns a Go name (StatusCodeFilter) into its proto field name.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func comparison(c *accesslogv3.ComparisonFilter, path string) (func(int64) bool, error) {
	if c == nil || c.GetValue() == nil {
		return nil, fmt.Errorf("%s: op and value are required", path)
	}
	v := int64(c.GetValue().GetDefaultValue())
	switch c.GetOp() {
	case accesslogv3.ComparisonFilter_EQ:
		return func(x int64) bool { return x == v }, nil
	case accesslogv3.ComparisonFilter_NE:
		return func(x int64) bool { return x != v }, nil
	case accesslogv3.ComparisonFilter_GE:
		return func(x int64) bool { return x >= v }, nil
	case accesslogv3.ComparisonFilter_LE:
		return func(x int64) bool { return x <= v }, nil
	}
	return nil, fmt.Errorf("%s.op: unknown operator %v", path, c.GetOp())
}

// knownFlags are the response flags a response_flag_filter may name:
// Envoy's short names plus Weft's own.
var knownFlags = map[string]bool{
	"LH": true, "UH": true, "UT": true, "LR": true, "UR": true, "UF": true, "UC": true,
	"UO": true, "NR": true, "DI": true, "FI": true, "RL": true, "UAEX": true, "RLSE": true,
	"DC": true, "URX": true, "SI": true, "IH": true, "DPE": true, "UMSDR": true,
	"RFCF": true, "NFCF": true, "DT": true, "UPE": true, "NC": true, "OM": true,
	"DF": true, "DO": true, "DR": true, "UDO": true,
	api.FlagRequestHeaderTimeout: true,
}

func responseFlagFilter(flags []string, path string) (func(*Entry) bool, error) {
	want := map[string]bool{}
	for i, f := range flags {
		if !knownFlags[f] {
			return nil, fmt.Errorf("%s[%d]: unknown response flag %q", path, i, f)
		}
		want[f] = true
	}
	return func(e *Entry) bool {
		if e.Flags == "" {
			return false
		}
		if len(want) == 0 {
			return true
		}
		rest := e.Flags
		for rest != "" {
			var f string
			f, rest, _ = strings.Cut(rest, ",")
			if want[f] {
				return true
			}
		}
		return false
	}, nil
}

func headerFilter(h *routev3.HeaderMatcher, path string) (func(*Entry) bool, error) {
	if h == nil || h.GetName() == "" {
		return nil, fmt.Errorf("%s.name is required", path)
	}
	name := strings.ToLower(h.GetName())
	var match func(v string, present bool) bool
	switch x := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		match = func(_ string, present bool) bool { return present }
	case *routev3.HeaderMatcher_PresentMatch:
		want := x.PresentMatch
		match = func(_ string, present bool) bool { return present == want }
	case *routev3.HeaderMatcher_ExactMatch:
		s := x.ExactMatch
		match = func(v string, present bool) bool { return present && v == s }
	case *routev3.HeaderMatcher_PrefixMatch:
		s := x.PrefixMatch
		match = func(v string, present bool) bool { return present && strings.HasPrefix(v, s) }
	case *routev3.HeaderMatcher_SuffixMatch:
		s := x.SuffixMatch
		match = func(v string, present bool) bool { return present && strings.HasSuffix(v, s) }
	case *routev3.HeaderMatcher_ContainsMatch:
		s := x.ContainsMatch
		match = func(v string, present bool) bool { return present && strings.Contains(v, s) }
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := regexp.Compile(`^(?:` + x.SafeRegexMatch.GetRegex() + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%s.safe_regex_match: %w", path, err)
		}
		match = func(v string, present bool) bool { return present && re.MatchString(v) }
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := stringMatcher(x.StringMatch, path+".string_match")
		if err != nil {
			return nil, err
		}
		match = func(v string, present bool) bool { return present && sm(v) }
	default:
		name := strings.TrimPrefix(fmt.Sprintf("%T", x), "*routev3.HeaderMatcher_")
		return nil, fmt.Errorf("%s: %s is not supported", path, snake(name))
	}
	invert := h.GetInvertMatch()
	return func(e *Entry) bool {
		var v string
		present := false
		if e.ReqHeaders != nil {
			v, present = e.ReqHeaders.Get(name)
		}
		return match(v, present) != invert
	}, nil
}

func stringMatcher(m *matcherv3.StringMatcher, path string) (func(string) bool, error) {
	fold := m.GetIgnoreCase()
	norm := func(s string) string {
		if fold {
			return strings.ToLower(s)
		}
		return s
	}
	switch x := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s := norm(x.Exact)
		return func(v string) bool { return norm(v) == s }, nil
	case *matcherv3.StringMatcher_Prefix:
		s := norm(x.Prefix)
		return func(v string) bool { return strings.HasPrefix(norm(v), s) }, nil
	case *matcherv3.StringMatcher_Suffix:
		s := norm(x.Suffix)
		return func(v string) bool { return strings.HasSuffix(norm(v), s) }, nil
	case *matcherv3.StringMatcher_Contains:
		s := norm(x.Contains)
		return func(v string) bool { return strings.Contains(norm(v), s) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(`^(?:` + x.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%s.safe_regex: %w", path, err)
		}
		return re.MatchString, nil
	default:
		return nil, fmt.Errorf("%s: unsupported match pattern %T", path, x)
	}
}
