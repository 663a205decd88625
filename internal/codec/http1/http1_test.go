package http1

import (
	"math/rand/v2"
	"testing"
)

func TestPlainEnd(t *testing.T) {
	naive := func(b []byte, i int, min byte) int {
		for i < len(b) && b[i] >= min && b[i] != 0x7f {
			i++
		}
		return i
	}
	rng := rand.New(rand.NewPCG(3, 4))
	special := []byte{0x00, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff}
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			if rng.IntN(8) == 0 {
				b[j] = special[rng.IntN(len(special))]
			} else {
				b[j] = byte(0x20 + rng.IntN(0x60))
			}
		}
		i := 0
		if len(b) > 0 {
			i = rng.IntN(len(b))
		}
		for _, min := range []byte{0x20, 0x21} {
			if got, want := plainEnd(b, i, min), naive(b, i, min); got != want {
				t.Fatalf("plainEnd(%q, %d, %#x) = %d, want %d", b, i, min, got, want)
			}
		}
	}
	// Every single byte value in every lane.
	for c := range 256 {
		for lane := range 8 {
			b := []byte("aaaaaaaaaaaaaaaa")
			b[lane] = byte(c)
			for _, min := range []byte{0x20, 0x21} {
				if got, want := plainEnd(b, 0, min), naive(b, 0, min); got != want {
					t.Fatalf("byte %#x lane %d min %#x: %d, want %d", c, lane, min, got, want)
				}
			}
		}
	}
}

func TestCharClasses(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	const host = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"
	in := func(s string, c byte) bool {
		for i := 0; i < len(s); i++ {
			if s[i] == c {
				return true
			}
		}
		return false
	}
	for i := range 256 {
		c := byte(i)
		if isToken(c) != in(tchar, c) {
			t.Errorf("isToken(%#x) = %v", c, isToken(c))
		}
		if isHostChar(c) != in(host, c) {
			t.Errorf("isHostChar(%#x) = %v", c, isHostChar(c))
		}
		if want := c >= 0x20 && c != 0x7f || c == '\t'; isValueChar(c) != want {
			t.Errorf("isValueChar(%#x) = %v", c, isValueChar(c))
		}
	}
}
