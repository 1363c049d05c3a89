package exraft_test

// The classic Raft scenarios on real servers over loopback TCP: Figure 8 of
// the paper, backing up over long conflicting logs, a deposed leader coming
// back, no agreement without a majority, membership churn under load, and
// liveness when the network is only partly connected. The network that
// injects the faults and the cluster are testkit's.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// ackedWrites records the writes that returned success, as key -> value:
// what must survive whatever the scenario did.
type ackedWrites struct {
	mu sync.Mutex
	m  map[string]string
}

func newAckedWrites() *ackedWrites { return &ackedWrites{m: map[string]string{}} }

func (a *ackedWrites) add(k, v string) {
	a.mu.Lock()
	a.m[k] = v
	a.mu.Unlock()
}

func (a *ackedWrites) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

// requirePresent checks that every acknowledged write is in the state of
// every server (ReadDirty) and in a linearizable Read on the leader.
func requirePresent(t *testing.T, c *testkit.Cluster, leader *exraft.Server, acked map[string]string) {
	t.Helper()
	for _, s := range c.Live() {
		got := testkit.ParseDump(testkit.Dirty(s, "dump"))
		for k, v := range acked {
			require.Equalf(t, v, got[k], "%s: acknowledged write %s=%s lost (ReadDirty has %q)", s.Name(), k, v, got[k])
		}
	}
	got := testkit.ParseDump(testkit.MustRead(t, leader, "dump"))
	for k, v := range acked {
		require.Equalf(t, v, got[k], "Read on leader %s: acknowledged write %s=%s lost (has %q)", leader.Name(), k, v, got[k])
	}
}

// requireAbsent checks that no server applied a command of the given keys.
func requireAbsent(t *testing.T, c *testkit.Cluster, keys []string, why string) {
	t.Helper()
	for _, s := range c.Live() {
		got := testkit.ParseDump(testkit.Dirty(s, "dump"))
		for _, k := range keys {
			v, ok := got[k]
			require.Falsef(t, ok, "%s applied %s=%s, which %s", s.Name(), k, v, why)
		}
	}
}

// spray sends n writes "set <prefix>-<i> v" to s at once, each bounded by
// d, waits for all of them and returns the keys of those that succeeded
// and all the keys sent.
func spray(s *exraft.Server, prefix string, n int, d time.Duration) (ok, sent []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		k := fmt.Sprintf("%s-%d", prefix, i)
		sent = append(sent, k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			if _, err := s.Write(ctx, []byte("set "+k+" v")); err == nil {
				mu.Lock()
				ok = append(ok, k)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, sent
}

// writeN commits n writes "set <prefix>-<i> v<i>" one after the other
// through the leader among servers and records them.
func writeN(t *testing.T, servers []*exraft.Server, prefix string, n int, acked *ackedWrites) {
	t.Helper()
	for i := range n {
		k, v := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("v%d", i)
		testkit.WriteAny(t, servers, "set "+k+" "+v)
		acked.add(k, v)
	}
}

// ---------------------------------------------------------------------------
// Figure 8

func TestFigure8(t *testing.T) { runFigure8(t, false) }

// TestFigure8Unreliable is Figure 8 on a network that delays writes a little
// and now and then closes a connection.
func TestFigure8Unreliable(t *testing.T) { runFigure8(t, true) }

// runFigure8 follows the paper's Figure 8 (and the lab's test of it): write
// on the leader, then take it down quickly, so that entries of old terms
// are left on minorities, and bring others back; a leader may only commit
// them by committing an entry of its own term. At the end every write that
// returned success must be on every server.
func runFigure8(t *testing.T, unreliable bool) {
	const n, iterations = 5, 20
	seed := testkit.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	c := testkit.StartCluster(t, n, testkit.Options{Net: testkit.NewNet()})
	cn := c.Net()
	c.WarmUp(t)
	log := testkit.NewSchedule(t)
	if unreliable {
		cn.MakeFlaky(200, 5, 5*time.Millisecond)
	}
	acked := newAckedWrites()
	isolated := map[string]bool{}
	var pending *testkit.RejoinWatch // a server started again, not yet re-admitted
	healthy := func(name string) bool {
		if isolated[name] || c.IsDown(name) {
			return false
		}
		return pending == nil || pending.Name != name || pending.Done()
	}
	healthyLeader := func() *exraft.Server {
		var best *exraft.Server
		var term uint64
		for _, name := range c.Names() {
			if !healthy(name) {
				continue
			}
			s := c.Server(name)
			if st := s.Status(); st.Role == exraft.Leader && (best == nil || st.Term > term) {
				best, term = s, st.Term
			}
		}
		return best
	}

	// The network is recomputed from the isolated set: the others form one
	// group, each isolated server is alone.
	applyIsolation := func() {
		var group []string
		for _, name := range c.Names() {
			if !isolated[name] {
				group = append(group, name)
			}
		}
		cn.Partition(group)
	}

	var wg sync.WaitGroup
	leaders := 0
	for i := range iterations {
		if pending != nil && pending.Done() {
			require.NoError(t, pending.Wait(), "re-admitting %s", pending.Name)
			log.Note("%s re-admitted (on its own: %v)", pending.Name, pending.Auto)
			pending = nil
		}
		var l *exraft.Server
		testkit.PollUntil(2*time.Second, func() bool { l = healthyLeader(); return l != nil })
		if l != nil {
			leaders++
			for j := range 1 + rng.IntN(3) {
				k, v := fmt.Sprintf("f8-%d-%d", i, j), fmt.Sprintf("t%d", l.Status().Term)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					if _, err := l.Write(ctx, []byte("set "+k+" "+v)); err == nil {
						acked.add(k, v)
					}
				}()
			}
			log.Note("iteration %d: writes on leader %s (term %d)", i, l.Name(), l.Status().Term)
		} else {
			log.Note("iteration %d: no leader among the healthy servers: %s", i, c.Describe())
		}
		// Let the entries travel a little (usually very little), then take
		// the leader down.
		if rng.IntN(1000) < 100 {
			time.Sleep(time.Duration(rng.IntN(int(testkit.ElectMax/time.Millisecond)/2)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(13)) * time.Millisecond)
		}
		if l != nil {
			anyDown := false
			for _, name := range c.Names() {
				anyDown = anyDown || c.IsDown(name)
			}
			if pending == nil && !anyDown && rng.IntN(100) < 30 {
				require.NoError(t, c.Stop(l.Name()))
				log.Note("stop leader %s", l.Name())
			} else {
				isolated[l.Name()] = true
				applyIsolation()
				log.Note("isolate leader %s", l.Name())
			}
		}
		// Keep a majority of healthy servers: bring a random one back.
		up := 0
		var out []string
		for _, name := range c.Names() {
			if healthy(name) {
				up++
			} else if isolated[name] || c.IsDown(name) {
				out = append(out, name)
			}
		}
		if up < n/2+1 && len(out) > 0 {
			name := out[rng.IntN(len(out))]
			if c.IsDown(name) {
				commit := c.MaxCommit()
				require.NoError(t, c.Start(name))
				pending = c.WatchRejoin(name, commit, 3*time.Second)
				log.Note("start %s again (blank)", name)
			} else {
				delete(isolated, name)
				applyIsolation()
				log.Note("heal %s", name)
			}
		}
	}
	wg.Wait()
	require.GreaterOrEqualf(t, leaders, iterations/2, "a leader was found in only %d of %d iterations", leaders, iterations)

	cn.MakeReliable()
	cn.HealAll()
	if pending != nil {
		require.NoError(t, pending.Wait(), "re-admitting %s", pending.Name)
	}
	for _, name := range c.Names() {
		if c.IsDown(name) {
			require.NoError(t, c.Start(name))
			log.Note("start %s again (blank)", name)
		}
	}
	leader, _ := c.AwaitConverged(t, "figure8")
	got := acked.snapshot()
	require.NotEmpty(t, got, "no write succeeded")
	t.Logf("%d writes acknowledged over %d iterations with a leader", len(got), leaders)
	requirePresent(t, c, leader, got)
}

// ---------------------------------------------------------------------------
// Backing up over long conflicting logs (the lab's TestBackup2B)

func TestBackupOverLongConflictingLogs(t *testing.T) {
	const n = 5
	c := testkit.StartCluster(t, n, testkit.Options{Net: testkit.NewNet()})
	cn := c.Net()
	c.WarmUp(t)
	log := testkit.NewSchedule(t)
	acked := newAckedWrites()

	l1 := testkit.AwaitLeader(t, c.Live())
	names := c.Names()
	at := 0
	for i, name := range names {
		if name == l1.Name() {
			at = i
		}
	}
	ring := func(k int) string { return names[(at+k)%n] }

	// The leader and one follower in a minority; 50 writes there cannot
	// commit.
	cn.Partition([]string{ring(0), ring(1)}, []string{ring(2), ring(3), ring(4)})
	log.Note("partition %s %s | %s %s %s", ring(0), ring(1), ring(2), ring(3), ring(4))
	last := l1.Status().LastIndex
	ok, stale1 := spray(l1, "stale1", 50, 500*time.Millisecond)
	require.Empty(t, ok, "writes on the leader of a minority succeeded")
	grew := l1.Status().LastIndex - last
	require.GreaterOrEqualf(t, grew, uint64(25),
		"only %d of 50 writes reached the log of the minority leader %s: the scenario needs a long conflicting suffix", grew, l1.Name())

	// The majority, without the old leader, commits 50 writes.
	cn.Partition([]string{ring(2), ring(3), ring(4)})
	log.Note("isolate %s and %s; %s %s %s together", ring(0), ring(1), ring(2), ring(3), ring(4))
	group := c.Servers(ring(2), ring(3), ring(4))
	writeN(t, group, "good1", 50, acked)

	// Now its leader and one follower are a minority; 50 more writes there
	// cannot commit.
	l2 := testkit.AwaitLeader(t, group)
	other := ring(2)
	if l2.Name() == other {
		other = ring(3)
	}
	var mate string
	for _, s := range group {
		if s != l2 && s.Name() != other {
			mate = s.Name()
		}
	}
	cn.Partition([]string{l2.Name(), mate})
	log.Note("%s and %s together, everyone else alone", l2.Name(), mate)
	last = l2.Status().LastIndex
	ok, stale2 := spray(l2, "stale2", 50, 500*time.Millisecond)
	require.Empty(t, ok, "writes on the leader of a minority succeeded")
	grew2 := l2.Status().LastIndex - last
	require.GreaterOrEqualf(t, grew2, uint64(25), "only %d of 50 writes reached the log of the minority leader %s", grew2, l2.Name())
	t.Logf("conflicting suffixes: %d entries on %s and %s, %d on %s and %s", grew, ring(0), ring(1), grew2, l2.Name(), mate)

	// The first minority comes back with the follower that has the
	// committed writes: it must lead, and overwrite their 50 stale entries.
	cn.Partition([]string{ring(0), ring(1), other})
	log.Note("%s %s %s together, everyone else alone", ring(0), ring(1), other)
	writeN(t, c.Servers(ring(0), ring(1), other), "good2", 50, acked)

	// Everyone.
	cn.HealAll()
	log.Note("heal all")
	leader, _ := c.AwaitConverged(t, "backup")
	st := leader.Status()
	for _, s := range c.Live() {
		got := s.Status()
		require.Truef(t, got.CommitIndex == st.CommitIndex && got.LastIndex == st.LastIndex,
			"%s: commit %d last %d; leader %s: commit %d last %d", got.Name, got.CommitIndex, got.LastIndex, st.Name, st.CommitIndex, st.LastIndex)
	}
	requirePresent(t, c, leader, acked.snapshot())
	requireAbsent(t, c, append(stale1, stale2...), "only a minority leader ever had")
}

// ---------------------------------------------------------------------------
// A deposed leader rejoins

func TestDeposedLeaderRejoins(t *testing.T) {
	c := testkit.StartCluster(t, 5, testkit.Options{Net: testkit.NewNet()})
	cn := c.Net()
	c.WarmUp(t)
	acked := newAckedWrites()

	old := testkit.AwaitLeader(t, c.Live())
	cn.Isolate(old.Name())
	last := old.Status().LastIndex
	ok, deposed := spray(old, "deposed", 10, time.Second)
	require.Empty(t, ok, "writes on the isolated leader %s succeeded", old.Name())
	require.NotEqual(t, last, old.Status().LastIndex,
		"no write reached the isolated leader's log: the scenario needs uncommitted entries there")
	if st := old.Status(); st.Role == exraft.Leader {
		// It may still believe it leads only until its check-quorum: wait.
		testkit.Eventually(t, testkit.WaitShort, func() bool { return old.Status().Role != exraft.Leader },
			"the isolated leader %s to step down", old.Name())
	}

	rest := testkit.Others(c.Live(), old)
	newLeader := testkit.AwaitLeader(t, rest)
	writeN(t, rest, "new", 10, acked)

	cn.Heal(old.Name())
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		st, l := old.Status(), c.Leader()
		return l != nil && l != old && st.Role == exraft.Follower && st.Leader.Name == l.Name() &&
			st.LastIndex == l.Status().LastIndex && st.AppliedIndex == l.Status().CommitIndex
	}, "the old leader %s to follow the new leader and match its log", old.Name())
	leader, _ := c.AwaitConverged(t, "deposed")
	if leader == old {
		t.Logf("note: %s led again later (fine, after following %s)", old.Name(), newLeader.Name())
	}
	requirePresent(t, c, leader, acked.snapshot())
	requireAbsent(t, c, deposed, "only the deposed leader ever had")
}

// ---------------------------------------------------------------------------
// No agreement without a majority

func TestNoAgreementWithoutMajority(t *testing.T) {
	c := testkit.StartCluster(t, 5, testkit.Options{Net: testkit.NewNet()})
	cn := c.Net()
	c.WarmUp(t)

	l := testkit.AwaitLeader(t, c.Live())
	followers := testkit.Others(c.Live(), l)
	for _, f := range followers[:3] {
		cn.Isolate(f.Name())
	}
	commit := l.Status().CommitIndex
	window := 3 * testkit.ElectMax
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	began := time.Now()
	_, err := l.Write(ctx, []byte("set nomajority x"))
	require.Error(t, err, "Write on %s with 3 of 5 servers isolated succeeded", l.Name())
	require.Truef(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, exraft.ErrLeadershipLost) || errors.Is(err, exraft.ErrNotLeader),
		"Write on %s with 3 of 5 servers isolated: unexpected error %v", l.Name(), err)
	t.Logf("Write failed after %v: %v", time.Since(began).Round(time.Millisecond), err)
	for _, s := range []*exraft.Server{l, followers[3]} {
		require.Equal(t, commit, s.Status().CommitIndex, "%s: commit index moved without a majority", s.Name())
		require.Empty(t, testkit.Dirty(s, "get nomajority"), "%s applied the write without a majority", s.Name())
	}

	for _, f := range followers[:3] {
		cn.Heal(f.Name())
	}
	acked := newAckedWrites()
	writeN(t, c.Live(), "after", 5, acked)
	leader, _ := c.AwaitConverged(t, "nomajority")
	requirePresent(t, c, leader, acked.snapshot())
}

// ---------------------------------------------------------------------------
// Membership churn under continuous clients

func TestChurnWithContinuousClients(t *testing.T) {
	const clients = 4
	seed := testkit.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0xda942042e4dd58b5))
	c := testkit.StartCluster(t, 5, testkit.Options{Net: testkit.NewNet()})
	c.WarmUp(t)
	log := testkit.NewSchedule(t)
	acked := newAckedWrites()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		cl := testkit.NewClient(c, i, rand.New(rand.NewPCG(seed+uint64(i)+7, 3)), c.Names()[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("cc%d-%d", i, seq), fmt.Sprintf("v%d", seq)
				if _, outcome := cl.Execute(true, []byte("set "+k+" "+v)); outcome == testkit.Succeeded {
					acked.add(k, v)
				}
			}
		}()
	}

	names := c.Names()
	deadline := time.Now().Add(6 * time.Second)
	var failure error
	for round := 0; time.Now().Before(deadline) && failure == nil; round++ {
		l := c.LeaderWithin(testkit.WaitShort)
		if l == nil {
			failure = errors.New("no leader")
			break
		}
		follower := names[rng.IntN(len(names))]
		for follower == l.Name() {
			follower = names[rng.IntN(len(names))]
		}
		switch round % 4 {
		case 0: // remove a follower and add it back as it is
			if failure = c.RemoveMember(follower, testkit.WaitLong); failure == nil {
				log.Note("removed %s", follower)
				failure = c.AddMember(follower, testkit.WaitLong)
				log.Note("added %s back", follower)
			}
		case 1: // restart a follower; the leader re-admits it
			commit := c.MaxCommit()
			if failure = c.Stop(follower); failure == nil {
				time.Sleep(100 * time.Millisecond) // pacing: stay down a while
				failure = c.Start(follower)
				log.Note("restarted %s", follower)
			}
			if failure == nil {
				w := c.WatchRejoin(follower, commit, testkit.WaitShort)
				if failure = w.Wait(); failure == nil && !w.Auto {
					failure = fmt.Errorf("the leader did not re-admit %s on its own after its restart", follower)
				}
			}
		case 2: // remove the leader and add it back
			if failure = c.RemoveMember(l.Name(), testkit.WaitLong); failure == nil {
				log.Note("removed the leader %s", l.Name())
				failure = c.AddMember(l.Name(), testkit.WaitLong)
				log.Note("added %s back", l.Name())
			}
		case 3: // remove a follower, restart it blank and add it back
			if failure = c.RemoveMember(follower, testkit.WaitLong); failure == nil {
				log.Note("removed %s", follower)
				if failure = c.Stop(follower); failure == nil {
					failure = c.Start(follower)
				}
				if failure == nil {
					failure = c.AddMember(follower, testkit.WaitLong)
					log.Note("added %s back blank", follower)
				}
			}
		}
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond) // pacing
	}
	close(stop)
	wg.Wait()
	require.NoError(t, failure, "churn")
	leader, _ := c.AwaitConverged(t, "churn")
	got := acked.snapshot()
	require.GreaterOrEqualf(t, len(got), 100, "only %d writes succeeded during the churn", len(got))
	t.Logf("%d writes acknowledged during %d membership changes", len(got), log.Len())
	requirePresent(t, c, leader, got)
}

// ---------------------------------------------------------------------------
// Liveness under partial connectivity

// observeStableLeader writes on leader every so often for window and fails if
// the leader is deposed, any server's term rises, or a write fails. It also
// calls during(), if given, at every step.
func observeStableLeader(t *testing.T, c *testkit.Cluster, leader *exraft.Server, window time.Duration, during func()) {
	t.Helper()
	terms := map[string]uint64{}
	for _, s := range c.Live() {
		terms[s.Name()] = s.Status().Term
	}
	writes := 0
	for end := time.Now().Add(window); time.Now().Before(end); {
		if during != nil {
			during()
		}
		for _, s := range c.Live() {
			st := s.Status()
			require.Equalf(t, terms[st.Name], st.Term, "%s: term rose from %d to %d (role %v)", st.Name, terms[st.Name], st.Term, st.Role)
		}
		st := leader.Status()
		require.Equalf(t, exraft.Leader, st.Role, "leader %s was deposed: %v in term %d", st.Name, st.Role, st.Term)
		testkit.MustWrite(t, leader, fmt.Sprintf("set stable %d", writes))
		writes++
		time.Sleep(50 * time.Millisecond) // the pace of the observation window
	}
	t.Logf("%d writes committed while observing for %v", writes, window)
}

// TestPartialConnectivityKeepsLeader: with some links cut, a leader that can
// still reach a majority keeps leading, in the same term, and commits.
func TestPartialConnectivityKeepsLeader(t *testing.T) {
	t.Run("followers cannot reach each other", func(t *testing.T) {
		c := testkit.StartCluster(t, 3, testkit.Options{Net: testkit.NewNet()})
		cn := c.Net()
		c.WarmUp(t)
		a := testkit.AwaitLeader(t, c.Live())
		fs := testkit.Others(c.Live(), a)
		cn.Cut(fs[0].Name(), fs[1].Name())
		observeStableLeader(t, c, a, 2*time.Second, nil)
	})
	t.Run("a follower reaches only the other follower", func(t *testing.T) {
		c := testkit.StartCluster(t, 3, testkit.Options{Net: testkit.NewNet()})
		cn := c.Net()
		c.WarmUp(t)
		a := testkit.AwaitLeader(t, c.Live())
		b := testkit.Others(c.Live(), a)[0]
		cn.Cut(a.Name(), b.Name())
		observeStableLeader(t, c, a, 2*time.Second, nil)
	})
}

// TestRemovedServerDoesNotDisturb: a server removed while it cannot hear the
// leader never learns of its removal and keeps running with its old
// configuration; its election attempts, forced ones included, must not raise
// the members' terms or depose the leader.
func TestRemovedServerDoesNotDisturb(t *testing.T) {
	c := testkit.StartCluster(t, 3, testkit.Options{Net: testkit.NewNet()})
	cn := c.Net()
	c.WarmUp(t)
	l := testkit.AwaitLeader(t, c.Live())
	x := testkit.Others(c.Live(), l)[0]
	// The leader can no longer send to x; x can still send to everyone.
	cn.CutOneWay(l.Name(), x.Name())
	require.NoError(t, l.RemoveServer(testkit.Ctx(t, testkit.WaitShort), x.Name()), "RemoveServer(%s)", x.Name())
	require.NotContains(t, testkit.MemberNames(l.Status().Members), x.Name(), "members after removing %s", x.Name())
	require.Contains(t, testkit.MemberNames(x.Status().Members), x.Name(), "%s learned of its removal; the scenario needs it not to", x.Name())
	members := testkit.Others(c.Live(), x)
	terms := map[string]uint64{}
	for _, s := range members {
		terms[s.Name()] = s.Status().Term
	}
	triggered := 0
	step := 0
	observe := func() {
		step++
		if step%8 == 0 {
			// Force an election on the removed server now and then.
			if err := x.TriggerElection(testkit.Ctx(t, time.Second)); err == nil {
				triggered++
			}
		}
	}
	// The observation covers the members only: x's own term may rise.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		observe()
		for _, s := range members {
			st := s.Status()
			require.Equalf(t, terms[st.Name], st.Term, "member %s: term rose from %d to %d because of the removed %s", st.Name, terms[st.Name], st.Term, x.Name())
		}
		st := l.Status()
		require.Equalf(t, exraft.Leader, st.Role, "leader %s was deposed (%v, term %d)", st.Name, st.Role, st.Term)
		testkit.MustWrite(t, l, fmt.Sprintf("set undisturbed %d", step))
		time.Sleep(50 * time.Millisecond) // the pace of the observation window
	}
	if triggered == 0 {
		t.Logf("note: TriggerElection on the removed server never started an election")
	}
	t.Logf("removed server %s: term %d (members stayed at %v), %d forced elections", x.Name(), x.Status().Term, terms, triggered)
}

// TestSilentPartitionHealsWithoutWaitingForIOTimeout: behind a network that
// drops packets silently, the leader's connection to a cut-off follower
// stays dead after the network heals. The leader must notice that its
// heartbeats went unanswered and dial again, rather than wait for
// IOTimeout (a minute here) to give the connection up.
func TestSilentPartitionHealsWithoutWaitingForIOTimeout(t *testing.T) {
	const ioTimeout = time.Minute
	cn := testkit.NewNet()
	cn.MakeSilent()
	c := testkit.StartCluster(t, 3, testkit.Options{Net: cn, Configure: func(_ int, cfg *exraft.Config) {
		cfg.IOTimeout = ioTimeout
	}})
	c.WarmUp(t)
	a := testkit.AwaitLeader(t, c.Live())
	f := testkit.Others(c.Live(), a)[0]
	// f leads for a while, as any server that campaigned once did, so that
	// it has connections of its own to the others, which the cut leaves
	// dead too: without them, its first campaign after the heal would
	// dial afresh and hide the leader's wait.
	handOver(t, f)
	handOver(t, a)
	cn.Isolate(f.Name())
	for i := range 20 {
		testkit.WriteAny(t, c.Live(), fmt.Sprintf("set during-cut %d", i))
	}
	cn.HealAll()
	healed := time.Now()
	commit := a.Status().CommitIndex
	reached := testkit.PollUntil(ioTimeout/3, func() bool { return f.Status().AppliedIndex >= commit })
	require.True(t, reached, "%s had not caught up %v after the heal (applied %d of %d): its leader still waits on a dead connection\n%s",
		f.Name(), time.Since(healed).Round(time.Millisecond), f.Status().AppliedIndex, commit, c.Describe())
	t.Logf("%s caught up %v after the heal", f.Name(), time.Since(healed).Round(time.Millisecond))
}

// handOver makes s the leader by TriggerElection, and waits until it leads.
func handOver(t *testing.T, s *exraft.Server) {
	t.Helper()
	ctx := testkit.Ctx(t, testkit.WaitLong)
	require.NoError(t, s.TriggerElection(ctx))
	testkit.Eventually(t, testkit.WaitLong, func() bool { return s.Status().Role == exraft.Leader }, "%s leads after TriggerElection", s.Name())
}
