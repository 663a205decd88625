package bolt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
)

func TestDetect(t *testing.T) {
	var c Codec
	cases := []struct {
		name string
		b    []byte
		want api.Detection
	}{
		{"empty", nil, api.DetectNeedMore},
		{"v1 first byte", []byte{1}, api.DetectNeedMore},
		{"v1 type", []byte{1, 1}, api.DetectNeedMore},
		{"v1 nine bytes", vector(t, "v1_request.hex")[:9], api.DetectNeedMore},
		{"v1 ten bytes", vector(t, "v1_request.hex")[:10], api.DetectYes},
		{"v2 first byte", []byte{2}, api.DetectNeedMore},
		{"v2 ten bytes", vector(t, "v2_request_crc.hex")[:10], api.DetectNeedMore},
		{"v2 eleven bytes", vector(t, "v2_request_crc.hex")[:11], api.DetectYes},
		{"v1 bad type", []byte{1, 3}, api.DetectNo},
		{"v1 bad cmdcode", []byte{1, 1, 0, 2}, api.DetectNo},
		{"v1 bad codec", append([]byte{1, 1, 0, 1, 1, 0, 0, 0, 1}, 0x42), api.DetectNo},
		{"v2 bad ver1", []byte{2, 0}, api.DetectNo},
		{"v2 bad type", []byte{2, 1, 7}, api.DetectNo},
		{"HTTP/1.1 GET", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), api.DetectNo},
		{"HTTP/1.1 POST", []byte("POST /x HTTP/1.1\r\n"), api.DetectNo},
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), api.DetectNo},
		{"Dubbo", []byte{0xda, 0xbb, 0xc2, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, api.DetectNo},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, api.DetectNo},
		{"zero bytes", make([]byte, 24), api.DetectNo},
	}
	for _, name := range vectorNames(t) {
		cases = append(cases, struct {
			name string
			b    []byte
			want api.Detection
		}{name, vector(t, name), api.DetectYes})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Detect(tc.b); got != tc.want {
				t.Fatalf("Detect(%x) = %d, want %d", tc.b, got, tc.want)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	var c Codec
	hb := c.Heartbeat(1)
	if hb.Kind() != api.KindHeartbeat || hb.RequestID() != 1 || hb.Timeout() != 0 {
		t.Fatalf("Heartbeat: kind %d id %d timeout %v", hb.Kind(), hb.RequestID(), hb.Timeout())
	}
	b, err := c.Encode(nil, hb)
	if err != nil || !bytes.Equal(b, vector(t, "v1_heartbeat.hex")) || len(b) != RequestHeadLenV1 {
		t.Fatalf("Encode(Heartbeat(1)) = %x, %v", b, err)
	}
	reply := c.HeartbeatReply(hb)
	if reply.Kind() != api.KindHeartbeatReply || reply.RequestID() != 1 || reply.Status() != 0 {
		t.Fatalf("HeartbeatReply: kind %d id %d status %d", reply.Kind(), reply.RequestID(), reply.Status())
	}
	b, err = c.Encode(nil, reply)
	if err != nil || !bytes.Equal(b, vector(t, "v1_heartbeat_reply.hex")) || len(b) != ResponseHeadLenV1 {
		t.Fatalf("Encode(HeartbeatReply) = %x, %v", b, err)
	}

	// A v2 heartbeat gets a v2 reply with the same ver1 and switch.
	v2 := c.NewFrame()
	if _, err := c.Decode(v2, vector(t, "v2_heartbeat.hex")); err != nil {
		t.Fatal(err)
	}
	b, err = c.Encode(nil, c.HeartbeatReply(v2))
	if err != nil || !bytes.Equal(b, vector(t, "v2_heartbeat_reply.hex")) {
		t.Fatalf("Encode(HeartbeatReply(v2)) = %x, %v", b, err)
	}

	// Ids above 32 bits are truncated; a foreign frame gets a v1 reply.
	if id := c.Heartbeat(1<<40 | 5).RequestID(); id != 5 {
		t.Fatalf("Heartbeat(1<<40|5) id = %d", id)
	}
	r := c.HeartbeatReply(foreign{id: 3}).(*Frame)
	if r.Proto != ProtoV1 || r.ID != 3 || r.Kind() != api.KindHeartbeatReply {
		t.Fatalf("reply to foreign frame = %+v", r)
	}
}

// foreign is an api.Frame of another codec.
type foreign struct{ id uint64 }

func (f foreign) Kind() api.FrameKind    { return api.KindRequest }
func (f foreign) RequestID() uint64      { return f.id }
func (f foreign) SetRequestID(uint64)    {}
func (f foreign) Headers() api.HeaderMap { return nil }
func (f foreign) Timeout() time.Duration { return 0 }
func (f foreign) Status() int            { return 0 }

func TestCodecForeignFrame(t *testing.T) {
	var c Codec
	if c.Name() != "bolt" {
		t.Fatalf("Name = %q", c.Name())
	}
	if _, err := c.Decode(foreign{}, vector(t, "v1_heartbeat.hex")); !errors.Is(err, ErrForeignFrame) {
		t.Fatalf("Decode(foreign) = %v", err)
	}
	if out, err := c.Encode([]byte("x"), foreign{}); !errors.Is(err, ErrForeignFrame) || string(out) != "x" {
		t.Fatalf("Encode(foreign) = %q, %v", out, err)
	}
}

func TestErrorReply(t *testing.T) {
	var c Codec
	req := c.NewFrame()
	if _, err := c.Decode(req, vector(t, "v1_request.hex")); err != nil {
		t.Fatal(err)
	}
	r := c.ErrorReply(req, 404, "no route")
	b, err := c.Encode(nil, r)
	if err != nil || !bytes.Equal(b, vector(t, "v1_response_no_processor.hex")) {
		t.Fatalf("ErrorReply(404) encodes to %x, %v", b, err)
	}
	if r.Kind() != api.KindResponse || r.RequestID() != 7 || r.Status() != int(StatusNoProcessor) {
		t.Fatalf("ErrorReply: kind %d id %d status %d", r.Kind(), r.RequestID(), r.Status())
	}

	for _, tc := range []struct {
		http int
		want uint16
	}{
		{200, StatusSuccess},
		{400, StatusCodecException},
		{404, StatusNoProcessor},
		{408, StatusTimeout},
		{413, StatusCodecException},
		{429, StatusServerThreadpoolBusy},
		{431, StatusCodecException},
		{500, StatusError},
		{502, StatusConnectionClosed},
		{503, StatusServerThreadpoolBusy},
		{504, StatusTimeout},
		{403, StatusUnknown},
		{0, StatusUnknown},
	} {
		if got := c.ErrorReply(req, tc.http, "").Status(); got != int(tc.want) {
			t.Errorf("ErrorReply(%d) status = %#04x, want %#04x", tc.http, got, tc.want)
		}
	}

	// A v2 request with CRC gets a v2 reply with CRC, its codec kept as
	// hessian2 since the content is a hessian2 string.
	v2 := c.NewFrame()
	if _, err := c.Decode(v2, vector(t, "v2_request_ver1.hex")); err != nil {
		t.Fatal(err)
	}
	rf := c.ErrorReply(v2, 504, "upstream timeout").(*Frame)
	if rf.Proto != ProtoV2 || rf.Ver1 != 1 || rf.Switch != SwitchCRC || rf.ID != 10 || rf.Codec != CodecHessian2 ||
		rf.RespStatus != StatusTimeout || string(rf.ClassName) != ErrorClassName {
		t.Fatalf("ErrorReply(v2) = %+v", rf)
	}
	b, err = c.Encode(nil, rf)
	if err != nil {
		t.Fatal(err)
	}
	g := c.NewFrame()
	if n, err := c.Decode(g, b); err != nil || n != len(b) {
		t.Fatalf("Decode(ErrorReply) = %d, %v", n, err)
	}

	// To a heartbeat, the error is a heartbeat reply; to nothing, a v1 reply.
	if k := c.ErrorReply(c.Heartbeat(3), 503, "").Kind(); k != api.KindHeartbeatReply {
		t.Errorf("ErrorReply(heartbeat).Kind = %d", k)
	}
	if f := c.ErrorReply(nil, 503, "busy").(*Frame); f.ID != 0 || f.Proto != ProtoV1 || f.RespStatus != StatusServerThreadpoolBusy {
		t.Errorf("ErrorReply(nil) = %+v", f)
	}
}

func TestAppendHessianString(t *testing.T) {
	long := strings.Repeat("a", 2000)
	cases := []struct {
		name, in string
		max      int
		want     string // hex
	}{
		{"empty", "", 1023, "00"},
		{"short", "no route", 1023, "08" + hex.EncodeToString([]byte("no route"))},
		{"31 chars", strings.Repeat("b", 31), 1023, "1f" + strings.Repeat("62", 31)},
		{"32 chars medium", strings.Repeat("b", 32), 1023, "3020" + strings.Repeat("62", 32)},
		{"1023 chars", long[:1023], 1023, "33ff" + strings.Repeat("61", 1023)},
		{"cut at max", long, 1023, "33ff" + strings.Repeat("61", 1023)},
		{"two-byte utf8", "é", 1023, "01c3a9"},
		{"three-byte utf8", "超时", 1023, "02e8b685e697b6"},
		// U+1F600 is the surrogate pair d83d de00, each as 3-byte UTF-8.
		{"supplementary as surrogates", "\U0001F600", 1023, "02eda0bdedb880"},
		{"supplementary not split", "ab\U0001F600", 3, "026162"},
		{"invalid utf8 to U+FFFD", "a\xffb", 1023, "0361efbfbd62"},
		{"literal U+FFFD", "\uFFFDz", 1023, "02efbfbd7a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := hex.EncodeToString(appendHessianString(nil, tc.in, tc.max))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestStatusText(t *testing.T) {
	valid := 0
	for s := 0; s <= 0xffff; s++ {
		if StatusText(uint16(s)) != "" {
			valid++
		}
	}
	if valid != 13 {
		t.Fatalf("%d named statuses, want 13", valid)
	}
	for s, want := range map[uint16]string{0x0006: "NO_PROCESSOR", 0x0010: "CONNECTION_CLOSED", 0x0012: "SERVER_DESERIAL_EXCEPTION", 0x000a: ""} {
		if got := StatusText(s); got != want {
			t.Errorf("StatusText(%#04x) = %q, want %q", s, got, want)
		}
	}
	for s, want := range map[uint16]int{
		StatusSuccess: 200, StatusCodecException: 400, StatusServerDeserialException: 400, StatusNoProcessor: 404,
		StatusTimeout: 504, StatusServerThreadpoolBusy: 503, StatusConnectionClosed: 502, StatusErrorComm: 502,
		StatusClientSendError: 502, StatusServerException: 500, StatusUnknown: 500, StatusError: 500,
	} {
		if got := HTTPStatus(s); got != want {
			t.Errorf("HTTPStatus(%#04x) = %d, want %d", s, got, want)
		}
		// Where StatusFromHTTP is one to one, HTTPStatus inverts it.
		if back := StatusFromHTTP(want); want != 500 && want != 400 && want != 502 && back != s {
			t.Errorf("StatusFromHTTP(HTTPStatus(%#04x)) = %#04x", s, back)
		}
	}
}
