package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestSmallRun runs the whole benchmark with a few sidecars.
func TestSmallRun(t *testing.T) {
	var out bytes.Buffer
	c := config{n: 50, streamsPerConn: 20, services: 10, poll: 20 * time.Millisecond, debounce: 10 * time.Millisecond,
		timeout: 30 * time.Second, connectRate: 10}
	if err := run(c, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| nodes the server saw ACK their whole new snapshot | 50 / 50 |", "Target (all 50 ACKed within 10 s of the file write): met."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDist(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := newDist(d)
	if s.q(0.5) != 51*time.Millisecond || s.q(0.99) != 100*time.Millisecond || s.max() != 100*time.Millisecond {
		t.Errorf("p50 %v p99 %v max %v", s.q(0.5), s.q(0.99), s.max())
	}
}
