package window

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The window against a slice that does the same the slow way: values set,
// extended past the ring's size and dropped from the front in any mix.
func TestWindowAgreesWithASlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var w Window[int]
	var want []int
	next := 1
	for step := range 100_000 {
		switch x := rng.IntN(10); {
		case x < 4:
			n := len(want) + rng.IntN(40)
			w.Extend(n)
			for len(want) < n {
				want = append(want, 0)
			}
		case x < 7 && len(want) > 0:
			d := rng.IntN(len(want))
			*w.At(d) = next
			want[d] = next
			next++
		default:
			k := rng.IntN(len(want) + 3)
			w.Drop(k)
			want = want[min(k, len(want)):]
		}
		require.Equal(t, len(want), w.Len(), "step %d", step)
		if step%50 != 0 {
			continue
		}
		for d := range want {
			require.Equal(t, want[d], *w.At(d), "step %d, value %d", step, d)
		}
	}
}

// A dropped value's slot is zero when the window extends over it again:
// nothing of the old value survives into the new one.
func TestWindowDropZeroes(t *testing.T) {
	var w Window[*int]
	x := 1
	w.Extend(3)
	*w.At(2) = &x
	w.Drop(3)
	w.Extend(16)
	for d := range 16 {
		require.Nil(t, *w.At(d))
	}
}

// Dropping none, or a negative count, leaves the window as it was: a
// negative count must not grow it over values that were never set.
func TestWindowDropOfNoneKeepsIt(t *testing.T) {
	var w Window[int]
	w.Extend(3)
	for d := range 3 {
		*w.At(d) = d + 1
	}
	for _, k := range []int{0, -2} {
		w.Drop(k)
		require.Equal(t, 3, w.Len(), "after Drop(%d)", k)
		for d := range 3 {
			require.Equal(t, d+1, *w.At(d), "after Drop(%d)", k)
		}
	}
}
