package chaos

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/exraft/exraft"
)

// fault is one kind of trouble. run injects it, holds it for a while and
// heals it; it returns what it did. The nemesis then waits for the cluster
// to be whole before the next one.
type fault struct {
	name  string
	netns bool // needs namespaces
	run   func(n *nemesis, ctx context.Context) (string, error)
}

var faults = []fault{
	{name: "kill-leader", run: func(n *nemesis, ctx context.Context) (string, error) { return n.kill(ctx, true) }},
	{name: "kill-follower", run: func(n *nemesis, ctx context.Context) (string, error) { return n.kill(ctx, false) }},
	{name: "pause-leader", run: func(n *nemesis, ctx context.Context) (string, error) { return n.pause(ctx, true) }},
	{name: "pause-follower", run: func(n *nemesis, ctx context.Context) (string, error) { return n.pause(ctx, false) }},
	{name: "partition-leader", netns: true, run: func(n *nemesis, ctx context.Context) (string, error) { return n.partition(ctx, isolateLeader) }},
	{name: "partition-halves", netns: true, run: func(n *nemesis, ctx context.Context) (string, error) { return n.partition(ctx, majorityMinority) }},
	{name: "partition-bridge", netns: true, run: func(n *nemesis, ctx context.Context) (string, error) { return n.partition(ctx, bridge) }},
	{name: "latency", run: (*nemesis).latency},
	{name: "reset-peer", run: (*nemesis).resetPeer},
	{name: "slicer", run: (*nemesis).slicer},
	{name: "churn", run: (*nemesis).churn},
	{name: "transfer-storm", run: (*nemesis).transferStorm},
	{name: "election-storm", run: (*nemesis).electionStorm},
}

// pick returns a server: the leader, or one that does not lead.
func (n *nemesis) pick(ctx context.Context, leader bool) int {
	l := n.c.currentLeader(ctx)
	if leader && l >= 0 {
		return l
	}
	for {
		if i := n.rng.IntN(len(n.c.names)); i != l {
			return i
		}
	}
}

func role(leader bool) string {
	if leader {
		return "leader"
	}
	return "follower"
}

// kill SIGKILLs a server and starts it again blank, with the same flags.
func (n *nemesis) kill(ctx context.Context, leader bool) (string, error) {
	i := n.pick(ctx, leader)
	p := n.c.procs[i]
	p.kill()
	down := between(n.rng, 200*time.Millisecond, n.pace.holdMax)
	sleepCtx(ctx, down)
	if err := p.start(30 * time.Second); err != nil {
		return "", err
	}
	n.restarted = append(n.restarted, i)
	return fmt.Sprintf("SIGKILL %s (%s), restarted blank after %v", n.c.names[i], role(leader), down.Round(time.Millisecond)), nil
}

// pause freezes a server with SIGSTOP for longer than an election timeout.
func (n *nemesis) pause(ctx context.Context, leader bool) (string, error) {
	i := n.pick(ctx, leader)
	d := n.pace.freeze(n.rng)
	if err := n.c.procs[i].signal(syscall.SIGSTOP); err != nil {
		return "", err
	}
	sleepCtx(ctx, d)
	if err := n.c.procs[i].signal(syscall.SIGCONT); err != nil {
		return "", err
	}
	return fmt.Sprintf("SIGSTOP %s (%s) for %v", n.c.names[i], role(leader), d.Round(time.Millisecond)), nil
}

// latency delays every message, to and from every server, with jitter.
func (n *nemesis) latency(ctx context.Context) (string, error) {
	ms, jitter := 10+n.rng.IntN(60), 5+n.rng.IntN(40)
	attrs := fmt.Sprintf(`{"latency":%d,"jitter":%d}`, ms, jitter)
	return n.withToxics(ctx, fmt.Sprintf("latency %dms ± %dms on every link", ms, jitter), func(i int) error {
		if err := n.c.px.toxic(i, "latency", "upstream", attrs); err != nil {
			return err
		}
		return n.c.px.toxic(i, "latency", "downstream", attrs)
	}, -1)
}

// resetPeer resets every connection to one server, soon after it opens.
func (n *nemesis) resetPeer(ctx context.Context) (string, error) {
	i := n.rng.IntN(len(n.c.names))
	after := n.rng.IntN(300)
	return n.withToxics(ctx, fmt.Sprintf("reset every connection to %s after %dms", n.c.names[i], after), func(j int) error {
		return n.c.px.toxic(j, "reset_peer", "upstream", fmt.Sprintf(`{"timeout":%d}`, after))
	}, i)
}

// slicer cuts every write into small pieces, sent apart.
func (n *nemesis) slicer(ctx context.Context) (string, error) {
	size := 8 + n.rng.IntN(64)
	attrs := fmt.Sprintf(`{"average_size":%d,"size_variation":%d,"delay":%d}`, size, size/2, 50+n.rng.IntN(500))
	return n.withToxics(ctx, fmt.Sprintf("writes sliced to ~%d bytes on every link", size), func(i int) error {
		if err := n.c.px.toxic(i, "slicer", "upstream", attrs); err != nil {
			return err
		}
		return n.c.px.toxic(i, "slicer", "downstream", attrs)
	}, -1)
}

// withToxics adds toxics to proxy only (or every proxy, for -1), holds,
// and removes them.
func (n *nemesis) withToxics(ctx context.Context, what string, add func(i int) error, only int) (string, error) {
	defer n.c.px.clearToxics()
	for i := range n.c.names {
		if only < 0 || i == only {
			if err := add(i); err != nil {
				return "", err
			}
		}
	}
	d := n.pace.hold(n.rng)
	sleepCtx(ctx, d)
	return fmt.Sprintf("%s for %v", what, d.Round(time.Millisecond)), nil
}

// churn removes a member (the leader, sometimes) and adds it back: the
// same running process, caught up again as a learner first.
func (n *nemesis) churn(ctx context.Context) (string, error) {
	i := n.rng.IntN(len(n.c.names))
	wasLeader := i == n.c.currentLeader(ctx)
	name := n.c.names[i]
	if err := n.c.onLeader(ctx, func(ctx context.Context, addr string) error {
		return n.call(ctx, func(ctx context.Context) error { return n.c.ctl.RemoveServer(ctx, addr, name) })
	}); err != nil {
		return "", fmt.Errorf("RemoveServer(%s): %w", name, err)
	}
	sleepCtx(ctx, n.pace.hold(n.rng)/2)
	peer := exraft.Peer{Name: name, Addr: n.c.addrs[i]}
	if err := n.c.onLeader(ctx, func(ctx context.Context, addr string) error {
		return n.call(ctx, func(ctx context.Context) error { return n.c.ctl.AddServer(ctx, addr, peer) })
	}); err != nil {
		return "", fmt.Errorf("AddServer(%s): %w", name, err)
	}
	return fmt.Sprintf("RemoveServer %s (leader: %v), then AddServer %s", name, wasLeader, name), nil
}

// transferStorm moves the leadership around several times in a row.
func (n *nemesis) transferStorm(ctx context.Context) (string, error) {
	moves, ok := 2+n.rng.IntN(4), 0
	for range moves {
		to := n.c.names[n.rng.IntN(len(n.c.names))]
		if err := n.c.onLeader(ctx, func(ctx context.Context, addr string) error {
			return n.call(ctx, func(ctx context.Context) error { return n.c.ctl.TransferLeadership(ctx, addr, to) })
		}); err == nil {
			ok++
		}
	}
	return fmt.Sprintf("TransferLeadership %d times (%d returned nil)", moves, ok), nil
}

// electionStorm asks random servers to take over, in quick succession.
func (n *nemesis) electionStorm(ctx context.Context) (string, error) {
	calls := 3 + n.rng.IntN(5)
	for range calls {
		i := n.rng.IntN(len(n.c.names))
		_ = n.call(ctx, func(ctx context.Context) error { return n.c.ctl.TriggerElection(ctx, n.c.listen[i]) })
		sleepCtx(ctx, between(n.rng, 20*time.Millisecond, 300*time.Millisecond))
	}
	return fmt.Sprintf("TriggerElection %d times on random servers", calls), nil
}

// call bounds one control call.
func (n *nemesis) call(ctx context.Context, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return fn(cctx)
}
