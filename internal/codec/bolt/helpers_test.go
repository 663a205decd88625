package bolt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/api"
)

// vector returns the bytes of testdata/vectors/name: hex digits with '#'
// comments, as make_vectors.py writes them.
func vector(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseHex(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// parseHex decodes hex digits, ignoring whitespace and '#' comments.
func parseHex(s string) ([]byte, error) {
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	return hex.DecodeString(digits.String())
}

// vectorNames lists the .hex files in testdata/vectors.
func vectorNames(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "vectors", "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no vectors")
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// errClass names the error kinds the API promises.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, api.ErrNeedMore):
		return "need more"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrTooLarge):
		return "too large"
	}
	return "other: " + err.Error()
}

// pairs returns h's entries in order.
func pairs(h api.HeaderMap) [][2]string {
	var out [][2]string
	h.Range(func(k, v string) bool {
		out = append(out, [2]string{k, v})
		return true
	})
	return out
}

// sameFrame reports how a and b differ in their wire-visible fields, or "".
func sameFrame(a, b *Frame) string {
	switch {
	case a.Proto != b.Proto:
		return "Proto"
	case a.Ver1 != b.Ver1:
		return "Ver1"
	case a.Type != b.Type:
		return "Type"
	case a.CmdCode != b.CmdCode:
		return "CmdCode"
	case a.Ver2 != b.Ver2:
		return "Ver2"
	case a.ID != b.ID:
		return "ID"
	case a.Codec != b.Codec:
		return "Codec"
	case a.Switch != b.Switch:
		return "Switch"
	case a.Type != TypeResponse && a.TimeoutMs != b.TimeoutMs:
		return "TimeoutMs"
	case a.Type == TypeResponse && a.RespStatus != b.RespStatus:
		return "RespStatus"
	case !bytes.Equal(a.ClassName, b.ClassName):
		return "ClassName"
	case !bytes.Equal(a.Content, b.Content):
		return "Content"
	}
	pa, pb := pairs(&a.Header), pairs(&b.Header)
	if len(pa) != len(pb) {
		return "Header"
	}
	for i := range pa {
		if pa[i] != pb[i] {
			return "Header"
		}
	}
	return ""
}

// frameReader reads frames from a stream with Decode, the way a
// connection's read loop does: one buffer, compacted after every frame
// (safe because Decode copies what the frame keeps).
type frameReader struct {
	r     io.Reader
	lim   Limits
	buf   []byte
	start int
	end   int
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, 512)}
}

// next decodes the next frame into f.
func (fr *frameReader) next(f *Frame) error {
	for {
		if fr.end > fr.start {
			n, err := Decode(f, fr.buf[fr.start:fr.end], fr.lim)
			if err == nil {
				fr.start += n
				return nil
			}
			if err != api.ErrNeedMore {
				return err
			}
		}
		if fr.start > 0 {
			fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
			fr.start = 0
		}
		if fr.end == len(fr.buf) {
			fr.buf = append(fr.buf, make([]byte, len(fr.buf))...)
		}
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil && n == 0 {
			if err == io.EOF && fr.end > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}
