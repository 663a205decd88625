package gctune

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 32 << 20, 100},
		{4 << 20, 32 << 20, 700},   // 4 MiB may grow to 32
		{8 << 20, 32 << 20, 300},   // 8 -> 32
		{16 << 20, 32 << 20, 100},  // 2x live reaches the floor
		{100 << 20, 32 << 20, 100}, // a big heap: plain GOGC=100
		{1 << 10, 32 << 20, 10000}, // nearly empty: bounded percent
		{10 << 20, 0, 100},         // no floor
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestStartFollowsCollections: with a floor far above this test's live
// heap the percent rises after a collection, and Stop puts back 100.
func TestStartFollowsCollections(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tu := Start(1 << 30)
	if tu == nil {
		t.Fatal("Start returned nil")
	}
	deadline := time.Now().Add(5 * time.Second)
	for gogc() <= 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if p := gogc(); p <= 100 {
		t.Fatalf("GC percent %d with a 1 GiB floor", p)
	}
	tu.Stop()
	if p := gogc(); p != 100 {
		t.Fatalf("GC percent %d after Stop", p)
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := gogc(); p != 100 {
		t.Fatalf("GC percent %d after Stop and a collection", p)
	}
}

func TestStartRespectsEnvironment(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start(1<<30) != nil {
		t.Fatal("Start tuned despite GOGC in the environment")
	}
	t.Setenv("GOGC", "")
	if Start(0) != nil {
		t.Fatal("Start tuned with no floor")
	}
}
