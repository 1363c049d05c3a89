package chaos

import (
	"context"
	"math/rand/v2"
	"time"
)

// pacing is how long faults last: the schedule's own sleeps, not waits for
// conditions. A CI round keeps them short; the long mode lets a frozen
// server stay frozen past every timeout (IOTimeout is 10s).
type pacing struct {
	holdMin, holdMax time.Duration
	pauseMax         time.Duration
}

var (
	ciPacing   = pacing{holdMin: 800 * time.Millisecond, holdMax: 1500 * time.Millisecond, pauseMax: 1500 * time.Millisecond}
	longPacing = pacing{holdMin: time.Second, holdMax: 6 * time.Second, pauseMax: 12 * time.Second}
)

func (p pacing) hold(rng *rand.Rand) time.Duration   { return between(rng, p.holdMin, p.holdMax) }
func (p pacing) freeze(rng *rand.Rand) time.Duration { return between(rng, p.holdMin, p.pauseMax) }

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
