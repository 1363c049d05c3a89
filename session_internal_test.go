package exraft

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSessionLowestIsTheLowestInFlight: whatever order writes finish in,
// the lowest sent is the lowest still in flight, or the next to be handed
// out when none is; a lowest too high would let the cluster forget a result
// a retry still needs.
func TestSessionLowestIsTheLowestInFlight(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := &sessionState{inflight: map[uint64]struct{}{}}
	for range 10_000 {
		if len(st.inflight) == 0 || rng.IntN(2) == 0 {
			st.begin()
		} else {
			keys := make([]uint64, 0, len(st.inflight))
			for k := range st.inflight {
				keys = append(keys, k)
			}
			st.finish(keys[rng.IntN(len(keys))])
		}
		want := st.seq + 1
		for k := range st.inflight {
			want = min(want, k)
		}
		require.Equal(t, want, st.lowest())
	}
}
