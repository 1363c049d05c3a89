package exraft_test

// The classic Raft scenarios on real servers over loopback TCP: Figure 8 of
// the paper, backing up over long conflicting logs, a deposed leader coming
// back, no agreement without a majority, membership churn under load, and
// liveness when the network is only partly connected. The fault injection
// (chaosNet, chaosCluster) lives in linearizability_test.go.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exraft/exraft"
)

// scenAcked records the writes that returned success, as key -> value.
type scenAcked struct {
	mu sync.Mutex
	m  map[string]string
}

func newScenAcked() *scenAcked { return &scenAcked{m: map[string]string{}} }

func (a *scenAcked) add(k, v string) {
	a.mu.Lock()
	a.m[k] = v
	a.mu.Unlock()
}

func (a *scenAcked) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

// parseDump reads kvSM's answer to "dump".
func parseDump(d string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(d, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// scenCheckPresent checks that every acknowledged write is in the state of
// every server (ReadDirty) and in a linearizable Read on the leader.
func scenCheckPresent(t *testing.T, c *chaosCluster, leader *exraft.Server, acked map[string]string) {
	t.Helper()
	for _, s := range c.live() {
		got := parseDump(dirty(s, "dump"))
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("%s: acknowledged write %s=%s lost (ReadDirty has %q)", s.Name(), k, v, got[k])
			}
		}
	}
	got := parseDump(mustRead(t, leader, "dump"))
	for k, v := range acked {
		if got[k] != v {
			t.Fatalf("Read on leader %s: acknowledged write %s=%s lost (has %q)", leader.Name(), k, v, got[k])
		}
	}
}

// scenCheckAbsent checks that no server applied a command of the given keys.
func scenCheckAbsent(t *testing.T, c *chaosCluster, keys []string, why string) {
	t.Helper()
	for _, s := range c.live() {
		got := parseDump(dirty(s, "dump"))
		for _, k := range keys {
			if v, ok := got[k]; ok {
				t.Fatalf("%s applied %s=%s, which %s", s.Name(), k, v, why)
			}
		}
	}
}

// scenSpray sends n writes "set <prefix>-<i> v" to s at once, each bounded
// by d, waits for all of them and returns the keys of those that succeeded
// and all the keys sent.
func scenSpray(s *exraft.Server, prefix string, n int, d time.Duration) (ok, sent []string) {
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

// scenWriteN commits n writes "set <prefix>-<i> v<i>" one after the other
// through the leader among servers and records them.
func scenWriteN(t *testing.T, servers []*exraft.Server, prefix string, n int, acked *scenAcked) {
	t.Helper()
	for i := range n {
		k, v := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("v%d", i)
		writeAny(t, servers, "set "+k+" "+v)
		acked.add(k, v)
	}
}

func (c *chaosCluster) servers(names ...string) []*exraft.Server {
	out := make([]*exraft.Server, len(names))
	for i, n := range names {
		out[i] = c.server(n)
	}
	return out
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
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	cn := newChaosNet()
	c := newChaosCluster(t, n, cn)
	c.settle(t)
	log := newChaosLog(t)
	if unreliable {
		cn.makeFlaky(200, 5, 5*time.Millisecond)
	}
	acked := newScenAcked()
	isolated := map[string]bool{}
	var pending *rejoinWatch // a server started again, not yet re-admitted
	healthy := func(name string) bool {
		if isolated[name] || c.isDown(name) {
			return false
		}
		return pending == nil || pending.name != name || pending.done()
	}
	healthyLeader := func() *exraft.Server {
		var best *exraft.Server
		var term uint64
		for _, name := range c.names() {
			if !healthy(name) {
				continue
			}
			s := c.server(name)
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
		for _, name := range c.names() {
			if !isolated[name] {
				group = append(group, name)
			}
		}
		cn.partition(group)
	}

	var wg sync.WaitGroup
	leaders := 0
	for i := range iterations {
		if pending != nil && pending.done() {
			if err := pending.wait(); err != nil {
				t.Fatalf("re-admitting %s: %v", pending.name, err)
			}
			log.note("%s re-admitted (on its own: %v)", pending.name, pending.auto)
			pending = nil
		}
		var l *exraft.Server
		exraft.PollUntil(2*time.Second, func() bool { l = healthyLeader(); return l != nil })
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
			log.note("iteration %d: writes on leader %s (term %d)", i, l.Name(), l.Status().Term)
		} else {
			log.note("iteration %d: no leader among the healthy servers: %s", i, c.describe())
		}
		// Let the entries travel a little (usually very little), then take
		// the leader down.
		if rng.IntN(1000) < 100 {
			time.Sleep(time.Duration(rng.IntN(int(testElectMax/time.Millisecond)/2)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(13)) * time.Millisecond)
		}
		if l != nil {
			anyDown := false
			for _, name := range c.names() {
				anyDown = anyDown || c.isDown(name)
			}
			if pending == nil && !anyDown && rng.IntN(100) < 30 {
				if err := c.stopNode(l.Name()); err != nil {
					t.Fatal(err)
				}
				log.note("stop leader %s", l.Name())
			} else {
				isolated[l.Name()] = true
				applyIsolation()
				log.note("isolate leader %s", l.Name())
			}
		}
		// Keep a majority of healthy servers: bring a random one back.
		up := 0
		var out []string
		for _, name := range c.names() {
			if healthy(name) {
				up++
			} else if isolated[name] || c.isDown(name) {
				out = append(out, name)
			}
		}
		if up < n/2+1 && len(out) > 0 {
			name := out[rng.IntN(len(out))]
			if c.isDown(name) {
				commit := c.maxCommit()
				if err := c.startNode(name); err != nil {
					t.Fatal(err)
				}
				pending = c.watchRejoin(name, commit, 3*time.Second)
				log.note("start %s again (blank)", name)
			} else {
				delete(isolated, name)
				applyIsolation()
				log.note("heal %s", name)
			}
		}
	}
	wg.Wait()
	if leaders < iterations/2 {
		t.Fatalf("a leader was found in only %d of %d iterations", leaders, iterations)
	}

	cn.flaky.Store(false)
	cn.healAll()
	if pending != nil {
		if err := pending.wait(); err != nil {
			t.Fatalf("re-admitting %s: %v", pending.name, err)
		}
	}
	for _, name := range c.names() {
		if c.isDown(name) {
			if err := c.startNode(name); err != nil {
				t.Fatal(err)
			}
			log.note("start %s again (blank)", name)
		}
	}
	leader, _ := c.awaitConverged(t, "figure8")
	got := acked.snapshot()
	if len(got) == 0 {
		t.Fatalf("no write succeeded")
	}
	t.Logf("%d writes acknowledged over %d iterations with a leader", len(got), leaders)
	scenCheckPresent(t, c, leader, got)
}

// ---------------------------------------------------------------------------
// Backing up over long conflicting logs (the lab's TestBackup2B)

func TestBackupOverLongConflictingLogs(t *testing.T) {
	const n = 5
	cn := newChaosNet()
	c := newChaosCluster(t, n, cn)
	c.settle(t)
	log := newChaosLog(t)
	acked := newScenAcked()

	l1 := awaitLeader(t, c.live())
	names := c.names()
	at := 0
	for i, name := range names {
		if name == l1.Name() {
			at = i
		}
	}
	ring := func(k int) string { return names[(at+k)%n] }

	// The leader and one follower in a minority; 50 writes there cannot
	// commit.
	cn.partition([]string{ring(0), ring(1)}, []string{ring(2), ring(3), ring(4)})
	log.note("partition %s %s | %s %s %s", ring(0), ring(1), ring(2), ring(3), ring(4))
	last := l1.Status().LastIndex
	ok, stale1 := scenSpray(l1, "stale1", 50, 500*time.Millisecond)
	if len(ok) > 0 {
		t.Fatalf("writes on the leader of a minority succeeded: %v", ok)
	}
	grew := l1.Status().LastIndex - last
	if grew < 25 {
		t.Fatalf("only %d of 50 writes reached the log of the minority leader %s: the scenario needs a long conflicting suffix", grew, l1.Name())
	}

	// The majority, without the old leader, commits 50 writes.
	cn.partition([]string{ring(2), ring(3), ring(4)})
	log.note("isolate %s and %s; %s %s %s together", ring(0), ring(1), ring(2), ring(3), ring(4))
	group := c.servers(ring(2), ring(3), ring(4))
	scenWriteN(t, group, "good1", 50, acked)

	// Now its leader and one follower are a minority; 50 more writes there
	// cannot commit.
	l2 := awaitLeader(t, group)
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
	cn.partition([]string{l2.Name(), mate})
	log.note("%s and %s together, everyone else alone", l2.Name(), mate)
	last = l2.Status().LastIndex
	ok, stale2 := scenSpray(l2, "stale2", 50, 500*time.Millisecond)
	if len(ok) > 0 {
		t.Fatalf("writes on the leader of a minority succeeded: %v", ok)
	}
	grew2 := l2.Status().LastIndex - last
	if grew2 < 25 {
		t.Fatalf("only %d of 50 writes reached the log of the minority leader %s", grew2, l2.Name())
	}
	t.Logf("conflicting suffixes: %d entries on %s and %s, %d on %s and %s", grew, ring(0), ring(1), grew2, l2.Name(), mate)

	// The first minority comes back with the follower that has the
	// committed writes: it must lead, and overwrite their 50 stale entries.
	cn.partition([]string{ring(0), ring(1), other})
	log.note("%s %s %s together, everyone else alone", ring(0), ring(1), other)
	scenWriteN(t, c.servers(ring(0), ring(1), other), "good2", 50, acked)

	// Everyone.
	cn.healAll()
	log.note("heal all")
	leader, _ := c.awaitConverged(t, "backup")
	st := leader.Status()
	for _, s := range c.live() {
		if got := s.Status(); got.CommitIndex != st.CommitIndex || got.LastIndex != st.LastIndex {
			t.Fatalf("%s: commit %d last %d; leader %s: commit %d last %d", got.Name, got.CommitIndex, got.LastIndex, st.Name, st.CommitIndex, st.LastIndex)
		}
	}
	scenCheckPresent(t, c, leader, acked.snapshot())
	scenCheckAbsent(t, c, append(stale1, stale2...), "only a minority leader ever had")
}

// ---------------------------------------------------------------------------
// A deposed leader rejoins

func TestDeposedLeaderRejoins(t *testing.T) {
	cn := newChaosNet()
	c := newChaosCluster(t, 5, cn)
	c.settle(t)
	acked := newScenAcked()

	old := awaitLeader(t, c.live())
	cn.isolate(old.Name())
	last := old.Status().LastIndex
	ok, deposed := scenSpray(old, "deposed", 10, time.Second)
	if len(ok) > 0 {
		t.Fatalf("writes on the isolated leader %s succeeded: %v", old.Name(), ok)
	}
	if old.Status().LastIndex == last {
		t.Fatalf("no write reached the isolated leader's log: the scenario needs uncommitted entries there")
	}
	if st := old.Status(); st.Role == exraft.Leader {
		// It may still believe it leads only until its check-quorum: wait.
		eventually(t, waitShort, func() bool { return old.Status().Role != exraft.Leader },
			"the isolated leader %s to step down", old.Name())
	}

	rest := others(c.live(), old)
	newLeader := awaitLeader(t, rest)
	scenWriteN(t, rest, "new", 10, acked)

	cn.heal(old.Name())
	eventually(t, waitLong, func() bool {
		st, l := old.Status(), c.leader()
		return l != nil && l != old && st.Role == exraft.Follower && st.Leader.Name == l.Name() &&
			st.LastIndex == l.Status().LastIndex && st.AppliedIndex == l.Status().CommitIndex
	}, "the old leader %s to follow the new leader and match its log", old.Name())
	leader, _ := c.awaitConverged(t, "deposed")
	if leader == old {
		t.Logf("note: %s led again later (fine, after following %s)", old.Name(), newLeader.Name())
	}
	scenCheckPresent(t, c, leader, acked.snapshot())
	scenCheckAbsent(t, c, deposed, "only the deposed leader ever had")
}

// ---------------------------------------------------------------------------
// No agreement without a majority

func TestNoAgreementWithoutMajority(t *testing.T) {
	cn := newChaosNet()
	c := newChaosCluster(t, 5, cn)
	c.settle(t)

	l := awaitLeader(t, c.live())
	followers := others(c.live(), l)
	for _, f := range followers[:3] {
		cn.isolate(f.Name())
	}
	commit := l.Status().CommitIndex
	window := 3 * testElectMax
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	began := time.Now()
	_, err := l.Write(ctx, []byte("set nomajority x"))
	switch {
	case err == nil:
		t.Fatalf("Write on %s with 3 of 5 servers isolated succeeded", l.Name())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, exraft.ErrLeadershipLost), errors.Is(err, exraft.ErrNotLeader):
		t.Logf("Write failed after %v: %v", time.Since(began).Round(time.Millisecond), err)
	default:
		t.Fatalf("Write on %s with 3 of 5 servers isolated: unexpected error %v", l.Name(), err)
	}
	for _, s := range []*exraft.Server{l, followers[3]} {
		if got := s.Status().CommitIndex; got != commit {
			t.Fatalf("%s: commit index moved from %d to %d without a majority", s.Name(), commit, got)
		}
		if got := dirty(s, "get nomajority"); got != "" {
			t.Fatalf("%s applied the write without a majority: %q", s.Name(), got)
		}
	}

	for _, f := range followers[:3] {
		cn.heal(f.Name())
	}
	acked := newScenAcked()
	scenWriteN(t, c.live(), "after", 5, acked)
	leader, _ := c.awaitConverged(t, "nomajority")
	scenCheckPresent(t, c, leader, acked.snapshot())
}

// ---------------------------------------------------------------------------
// Membership churn under continuous clients

func TestChurnWithContinuousClients(t *testing.T) {
	const clients = 4
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0xda942042e4dd58b5))
	cn := newChaosNet()
	c := newChaosCluster(t, 5, cn)
	c.settle(t)
	log := newChaosLog(t)
	acked := newScenAcked()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		cl := &linClient{r: &linRun{c: c}, index: i, rng: rand.New(rand.NewPCG(seed+uint64(i)+7, 3)), target: c.order[i]}
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
				if _, outcome := cl.execute(true, []byte("set "+k+" "+v)); outcome == linOK {
					acked.add(k, v)
				}
			}
		}()
	}

	names := c.names()
	deadline := time.Now().Add(6 * time.Second)
	var failure error
	for round := 0; time.Now().Before(deadline) && failure == nil; round++ {
		l := c.leaderWithin(waitShort)
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
			if failure = c.removeMember(follower, waitLong); failure == nil {
				log.note("removed %s", follower)
				failure = c.addMember(follower, waitLong)
				log.note("added %s back", follower)
			}
		case 1: // restart a follower; the leader re-admits it
			commit := c.maxCommit()
			if failure = c.stopNode(follower); failure == nil {
				time.Sleep(100 * time.Millisecond) // pacing: stay down a while
				failure = c.startNode(follower)
				log.note("restarted %s", follower)
			}
			if failure == nil {
				w := c.watchRejoin(follower, commit, waitShort)
				if failure = w.wait(); failure == nil && !w.auto {
					failure = fmt.Errorf("the leader did not re-admit %s on its own after its restart", follower)
				}
			}
		case 2: // remove the leader and add it back
			if failure = c.removeMember(l.Name(), waitLong); failure == nil {
				log.note("removed the leader %s", l.Name())
				failure = c.addMember(l.Name(), waitLong)
				log.note("added %s back", l.Name())
			}
		case 3: // remove a follower, restart it blank and add it back
			if failure = c.removeMember(follower, waitLong); failure == nil {
				log.note("removed %s", follower)
				if failure = c.stopNode(follower); failure == nil {
					failure = c.startNode(follower)
				}
				if failure == nil {
					failure = c.addMember(follower, waitLong)
					log.note("added %s back blank", follower)
				}
			}
		}
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond) // pacing
	}
	close(stop)
	wg.Wait()
	if failure != nil {
		t.Fatalf("churn: %v", failure)
	}
	leader, _ := c.awaitConverged(t, "churn")
	got := acked.snapshot()
	if len(got) < 100 {
		t.Fatalf("only %d writes succeeded during the churn", len(got))
	}
	t.Logf("%d writes acknowledged during %d membership changes", len(got), log.len())
	scenCheckPresent(t, c, leader, got)
}

// ---------------------------------------------------------------------------
// Liveness under partial connectivity

// observeStableLeader writes on leader every so often for window and fails if
// the leader is deposed, any server's term rises, or a write fails. It also
// calls during(), if given, at every step.
func observeStableLeader(t *testing.T, c *chaosCluster, leader *exraft.Server, window time.Duration, during func()) {
	t.Helper()
	terms := map[string]uint64{}
	for _, s := range c.live() {
		terms[s.Name()] = s.Status().Term
	}
	writes := 0
	for end := time.Now().Add(window); time.Now().Before(end); {
		if during != nil {
			during()
		}
		for _, s := range c.live() {
			st := s.Status()
			if st.Term != terms[st.Name] {
				t.Fatalf("%s: term rose from %d to %d (role %v)", st.Name, terms[st.Name], st.Term, st.Role)
			}
		}
		if st := leader.Status(); st.Role != exraft.Leader {
			t.Fatalf("leader %s was deposed: %v in term %d", st.Name, st.Role, st.Term)
		}
		mustWrite(t, leader, fmt.Sprintf("set stable %d", writes))
		writes++
		time.Sleep(50 * time.Millisecond) // the pace of the observation window
	}
	t.Logf("%d writes committed while observing for %v", writes, window)
}

// TestPartialConnectivityKeepsLeader: with some links cut, a leader that can
// still reach a majority keeps leading, in the same term, and commits.
func TestPartialConnectivityKeepsLeader(t *testing.T) {
	t.Run("followers cannot reach each other", func(t *testing.T) {
		cn := newChaosNet()
		c := newChaosCluster(t, 3, cn)
		c.settle(t)
		a := awaitLeader(t, c.live())
		fs := others(c.live(), a)
		cn.cutBoth(fs[0].Name(), fs[1].Name())
		observeStableLeader(t, c, a, 2*time.Second, nil)
	})
	t.Run("a follower reaches only the other follower", func(t *testing.T) {
		cn := newChaosNet()
		c := newChaosCluster(t, 3, cn)
		c.settle(t)
		a := awaitLeader(t, c.live())
		b := others(c.live(), a)[0]
		cn.cutBoth(a.Name(), b.Name())
		observeStableLeader(t, c, a, 2*time.Second, nil)
	})
}

// TestRemovedServerDoesNotDisturb: a server removed while it cannot hear the
// leader never learns of its removal and keeps running with its old
// configuration; its election attempts, forced ones included, must not raise
// the members' terms or depose the leader.
func TestRemovedServerDoesNotDisturb(t *testing.T) {
	cn := newChaosNet()
	c := newChaosCluster(t, 3, cn)
	c.settle(t)
	l := awaitLeader(t, c.live())
	x := others(c.live(), l)[0]
	// The leader can no longer send to x; x can still send to everyone.
	cn.cutOneWay(l.Name(), x.Name())
	if err := l.RemoveServer(ctxFor(t, waitShort), x.Name()); err != nil {
		t.Fatalf("RemoveServer(%s): %v", x.Name(), err)
	}
	if got := memberNames(l.Status().Members); contains(got, x.Name()) {
		t.Fatalf("members after removing %s: %v", x.Name(), got)
	}
	if contains(memberNames(x.Status().Members), x.Name()) == false {
		t.Fatalf("%s learned of its removal; the scenario needs it not to", x.Name())
	}
	members := others(c.live(), x)
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
			if err := x.TriggerElection(ctxFor(t, time.Second)); err == nil {
				triggered++
			}
		}
	}
	// The observation covers the members only: x's own term may rise.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		observe()
		for _, s := range members {
			if st := s.Status(); st.Term != terms[st.Name] {
				t.Fatalf("member %s: term rose from %d to %d because of the removed %s", st.Name, terms[st.Name], st.Term, x.Name())
			}
		}
		if st := l.Status(); st.Role != exraft.Leader {
			t.Fatalf("leader %s was deposed (%v, term %d)", st.Name, st.Role, st.Term)
		}
		mustWrite(t, l, fmt.Sprintf("set undisturbed %d", step))
		time.Sleep(50 * time.Millisecond) // the pace of the observation window
	}
	if triggered == 0 {
		t.Logf("note: TriggerElection on the removed server never started an election")
	}
	t.Logf("removed server %s: term %d (members stayed at %v), %d forced elections", x.Name(), x.Status().Term, terms, triggered)
}
