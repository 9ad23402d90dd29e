package main

import (
	"math"
	"testing"
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
