package accesslog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func statusFilter(op accesslogv3.ComparisonFilter_Op, v uint32) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: op, Value: &corev3.RuntimeUInt32{DefaultValue: v, RuntimeKey: "k"}}}}}
}

func TestFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	jsonFmt, err := structpb.NewStruct(map[string]any{
		"code": "%RESPONSE_CODE%", "nested": map[string]any{"route": "%ROUTE_NAME%"}, "n": 1.5, "b": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	fmtFile := filepath.Join(dir, "format.txt")
	if err := os.WriteFile(fmtFile, []byte("file %RESPONSE_CODE%\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEFT_TEST_ACCESSLOG_FORMAT", "env %RESPONSE_CODE%\n")
	sfs := func(f *corev3.SubstitutionFormatString) *filev3.FileAccessLog_LogFormat {
		return &filev3.FileAccessLog_LogFormat{LogFormat: f}
	}
	inline := func(ds *corev3.DataSource) *corev3.SubstitutionFormatString {
		return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: ds}}
	}
	tests := []struct {
		name   string
		format any // filev3 access_log_format oneof value, nil for none
		want   string
	}{
		{"default", nil, `[2024-03-05T07:08:09.123Z] "GET /api/v1/items?id=7 HTTP/1.1" 503 - 12 345 15 11 "127.0.0.9" "curl/8.5.0" "req-123" "example.test" "127.0.0.1:8080"` + "\n"},
		{"format", &filev3.FileAccessLog_Format{Format: "%RESPONSE_CODE% %UPSTREAM_CLUSTER%\n"}, "503 backend\n"},
		{"inline_string", sfs(inline(&corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "is %RESPONSE_CODE%\n"}})), "is 503\n"},
		{"inline_bytes", sfs(inline(&corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("ib %RESPONSE_CODE%\n")}})), "ib 503\n"},
		{"filename", sfs(inline(&corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: fmtFile}})), "file 503\n"},
		{"environment_variable", sfs(inline(&corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "WEFT_TEST_ACCESSLOG_FORMAT"}})), "env 503\n"},
		{"text_format", sfs(&corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: "tf %RESPONSE_CODE% [%RESPONSE_FLAGS%]\n"}, OmitEmptyValues: true}), "tf 503 []\n"},
		{"log_format json", sfs(&corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: jsonFmt}}),
			`{"b":true,"code":503,"n":1.5,"nested":{"route":"items"}}` + "\n"},
		{"json_format", &filev3.FileAccessLog_JsonFormat{JsonFormat: jsonFmt}, `{"b":true,"code":503,"n":1.5,"nested":{"route":"items"}}` + "\n"},
		{"typed_json_format", &filev3.FileAccessLog_TypedJsonFormat{TypedJsonFormat: jsonFmt}, `{"b":true,"code":503,"n":1.5,"nested":{"route":"items"}}` + "\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".log")
			fc := &filev3.FileAccessLog{Path: path}
			switch f := tt.format.(type) {
			case *filev3.FileAccessLog_Format:
				fc.AccessLogFormat = f
			case *filev3.FileAccessLog_JsonFormat:
				fc.AccessLogFormat = f
			case *filev3.FileAccessLog_TypedJsonFormat:
				fc.AccessLogFormat = f
			case *filev3.FileAccessLog_LogFormat:
				fc.AccessLogFormat = f
			}
			l, err := FromConfig(&accesslogv3.AccessLog{
				Name:       "envoy.access_loggers.file",
				Filter:     statusFilter(accesslogv3.ComparisonFilter_GE, 500),
				ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, fc)},
			})
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			ok := testEntry()
			ok.Status = 200
			l.Log(ok) // filtered out
			bad := testEntry()
			bad.Status = 503
			l.Log(bad)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %q\nwant %q", b, tt.want)
			}
		})
	}
}

func TestFromConfigStream(t *testing.T) {
	for _, m := range []proto.Message{
		&streamv3.StdoutAccessLog{},
		&streamv3.StderrAccessLog{AccessLogFormat: &streamv3.StderrAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: "%RESPONSE_CODE%\n"}}}},
	} {
		l, err := FromConfig(&accesslogv3.AccessLog{ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, m)}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{true: "/dev/stdout", false: "/dev/stderr"}[strings.Contains(string(m.ProtoReflect().Descriptor().Name()), "Stdout")]
		if l.Path() != want {
			t.Errorf("path = %q, want %q", l.Path(), want)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestFromConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(fc *filev3.FileAccessLog) *accesslogv3.AccessLog_TypedConfig {
		a, _ := anypb.New(fc)
		return &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}
	}
	good := file(&filev3.FileAccessLog{Path: filepath.Join(dir, "x.log")})
	filter := func(f *accesslogv3.AccessLogFilter) *accesslogv3.AccessLog {
		return &accesslogv3.AccessLog{Name: "al", Filter: f, ConfigType: good}
	}
	tests := []struct {
		name string
		al   *accesslogv3.AccessLog
		want string
	}{
		{"nil", nil, "nil config"},
		{"no typed_config", &accesslogv3.AccessLog{Name: "al"}, `accesslog "al": typed_config is required`},
		{"unknown type", &accesslogv3.AccessLog{ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &structpb.Struct{})}},
			`unsupported access logger type "type.googleapis.com/google.protobuf.Struct"`},
		{"empty path", &accesslogv3.AccessLog{ConfigType: file(&filev3.FileAccessLog{})}, "Path"},
		{"bad format", &accesslogv3.AccessLog{ConfigType: file(&filev3.FileAccessLog{Path: "/dev/stdout",
			AccessLogFormat: &filev3.FileAccessLog_Format{Format: "%BOGUS%"}})}, "unknown operator BOGUS"},
		{"formatters", &accesslogv3.AccessLog{ConfigType: file(&filev3.FileAccessLog{Path: "/dev/stdout",
			AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format:     &corev3.SubstitutionFormatString_TextFormat{TextFormat: "x"},
				Formatters: []*corev3.TypedExtensionConfig{{Name: "x", TypedConfig: anyOf(t, &structpb.Struct{})}}}}})},
			"typed_config.log_format.formatters: custom formatter extensions are not supported"},
		{"missing env", &accesslogv3.AccessLog{ConfigType: file(&filev3.FileAccessLog{Path: "/dev/stdout",
			AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
					Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "WEFT_SURELY_UNSET_VAR"}}}}}})},
			"text_format_source.environment_variable"},
		{"runtime filter", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_RuntimeFilter{
			RuntimeFilter: &accesslogv3.RuntimeFilter{RuntimeKey: "k"}}}), "filter: runtime_filter is not supported"},
		{"not health check filter", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_NotHealthCheckFilter{
			NotHealthCheckFilter: &accesslogv3.NotHealthCheckFilter{}}}), "not_health_check_filter is not supported"},
		{"nested unsupported", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{
			AndFilter: &accesslogv3.AndFilter{Filters: []*accesslogv3.AccessLogFilter{
				statusFilter(accesslogv3.ComparisonFilter_GE, 400),
				{FilterSpecifier: &accesslogv3.AccessLogFilter_TraceableFilter{TraceableFilter: &accesslogv3.TraceableFilter{}}},
			}}}}), "filter.and_filter.filters[1]: traceable_filter is not supported"},
		{"no comparison", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
			StatusCodeFilter: &accesslogv3.StatusCodeFilter{}}}), "filter.status_code_filter.comparison"},
		{"bad flag", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{"UH", "ZZ"}}}}), `flags[1]: unknown response flag "ZZ"`},
		{"range header match", filter(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{
			HeaderFilter: &accesslogv3.HeaderFilter{Header: &routev3.HeaderMatcher{Name: "x",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{}}}}}), "range_match is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := FromConfig(tt.al)
			if err == nil {
				l.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	hdr := func(m *routev3.HeaderMatcher) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{Header: m}}}
	}
	flags := func(f ...string) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: f}}}
	}
	dur := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_DurationFilter{DurationFilter: &accesslogv3.DurationFilter{
		Comparison: &accesslogv3.ComparisonFilter{Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: 10}}}}}
	or := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_OrFilter{OrFilter: &accesslogv3.OrFilter{
		Filters: []*accesslogv3.AccessLogFilter{statusFilter(accesslogv3.ComparisonFilter_EQ, 404), flags("UH")}}}}
	sm := func(m *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: "User-Agent", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
	}
	e := testEntry() // status 200, 15.7ms, user-agent curl/8.5.0
	tests := []struct {
		name  string
		f     *accesslogv3.AccessLogFilter
		entry *Entry
		want  bool
	}{
		{"status EQ", statusFilter(accesslogv3.ComparisonFilter_EQ, 200), e, true},
		{"status NE", statusFilter(accesslogv3.ComparisonFilter_NE, 200), e, false},
		{"status LE", statusFilter(accesslogv3.ComparisonFilter_LE, 199), e, false},
		{"duration GE", dur, e, true},
		{"duration GE short", dur, &Entry{Duration: 9 * time.Millisecond}, false},
		{"any flag, none", flags(), e, false},
		{"any flag", flags(), &Entry{Flags: "NR"}, true},
		{"listed flag", flags("UF", "UO"), &Entry{Flags: "UH,UF"}, true},
		{"unlisted flag", flags("UO"), &Entry{Flags: "UH,UF"}, false},
		{"or status", or, &Entry{Status: 404}, true},
		{"or flag", or, &Entry{Status: 200, Flags: "UH"}, true},
		{"or none", or, e, false},
		{"present", hdr(&routev3.HeaderMatcher{Name: "X-Request-Id", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), e, true},
		{"present nil headers", hdr(&routev3.HeaderMatcher{Name: "x-request-id"}), &Entry{}, false},
		{"exact inverted", hdr(&routev3.HeaderMatcher{Name: ":method", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "GET"}}), e, false},
		{"prefix", hdr(&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "/api/"}}), e, true},
		{"suffix", hdr(&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: "=7"}}), e, true},
		{"contains", hdr(&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_ContainsMatch{ContainsMatch: "items"}}), e, true},
		{"safe regex", hdr(&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "/api/v[0-9]+"}}}), e, false},
		{"string exact ignore case", hdr(sm(&matcherv3.StringMatcher{IgnoreCase: true, MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "CURL/8.5.0"}})), e, true},
		{"string prefix", hdr(sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "Curl"}})), e, false},
		{"string regex", hdr(sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "curl/.*"}}})), e, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := compileFilter(tt.f, "filter")
			if err != nil {
				t.Fatal(err)
			}
			if got := f(tt.entry); got != tt.want {
				t.Errorf("filter = %v, want %v", got, tt.want)
			}
		})
	}
}
