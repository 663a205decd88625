package dubbo

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// rewrite encodes f, decodes the result, and checks that the body up to the
// attachments is byte-for-byte the original and that the library reads the
// new body, with the same arguments.
func rewrite(t *testing.T, f *Frame) *Frame {
	t.Helper()
	before, err := libraryDecode(f.Body)
	if err != nil {
		t.Fatal(err)
	}
	prefix := bytes.Clone(f.Body[:f.attOff])
	out := encodeOK(t, f)
	g := decodeOK(t, out)
	if !bytes.Equal(g.Body[:len(prefix)], prefix) {
		t.Fatal("rewrite changed the body before the attachments")
	}
	after, err := libraryDecode(g.Body)
	if err != nil {
		t.Fatalf("library cannot read the rewritten body: %v", err)
	}
	if !reflect.DeepEqual(before.args, after.args) || before.strs != after.strs {
		t.Fatalf("arguments changed: %#v -> %#v", before.args, after.args)
	}
	checkAgainstLibrary(t, g)
	if again := encodeOK(t, f); !bytes.Equal(again, out) {
		t.Fatal("a second Encode of the same frame differs")
	}
	return g
}

func TestAttachmentMutation(t *testing.T) {
	registerPOJOs()
	alice := &User{Name: "alice", Tags: []string{"t"}}
	b := dubboGoRequest(t, 8, true, userSvc, []any{alice, []any{alice, alice}}, map[string]any{"traceid": "t1", "drop": "me"})
	f := decodeOK(t, b)
	h := f.Headers()
	h.Set("GROUP", "green")        // case-insensitive: replaces "group", keeps its spelling
	h.Set("timeout", "250")        // derived Timeout follows
	h.Add("x-new", "héllo 🎉")      // appended
	h.Del("drop")                  // removed
	h.Set(":authority", "evil")    // pseudo-headers are refused
	h.Del(":path")                 // refused
	h.Set("", "empty key refused") // refused
	if f.Timeout() != 250*time.Millisecond {
		t.Fatalf("Timeout after Set: %v", f.Timeout())
	}
	g := rewrite(t, f)
	want := map[string]string{
		"group": "green", "timeout": "250", "x-new": "héllo 🎉", "traceid": "t1",
		":authority": userSvc.Path, ":path": "GetUser", "version": "1.0.0",
	}
	for k, v := range want {
		if got, ok := g.Headers().Get(k); !ok || got != v {
			t.Errorf("after rewrite Get(%q) = %q, %v; want %q", k, got, ok, v)
		}
	}
	if _, ok := g.Headers().Get("drop"); ok {
		t.Error("deleted attachment came back")
	}
	if _, ok := g.Headers().Get(""); ok {
		t.Error("empty key")
	}
	if g.lookup("group") < 0 || g.Attachments[g.lookup("group")].Key != "group" {
		t.Error("Set changed the key's spelling")
	}
	if g.Timeout() != 250*time.Millisecond {
		t.Fatalf("Timeout after rewrite: %v", g.Timeout())
	}
	if len(g.Body) == len(f.Body) || int(beUint32(encodeOK(t, f)[12:])) != len(g.Body) {
		t.Fatal("body length not recomputed")
	}
	// Deleting "timeout" clears Timeout.
	g.Headers().Del("timeout")
	if g.Timeout() != 0 {
		t.Fatal("Timeout survived Del")
	}
	rewrite(t, g)
}

func beUint32(b []byte) uint32 { return be32(b) }

// TestAttachmentComplexValues checks that list, map and object values are
// kept verbatim and refuse changes, while their neighbours change.
func TestAttachmentComplexValues(t *testing.T) {
	registerPOJOs()
	b := dubboGoRequest(t, 9, true, userSvc, []any{"x"}, map[string]any{
		"list": []any{"a", int32(1)},
		"when": time.Unix(1700000000, 0),
		"blob": []byte{1, 2, 3},
		"user": &User{Name: "carol"},
	})
	f := decodeOK(t, b)
	h := f.Headers()
	for _, k := range []string{"list", "user", "when", "blob"} {
		if _, ok := h.Get(k); ok {
			t.Errorf("Get(%q) exposes a non-text value", k)
		}
	}
	if v, err := f.AttachmentValue("list"); err != nil || !reflect.DeepEqual(v, []any{"a", int32(1)}) {
		t.Errorf("AttachmentValue(list) = %#v, %v", v, err)
	}
	if v, err := f.AttachmentValue("when"); err != nil || !v.(time.Time).Equal(time.Unix(1700000000, 0)) {
		t.Errorf("AttachmentValue(when) = %#v, %v", v, err)
	}
	if v, err := f.AttachmentValue("timeout"); err != nil || v != "3000" {
		t.Errorf("AttachmentValue(timeout) = %#v, %v", v, err)
	}
	if _, err := f.AttachmentValue("absent"); err == nil {
		t.Error("AttachmentValue(absent)")
	}
	h.Set("list", "x")
	h.Del("user")
	if f.dirty {
		t.Fatal("a complex value was replaced or deleted")
	}
	h.Del("when") // dates and binary are self-contained: deletable
	h.Set("blob", "now text")
	h.Set("group", "red")
	g := rewrite(t, f)
	if _, ok := g.Headers().Get("when"); ok || g.lookup("when") >= 0 {
		t.Error("date not deleted")
	}
	if v, _ := g.Headers().Get("blob"); v != "now text" {
		t.Errorf("blob = %q", v)
	}
	if v, err := g.AttachmentValue("user"); err != nil || v.(*User).Name != "carol" {
		t.Errorf("user after rewrite = %#v, %v", v, err)
	}
}

// TestAttachmentMapForms rewrites a typed ('M') map, a null map and a map
// with Java-style int values.
func TestAttachmentMapForms(t *testing.T) {
	str := func(s string) []byte { return appendString(nil, s) }
	lead := bytes.Join([][]byte{str("2.0.2"), str("svc"), str(""), str("m"), str("I"), {0x91}}, nil)
	cases := []struct {
		name string
		att  []byte
		head []byte // expected opening of the rewritten map
	}{
		{"typed", bytes.Join([][]byte{{'M'}, str("java.util.HashMap"), str("timeout"), {0xd4, 0x0b, 0xb8}, str("input"), {0xc9, 0x2c}, {'Z'}}, nil), append([]byte{'M'}, str("java.util.HashMap")...)},
		{"null", []byte{'N'}, []byte{'H'}},
		{"java ints", bytes.Join([][]byte{{'H'}, str("timeout"), {0xd4, 0x0b, 0xb8}, {'Z'}}, nil), []byte{'H'}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := append(bytes.Clone(lead), tc.att...)
			f := decodeOK(t, frame(0xc2, 0, 3, body))
			if tc.name != "null" && f.Timeout() != 3*time.Second {
				t.Fatalf("Timeout %v", f.Timeout())
			}
			f.Headers().Set("group", "g")
			out := encodeOK(t, f)
			g := decodeOK(t, out)
			if !bytes.HasPrefix(g.Body[len(lead):], tc.head) {
				t.Fatalf("map opening % x, want % x", g.Body[len(lead):len(lead)+len(tc.head)], tc.head)
			}
			if v, _ := g.Headers().Get("group"); v != "g" {
				t.Fatal("group not set")
			}
			if tc.name != "null" && g.Timeout() != 3*time.Second {
				t.Fatalf("int timeout lost: %v", g.Timeout())
			}
			checkAgainstLibrary(t, g)
		})
	}
}

// TestHeadersCaseAndVersion covers exact-before-fold lookup and the version
// precedence (attachment over body, as Java merges them).
func TestHeadersCaseAndVersion(t *testing.T) {
	svc := userSvc
	b := dubboGoRequest(t, 1, true, svc, nil, map[string]any{"Trace": "upper", "trace": "lower"})
	f := decodeOK(t, b)
	if v, _ := f.Headers().Get("trace"); v != "lower" {
		t.Errorf("exact match not preferred: %q", v)
	}
	if v, _ := f.Headers().Get("Trace"); v != "upper" {
		t.Errorf("exact match not preferred: %q", v)
	}
	if v, _ := f.Headers().Get("TRACE"); v != "upper" && v != "lower" {
		t.Errorf("fold match: %q", v)
	}
	// Set replaces every spelling.
	f.Headers().Set("TRACE", "one")
	n := 0
	f.Headers().Range(func(k, v string) bool {
		if k == "Trace" || k == "trace" || k == "TRACE" {
			n++
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d trace entries after Set", n)
	}
	f.Headers().Set("version", "2.0.0")
	if v, _ := f.Headers().Get("version"); v != "2.0.0" || f.Version != "1.0.0" {
		t.Fatalf("version %q (body %q)", v, f.Version)
	}
	f.Headers().Del("version")
	if v, _ := f.Headers().Get("version"); v != "1.0.0" {
		t.Fatalf("body version not the fallback: %q", v)
	}
	stop := 0
	f.Headers().Range(func(k, v string) bool { stop++; return false })
	if stop != 1 {
		t.Fatal("Range ignored false")
	}
}

// TestAttachmentValueBounded shows AttachmentValue failing cleanly on a
// value that refers to a class defined in the arguments.
func TestAttachmentValueBounded(t *testing.T) {
	registerPOJOs()
	e := hessian.NewEncoder()
	u := &User{Name: "dave"}
	for _, v := range []any{"2.0.2", "svc", "", "m", "Ljava/lang/Object;", u} {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	// Attachments holding a second User: the class is referenced by index.
	body := append(e.Buffer(), 'H')
	one := hessian.NewEncoder()
	_ = one.Encode(u)
	_ = one.Encode(&User{Name: "erin"})
	second := one.Buffer()[bytes.LastIndexByte(one.Buffer(), 0x60):]
	body = append(append(append(body, appendString(nil, "user")...), second...), 'Z')
	f := decodeOK(t, frame(0xc2, 0, 1, body))
	if _, err := f.AttachmentValue("user"); err == nil {
		t.Fatal("a value using a class from the arguments decoded on its own")
	}
	f.Headers().Set("user", "x")
	f.Headers().Set("k", "v")
	g := decodeOK(t, encodeOK(t, f))
	if got := g.Body[g.Attachments[0].val:g.Attachments[0].end]; !bytes.Equal(got, second) {
		t.Fatalf("complex value not kept verbatim: % x", got)
	}
}

// TestAttachmentScalars reads attachment values of every scalar encoding
// (ints, longs and doubles at each compact-form boundary, booleans, null)
// as text, compared with the library, and rejects every truncation of them.
func TestAttachmentScalars(t *testing.T) {
	atta := map[string]any{}
	for name, v := range hessianValues() {
		if s, text := textOf(v); text && len(s) <= 1100 { // long strings: covered elsewhere, slow here
			atta[name] = v
		}
	}
	b := dubboGoRequest(t, 1, true, userSvc, nil, atta)
	f := decodeOK(t, b)
	checkAgainstLibrary(t, f)
	if len(f.Attachments) != len(atta) { // dubboGoRequest added path, version, group, interface, timeout
		t.Fatalf("%d attachments for %d sent: %v", len(f.Attachments), len(atta), f.Attachments)
	}
	body := b[HeaderLen:]
	for i := 0; i < len(body); i++ {
		cut := frame(b[2], 0, 1, body[:i])
		if _, err := (Codec{}).Decode(new(Frame), cut); err == nil {
			t.Fatalf("body cut at %d/%d accepted", i, len(body))
		}
	}
}
