package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// nemesis runs the fault schedule: in each cycle every fault the network
// allows, in an order drawn from the seed, each with parameters drawn from
// it too, and the cluster made whole again between two faults. The seed
// replays the schedule (the timing of the processes still varies).
type nemesis struct {
	c     *cluster
	rng   *rand.Rand
	pace  pacing
	start time.Time

	restarted []int // servers restarted by the last fault
	stats     nemesisStats
}

// nemesisStats are the figures a round reports.
type nemesisStats struct {
	faults        map[string]int
	snapshotCatch int           // restarts caught up through InstallSnapshot
	slowestHeal   time.Duration // the longest wait for a healthy cluster after a fault
}

// healLimit bounds the wait for a healthy cluster after a fault is healed:
// an election and a catch-up take well under a second; the rest is for a
// busy 2-core machine.
const healLimit = 60 * time.Second

func newNemesis(c *cluster, seed uint64, pace pacing) *nemesis {
	return &nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), pace: pace, start: time.Now(),
		stats: nemesisStats{faults: map[string]int{}}}
}

// schedule is the faults that apply to this cluster, in the order of one
// cycle.
func (n *nemesis) schedule() []fault {
	var usable []fault
	for _, f := range faults {
		if !f.netns || n.c.net != nil {
			usable = append(usable, f)
		}
	}
	out := make([]fault, len(usable))
	for i, j := range n.rng.Perm(len(usable)) {
		out[i] = usable[j]
	}
	return out
}

// run runs cycles until it has run at least minCycles and until has
// passed; it stops early when ctx ends.
func (n *nemesis) run(ctx context.Context, minCycles int, until time.Time) error {
	for cycle := 0; ctx.Err() == nil && (cycle < minCycles || time.Now().Before(until)); cycle++ {
		for _, f := range n.schedule() {
			if ctx.Err() != nil {
				return nil
			}
			if err := n.one(ctx, f); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return nil
}

// one injects f, then waits for the cluster to be whole.
func (n *nemesis) one(ctx context.Context, f fault) error {
	began := time.Since(n.start)
	n.restarted = nil
	what, err := f.run(n, ctx)
	if err != nil {
		return err
	}
	n.stats.faults[f.name]++
	healed := time.Now()
	hctx, cancel := context.WithTimeout(ctx, healLimit)
	defer cancel()
	leader, err := n.c.awaitHealthy(hctx)
	if err != nil {
		return fmt.Errorf("after %s: %w", what, err)
	}
	wait := time.Since(healed)
	n.stats.slowestHeal = max(n.stats.slowestHeal, wait)
	n.c.logf("nemesis %6.1fs %-16s %s; whole again in %v, %s leads%s", began.Seconds(), f.name, what,
		wait.Round(time.Millisecond), n.c.names[leader], n.snapshotNote(ctx, leader))
	return nil
}

// snapshotNote says whether the servers the fault restarted were caught
// up through a snapshot: the leader had dropped the start of its log.
func (n *nemesis) snapshotNote(ctx context.Context, leader int) string {
	if len(n.restarted) == 0 {
		return ""
	}
	sts := n.c.statuses(ctx)
	note := ""
	for _, i := range n.restarted {
		if sts[leader] != nil && sts[i] != nil && sts[leader].FirstIndex > 1 && sts[i].SnapshotIndex > 0 {
			n.stats.snapshotCatch++
			note += fmt.Sprintf("; %s caught up through a snapshot (at %d; the leader's log starts at %d)", n.c.names[i], sts[i].SnapshotIndex, sts[leader].FirstIndex)
		}
	}
	return note
}
