package dubbo

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// service is what dubbo-go's client knows about a call.
type service struct {
	Path, Interface, Version, Group, Method string
	Timeout                                 time.Duration
}

// dubboGoRequest builds a request frame the way dubbo-go v3's hessian2
// codec (protocol/dubbo/hessian2 packRequest) does: header with flags
// 0xc2 (0x82 one-way), then with one hessian2 Encoder the dubbo version
// "2.0.2", path, version, method, the parameter descriptor, each argument,
// and the attachments map with path, version, group, interface and timeout
// added.
func dubboGoRequest(t testing.TB, id int64, twoWay bool, svc service, args []any, atta map[string]any) []byte {
	t.Helper()
	hdr := make([]byte, HeaderLen)
	hdr[0], hdr[1], hdr[2] = MagicHigh, MagicLow, FlagRequest|SerializationHessian2
	if twoWay {
		hdr[2] |= FlagTwoWay
	}
	binary.BigEndian.PutUint64(hdr[4:], uint64(id))
	e := hessian.NewEncoder()
	e.Append(hdr)
	for _, s := range []string{"2.0.2", svc.Path, svc.Version, svc.Method, argTypes(t, args)} {
		if err := e.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range args {
		if err := e.Encode(a); err != nil {
			t.Fatal(err)
		}
	}
	if atta == nil {
		atta = map[string]any{}
	}
	atta["path"] = svc.Path
	atta["version"] = svc.Version
	if svc.Group != "" {
		atta["group"] = svc.Group
	}
	if svc.Interface != "" {
		atta["interface"] = svc.Interface
	}
	if svc.Timeout != 0 {
		atta["timeout"] = fmt.Sprint(int(svc.Timeout / time.Millisecond))
	}
	if err := e.Encode(atta); err != nil {
		t.Fatal(err)
	}
	b := e.Buffer()
	binary.BigEndian.PutUint32(b[12:], uint32(len(b)-HeaderLen))
	return b
}

// argTypes is dubbo-go's parameter descriptor for the argument kinds the
// tests use (getArgsTypeList).
func argTypes(t testing.TB, args []any) string {
	var sb strings.Builder
	for _, a := range args {
		switch a.(type) {
		case nil:
			sb.WriteString("V")
		case bool:
			sb.WriteString("Z")
		case int32:
			sb.WriteString("I")
		case int64, int:
			sb.WriteString("J")
		case float64:
			sb.WriteString("D")
		case []byte:
			sb.WriteString("[B")
		case string:
			sb.WriteString("Ljava/lang/String;")
		case []string:
			sb.WriteString("[Ljava/lang/String;")
		case time.Time:
			sb.WriteString("Ljava/util/Date;")
		case map[any]any:
			sb.WriteString("Ljava/util/Map;")
		case []any:
			sb.WriteString("Ljava/util/List;")
		case hessian.POJO:
			sb.WriteString("Ljava/lang/Object;")
		default:
			t.Fatalf("argTypes: no descriptor for %T", a)
		}
	}
	return sb.String()
}

// User is a POJO argument, registered with the library (class definitions,
// object instances and references on the wire).
type User struct {
	Name   string
	Age    int32
	Tags   []string
	Friend *User
}

// JavaClassName implements hessian.POJO.
func (*User) JavaClassName() string { return "org.apache.dubbo.samples.User" }

var registerOnce sync.Once

// registerPOJOs registers the test POJOs with dubbo-go-hessian2 (its
// registry is global, so once per process).
func registerPOJOs() {
	registerOnce.Do(func() { hessian.RegisterPOJO(&User{}) })
}

// descRegex is dubbo-go's (and Java's) parameter descriptor pattern; the
// reference for countParams.
var descRegex = regexp.MustCompile(`(?:(?:[VZBCDFIJS])|(?:L(?:[_$a-zA-Z][_$a-zA-Z0-9]*)(?:\/(?:[_$a-zA-Z][_$a-zA-Z0-9]*))*;)|(?:\[+(?:(?:[VZBCDFIJS])|(?:L(?:[_$a-zA-Z][_$a-zA-Z0-9]*)(?:\/(?:[_$a-zA-Z][_$a-zA-Z0-9]*))*;))))`)

// reference is a request body decoded by dubbo-go-hessian2 the way
// dubbo-go's server does (unpackRequestBody): every value built.
type reference struct {
	strs        [5]string
	args        []any
	attachments map[string]any
}

// libraryDecode decodes a request body with dubbo-go-hessian2. Only call it
// on bodies Decode accepted (their lengths are bounded), or under a memory
// limit: the library trusts length prefixes.
func libraryDecode(body []byte) (ref reference, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("library panic: %v", r)
		}
	}()
	d := hessian.NewDecoder(body)
	for i := range ref.strs {
		v, err := d.Decode()
		if err != nil {
			return ref, err
		}
		switch v := v.(type) {
		case nil:
		case string:
			ref.strs[i] = v
		default:
			return ref, fmt.Errorf("field %d is %T", i, v)
		}
	}
	for range descRegex.FindAllString(ref.strs[4], -1) {
		v, err := d.Decode()
		if err != nil {
			return ref, err
		}
		ref.args = append(ref.args, v)
	}
	v, err := d.Decode()
	if err != nil {
		return ref, err
	}
	ref.attachments = map[string]any{}
	switch m := v.(type) {
	case nil:
	case map[any]any:
		for k, v := range m {
			ks, ok := k.(string)
			if !ok {
				return ref, fmt.Errorf("key %T", k)
			}
			ref.attachments[ks] = v
		}
	default:
		return ref, fmt.Errorf("attachments are %T", v)
	}
	return ref, nil
}

// textOf renders a library-decoded attachment value as Frame does.
func textOf(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case bool:
		return fmt.Sprint(v), true
	case int32, int64:
		return fmt.Sprint(v), true
	case float64:
		return fmt.Sprintf("%v", v), true
	}
	return "", false
}

// checkAgainstLibrary decodes f's body with the library and compares every
// routing field and text attachment.
func checkAgainstLibrary(t testing.TB, f *Frame) {
	t.Helper()
	ref, err := libraryDecode(f.Body)
	if err != nil {
		t.Fatalf("library cannot decode a body Decode accepted: %v", err)
	}
	got := [5]string{f.DubboVersion, f.Path, f.Version, f.Method, f.ParamTypes}
	if got != ref.strs {
		t.Fatalf("leading strings %q, library %q", got, ref.strs)
	}
	if len(ref.attachments) != len(f.Attachments) {
		t.Fatalf("%d attachments, library %d", len(f.Attachments), len(ref.attachments))
	}
	for _, a := range f.Attachments {
		lv, ok := ref.attachments[a.Key]
		if !ok {
			t.Fatalf("attachment %q unknown to the library", a.Key)
		}
		if want, text := textOf(lv); text != a.Text || want != a.Value {
			t.Fatalf("attachment %q = %q (text %v), library %#v", a.Key, a.Value, a.Text, lv)
		}
	}
}

// frame assembles a frame from its parts.
func frame(flags, status byte, id int64, body []byte) []byte {
	b := []byte{MagicHigh, MagicLow, flags, status}
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// hexFile reads a vector from testdata: hex digits, whitespace ignored,
// '#' to end of line a comment.
func hexFile(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// writeHexFile writes b as a vector with a comment header.
func writeHexFile(t testing.TB, name, comment string, b []byte) {
	t.Helper()
	var sb strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(comment), "\n") {
		sb.WriteString("# " + line + "\n")
	}
	for i := 0; i < len(b); i += 32 {
		sb.WriteString(hex.EncodeToString(b[i:min(i+32, len(b))]) + "\n")
	}
	if err := os.WriteFile(filepath.Join("testdata", name), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// decodeOK decodes b whole and fails the test on error or a short read.
func decodeOK(t testing.TB, b []byte) *Frame {
	t.Helper()
	f := new(Frame)
	n, err := Codec{}.Decode(f, b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if n != len(b) {
		t.Fatalf("Decode used %d of %d bytes", n, len(b))
	}
	return f
}

// encodeOK encodes f and fails the test on error.
func encodeOK(t testing.TB, f *Frame) []byte {
	t.Helper()
	b, err := Codec{}.Encode(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// equalAttachments compares key/value/text of two attachment lists.
func equalAttachments(a, b []Attachment) bool {
	strip := func(in []Attachment) [][3]any {
		var out [][3]any
		for _, x := range in {
			out = append(out, [3]any{x.Key, x.Value, x.Text})
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
