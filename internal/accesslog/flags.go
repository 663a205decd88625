package accesslog

// Flags collects the response flags of one request (api.Flag*) without
// allocating until String joins more than one.
type Flags struct {
	f [4]string
	n int
}

// Add records flag once; past four distinct flags the rest are dropped.
func (fl *Flags) Add(flag string) {
	for i := 0; i < fl.n; i++ {
		if fl.f[i] == flag {
			return
		}
	}
	if fl.n < len(fl.f) {
		fl.f[fl.n] = flag
		fl.n++
	}
}

// Has reports whether flag was recorded.
func (fl *Flags) Has(flag string) bool {
	for i := 0; i < fl.n; i++ {
		if fl.f[i] == flag {
			return true
		}
	}
	return false
}

// Reset forgets every flag.
func (fl *Flags) Reset() { fl.n = 0 }

// String joins the flags with commas, "-" for none (Envoy's format).
func (fl *Flags) String() string {
	switch fl.n {
	case 0:
		return "-"
	case 1:
		return fl.f[0]
	}
	out := fl.f[0]
	for i := 1; i < fl.n; i++ {
		out += "," + fl.f[i]
	}
	return out
}
