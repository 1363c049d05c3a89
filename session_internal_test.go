package exraft

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSessionLowestIsTheLowestInFlight: whatever order writes finish in,
// the lowest sent is the lowest still in flight, or the next to be handed
// out when none is; a lowest too high would let the cluster forget a result
// a retry still needs. Some writes stay in flight for long, so that the
// numbers waited on span more than the ring first holds.
func TestSessionLowestIsTheLowestInFlight(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := &sessionState{}
	require.Equal(t, uint64(1), st.lowest())
	inflight := map[uint64]bool{}
	maxSpan := 0
	for step := range 100_000 {
		if len(inflight) == 0 || rng.IntN(2) == 0 {
			inflight[st.begin()] = true
		} else {
			var pick uint64
			for k := range inflight {
				if pick == 0 || rng.IntN(4) == 0 {
					pick = k
				}
			}
			if pick == st.lowest() && rng.IntN(50) != 0 {
				continue // the lowest lingers
			}
			delete(inflight, pick)
			st.finish(pick)
			if rng.IntN(10) == 0 {
				st.finish(pick) // twice, as an error path may
			}
		}
		want := st.seq + 1
		for k := range inflight {
			want = min(want, k)
		}
		require.Equal(t, want, st.lowest(), "step %d", step)
		maxSpan = max(maxSpan, int(st.seq-st.lowest()))
	}
	require.Greater(t, maxSpan, 16, "the numbers in flight spanned more than the ring first holds")
}

// SessionSkips reports whether sess skips addr for now, as a server that
// failed lately.
func SessionSkips(sess *Session, addr string) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.skipped(addr, time.Now())
}
