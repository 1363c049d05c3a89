package chaos

import (
	"context"
	"errors"
	"fmt"

	"github.com/exraft/exraft"
)

// currentLeader is the server that says it leads, or -1.
func (c *cluster) currentLeader(ctx context.Context) int {
	var best *exraft.Status
	leader := -1
	for i, st := range c.statuses(ctx) {
		if st != nil && st.Role == exraft.Leader && (best == nil || st.Term > best.Term) {
			best, leader = st, i
		}
	}
	return leader
}

// onLeader calls fn with the address of the server that leads, again
// whenever the answer is that it does not lead (any more), until fn
// succeeds or ctx ends.
func (c *cluster) onLeader(ctx context.Context, fn func(ctx context.Context, addr string) error) error {
	last := errors.New("no leader")
	for ctx.Err() == nil {
		if i := c.currentLeader(ctx); i >= 0 {
			err := fn(ctx, c.listen[i])
			if err == nil || !errors.Is(err, exraft.ErrNotLeader) && !errors.Is(err, exraft.ErrLeadershipLost) {
				return err
			}
			last = err
		}
		sleepCtx(ctx, pollEvery)
	}
	return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
}
