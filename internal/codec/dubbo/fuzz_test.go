package dubbo

import (
	"bytes"
	"errors"
	"testing"

	"github.com/weftmesh/weft/api"
)

// fuzzLimits are small so the fuzzer reaches the limit paths too.
var fuzzLimits = Limits{MaxBody: 1 << 16, MaxAttachments: 16, MaxDepth: 32}

// FuzzDecode checks that Decode never panics, reports only the promised
// errors, re-encodes what it accepts byte for byte, reads accepted request
// bodies as dubbo-go-hessian2 does (where the library reads them at all),
// and that rewriting attachments yields a frame that decodes to the change.
// Seeds: testdata/fuzz/FuzzDecode (the vectors and hand-made edge cases,
// written by TestVectors -update).
func FuzzDecode(f *testing.F) {
	c := Codec{Limits: fuzzLimits}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := new(Frame)
		n, err := c.Decode(fr, b)
		switch {
		case errors.Is(err, api.ErrNeedMore):
			if n != 0 {
				t.Fatalf("ErrNeedMore with n=%d", n)
			}
			return
		case errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnsupportedSerialization):
			if n != 0 {
				t.Fatalf("header error with n=%d", n)
			}
			return
		case errors.Is(err, ErrMalformed):
			if n != 0 && (n < HeaderLen || n > len(b) || !bytes.Equal(fr.Body, b[HeaderLen:n])) {
				t.Fatalf("body error with n=%d of %d", n, len(b))
			}
			return
		case err != nil:
			t.Fatalf("unexpected error kind: %v", err)
		}
		if n < HeaderLen || n > len(b) {
			t.Fatalf("n=%d of %d", n, len(b))
		}
		out, err := c.Encode(nil, fr)
		if err != nil || !bytes.Equal(out, b[:n]) {
			t.Fatalf("re-encode differs: %v", err)
		}
		if !fr.parsed {
			return
		}
		if _, lerr := libraryDecode(fr.Body); lerr == nil {
			checkAgainstLibrary(t, fr)
		}
		// Rewrite: set a new key, change or drop the first text attachment.
		h := fr.Headers()
		h.Set("x-fuzz", "v\u00e9\U0001F389")
		var first string
		for _, a := range fr.Attachments {
			if a.Text && a.Key != "x-fuzz" {
				first = a.Key
				break
			}
		}
		if first != "" {
			h.Del(first)
		}
		out, err = c.Encode(nil, fr)
		if err != nil {
			t.Fatal(err)
		}
		g := new(Frame)
		m, err := Codec{Limits: Limits{MaxBody: 1 << 20, MaxAttachments: 32, MaxDepth: 32}}.Decode(g, out)
		if err != nil || m != len(out) {
			t.Fatalf("rewritten frame does not decode: %v", err)
		}
		if v, ok := g.Headers().Get("x-fuzz"); !ok || v != "v\u00e9\U0001F389" {
			t.Fatalf("x-fuzz = %q, %v", v, ok)
		}
		if first != "" && first != "x-fuzz" && g.lookup(first) >= 0 && fr.lookup(first) < 0 {
			t.Fatalf("deleted %q came back", first)
		}
		if !bytes.Equal(g.Body[:fr.attOff], fr.Body[:fr.attOff]) {
			t.Fatal("rewrite changed the body before the attachments")
		}
	})
}
