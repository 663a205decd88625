package xxhash

import "testing"

func TestVectors(t *testing.T) {
	tests := []struct {
		in   string
		seed uint64
		want uint64
	}{
		{"", 0, 0xef46db3751d8e999},
		{"", 1, 0xd5afba1336a3be4b},
		{"a", 0, 0xd24ec4f1a98c6e5b},
		{"abc", 0, 0x44bc2cf5ad770999},
		{"abc", 12345, 0x01700e64f6f23509},
		{"0123456789abcdef0123456789abcdef", 0, 0x642a94958e71e6c5},
		{"Nobody inspects the spammish repetition", 0, 0xfbcea83c8a378bf1},
		{"Nobody inspects the spammish repetition", 123, 0xa8ba45551f24b7ae},
		{"The quick brown fox jumps over the lazy dog", 0, 0x0b242d361fda71bc},
		{"The quick brown fox jumps over the lazy dog.", 0, 0x44ad33705751ad73},
	}
	for _, tt := range tests {
		if got := Sum64(tt.in, tt.seed); got != tt.want {
			t.Errorf("Sum64(%q, %d) = %#x, want %#x", tt.in, tt.seed, got, tt.want)
		}
		if got := Sum64([]byte(tt.in), tt.seed); got != tt.want {
			t.Errorf("Sum64([]byte(%q), %d) = %#x, want %#x", tt.in, tt.seed, got, tt.want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	s := "The quick brown fox jumps over the lazy dog"
	if n := testing.AllocsPerRun(100, func() { _ = Sum64(s, 0) }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}
