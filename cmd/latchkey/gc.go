package main

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The collector's defaults fit Latchkey badly at both ends. The token
// path keeps a live heap of 3–4 MB and allocates ~25 MB/s, so a fixed
// GOGC collects many times a second and each cycle's marking takes a
// quarter of the two CPUs (measured: 76 cycles in 6 s at GOGC=50, p99
// 15–18 ms at 16 concurrent). A sign-in burst, by contrast, holds 9 MiB
// per running argon2id hash and drops it at once: there a heap allowed to
// grow far past the live one inflates RSS, and a memory limit close to it
// collects in a loop (measured: GOGC=400 with a 30 MiB limit reached 66 %
// of the argon2id-alone rate, GOGC=50 83 %, same RSS).
//
// So after every collection the heap goal is set to what the live heap
// needs, with a floor: gcMinGoal while the heap is small (GOGC up to 400),
// live × 1.5 once it is larger (GOGC=50). A memory limit of twice the live
// heap, at least gcLimitFloor, backs it. The GOGC and GOMEMLIMIT
// environment variables, when set, win.
const (
	gcMinGoal    = 20 << 20
	gcMinPercent = 50
	gcMaxPercent = 400
	gcLimitFloor = 48 << 20
)

// tuneGC applies the policy above after each collection until ctx ends.
func tuneGC(ctx context.Context) {
	fixedPercent, fixedLimit := os.Getenv("GOGC") != "", os.Getenv("GOMEMLIMIT") != ""
	if fixedPercent && fixedLimit {
		return
	}
	var stopped atomic.Bool
	context.AfterFunc(ctx, func() { stopped.Store(true) })
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var tune func()
	tune = func() {
		if stopped.Load() {
			return
		}
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		if !fixedPercent {
			debug.SetGCPercent(gcPercent(live))
		}
		if !fixedLimit {
			debug.SetMemoryLimit(gcLimit(live))
		}
		rearm(tune)
	}
	tune()
}

// rearm calls f after the next collection: a finalizer runs once the
// collector has found its object unreachable.
func rearm(f func()) {
	type sentinel struct{ _ [16]byte } // not tiny-allocated, so it gets its own finalizer
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { f() })
}

// gcPercent is the GOGC that makes the heap goal max(gcMinGoal, 1.5 × live).
func gcPercent(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	p := int64(gcMinGoal)*100/int64(min(live, gcMinGoal)) - 100
	return int(max(gcMinPercent, min(gcMaxPercent, p)))
}

// gcLimit is the memory limit for a live heap of live bytes.
func gcLimit(live uint64) int64 {
	if live > math.MaxInt64/4 {
		return math.MaxInt64
	}
	return max(gcLimitFloor, 2*int64(live))
}
