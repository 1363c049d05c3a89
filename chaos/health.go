package chaos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/exraft/exraft"
)

// statusTimeout bounds one status call of the harness.
const statusTimeout = 500 * time.Millisecond

// pollEvery paces the harness's questions to servers in other processes:
// WaitStatus only waits in process, so across processes the harness asks
// again until the answer is the one it waits for.
const pollEvery = 100 * time.Millisecond

// statuses asks every server for its Status at its own address, not
// through its proxy: the harness watches from outside the faults.
func (c *cluster) statuses(ctx context.Context) []*exraft.Status {
	out := make([]*exraft.Status, len(c.names))
	errs := make([]error, len(c.names))
	var wg sync.WaitGroup
	for i := range c.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			st, err := c.ctl.GetStatus(cctx, c.listen[i])
			if err == nil {
				out[i] = &st
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	c.mu.Lock()
	c.statusErrs = errs
	c.mu.Unlock()
	return out
}

// awaitHealthy waits until the cluster is whole: one leader that every
// server follows in the same term, every server a voter with no one being
// caught up, and every server having applied what the leader had committed
// when that first held. Between two faults it is what keeps the nemesis
// from taking a second voter down before the first is back and caught up.
func (c *cluster) awaitHealthy(ctx context.Context) (leader int, err error) {
	var target uint64
	var last string
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		sts := c.statuses(ctx)
		leader, why := c.agreedLeader(sts)
		switch {
		case why != "":
			last = why
		case target == 0:
			target = sts[leader].CommitIndex
			last = fmt.Sprintf("catching up to %d", target)
		default:
			if lagging := behind(sts, target); len(lagging) == 0 {
				return leader, nil
			} else {
				last = fmt.Sprintf("%v not yet at index %d", lagging, target)
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("cluster not healthy: %s", last)
		case <-tick.C:
		}
	}
}

// agreedLeader returns the leader every server follows, or why there is
// none yet.
func (c *cluster) agreedLeader(sts []*exraft.Status) (int, string) {
	leader := -1
	for i, st := range sts {
		if st == nil {
			return -1, fmt.Sprintf("%s does not answer: %v", c.names[i], c.lastStatusErr(i))
		}
		if st.Role == exraft.Leader {
			leader = i
		}
	}
	if leader < 0 {
		return -1, "no leader"
	}
	ls := sts[leader]
	for i, st := range sts {
		if st.Leader.Name != ls.Name || st.Term != ls.Term {
			return -1, fmt.Sprintf("%s follows %q in term %d, not %s in term %d", c.names[i], st.Leader.Name, st.Term, ls.Name, ls.Term)
		}
	}
	var members []string
	for _, m := range ls.Members {
		members = append(members, m.Name)
	}
	slices.Sort(members)
	if !slices.Equal(members, c.names) || len(ls.Learners) > 0 {
		return -1, fmt.Sprintf("leader %s has voters %v and learners %v", ls.Name, members, ls.Learners)
	}
	return leader, ""
}

// behind names the servers that have not applied up to target.
func behind(sts []*exraft.Status, target uint64) []string {
	var names []string
	for _, st := range sts {
		if st.AppliedIndex < target {
			names = append(names, st.Name)
		}
	}
	return names
}

// lastStatusErr is why server i did not answer the last status call.
func (c *cluster) lastStatusErr(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < len(c.statusErrs) {
		return c.statusErrs[i]
	}
	return nil
}
