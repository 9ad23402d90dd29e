package main

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's defaults fit Latchkey badly at both ends. The token
// path keeps a live heap of 3–4 MB and allocates ~25 MB/s, so GOGC=100
// collects every ~150 ms and each cycle's marking takes a quarter of the
// two CPUs (measured: 76 cycles in 6 s, p99 15–18 ms at 16 concurrent). A
// sign-in burst, by contrast, holds 9 MiB per running argon2id hash, and
// a heap left to double past that inflates RSS.
//
// So the heap gets a floor and a soft ceiling: GOGC=400 keeps the
// collector quiet while the live heap is small, and a memory limit
// (gcLimitFloor, or twice the live heap when that is larger, so a large
// deployment never collects in a loop) bounds RSS during bursts. The
// GOGC and GOMEMLIMIT environment variables, when set, win.
const (
	gcPercent    = 400
	gcLimitFloor = 30 << 20
)

// tuneGC applies the policy above until ctx ends.
func tuneGC(ctx context.Context) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(gcLimitFloor)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		debug.SetMemoryLimit(gcLimit(sample[0].Value.Uint64()))
	}
}

// gcLimit is the memory limit for a live heap of live bytes.
func gcLimit(live uint64) int64 {
	if live > math.MaxInt64/4 {
		return math.MaxInt64
	}
	return max(gcLimitFloor, 2*int64(live))
}
