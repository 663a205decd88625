package dubbo

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// hessianValues are values of every hessian2 kind, at the boundaries of
// their compact encodings, as dubbo-go-hessian2 writes them.
func hessianValues() map[string]any {
	registerPOJOs()
	alice := &User{Name: "alice", Age: 30, Tags: []string{"a", "b"}}
	bob := &User{Name: "bob", Age: 31, Friend: alice}
	nested := any("leaf")
	for range 100 {
		nested = []any{nested}
	}
	vals := map[string]any{
		"null":          nil,
		"true":          true,
		"false":         false,
		"double0":       0.0,
		"double1":       1.0,
		"double byte":   -128.0,
		"double short":  300.0,
		"double mill":   12.25,
		"double":        math.Pi,
		"date":          time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		"bytes0":        []byte{},
		"bytes15":       bytes.Repeat([]byte{7}, 15),
		"bytes16":       bytes.Repeat([]byte{7}, 16),
		"bytes1023":     bytes.Repeat([]byte{7}, 1023),
		"bytes1024":     bytes.Repeat([]byte{7}, 1024),
		"bytes9000":     bytes.Repeat([]byte{7}, 9000),
		"list":          []any{int32(1), "two", 3.0, nil},
		"strings":       []string{"x", "y", "z"},
		"ints":          []int32{1, 2, 3, 4, 5, 6, 7, 8, 9},
		"map":           map[any]any{"k": "v", int32(1): []any{"a"}},
		"map string":    map[string]any{"k": int64(1)},
		"pojo":          alice,
		"pojo friend":   bob,
		"pojo list":     []any{alice, bob, alice},
		"nested 100":    nested,
		"unicode":       "héllo 世界",
		"emoji":         "🎉 party 🎉",
		"emoji at 4095": strings.Repeat("a", 4095) + "🎉" + "tail",
	}
	for _, n := range []int32{-0x80000000, -0x40001, -0x40000, -0x801, -0x800, -17, -16, 0, 47, 48, 0x7ff, 0x800, 0x3ffff, 0x40000, 0x7fffffff} {
		vals["int "+itoa(int64(n))] = n
	}
	for _, n := range []int64{math.MinInt64, -0x80000001, -0x40001, -0x40000, -0x801, -0x800, -9, -8, 0, 15, 16, 0x7ff, 0x800, 0x3ffff, 0x40000, 0x7fffffff, 0x80000000, math.MaxInt64} {
		vals["long "+itoa(n)] = n
	}
	for _, n := range []int{0, 1, 31, 32, 1023, 1024, 4095, 4096, 4097, 8192, 20000} {
		vals["string "+itoa(int64(n))] = strings.Repeat("s", n)
	}
	return vals
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestSkipMatchesLibrary checks that the scanner ends every value exactly
// where dubbo-go-hessian2's encoding of it ends, alone and in a row.
func TestSkipMatchesLibrary(t *testing.T) {
	e := hessian.NewEncoder()
	var ends []int
	for name, v := range hessianValues() {
		one := hessian.NewEncoder()
		if err := one.Encode(v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b := one.Buffer()
		var s scanner
		s.reset(b, DefaultMaxDepth)
		end, err := s.skip(0, 0)
		if err != nil || end != len(b) {
			t.Errorf("%s: skip = %d, %v; want %d (% x)", name, end, err, len(b), b[:min(len(b), 48)])
		}
		// Every proper prefix is truncated, never accepted.
		for i := 0; i < len(b); i++ {
			s.reset(b[:i], DefaultMaxDepth)
			if end, err := s.skip(0, 0); err == nil {
				t.Fatalf("%s: prefix of %d/%d bytes accepted (end %d)", name, i, len(b), end)
			}
		}
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, len(e.Buffer()))
	}
	// In a row, with one encoder: later values refer to earlier class
	// definitions and objects.
	b := e.Buffer()
	var s scanner
	s.reset(b, DefaultMaxDepth)
	off := 0
	for i, want := range ends {
		end, err := s.skip(off, 0)
		if err != nil || end != want {
			t.Fatalf("value %d in a row: skip = %d, %v; want %d", i, end, err, want)
		}
		off = end
	}
}

// TestAppendStringMatchesLibrary checks appendString byte for byte against
// the library's encoder, and readString against its decoder.
func TestAppendStringMatchesLibrary(t *testing.T) {
	cases := []string{"", "a", "héllo", "世界", "🎉", "\xff\xfe invalid", "a\x00b"}
	for _, n := range []int{31, 32, 1023, 1024, 4095, 4096, 4097, 8193} {
		cases = append(cases, strings.Repeat("x", n), strings.Repeat("é", n))
	}
	cases = append(cases, strings.Repeat("a", 4095)+"🎉"+"b", strings.Repeat("🎉", 2100))
	for _, s := range cases {
		e := hessian.NewEncoder()
		if err := e.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := e.Buffer()
		got := appendString(nil, s)
		if !bytes.Equal(got, want) {
			t.Errorf("appendString(%.20q...) = % x..., library % x...", s, got[:min(8, len(got))], want[:min(8, len(want))])
			continue
		}
		lib, err := hessian.NewDecoder(got).Decode()
		if err != nil {
			t.Fatal(err)
		}
		var sc scanner
		sc.reset(got, DefaultMaxDepth)
		read, end, err := sc.readString(0)
		if err != nil || end != len(got) || read != lib.(string) {
			t.Errorf("readString(%.20q...) = %.20q, %d, %v; library %.20q", s, read, end, err, lib)
		}
	}
}

// TestMalformedSurrogatesMatchLibrary reads garbled and lone surrogate
// halves, where dubbo-go-hessian2 and Java part ways, and checks that the
// scanner reads the same text and ends the value where the library does:
// the value after it decodes the same. The first case is the one a CI
// fuzzing run found (a high half whose partner is '0's).
func TestMalformedSurrogatesMatchLibrary(t *testing.T) {
	cases := [][]byte{
		append([]byte{0x0c}, "\xed00\xeda0\xed00000"...),
		{0x02, 0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80},          // valid pair
		{0x01, 0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80, 0x91},    // pair counted past n
		{0x02, 0xed, 0xa0, 0x80, 'q', 'r', 's', 0x91, 0x92}, // lone high: library reads ahead
		{0x04, 0xed, 0xa0, 0x80, 'q', 'r', 's', 0x91, 0x92}, // lone high inside n
		{0x03, 0xed, 0x21, 0x30, 0x3d, 0x30, 0x30, 0x91},    // masked pair with ASCII bytes
		{0x02, 'a', 0xed, 0xa0, 0x80, 0xed},                 // partner cut
		{0x01, 0xed, 0xb0, 0x80, 0x91},                      // lone low
		{'S', 0x00, 0x03, 0xc3, 0xa9, 0xed, 0xaf, 0xbf, 0xed, 0xbf, 0xbf, 0x91},
	}
	for _, b := range cases {
		d := hessian.NewDecoder(b)
		lib, libErr := safeDecode(d)
		libNext, libNextErr := safeDecode(d)
		var sc scanner
		sc.reset(b, DefaultMaxDepth)
		got, end, err := sc.readString(0)
		if libErr != nil && strings.Contains(libErr.Error(), "panic") {
			continue // no answer to agree with; the scanner did not panic
		}
		if (err != nil) != (libErr != nil) {
			t.Errorf("% x: readString error %v, library %v", b, err, libErr)
			continue
		}
		if err != nil {
			continue
		}
		if got != lib.(string) {
			t.Errorf("% x: readString = %q, library %q", b, got, lib)
		}
		if end == len(b) {
			if libNextErr == nil {
				t.Errorf("% x: value ends at the end, library reads %v after it", b, libNext)
			}
			continue
		}
		next, nextErr := safeDecode(hessian.NewDecoder(b[end:]))
		if next != libNext || (nextErr != nil) != (libNextErr != nil) {
			t.Errorf("% x: ends at %d, next %v (%v); library next %v (%v)", b, end, next, nextErr, libNext, libNextErr)
		}
	}
}

// safeDecode is d.Decode with the library's panics (it indexes past its
// own buffer on some malformed strings) turned into errors.
func safeDecode(d *hessian.Decoder) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("library panic: %v", r)
		}
	}()
	return d.Decode()
}

// TestScannerRejects covers malformed values and lengths that claim more
// than the body holds. The list header 58 49 7fffffff is the one that makes
// dubbo-go-hessian2 v1.13.2 try to allocate 32 GiB.
func TestScannerRejects(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errTruncated},
		{"reserved tag", []byte{0x40}, errBadTag},
		{"terminator", []byte{'Z'}, errBadTag},
		{"huge fixed list", []byte{0x58, 'I', 0x7f, 0xff, 0xff, 0xff, 'N'}, errBadLength},
		{"negative list", []byte{0x58, 'I', 0xff, 0xff, 0xff, 0xff, 'N'}, errBadLength},
		{"huge typed list", []byte{'V', 0x01, 'x', 'I', 0x7f, 0xff, 0xff, 0xff}, errBadLength},
		{"huge class", []byte{'C', 0x01, 'x', 'I', 0x7f, 0xff, 0xff, 0xff}, errBadLength},
		{"undefined class", []byte{0x60}, errBadClassRef},
		{"undefined class O", []byte{'O', 0x91}, errBadClassRef},
		{"string too long", []byte{'S', 0xff, 0xff, 'a'}, errBadLength},
		{"string short", []byte{0x05, 'a', 'b'}, errBadLength},
		{"utf8 cut", []byte{0x02, 'a', 0xe4, 0xb8}, errTruncated},
		{"4-byte utf8", []byte{0x01, 0xf0, 0x9f, 0x8e, 0x89}, errBadUTF8},
		{"continuation lead", []byte{0x01, 0x80}, errBadUTF8},
		{"chunk then int", []byte{'R', 0x00, 0x01, 'a', 0x91}, errBadChunk},
		{"binary chunk then int", []byte{'A', 0x00, 0x01, 'a', 0x91}, errBadChunk},
		{"map unterminated", []byte{'H', 0x01, 'a', 0x01, 'b'}, errTruncated},
		{"ref without int", []byte{'Q', 'N'}, errNotInt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s scanner
			s.reset(tc.in, DefaultMaxDepth)
			_, err := s.skip(0, 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("skip(% x) = %v, want %v", tc.in, err, tc.want)
			}
		})
	}
	t.Run("depth", func(t *testing.T) {
		deep := append(bytes.Repeat([]byte{0x79}, 20), 'N')
		var s scanner
		s.reset(deep, 10)
		if _, err := s.skip(0, 0); !errors.Is(err, errTooDeep) {
			t.Fatalf("20 nested lists with MaxDepth 10: %v", err)
		}
		s.reset(deep, 20)
		if end, err := s.skip(0, 0); err != nil || end != len(deep) {
			t.Fatalf("20 nested lists with MaxDepth 20: %d, %v", end, err)
		}
	})
}

// TestCountParams checks the descriptor counter against the regular
// expression Dubbo uses.
func TestCountParams(t *testing.T) {
	cases := []string{
		"", "I", "IJZ", "Ljava/lang/String;", "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;",
		"[[I", "[B", "Lcom/foo/Bar$Inner;I", "Ljava/lang/String", "[Ljava/util/Date", "L;", "L1a;",
		"Lfoo//bar;", "xyz", "[", "[[", "LfooI", "Lfoo/;I", "V", "Lé;", "[[[Lx;D",
	}
	for _, d := range cases {
		if got, want := countParams(d), len(descRegex.FindAllString(d, -1)); got != want {
			t.Errorf("countParams(%q) = %d, regexp %d", d, got, want)
		}
	}
}

// FuzzCountParams compares countParams with the regular expression.
func FuzzCountParams(f *testing.F) {
	f.Add("Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;")
	f.Add("[[ILfoo/Bar;JZ")
	f.Fuzz(func(t *testing.T, d string) {
		if got, want := countParams(d), len(descRegex.FindAllString(d, -1)); got != want {
			t.Fatalf("countParams(%q) = %d, regexp %d", d, got, want)
		}
	})
}
