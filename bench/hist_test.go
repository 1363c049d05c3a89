package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramIndexValue(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, 1, 127, 128, 129, 255, 256, 1000, 31_337, time.Millisecond, time.Hour, 1<<63 - 1} {
		i := histIndex(d)
		if i < prev || i >= histBuckets {
			t.Fatalf("index of %v = %d, after %d (buckets %d)", d, i, prev, histBuckets)
		}
		prev = i
		if v := histValue(i); absDiff(v, d) > d/64+1 {
			t.Errorf("bucket of %v reads back as %v", d, v)
		}
	}
}

func TestHistogramQuantilesMatchExact(t *testing.T) {
	var h histogram
	var all []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100_000; i++ {
		d := time.Duration(r.ExpFloat64() * 50_000) // around 50 µs, long tail
		h.record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99} {
		exact, got := all[int(q*float64(len(all)))], h.quantile(q)
		if absDiff(exact, got) > exact/60 {
			t.Errorf("q%.2f: histogram %v, exact %v", q, got, exact)
		}
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}
