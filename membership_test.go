package exraft_test

// End-to-end tests of membership and restarts (docs/design.md §6 membership,
// §2 incarnations, §4 what survives what) on real loopback TCP: a restarted
// server is a new incarnation that must not count until the leader
// re-admits it, the leader re-admits it on its own (or by AddServer when
// that is disabled), a removed leader hands over at once, a removed server
// stays quiet, and concurrent or hopeless AddServer calls queue and end
// cleanly.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// twoFollowers returns the two servers of a three-server list that do not
// lead.
func twoFollowers(t *testing.T, servers []*exraft.Server, leader *exraft.Server) (*exraft.Server, *exraft.Server) {
	t.Helper()
	fs := testkit.Others(servers, leader)
	require.Len(t, fs, 2, "want two followers besides %s, got %v", leader.Name(), testkit.Names(fs))
	return fs[0], fs[1]
}

// ---------------------------------------------------------------------------
// Restarts (docs/design.md §2, §4)

// TestLostCommitScenario: V is committed by A and B while C is cut off; then
// B restarts blank and A stops. B (blank) and C (without V) are two of three
// names, but B is a new incarnation: its vote must not count, so no leader
// may be elected, and above all none that serves a state without V.
func TestLostCommitScenario(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Net: testkit.NewNet()})
	servers := c.Servers()
	first := testkit.LeaderVia(t, servers[0], servers)
	testkit.MustWrite(t, first, "set warm 1")
	testkit.AwaitAllHave(t, servers, "warm", "1")
	// The first leader binds the incarnations of all three (and all three
	// hold that configuration) before anything else happens.
	leader := testkit.AwaitSettled(t, servers, 300*time.Millisecond)

	// Roles: A leads, C is cut off, B is the other one.
	a := leader
	b, cc := twoFollowers(t, servers, a)
	t.Logf("A=%s (leader) B=%s C=%s; before the cut:%v", a.Name(), b.Name(), cc.Name(), testkit.Statuses(servers))

	c.Net().Isolate(cc.Name())
	ab := []*exraft.Server{a, b}
	testkit.WriteAny(t, ab, "set v V")
	testkit.AwaitAllHave(t, ab, "v", "V")
	require.NotEqual(t, "V", testkit.Dirty(cc, "get v"), "scenario broken: the isolated %s applied v=V", cc.Name())
	t.Logf("V committed on A and B:%v", testkit.Statuses(servers))

	require.NoError(t, c.Restart(b.Name()))
	b2 := c.Server(b.Name())
	require.NoError(t, c.Stop(a.Name()))
	t.Logf("B restarted blank and A stopped; B's v = %q:%v", testkit.Dirty(b2, "get v"), testkit.Statuses{b2, cc})
	c.Net().Heal(cc.Name())

	// Observe for many election timeouts: no server may lead while serving a
	// state without V; the design expects no leader at all.
	const window = 3 * time.Second
	survivors := []*exraft.Server{b2, cc}
	leaders := map[string]int{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	startTerms := map[string]uint64{b2.Name(): b2.Status().Term, cc.Name(): cc.Status().Term}
	for end := time.Now().Add(window); time.Now().Before(end); <-tick.C {
		for _, s := range survivors {
			st := s.Status()
			if st.Role != exraft.Leader {
				continue
			}
			leaders[s.Name()]++
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err := s.Read(ctx, []byte("get v"))
			cancel()
			if err == nil {
				require.Equalf(t, "V", string(res), "LOST COMMIT: %s leads in term %d and its linearizable Read of v returns %q; V was committed:%v",
					s.Name(), st.Term, res, testkit.Statuses(survivors))
			}
			t.Logf("%s leads in term %d; Read(get v) = %q, %v", s.Name(), st.Term, res, err)
		}
		require.NotEqualf(t, "V", testkit.Dirty(cc, "get v"), "scenario broken: %s (which never got V) applied v=V:%v",
			cc.Name(), testkit.Statuses(survivors))
	}
	t.Logf("after %v: terms %v -> {%s:%d %s:%d}:%v", window, startTerms,
		b2.Name(), b2.Status().Term, cc.Name(), cc.Status().Term, testkit.Statuses(survivors))
	assert.Emptyf(t, leaders, "a leader was elected among the blank %s and %s (seen leading, in samples: %v); "+
		"docs/design.md §4: a cluster that lost a majority at once elects no leader",
		b2.Name(), cc.Name(), leaders)
}

// TestRestartedFollowerRejoinsAutomatically: a follower restarted blank with
// the same name and address is caught up and re-admitted by the leader on its
// own, and then counts as a voter.
func TestRestartedFollowerRejoinsAutomatically(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	servers := c.Servers()
	leader := testkit.LeaderVia(t, servers[0], servers)
	want := map[string]string{}
	for i := range 5 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		testkit.WriteAny(t, servers, "set "+k+" "+v)
		want[k] = v
	}
	leader = testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	f, g := twoFollowers(t, servers, leader)

	restartedAt := time.Now()
	before := leader.Status().LastIndex
	require.NoError(t, c.Restart(f.Name()))
	f2 := c.Server(f.Name())
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for k, v := range want {
			if testkit.Dirty(f2, "get "+k) != v {
				return false
			}
		}
		lst, fst := leader.Status(), f2.Status()
		// Members name servers, not incarnations, so they list its
		// old incarnation until the re-admission too; its two
		// configuration entries (the old one out and listed as a
		// learner, the new one in), the only entries written meanwhile,
		// tell it is done.
		return lst.Role == exraft.Leader && lst.LastIndex >= before+2 && lst.CommitIndex == lst.LastIndex &&
			slices.Contains(lst.Members, f2.Peer()) && len(lst.Learners) == 0 &&
			fst.Role == exraft.Follower && fst.Leader == leader.Peer()
	}, "the restarted %s to be caught up and re-admitted by %s with no call:%v",
		f2.Name(), leader.Name(), testkit.Statuses{leader, f2, g})
	t.Logf("%s re-admitted %v after its restart:%v", f2.Name(), time.Since(restartedAt).Round(time.Millisecond),
		testkit.Statuses{leader, f2, g})

	// With the other original follower gone, the leader and the restarted
	// server must still commit: the new incarnation counts.
	require.NoError(t, c.Stop(g.Name()))
	rest := []*exraft.Server{leader, f2}
	require.NoErrorf(t, testkit.CommitWithin(rest, "set after-restart yes", testkit.WaitShort),
		"with %s stopped, the leader and the restarted %s cannot commit within %v: "+
			"the new incarnation does not count as a voter:%v", g.Name(), f2.Name(), testkit.WaitShort, testkit.Statuses(rest))
	testkit.AwaitAllHave(t, rest, "after-restart", "yes")
	for k, v := range want {
		require.Equal(t, v, testkit.ReadAny(t, rest, "get "+k), "after the restart, %s", k)
	}
}

// TestAddServerSameNameAfterRestartByHand: with auto-rejoin disabled, a
// restarted follower is re-admitted by AddServer of its same Peer, and then
// counts as a voter: with the other original follower stopped, the leader and
// the restarted server still commit.
//
// "right after the restart" calls AddServer as soon as the server is up, as a
// user restarting a process would; "once caught up" first waits until the
// leader replicates to the new incarnation (it does so even without
// auto-rejoin, without counting it).
func TestAddServerSameNameAfterRestartByHand(t *testing.T) {
	for _, waitCaughtUp := range []bool{false, true} {
		name := "right after the restart"
		if waitCaughtUp {
			name = "once caught up"
		}
		t.Run(name, func(t *testing.T) { addServerByHand(t, waitCaughtUp) })
	}
}

func addServerByHand(t *testing.T, waitCaughtUp bool) {
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) { cfg.DisableAutoRejoin = true }})
	servers := c.Servers()
	leader := testkit.LeaderVia(t, servers[0], servers)
	for i := range 3 {
		testkit.WriteAny(t, servers, fmt.Sprintf("set k%d v%d", i, i))
	}
	leader = testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	f, g := twoFollowers(t, servers, leader)

	require.NoError(t, c.Restart(f.Name()))
	f2 := c.Server(f.Name())
	if waitCaughtUp {
		testkit.Eventually(t, testkit.WaitLong, func() bool { return testkit.Dirty(f2, "get k2") == "v2" },
			"the leader to replicate to the restarted %s:%v", f2.Name(), testkit.Statuses{leader, f2})
		assert.Empty(t, leader.Status().Learners, "with DisableAutoRejoin the leader lists Learners on its own")
	}
	before := leader.Status()
	began := time.Now()
	require.NoErrorf(t, leader.AddServer(testkit.Ctx(t, testkit.WaitLong), f2.Peer()),
		"AddServer(%v) of the restarted server:%v", f2.Peer(), testkit.Statuses{leader, f2, g})
	after := leader.Status()
	t.Logf("AddServer(%v) returned nil after %v; leader before: term=%d last=%d commit=%d, after: term=%d last=%d commit=%d",
		f2.Peer(), time.Since(began).Round(time.Millisecond), before.Term, before.LastIndex, before.CommitIndex,
		after.Term, after.LastIndex, after.CommitIndex)
	assert.NotEqualf(t, before.LastIndex, after.LastIndex, "AddServer of the restarted %s returned nil without appending a configuration entry "+
		"(leader's last index still %d): the new incarnation was not re-admitted:%v",
		f2.Name(), after.LastIndex, testkit.Statuses{leader, f2, g})
	if after.Role == exraft.Leader && after.Term == before.Term {
		assert.GreaterOrEqualf(t, after.CommitIndex, after.LastIndex, "AddServer returned before its configuration entry committed (leader commit %d < last %d, "+
			"nothing else was proposed); docs/design.md §6: AddServer returns when the configuration commits:%v",
			after.CommitIndex, after.LastIndex, testkit.Statuses{leader, f2, g})
	}
	require.Contains(t, after.Members, f2.Peer(), "leader's Members lack the restarted server")
	for i := range 3 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		testkit.Eventually(t, testkit.WaitLong, func() bool { return testkit.Dirty(f2, "get "+k) == v },
			"restarted %s to hold %s=%s:%v", f2.Name(), k, v, testkit.Statuses{leader, f2})
	}

	require.NoError(t, c.Stop(g.Name()))
	rest := []*exraft.Server{leader, f2}
	require.NoErrorf(t, testkit.CommitWithin(rest, "set after-add yes", testkit.WaitShort),
		"with %s stopped, the leader and the re-added %s cannot commit within %v: "+
			"the new incarnation does not count as a voter:%v", g.Name(), f2.Name(), testkit.WaitShort, testkit.Statuses(rest))
	testkit.AwaitAllHave(t, rest, "after-add", "yes")
}

// ---------------------------------------------------------------------------
// RemoveServer

// TestRemoveLeaderHandsOver: a leader that removes itself hands over at once
// (TimeoutNow), not after the followers' election timeout. The election
// timeouts are long here so that the two are far apart.
func TestRemoveLeaderHandsOver(t *testing.T) {
	const electMin, electMax = 3 * time.Second, 4 * time.Second
	const handoverBound = 2 * time.Second // below electMin: failure detection cannot be that fast
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = electMin, electMax
	}})
	servers := c.Servers()
	testkit.LeaderVia(t, servers[0], servers)
	testkit.WriteAny(t, servers, "set a 1")
	old := testkit.AwaitSettled(t, servers, 500*time.Millisecond)
	rest := testkit.Others(servers, old)

	called := time.Now()
	require.NoErrorf(t, old.RemoveServer(testkit.Ctx(t, testkit.WaitLong), old.Name()),
		"%s.RemoveServer(itself):%v", old.Name(), testkit.Statuses(servers))
	returned := time.Now()
	var next *exraft.Server
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for _, s := range rest {
			if s.Status().Role == exraft.Leader {
				next = s
				return true
			}
		}
		return false
	}, "a new leader among %v:%v", testkit.Names(rest), testkit.Statuses(servers))
	elected := time.Now()
	t.Logf("RemoveServer took %v; new leader %s %v after it returned (%v after the call); ElectionTimeoutMin %v",
		returned.Sub(called).Round(time.Millisecond), next.Name(), elected.Sub(returned).Round(time.Millisecond),
		elected.Sub(called).Round(time.Millisecond), electMin)
	assert.Lessf(t, elected.Sub(returned), handoverBound, "the new leader appeared %v after the removal committed, not below %v: "+
		"the handover waited for failure detection instead of TimeoutNow", elected.Sub(returned), handoverBound)

	// The remaining servers' terms are stable, and the removed one never
	// leads again.
	terms := map[string]uint64{}
	for _, s := range rest {
		terms[s.Name()] = s.Status().Term
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(time.Second); time.Now().Before(end); <-tick.C {
		for _, s := range rest {
			require.Equalf(t, terms[s.Name()], s.Status().Term, "%s's term moved after the handover:%v", s.Name(), testkit.Statuses(servers))
		}
		require.NotEqualf(t, exraft.Leader, old.Status().Role, "the removed %s leads again:%v", old.Name(), testkit.Statuses(servers))
	}
	require.Equal(t, "1", testkit.MustWrite(t, next, "set a 2"), "write on the new leader: want the previous value")
	require.Equal(t, "2", testkit.MustRead(t, next, "get a"), "after the handover")
	require.Equal(t, testkit.Names(rest), testkit.MemberNames(next.Status().Members), "new leader's Members")
	require.NotEqualf(t, exraft.Leader, old.Status().Role, "the removed %s leads again:%v", old.Name(), testkit.Statuses(servers))
}

// TestRemovedServerStaysQuiet: a removed follower that keeps running does not
// disturb the cluster: no term moves, it never leads, writes commit.
func TestRemovedServerStaysQuiet(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	servers := c.Servers()
	testkit.LeaderVia(t, servers[0], servers)
	testkit.WriteAny(t, servers, "set a 0")
	leader := testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	x, y := twoFollowers(t, servers, leader)

	require.NoErrorf(t, leader.RemoveServer(testkit.Ctx(t, testkit.WaitLong), x.Name()), "RemoveServer(%s):%v", x.Name(), testkit.Statuses(servers))
	rest := []*exraft.Server{leader, y}
	require.Equal(t, testkit.MemberNames(testkit.PeersOf(rest)), testkit.MemberNames(leader.Status().Members),
		"leader's Members after removing %s", x.Name())
	terms := map[string]uint64{}
	for _, s := range rest {
		terms[s.Name()] = s.Status().Term
	}
	const window = 2 * time.Second
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	writes := 0
	lastWrite := time.Time{}
	for end := time.Now().Add(window); time.Now().Before(end); <-tick.C {
		for _, s := range rest {
			require.Equalf(t, terms[s.Name()], s.Status().Term, "%s's term moved with the removed %s running:%v",
				s.Name(), x.Name(), testkit.Statuses(servers))
		}
		require.NotEqualf(t, exraft.Leader, x.Status().Role, "the removed %s became leader:%v", x.Name(), testkit.Statuses(servers))
		if time.Since(lastWrite) >= 100*time.Millisecond {
			lastWrite = time.Now()
			writes++
			testkit.MustWrite(t, leader, fmt.Sprintf("set a %d", writes))
		}
	}
	require.Equal(t, fmt.Sprint(writes), testkit.MustRead(t, leader, "get a"))
	testkit.AwaitAllHave(t, rest, "a", fmt.Sprint(writes))
	t.Logf("%d writes committed over %v; terms %v; removed server:%v", writes, window, terms, testkit.Statuses{x})
}

// ---------------------------------------------------------------------------
// AddServer

// TestConcurrentAddServers: three AddServer calls at once queue behind each
// other and all succeed.
func TestConcurrentAddServers(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	servers := c.Servers()
	leader := testkit.LeaderVia(t, servers[0], servers)
	testkit.WriteAny(t, servers, "set base 1")
	leader = testkit.AwaitSettled(t, servers, 300*time.Millisecond)

	var added []*exraft.Server
	for i := 4; i <= 6; i++ {
		s, _ := testkit.StartAlone(t, fmt.Sprintf("raft%d", i), nil)
		added = append(added, s)
	}
	errs := make([]error, len(added))
	took := make([]time.Duration, len(added))
	var wg sync.WaitGroup
	began := time.Now()
	for i, s := range added {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = leader.AddServer(testkit.Ctx(t, testkit.WaitLong), s.Peer())
			took[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	t.Logf("three concurrent AddServer calls done in %v (each: %v)", time.Since(began).Round(time.Millisecond), took)
	all := append(append([]*exraft.Server(nil), servers...), added...)
	for i, err := range errs {
		assert.NoError(t, err, "AddServer(%v)", added[i].Peer())
	}
	if t.Failed() {
		t.FailNow()
	}
	wantMembers := testkit.MemberNames(testkit.PeersOf(all))
	require.Equalf(t, wantMembers, testkit.MemberNames(leader.Status().Members), "leader's Members:%v", testkit.Statuses(all))
	for _, s := range all {
		require.Contains(t, leader.Status().Members, s.Peer(), "leader's Members")
	}
	testkit.WriteAny(t, all, "set after-add 6")
	testkit.AwaitAllHave(t, all, "after-add", "6")
	testkit.AwaitAllHave(t, all, "base", "1")
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for _, s := range all {
			if !slices.Equal(testkit.MemberNames(s.Status().Members), wantMembers) {
				return false
			}
		}
		return true
	}, "every server to see six members:%v", testkit.Statuses(all))
}

// TestAddUnreachableServerEndsWithCtx: AddServer of a server that never
// answers ends with its ctx, leaves the configuration as it was, and frees the
// queue for the next change.
func TestAddUnreachableServerEndsWithCtx(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	servers := c.Servers()
	testkit.LeaderVia(t, servers[0], servers)
	testkit.WriteAny(t, servers, "set a 1")
	leader := testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	members := testkit.MemberNames(leader.Status().Members)

	ghost := exraft.Peer{Name: "ghost", Addr: testkit.DeadAddr(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	err := leader.AddServer(ctx, ghost)
	took := time.Since(began)
	t.Logf("AddServer(%v) returned %v after %v", ghost, err, took.Round(time.Millisecond))
	require.ErrorIsf(t, err, context.DeadlineExceeded, "AddServer of an unreachable server:%v", testkit.Statuses{leader})
	assert.LessOrEqual(t, took, 1*time.Second+testkit.WaitShort/2, "AddServer with a 1s ctx took too long")
	require.Equal(t, members, testkit.MemberNames(leader.Status().Members), "Members after the failed AddServer")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the failed AddServer:%v", testkit.Statuses{leader})

	joiner, _ := testkit.StartAlone(t, "raft4", nil)
	require.NoErrorf(t, leader.AddServer(testkit.Ctx(t, testkit.WaitLong), joiner.Peer()),
		"AddServer(%v) after the failed one:%v", joiner.Peer(), testkit.Statuses{leader, joiner})
	st := leader.Status()
	require.Truef(t, slices.Contains(st.Members, joiner.Peer()) && !testkit.HasName(st.Members, ghost.Name) && len(st.Members) == 4,
		"leader's Members = %v, want the three and %v", st.Members, joiner.Peer())
	all := append(append([]*exraft.Server(nil), servers...), joiner)
	testkit.WriteAny(t, all, "set b 2")
	testkit.AwaitAllHave(t, all, "b", "2")
}

// TestLearnersInStatus: a server being caught up shows in the leader's
// Status().Learners while AddServer is pending, and leaves it when the call is
// cancelled.
func TestLearnersInStatus(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{})
	servers := c.Servers()
	testkit.LeaderVia(t, servers[0], servers)
	testkit.WriteAny(t, servers, "set a 1")
	leader := testkit.AwaitSettled(t, servers, 300*time.Millisecond)
	members := testkit.MemberNames(leader.Status().Members)
	require.Empty(t, leader.Status().Learners, "leader's Learners before any AddServer")

	ghost := exraft.Peer{Name: "ghost", Addr: testkit.DeadAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- leader.AddServer(ctx, ghost) }()

	testkit.Eventually(t, testkit.WaitShort, func() bool { return slices.Contains(leader.Status().Learners, ghost) },
		"the leader's Learners to list %v while AddServer is pending:%v", ghost, testkit.Statuses{leader})
	select {
	case err := <-done:
		require.FailNowf(t, "AddServer returned early", "AddServer of an unreachable server returned %v before its ctx ended", err)
	default:
	}
	st := leader.Status()
	require.Falsef(t, testkit.HasName(st.Members, ghost.Name), "the learner %v is already in Members %v", ghost, st.Members)
	for _, f := range testkit.Others(servers, leader) {
		assert.Empty(t, f.Status().Learners, "follower %s reports Learners; only the leader reports them", f.Name())
	}
	t.Logf("while pending:%v", testkit.Statuses{leader})

	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled, "cancelled AddServer")
	case <-time.After(testkit.WaitShort):
		require.FailNowf(t, "AddServer did not return", "not within %v of its ctx being cancelled", testkit.WaitShort)
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the cancel:%v", testkit.Statuses{leader})
	require.Equal(t, members, testkit.MemberNames(leader.Status().Members), "Members after the cancelled AddServer")
	testkit.WriteAny(t, servers, "set a 2")
}
