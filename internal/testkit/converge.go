package testkit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// MaxCommit is the highest commit index among the running servers: what a
// server started again must catch up past before its rejoin can be judged.
func (c *Cluster) MaxCommit() uint64 {
	var m uint64
	for _, s := range c.Live() {
		m = max(m, s.Status().CommitIndex)
	}
	return m
}

// caughtUp returns nil when every server runs and is a voter of the
// leader's configuration, nothing is being caught up or left uncommitted,
// and every server follows the leader and has applied all that it
// committed; otherwise it says what is missing.
func (c *Cluster) caughtUp() error {
	l := c.Leader()
	if l == nil {
		return errors.New("no leader")
	}
	ls := l.Status()
	if len(ls.Learners) > 0 {
		return fmt.Errorf("leader %s is catching up %v", ls.Name, ls.Learners)
	}
	want := slices.Sorted(slices.Values(c.order))
	if got := MemberNames(ls.Members); !slices.Equal(got, want) {
		return fmt.Errorf("leader %s has members %v, want %v", ls.Name, got, want)
	}
	if ls.LastIndex != ls.CommitIndex {
		return fmt.Errorf("leader %s: last index %d, commit index %d", ls.Name, ls.LastIndex, ls.CommitIndex)
	}
	live := c.Live()
	if len(live) != len(c.order) {
		return fmt.Errorf("only %v run", Names(live))
	}
	for _, s := range live {
		st := s.Status()
		if st.Term != ls.Term || st.Leader.Name != ls.Name || st.CommitIndex != ls.CommitIndex || st.AppliedIndex != ls.CommitIndex {
			return fmt.Errorf("%s: term %d leader %q commit %d applied %d; leader %s: term %d commit %d",
				st.Name, st.Term, st.Leader.Name, st.CommitIndex, st.AppliedIndex, ls.Name, ls.Term, ls.CommitIndex)
		}
	}
	return nil
}

// awaitCaughtUp waits until caughtUp holds.
func (c *Cluster) awaitCaughtUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	var why error
	Eventually(t, timeout, func() bool {
		why = c.caughtUp()
		return why == nil
	}, "the cluster to catch up (last: %v)", LastErr(&why))
}

// WarmUp waits until a first leader has bound every server's incarnation
// (docs/design.md §3): two writes, each replicated to everyone. A fault
// injected before that could leave a cluster that can never elect again,
// which is the design, not what a fault test looks for.
func (c *Cluster) WarmUp(t testing.TB) {
	t.Helper()
	for i := range 2 {
		WriteAny(t, c.Live(), fmt.Sprintf("set settle %d", i))
		c.awaitCaughtUp(t, WaitLong)
	}
}

// AwaitConverged heals the network, commits one more write (tagged with
// tag), waits until every server has applied everything, and checks that
// all of them hold the same state, applied the same commands in the same
// order, and were never called concurrently. It returns the leader and that
// common history.
func (c *Cluster) AwaitConverged(t testing.TB, tag string) (*exraft.Server, []string) {
	t.Helper()
	if c.opts.Net != nil {
		c.opts.Net.HealAll()
	}
	for _, name := range c.order {
		require.Falsef(t, c.IsDown(name), "AwaitConverged: %s is down", name)
	}
	WriteAny(t, c.Live(), "set converged "+tag)
	c.awaitCaughtUp(t, WaitLong)
	live := c.Live()
	ref := live[0]
	dump := Dirty(ref, "dump")
	hist := c.KV(ref.Name()).History()
	for _, s := range live[1:] {
		h := c.KV(s.Name()).History()
		require.Truef(t, slices.Equal(h, hist), "after convergence %s and %s applied different commands: %s\nstatus:%s",
			ref.Name(), s.Name(), historyDiff(hist, h), c.Describe())
		require.Equalf(t, dump, Dirty(s, "dump"), "after convergence ReadDirty(dump) differs between %s and %s\nstatus:%s",
			ref.Name(), s.Name(), c.Describe())
	}
	for _, s := range live {
		require.Falsef(t, c.KV(s.Name()).overlapped(), "%s: the state machine was called concurrently", s.Name())
	}
	l := c.Leader()
	require.NotNil(t, l, "no leader after convergence")
	return l, hist
}

// AwaitSameLog waits until every server of servers applied the same
// commands in the same order, and checks that none was called concurrently.
func (c *Cluster) AwaitSameLog(t testing.TB, servers []*exraft.Server) {
	t.Helper()
	Eventually(t, WaitLong, func() bool {
		first := c.KV(servers[0].Name()).History()
		for _, s := range servers[1:] {
			if !slices.Equal(first, c.KV(s.Name()).History()) {
				return false
			}
		}
		return true
	}, "servers %v to apply the same log", Names(servers))
	for _, s := range servers {
		require.Falsef(t, c.KV(s.Name()).overlapped(), "%s: the state machine was called from two goroutines at once", s.Name())
	}
}

// historyDiff says where two applied histories first differ: the whole
// histories are too long for a failure message.
func historyDiff(a, b []string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	at := func(h []string) string {
		if i < len(h) {
			return strconv.Quote(h[i])
		}
		return "<end>"
	}
	return fmt.Sprintf("lengths %d and %d, first difference at %d: %s vs %s", len(a), len(b), i, at(a), at(b))
}
