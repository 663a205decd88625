package accesslog

import (
	"fmt"
	"strings"
	"time"
)

// defaultTimeLayout is Envoy's START_TIME layout: RFC 3339 in UTC with
// milliseconds.
const defaultTimeLayout = "%Y-%m-%dT%H:%M:%E3SZ"

// timeKind is one strftime conversion.
type timeKind uint8

const (
	tLit        timeKind = iota
	tYear                // %Y
	tYear2               // %y
	tMonth               // %m
	tMonthName           // %B
	tMonthAbbr           // %b, %h
	tDay                 // %d
	tDaySpace            // %e
	tYearDay             // %j
	tWeekday             // %A
	tWeekAbbr            // %a
	tHour                // %H
	tHour12              // %I
	tAMPM                // %p
	tMinute              // %M
	tSecond              // %S
	tFrac                // %<n>f, %E<n>f, %f: n digits, no dot
	tFracTrim            // %E*f: fraction without trailing zeros
	tSecFrac             // %E<n>S: seconds, dot, n digits
	tSecFracAll          // %E*S: seconds and the fraction without trailing zeros
	tZoneOff             // %z: +hhmm
	tZoneName            // %Z
	tEpoch               // %s
)

// timePiece is one element of a compiled START_TIME layout.
type timePiece struct {
	kind timeKind
	n    int
	lit  string
}

// compileTime compiles a strftime layout with Envoy's extensions (%f,
// %<n>f, %E<n>S, %E*S, %s). An unsupported conversion is an error.
func compileTime(layout string) ([]timePiece, error) {
	var out []timePiece
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, timePiece{kind: tLit, lit: lit.String()})
			lit.Reset()
		}
	}
	add := func(p timePiece) { flush(); out = append(out, p) }
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		i++
		if i >= len(layout) {
			return nil, fmt.Errorf("time format %q ends with %%", layout)
		}
		switch c := layout[i]; c {
		case '%':
			lit.WriteByte('%')
		case 'n':
			lit.WriteByte('\n')
		case 't':
			lit.WriteByte('\t')
		case 'Y':
			add(timePiece{kind: tYear})
		case 'y':
			add(timePiece{kind: tYear2})
		case 'm':
			add(timePiece{kind: tMonth})
		case 'B':
			add(timePiece{kind: tMonthName})
		case 'b', 'h':
			add(timePiece{kind: tMonthAbbr})
		case 'd':
			add(timePiece{kind: tDay})
		case 'e':
			add(timePiece{kind: tDaySpace})
		case 'j':
			add(timePiece{kind: tYearDay})
		case 'A':
			add(timePiece{kind: tWeekday})
		case 'a':
			add(timePiece{kind: tWeekAbbr})
		case 'H':
			add(timePiece{kind: tHour})
		case 'I':
			add(timePiece{kind: tHour12})
		case 'p':
			add(timePiece{kind: tAMPM})
		case 'M':
			add(timePiece{kind: tMinute})
		case 'S':
			add(timePiece{kind: tSecond})
		case 'T':
			add(timePiece{kind: tHour})
			add(timePiece{kind: tLit, lit: ":"})
			add(timePiece{kind: tMinute})
			add(timePiece{kind: tLit, lit: ":"})
			add(timePiece{kind: tSecond})
		case 'F':
			add(timePiece{kind: tYear})
			add(timePiece{kind: tLit, lit: "-"})
			add(timePiece{kind: tMonth})
			add(timePiece{kind: tLit, lit: "-"})
			add(timePiece{kind: tDay})
		case 'z':
			add(timePiece{kind: tZoneOff})
		case 'Z':
			add(timePiece{kind: tZoneName})
		case 's':
			add(timePiece{kind: tEpoch})
		case 'f':
			add(timePiece{kind: tFrac, n: 9})
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if i+1 >= len(layout) || layout[i+1] != 'f' {
				return nil, fmt.Errorf("time format %q: %%%c must be followed by f", layout, c)
			}
			add(timePiece{kind: tFrac, n: int(c - '0')})
			i++
		case 'E':
			if i+2 >= len(layout) {
				return nil, fmt.Errorf("time format %q: incomplete %%E conversion", layout)
			}
			d, conv := layout[i+1], layout[i+2]
			i += 2
			switch {
			case d == '*' && conv == 'S':
				add(timePiece{kind: tSecFracAll})
			case d == '*' && conv == 'f':
				add(timePiece{kind: tFracTrim})
			case d >= '0' && d <= '9' && conv == 'S':
				add(timePiece{kind: tSecFrac, n: int(d - '0')})
			case d >= '1' && d <= '9' && conv == 'f':
				add(timePiece{kind: tFrac, n: int(d - '0')})
			default:
				return nil, fmt.Errorf("time format %q: unsupported conversion %%E%c%c", layout, d, conv)
			}
		default:
			return nil, fmt.Errorf("time format %q: unsupported conversion %%%c", layout, c)
		}
	}
	flush()
	return out, nil
}

// appendTime formats t with a compiled layout without allocating. In JSON
// mode the literal parts are escaped; the conversions write only safe
// ASCII (the zone name is escaped too).
func appendTime(dst []byte, t time.Time, pieces []timePiece, mode escapeMode) []byte {
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	ns := t.Nanosecond()
	for _, p := range pieces {
		switch p.kind {
		case tLit:
			if mode == escJSON {
				dst = appendJSONString(dst, p.lit)
			} else {
				dst = append(dst, p.lit...)
			}
		case tYear:
			dst = appendPad(dst, year, 4, '0')
		case tYear2:
			dst = appendPad(dst, year%100, 2, '0')
		case tMonth:
			dst = appendPad(dst, int(month), 2, '0')
		case tMonthName:
			dst = append(dst, month.String()...)
		case tMonthAbbr:
			dst = append(dst, month.String()[:3]...)
		case tDay:
			dst = appendPad(dst, day, 2, '0')
		case tDaySpace:
			dst = appendPad(dst, day, 2, ' ')
		case tYearDay:
			dst = appendPad(dst, t.YearDay(), 3, '0')
		case tWeekday:
			dst = append(dst, t.Weekday().String()...)
		case tWeekAbbr:
			dst = append(dst, t.Weekday().String()[:3]...)
		case tHour:
			dst = appendPad(dst, hour, 2, '0')
		case tHour12:
			h := hour % 12
			if h == 0 {
				h = 12
			}
			dst = appendPad(dst, h, 2, '0')
		case tAMPM:
			if hour < 12 {
				dst = append(dst, "AM"...)
			} else {
				dst = append(dst, "PM"...)
			}
		case tMinute:
			dst = appendPad(dst, min, 2, '0')
		case tSecond:
			dst = appendPad(dst, sec, 2, '0')
		case tFrac:
			dst = appendFrac(dst, ns, p.n)
		case tFracTrim:
			dst = appendFracTrim(dst, ns)
		case tSecFrac:
			dst = appendPad(dst, sec, 2, '0')
			if p.n > 0 {
				dst = append(dst, '.')
				dst = appendFrac(dst, ns, p.n)
			}
		case tSecFracAll:
			dst = appendPad(dst, sec, 2, '0')
			if ns != 0 {
				dst = append(dst, '.')
				dst = appendFracTrim(dst, ns)
			}
		case tZoneOff:
			_, off := t.Zone()
			sign := byte('+')
			if off < 0 {
				sign, off = '-', -off
			}
			dst = append(dst, sign)
			dst = appendPad(dst, off/3600, 2, '0')
			dst = appendPad(dst, off%3600/60, 2, '0')
		case tZoneName:
			name, _ := t.Zone()
			dst = appendString(dst, name, mode)
		case tEpoch:
			dst = appendInt(dst, t.Unix())
		}
	}
	return dst
}

// appendPad appends a non-negative v padded to width with pad.
func appendPad(dst []byte, v, width int, pad byte) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	var b [20]byte
	i := len(b)
	for v >= 10 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	b[i] = byte('0' + v)
	for n := len(b) - i; n < width; n++ {
		dst = append(dst, pad)
	}
	return append(dst, b[i:]...)
}

func appendInt(dst []byte, v int64) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	return appendPad(dst, int(v), 1, '0')
}

// appendFrac appends the first n (1..9) digits of a nanosecond fraction.
func appendFrac(dst []byte, ns, n int) []byte {
	var b [9]byte
	for i := 8; i >= 0; i-- {
		b[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(dst, b[:n]...)
}

// appendFracTrim appends a nanosecond fraction without trailing zeros
// ("0" for zero).
func appendFracTrim(dst []byte, ns int) []byte {
	var b [9]byte
	for i := 8; i >= 0; i-- {
		b[i] = byte('0' + ns%10)
		ns /= 10
	}
	n := 9
	for n > 1 && b[n-1] == '0' {
		n--
	}
	return append(dst, b[:n]...)
}
