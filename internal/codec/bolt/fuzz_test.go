package bolt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/weftmesh/weft/api"
)

// fuzzLimits are small so the fuzzer reaches the limit paths too.
var fuzzLimits = Limits{MaxClassName: 256, MaxHeader: 1024, MaxContent: 4096, MaxHeaderEntries: 16}

// FuzzDecode checks that Decode never panics, fails only with the promised
// error kinds, agrees with Detect, accepts every proper prefix of a frame it
// accepts as ErrNeedMore, and that a decoded frame re-encodes to exactly
// the bytes it came from (the wire form is canonical) and survives header
// edits through Encode and Decode. Seeds: testdata/vectors and
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, name := range vectorNames(f) {
		f.Add(vector(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Codec
		var fr Frame
		n, err := Decode(&fr, data, fuzzLimits)
		class := errClass(err)
		if strings.HasPrefix(class, "other") {
			t.Fatalf("unexpected error kind: %v", err)
		}
		det := c.Detect(data)
		if err == api.ErrNeedMore && det == api.DetectNo {
			t.Fatalf("Decode wants more of what Detect rejects: %x", data)
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("Decode = %d with error %v", n, err)
			}
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("Decode = %d of %d bytes", n, len(data))
		}
		if det != api.DetectYes {
			t.Fatalf("Detect = %d for a frame Decode accepts", det)
		}
		if fr.Kind() == 0 {
			t.Fatal("decoded frame has no kind")
		}
		out, err := Encode(nil, &fr)
		if err != nil {
			t.Fatalf("Encode of decoded frame: %v", err)
		}
		if !bytes.Equal(out, data[:n]) {
			t.Fatalf("re-encoded differs:\n got %x\nwant %x", out, data[:n])
		}
		if Size(&fr) != n {
			t.Fatalf("Size = %d, want %d", Size(&fr), n)
		}
		var g Frame
		for i := 0; i < n; i++ {
			if m, err := Decode(&g, data[:i], fuzzLimits); err != api.ErrNeedMore {
				t.Fatalf("prefix %d of %d: %d, %v", i, n, m, err)
			}
		}

		// Filters editing the headers keep the frame encodable, and the
		// peer sees the edits.
		h := fr.Headers()
		h.Set(":authority", "com.example.Svc:2.0:g")
		h.Set(":path", "m")
		h.Add("x-weft", "1")
		h.Del("service")
		out, err = Encode(out[:0], &fr)
		if err != nil {
			t.Fatalf("Encode after edits: %v", err)
		}
		if m, err := Decode(&g, out, Limits{}); err != nil || m != len(out) {
			t.Fatalf("Decode after edits = %d, %v", m, err)
		}
		gh := g.Headers()
		for _, kv := range [][2]string{{":authority", "com.example.Svc:2.0:g"}, {":path", "m"}, {"x-weft", "1"}} {
			if v, ok := gh.Get(kv[0]); !ok || v != kv[1] {
				t.Fatalf("Get(%q) = %q, %v after edits", kv[0], v, ok)
			}
		}
		if _, ok := gh.Get("service"); ok {
			t.Fatal("deleted service key survived")
		}
		if !bytes.Equal(g.Content, data[n-len(fr.Content)-crcLen(&fr):n-crcLen(&fr)]) {
			t.Fatal("content changed by header edits")
		}
	})
}

// crcLen is the length of f's CRC trailer.
func crcLen(f *Frame) int {
	if f.Proto == ProtoV2 && f.Ver1 == 2 && f.Switch&SwitchCRC != 0 {
		return 4
	}
	return 0
}
