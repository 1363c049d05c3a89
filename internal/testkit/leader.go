package testkit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// AwaitLeader waits for a server among candidates that reports itself
// leader and whose name is not in exclude (a leader just stopped, say).
func AwaitLeader(t testing.TB, candidates []*exraft.Server, exclude ...string) *exraft.Server {
	t.Helper()
	var leader *exraft.Server
	Eventually(t, WaitLong, func() bool {
		for _, s := range candidates {
			st := s.Status()
			if st.Role == exraft.Leader && !slices.Contains(exclude, st.Name) && ready(s) {
				leader = s
				return true
			}
		}
		return false
	}, "a leader among %v (excluding %v):%v", Names(candidates), exclude, Statuses(candidates))
	return leader
}

// LeaderVia asks s for the leader with AwaitLeader, as a user would, and
// returns that server among servers.
func LeaderVia(t testing.TB, s *exraft.Server, servers []*exraft.Server) *exraft.Server {
	t.Helper()
	p, err := s.AwaitLeader(Ctx(t, WaitLong))
	require.NoError(t, err, "%s.AwaitLeader", s.Name())
	for _, x := range servers {
		if x.Name() != p.Name {
			continue
		}
		require.Equal(t, x.Addr(), p.Addr, "AwaitLeader gave %v, but that server's address is %s", p, x.Addr())
		if st := x.Status(); st.Role != exraft.Leader {
			// Either leadership moved already, or the leader's own view
			// lags what its peers learned from it. The README walkthrough
			// asserts this strictly; elsewhere, wait for whoever leads.
			t.Logf("%s.AwaitLeader named %v, whose own Status says %v in term %d (leader %v)",
				s.Name(), p, st.Role, st.Term, st.Leader)
			return AwaitLeader(t, servers)
		}
		return x
	}
	require.FailNowf(t, "AwaitLeader named a stranger", "%s.AwaitLeader gave %v, not one of %v", s.Name(), p, Names(servers))
	return nil
}

// Leader returns a running server that reports itself leader, the one of
// the highest term if there are several (a deposed leader may not know
// yet), or nil.
func (c *Cluster) Leader() *exraft.Server {
	var best *exraft.Server
	var bestTerm uint64
	for _, s := range c.Live() {
		if st := s.Status(); st.Role == exraft.Leader && (best == nil || st.Term > bestTerm) {
			best, bestTerm = s, st.Term
		}
	}
	return best
}

// LeaderWithin waits up to d for a leader and returns nil, without failing
// the test, if none appears: a nemesis decides what that means.
func (c *Cluster) LeaderWithin(d time.Duration) *exraft.Server {
	var l *exraft.Server
	PollUntil(d, func() bool {
		l = c.Leader()
		return l != nil || c.isClosed()
	})
	return l
}

// AwaitSettled waits until servers agree and stay so, with the same leader
// and the same last index, for window, and returns the leader. Agreeing:
// one leader, every server follows it, every log committed and applied up
// to the same index, and no learner pending. The window gives the leader
// time to hear from every follower several times and so bind every
// bootstrap incarnation (docs/design.md §3), which appends configuration
// entries that the wait would see.
func AwaitSettled(t testing.TB, servers []*exraft.Server, window time.Duration) *exraft.Server {
	t.Helper()
	var since time.Time
	var lastIdx uint64
	var lastLeader, settled *exraft.Server
	Eventually(t, WaitLong, func() bool {
		leader, idx, ok := agreed(servers)
		switch {
		case !ok:
			since = time.Time{}
		case since.IsZero() || leader != lastLeader || idx != lastIdx:
			since, lastLeader, lastIdx = time.Now(), leader, idx
		case time.Since(since) >= window:
			settled = leader
			return true
		}
		return false
	}, "servers to settle (one leader, every log committed and applied alike for %v):%v", window, Statuses(servers))
	return settled
}

// agreed returns the leader and the common index when servers agree in the
// sense of AwaitSettled.
func agreed(servers []*exraft.Server) (*exraft.Server, uint64, bool) {
	var leader *exraft.Server
	sts := make([]exraft.Status, len(servers))
	for i, s := range servers {
		sts[i] = s.Status()
		if sts[i].Role == exraft.Leader {
			if leader != nil {
				return nil, 0, false
			}
			leader = s
		}
	}
	if leader == nil {
		return nil, 0, false
	}
	ls := leader.Status()
	for _, st := range sts {
		if st.Leader != leader.Peer() || st.LastIndex != ls.LastIndex || st.CommitIndex != ls.LastIndex || st.AppliedIndex != ls.LastIndex {
			return nil, 0, false
		}
	}
	if len(ls.Learners) != 0 {
		return nil, 0, false
	}
	return leader, ls.LastIndex, true
}

// ready reports whether leader s has committed an entry of its term, as its
// AwaitLeader waits for: a test that stops the leader it was handed would
// otherwise, now and then, stop one whose first configuration no follower
// holds yet, leaving the others a configuration that needs every voter.
func ready(s *exraft.Server) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	p, err := s.AwaitLeader(ctx)
	return err == nil && p.Name == s.Name()
}
