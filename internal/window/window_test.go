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
