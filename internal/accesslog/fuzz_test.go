package accesslog

import (
	"encoding/json"
	"testing"
)

// FuzzCompile checks that no format string makes Compile or Append panic,
// and that a compiled JSON format always writes valid JSON.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		DefaultFormat,
		"%REQ(X?Y):10%",
		"%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%",
		"%START_TIME(%s.%3f %E*S %z)%",
		"100%% %RESPONSE_CODE%",
		"%DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST%",
		"%",
		"%REQ(",
		"%RESP(:STATUS):0%",
	} {
		f.Add(s)
	}
	full := testEntry()
	full.Flags = "UH"
	full.UpstreamFailure = "reset \x00\xff"
	empty := &Entry{}
	f.Fuzz(func(t *testing.T, format string) {
		fm, err := Compile(format)
		if err == nil {
			for _, e := range []*Entry{full, empty} {
				_ = fm.Append(nil, e)
			}
		}
		jf, jerr := CompileJSON(map[string]string{"v": format, "k\"\n": "x"})
		if (err == nil) != (jerr == nil) {
			t.Fatalf("Compile err %v, CompileJSON err %v", err, jerr)
		}
		if jerr != nil {
			return
		}
		for _, omit := range []bool{false, true} {
			jf.omitEmpty = omit
			for _, e := range []*Entry{full, empty} {
				if out := jf.Append(nil, e); !json.Valid(out) {
					t.Fatalf("invalid JSON for %q: %s", format, out)
				}
			}
		}
	})
}
