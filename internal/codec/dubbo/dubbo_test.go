package dubbo

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/weftmesh/weft/api"
)

var userSvc = service{
	Path:      "org.apache.dubbo.samples.UserProvider",
	Interface: "org.apache.dubbo.samples.UserProvider",
	Version:   "1.0.0",
	Group:     "blue",
	Method:    "GetUser",
	Timeout:   3 * time.Second,
}

// TestDecodeDubboGoRequests decodes requests built as dubbo-go builds them,
// with every kind of argument, and checks each routing field, the headers,
// the library's reading of the same body, and that Encode reproduces the
// bytes.
func TestDecodeDubboGoRequests(t *testing.T) {
	registerPOJOs()
	alice := &User{Name: "alice", Age: 30, Tags: []string{"x"}}
	cases := []struct {
		name   string
		twoWay bool
		args   []any
		atta   map[string]any
	}{
		{"no args", true, nil, nil},
		{"string", true, []any{"A001"}, nil},
		{"scalars", true, []any{int32(7), int64(1) << 40, 2.5, true, nil}, nil},
		{"containers", true, []any{[]string{"a", "b"}, map[any]any{"k": []any{int32(1)}}, []byte("raw")}, nil},
		{"pojos and refs", true, []any{alice, []any{alice, &User{Name: "bob", Friend: alice}}}, nil},
		{"date and long string", true, []any{time.Unix(1700000000, 0), strings.Repeat("long ", 3000)}, nil},
		{"one-way", false, []any{"fire"}, nil},
		{"trace attachments", true, []any{"A001"}, map[string]any{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"sw8":         "1-abc-def",
			"unicode":     "héllo 世界 🎉",
			"retries":     int64(3),
			"canary":      true,
			"ratio":       0.25,
			"nothing":     nil,
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := int64(1000 + i)
			b := dubboGoRequest(t, id, tc.twoWay, userSvc, tc.args, tc.atta)
			f := decodeOK(t, b)
			wantKind := api.KindRequest
			if !tc.twoWay {
				wantKind = api.KindOneway
			}
			if f.Kind() != wantKind || f.RequestID() != uint64(id) || f.Status() != 0 || f.IsEvent() {
				t.Fatalf("kind %v id %d status %d event %v", f.Kind(), f.RequestID(), f.Status(), f.IsEvent())
			}
			if f.DubboVersion != "2.0.2" || f.Path != userSvc.Path || f.Version != "1.0.0" || f.Method != "GetUser" {
				t.Fatalf("fields %q %q %q %q", f.DubboVersion, f.Path, f.Version, f.Method)
			}
			if want := argTypes(t, tc.args); f.ParamTypes != want {
				t.Fatalf("ParamTypes %q, want %q", f.ParamTypes, want)
			}
			if f.Timeout() != 3*time.Second {
				t.Fatalf("Timeout %v", f.Timeout())
			}
			h := f.Headers()
			for k, want := range map[string]string{
				":authority": userSvc.Path,
				":path":      "GetUser",
				"version":    "1.0.0",
				"group":      "blue",
				"Group":      "blue",
				"timeout":    "3000",
				"interface":  userSvc.Interface,
				"path":       userSvc.Path,
			} {
				if got, ok := h.Get(k); !ok || got != want {
					t.Errorf("Get(%q) = %q, %v; want %q", k, got, ok, want)
				}
			}
			for k, v := range tc.atta {
				want, text := textOf(v)
				if got, ok := h.Get(k); ok != text || got != want {
					t.Errorf("Get(%q) = %q, %v; want %q, %v", k, got, ok, want, text)
				}
			}
			n := 0
			h.Range(func(k, v string) bool { n++; return true })
			if n != len(f.Attachments) {
				t.Errorf("Range saw %d of %d attachments", n, len(f.Attachments))
			}
			checkAgainstLibrary(t, f)
			if out := encodeOK(t, f); !bytes.Equal(out, b) {
				t.Fatal("Encode of an unchanged frame differs from its input")
			}
		})
	}
}

// TestDecodeReusesFrame decodes frames back to back into one Frame, as a
// connection does, and checks nothing of the previous frame survives.
func TestDecodeReusesFrame(t *testing.T) {
	a := dubboGoRequest(t, 1, true, userSvc, []any{"x"}, map[string]any{"only-in-a": "1"})
	other := userSvc
	other.Group, other.Timeout, other.Method = "", 0, "Other"
	b := dubboGoRequest(t, 2, true, other, nil, nil)
	stream := append(append(append([]byte{}, a...), b...), frame(SerializationHessian2, StatusOK, 1, []byte{0x91})...)
	f := new(Frame)
	var c Codec
	var kinds []api.FrameKind
	for len(stream) > 0 {
		n, err := c.Decode(f, stream)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, f.Kind())
		switch len(kinds) {
		case 2:
			if _, ok := f.Headers().Get("only-in-a"); ok || f.Method != "Other" || f.Timeout() != 0 {
				t.Fatalf("second frame kept state of the first: %+v", f.Attachments)
			}
			if _, ok := f.Headers().Get("group"); ok {
				t.Fatal("group survived")
			}
		case 3:
			if f.Path != "" || len(f.Attachments) != 0 || f.Status() != StatusOK {
				t.Fatalf("response kept request state: %q %v", f.Path, f.Attachments)
			}
			if _, ok := f.Headers().Get(":authority"); ok {
				t.Fatal("response has :authority")
			}
		}
		stream = stream[n:]
	}
	if len(kinds) != 3 {
		t.Fatalf("decoded %d frames", len(kinds))
	}
}

func TestHeartbeat(t *testing.T) {
	var c Codec
	hb := c.Heartbeat(0x0102030405060708)
	b := encodeOK(t, hb.(*Frame))
	want := []byte{0xda, 0xbb, 0xe2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 'N'}
	if !bytes.Equal(b, want) {
		t.Fatalf("heartbeat % x, want % x", b, want)
	}
	f := decodeOK(t, b)
	if f.Kind() != api.KindHeartbeat || !f.IsEvent() || f.RequestID() != 0x0102030405060708 {
		t.Fatalf("decoded heartbeat: kind %v id %x", f.Kind(), f.RequestID())
	}
	reply := encodeOK(t, c.HeartbeatReply(f).(*Frame))
	want = []byte{0xda, 0xbb, 0x22, 20, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 'N'}
	if !bytes.Equal(reply, want) {
		t.Fatalf("heartbeat reply % x, want % x", reply, want)
	}
	r := decodeOK(t, reply)
	if r.Kind() != api.KindHeartbeatReply || r.Status() != StatusOK {
		t.Fatalf("decoded reply: kind %v status %d", r.Kind(), r.Status())
	}
	// A provider's READONLY notice: a one-way event with the string "R".
	ro := decodeOK(t, frame(FlagRequest|FlagEvent|SerializationHessian2, 0, 9, []byte{0x01, 'R'}))
	if ro.Kind() != api.KindOneway || !ro.IsEvent() || ro.Path != "" {
		t.Fatalf("readonly event: kind %v event %v", ro.Kind(), ro.IsEvent())
	}
}

// TestResponses decodes a response of every status, with the bodies Dubbo
// servers send: a typed value for OK, an error message otherwise.
func TestResponses(t *testing.T) {
	statuses := []byte{StatusOK, StatusClientTimeout, StatusServerTimeout, StatusBadRequest,
		StatusBadResponse, StatusServiceNotFound, StatusServiceError, StatusServerError,
		StatusClientError, StatusServerThreadpoolExhausted}
	for _, st := range statuses {
		var body []byte
		if st == StatusOK {
			// RESPONSE_VALUE_WITH_ATTACHMENTS (4), the value, attachments.
			e := hessian.NewEncoder()
			for _, v := range []any{int32(4), "hello", map[string]any{"dubbo": "2.0.2"}} {
				if err := e.Encode(v); err != nil {
					t.Fatal(err)
				}
			}
			body = e.Buffer()
		} else {
			body = appendString(nil, "java.lang.IllegalStateException: status "+itoa(int64(st)))
		}
		b := frame(SerializationHessian2, st, 77, body)
		f := decodeOK(t, b)
		if f.Kind() != api.KindResponse || f.Status() != int(st) || f.RequestID() != 77 || !bytes.Equal(f.Body, body) {
			t.Fatalf("status %d: kind %v status %d id %d", st, f.Kind(), f.Status(), f.RequestID())
		}
		if f.Timeout() != 0 || len(f.Attachments) != 0 {
			t.Fatalf("status %d: response has request fields", st)
		}
		f.Headers().Set("x", "y") // no effect on responses
		if out := encodeOK(t, f); !bytes.Equal(out, b) {
			t.Fatalf("status %d: Encode differs", st)
		}
	}
}

func TestErrorReply(t *testing.T) {
	var c Codec
	req := decodeOK(t, dubboGoRequest(t, 42, true, userSvc, []any{"x"}, nil))
	cases := []struct {
		http int
		want byte
	}{
		{400, StatusBadRequest},
		{404, StatusServiceNotFound},
		{408, StatusServerTimeout},
		{429, StatusServerThreadpoolExhausted},
		{500, StatusServerError},
		{502, StatusServerError},
		{503, StatusServerThreadpoolExhausted},
		{504, StatusServerTimeout},
		{599, StatusServerError},
	}
	for _, tc := range cases {
		msg := "weft: no route for " + req.Path + " (" + itoa(int64(tc.http)) + ") 世界"
		f := c.ErrorReply(req, tc.http, msg).(*Frame)
		b := encodeOK(t, f)
		got := decodeOK(t, b)
		if got.Kind() != api.KindResponse || got.Status() != int(tc.want) || got.RequestID() != 42 {
			t.Errorf("%d: kind %v status %d id %d", tc.http, got.Kind(), got.Status(), got.RequestID())
		}
		if v, err := hessian.NewDecoder(got.Body).Decode(); err != nil || v != msg {
			t.Errorf("%d: body %v, %v", tc.http, v, err)
		}
	}
	if f := c.ErrorReply(nil, 500, "x").(*Frame); f.ID != 0 {
		t.Fatal("nil request")
	}
}

// TestTruncated feeds every proper prefix of every kind of frame.
func TestTruncated(t *testing.T) {
	var c Codec
	frames := [][]byte{
		dubboGoRequest(t, 5, true, userSvc, []any{"abc", int32(1)}, map[string]any{"k": "v"}),
		encodeOK(t, c.Heartbeat(3).(*Frame)),
		frame(SerializationHessian2, StatusOK, 1, []byte{0x91, 0x05, 'h', 'e', 'l', 'l', 'o'}),
	}
	for _, b := range frames {
		for i := 0; i < len(b); i++ {
			n, err := c.Decode(new(Frame), b[:i])
			if !errors.Is(err, api.ErrNeedMore) || n != 0 {
				t.Fatalf("prefix %d/%d: %d, %v", i, len(b), n, err)
			}
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	small := Codec{Limits: Limits{MaxBody: 100}}
	cases := []struct {
		name string
		c    Codec
		in   []byte
		want error
		text string
	}{
		{"bad magic first byte", Codec{}, []byte{0x47}, ErrMalformed, "bad magic 0x47"},
		{"bad magic", Codec{}, []byte("GET / HTTP/1.1\r\n"), ErrMalformed, "bad magic 0x4745"},
		{"fastjson", Codec{}, []byte{0xda, 0xbb, 0xc6}, ErrUnsupportedSerialization, "unsupported serialization 6"},
		{"java", Codec{}, frame(FlagRequest|3, 0, 1, nil), ErrUnsupportedSerialization, "unsupported serialization 3"},
		{"response protobuf", Codec{}, frame(21, 20, 1, nil), ErrUnsupportedSerialization, "unsupported serialization 21"},
		{"negative length", Codec{}, []byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, ErrMalformed, "negative body length -1"},
		{"over default limit", Codec{}, []byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x80, 0x00, 0x01}, ErrTooLarge, "body length 8388609 exceeds limit 8388608"},
		{"over set limit", small, frame(0xc2, 0, 1, make([]byte, 101))[:16], ErrTooLarge, "exceeds limit 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.c.Decode(new(Frame), tc.in)
			if !errors.Is(err, tc.want) || n != 0 || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Decode = %d, %v; want %v containing %q", n, err, tc.want, tc.text)
			}
		})
	}
}

// TestBodyErrors checks that a complete frame whose request body does not
// parse returns its length, an error naming the problem, and the header,
// so the caller can answer BAD_REQUEST.
func TestBodyErrors(t *testing.T) {
	str := func(s string) []byte { return appendString(nil, s) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	lead := cat(str("2.0.2"), str("svc"), str("1.0"), str("m"))
	cases := []struct {
		name string
		body []byte
		text string
	}{
		{"empty", nil, "dubbo version at offset 0: truncated"},
		{"int as version", []byte{0x91}, "dubbo version at offset 0 (tag 0x91): not a string"},
		{"method missing", cat(str("2.0.2"), str("svc"), str("1.0")), "method at offset"},
		{"argument missing", cat(lead, str("I")), "argument 1 of 1"},
		{"argument garbage", cat(lead, str("I"), []byte{0x40}), "argument 1 of 1 at offset 18 (tag 0x40): unexpected tag"},
		{"no attachments", cat(lead, str("I"), []byte{0x91}), "attachments at offset 19: truncated"},
		{"attachments not a map", cat(lead, str(""), []byte{0x91}), "tag 0x91 is not a map"},
		{"trailing bytes", cat(lead, str(""), []byte{'H', 'Z', 'N'}), "1 bytes after the attachments"},
		{"key not a string", cat(lead, str(""), []byte{'H', 0x91, 0x91, 'Z'}), "attachment key at offset 18 (tag 0x91): not a string"},
		{"duplicate key", cat(lead, str(""), []byte{'H'}, str("k"), str("a"), str("k"), str("b"), []byte{'Z'}), `duplicate attachment "k"`},
		{"unterminated", cat(lead, str(""), []byte{'H'}, str("k"), str("a")), "attachments at offset 22: truncated"},
		{"huge list argument", cat(lead, str("Ljava/util/List;"), []byte{0x58, 'I', 0x7f, 0xff, 0xff, 0xff, 'N'}), "length exceeds the body"},
		{"4-byte utf8", cat([]byte{0x01, 0xf0, 0x9f, 0x8e, 0x89}), "bad utf-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := frame(0xc2, 0, 99, tc.body)
			f := new(Frame)
			n, err := Codec{}.Decode(f, b)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Decode = %v; want an error containing %q", err, tc.text)
			}
			if n != len(b) || f.ID != 99 || f.Kind() != api.KindRequest {
				t.Fatalf("n %d of %d, id %d, kind %v", n, len(b), f.ID, f.Kind())
			}
			r := Codec{}.ErrorReply(f, 400, err.Error()).(*Frame)
			if r.StatusCode != StatusBadRequest || r.ID != 99 {
				t.Fatalf("reply %+v", r)
			}
			// A frame that failed to parse has no routing headers and
			// refuses changes.
			f.Headers().Set("group", "x")
			if _, ok := f.Headers().Get("group"); ok || f.dirty {
				t.Fatal("unparsed frame accepted a header")
			}
			if f.Path != "" || f.Method != "" || len(f.Attachments) != 0 || f.Timeout() != 0 {
				t.Fatalf("half-read fields survive: %q %q %v", f.Path, f.Method, f.Attachments)
			}
			f.Headers().Range(func(k, v string) bool { t.Fatalf("Range yields %q", k); return false })
		})
	}
	t.Run("too many attachments", func(t *testing.T) {
		body := cat(lead, str(""), []byte{'H'})
		for i := range 5 {
			body = cat(body, str("k"+itoa(int64(i))), str("v"))
		}
		body = append(body, 'Z')
		c := Codec{Limits: Limits{MaxAttachments: 4}}
		if _, err := c.Decode(new(Frame), frame(0xc2, 0, 1, body)); err == nil || !strings.Contains(err.Error(), "more than 4 attachments") {
			t.Fatalf("Decode = %v", err)
		}
		c.Limits.MaxAttachments = 5
		if _, err := c.Decode(new(Frame), frame(0xc2, 0, 1, body)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGarbageNeverPanics decodes corrupted versions of real frames.
func TestGarbageNeverPanics(t *testing.T) {
	registerPOJOs()
	base := dubboGoRequest(t, 1, true, userSvc, []any{&User{Name: "a", Tags: []string{"t"}}, map[any]any{"k": int32(1)}}, map[string]any{"k": "v"})
	f := new(Frame)
	var c Codec
	for i := HeaderLen; i < len(base); i++ {
		for _, v := range []byte{0x00, 0xff, 'Z', 'C', 0x58} {
			b := bytes.Clone(base)
			b[i] = v
			n, err := c.Decode(f, b)
			if err == nil {
				// The library builds the arguments (and panics when a
				// POJO field has the wrong type); compare only where it
				// reads the body at all.
				if _, lerr := libraryDecode(f.Body); lerr == nil {
					checkAgainstLibrary(t, f)
				}
				if out := encodeOK(t, f); !bytes.Equal(out, b[:n]) {
					t.Fatalf("byte %d = %#x: re-encode differs", i, v)
				}
			}
		}
	}
}

func TestDetect(t *testing.T) {
	var c Codec
	cases := []struct {
		in   []byte
		want api.Detection
	}{
		{nil, api.DetectNeedMore},
		{[]byte{0xda}, api.DetectNeedMore},
		{[]byte{0xda, 0xbb}, api.DetectYes},
		{[]byte{0xda, 0xbb, 0xc2}, api.DetectYes},
		{[]byte{0xda, 0xbc}, api.DetectNo},
		{[]byte{0x01}, api.DetectNo},
		{[]byte("PRI * HTTP/2.0"), api.DetectNo},
	}
	for _, tc := range cases {
		if got := c.Detect(tc.in); got != tc.want {
			t.Errorf("Detect(% x) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if c.Name() != "dubbo" {
		t.Fatal(c.Name())
	}
	if _, ok := c.NewFrame().(*Frame); !ok {
		t.Fatal("NewFrame")
	}
}

func TestWrongFrameType(t *testing.T) {
	var c Codec
	if _, err := c.Decode(nil, nil); err == nil {
		t.Fatal("Decode into nil")
	}
	if _, err := c.Encode(nil, nil); err == nil {
		t.Fatal("Encode of nil")
	}
}

// TestLargeBodyReleased checks that a frame does not keep a large body's
// buffer once ordinary frames follow.
func TestLargeBodyReleased(t *testing.T) {
	f := new(Frame)
	var c Codec
	big := frame(SerializationHessian2, StatusOK, 1, make([]byte, 1<<20))
	small := frame(SerializationHessian2, StatusOK, 2, []byte{'N'})
	for _, b := range [][]byte{big, small} {
		if _, err := c.Decode(f, b); err != nil {
			t.Fatal(err)
		}
	}
	if cap(f.Body) > maxRetainedBody {
		t.Fatalf("kept a %d-byte buffer", cap(f.Body))
	}
}

func TestSetRequestID(t *testing.T) {
	b := dubboGoRequest(t, 1, true, userSvc, []any{"x"}, nil)
	f := decodeOK(t, b)
	f.SetRequestID(0xfffffffffffffffe)
	out := encodeOK(t, f)
	if !bytes.Equal(out[4:12], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) || !bytes.Equal(out[12:], b[12:]) {
		t.Fatal("SetRequestID changed more than the id")
	}
	if decodeOK(t, out).RequestID() != 0xfffffffffffffffe {
		t.Fatal("id lost")
	}
}
