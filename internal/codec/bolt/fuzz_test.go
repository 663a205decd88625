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
		// peer sees the edits: Set(":authority") moves the request to
		// another interface and keeps the ":version[:uniqueId]" suffix of
		// its unique name.
		name, ok := fr.Header.getExact(KeyTargetService)
		if !ok {
			name, _ = fr.Header.getExact(KeyService)
		}
		want := "com.example.Svc"
		if i := strings.IndexByte(name, ':'); i >= 0 {
			want += name[i:]
		}
		h := fr.Headers()
		h.Set(":authority", "com.example.Svc")
		h.Set(":path", "m")
		h.Add("x-weft", "1")
		h.Del(KeyTargetService)
		out, err = Encode(out[:0], &fr)
		if err != nil {
			t.Fatalf("Encode after edits: %v", err)
		}
		if m, err := Decode(&g, out, Limits{}); err != nil || m != len(out) {
			t.Fatalf("Decode after edits = %d, %v", m, err)
		}
		gh := g.Headers()
		full, ok := gh.Get("service")
		if !ok || full != want {
			t.Fatalf("Get(\"service\") = %q, %v after edits; want %q (was %q)", full, ok, want, name)
		}
		iface, _, _ := strings.Cut(full, ":")
		for _, kv := range [][2]string{{":authority", iface}, {":path", "m"}, {"x-weft", "1"}} {
			if v, ok := gh.Get(kv[0]); !ok || v != kv[1] {
				t.Fatalf("Get(%q) = %q, %v after edits; want %q", kv[0], v, ok, kv[1])
			}
		}
		if _, ok := gh.Get(KeyTargetService); ok {
			t.Fatal("deleted target service key survived")
		}
		ver, grp := serviceParts(full)
		for _, kv := range [][2]string{{"version", ver}, {"group", grp}} {
			if _, raw := g.Header.Get(kv[0]); raw {
				continue
			}
			if v, ok := gh.Get(kv[0]); v != kv[1] || ok != (kv[1] != "") {
				t.Fatalf("Get(%q) = %q, %v after edits of %q; want %q", kv[0], v, ok, name, kv[1])
			}
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
