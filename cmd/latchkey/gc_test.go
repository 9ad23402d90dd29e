package main

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCLimit(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, gcLimitFloor},
		{gcLimitFloor / 2, gcLimitFloor},
		{gcLimitFloor, 2 * gcLimitFloor},
		{1 << 30, 2 << 30},
		{math.MaxUint64, math.MaxInt64},
	} {
		if got := gcLimit(c.live); got != c.want {
			t.Errorf("gcLimit(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{1 << 20, gcMaxPercent},   // a tiny heap: capped
		{4 << 20, 400},            // the token path: goal 20 MiB
		{10 << 20, 100},           // goal still 20 MiB
		{15 << 20, gcMinPercent},  // a sign-in burst: 1.5 × live
		{200 << 20, gcMinPercent}, // large: never below 50
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// TestTuneGCFollowsCollections: the tuner sets GOGC after each
// collection from the live heap, and stops with its context.
func TestTuneGCFollowsCollections(t *testing.T) {
	if testing.Short() {
		t.Skip("changes the process's collector settings")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	ctx, cancel := context.WithCancel(context.Background())
	tuneGC(ctx)
	hold := make([]byte, 30<<20) // live: 30 MiB, so GOGC 50
	for i := range hold {
		hold[i] = 1
	}
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != gcMinPercent {
		if time.Now().After(deadline) {
			t.Fatal("GOGC never followed the live heap to 50")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(hold)
	cancel()
	debug.SetGCPercent(123)
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if got := gogc(); got != 123 {
		t.Fatalf("GOGC changed to %d after the tuner stopped", got)
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
