package exraft_test

// End-to-end tests of membership and restarts (docs/design.md §6 AddServer /
// RemoveServer, §2 incarnations, §4 what survives what) on real loopback TCP: a
// restarted server is a new incarnation that must not count until the leader
// re-admits it, the leader re-admits it on its own (or by AddServer when that
// is disabled), a removed leader hands over at once, a removed server stays
// quiet, and concurrent or hopeless AddServer calls queue and end cleanly.
//
// Helpers of this file are prefixed with mb so that they cannot collide with
// those of the other test files of the package.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exraft/exraft"
)

// ---------------------------------------------------------------------------
// Helpers

// mbLazy prints the string its function returns when it is printed, so that a
// failure message carries the state at the moment of the failure.
type mbLazy func() string

func (f mbLazy) String() string { return f() }

// mbDump describes the Status of every server, one line each.
func mbDump(servers ...*exraft.Server) string {
	var b strings.Builder
	for _, s := range servers {
		st := s.Status()
		fmt.Fprintf(&b, "\n    %s@%s role=%v term=%d leader=%v commit=%d applied=%d last=%d members=%v learners=%v",
			st.Name, st.Addr, st.Role, st.Term, st.Leader, st.CommitIndex, st.AppliedIndex, st.LastIndex,
			st.Members, st.Learners)
	}
	return b.String()
}

func mbDumpLazy(servers ...*exraft.Server) mbLazy {
	return func() string { return mbDump(servers...) }
}

// mbPeers returns the Peer of every server, in order.
func mbPeers(servers []*exraft.Server) []exraft.Peer {
	out := make([]exraft.Peer, len(servers))
	for i, s := range servers {
		out[i] = s.Peer()
	}
	return out
}

func mbHasPeer(ps []exraft.Peer, p exraft.Peer) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func mbHasName(ps []exraft.Peer, name string) bool {
	for _, x := range ps {
		if x.Name == name {
			return true
		}
	}
	return false
}

// mbAgreed reports the leader when exactly one server of servers leads, every
// server follows it, and every log is committed and applied up to the same
// index with no learner pending on the leader.
func mbAgreed(servers []*exraft.Server) (*exraft.Server, uint64, bool) {
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
	idx := leader.Status().LastIndex
	for _, st := range sts {
		if st.Leader != leader.Peer() || st.LastIndex != idx || st.CommitIndex != idx || st.AppliedIndex != idx {
			return nil, 0, false
		}
	}
	if len(leader.Status().Learners) != 0 {
		return nil, 0, false
	}
	return leader, idx, true
}

// mbSettle waits until servers agree (mbAgreed) and stay so, with the same
// leader and the same last index, for window: long enough for the leader to
// hear from every follower several times and so bind every bootstrap
// incarnation (docs/design.md §3), which appends configuration entries that this
// wait would see. It returns the leader.
func mbSettle(t *testing.T, servers []*exraft.Server, window time.Duration) *exraft.Server {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var since time.Time
	var lastIdx uint64
	var lastLeader *exraft.Server
	for {
		leader, idx, ok := mbAgreed(servers)
		switch {
		case !ok:
			since = time.Time{}
		case since.IsZero() || leader != lastLeader || idx != lastIdx:
			since, lastLeader, lastIdx = time.Now(), leader, idx
		case time.Since(since) >= window:
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers did not settle (one leader, every log committed and applied alike for %v) within %v:%s",
				window, waitLong, mbDump(servers...))
		}
		<-tick.C
	}
}

// mbRestart stops old and starts a blank server with the same Name, the same
// address and the given InitialConfig, as a user restarting a process would.
// With pn the new listener and dialer go through the partition network.
// configure, if not nil, changes the Config before the start.
func mbRestart(t *testing.T, old *exraft.Server, initial []exraft.Peer, pn *partitionNet,
	configure func(cfg *exraft.Config)) (*exraft.Server, *kvSM) {
	t.Helper()
	name, addr := old.Name(), old.Addr()
	if err := exraft.StopServer(old); err != nil {
		t.Fatalf("StopServer(%s): %v", name, err)
	}
	// The port is free once the old listener is closed; retry briefly in case
	// the kernel needs a moment.
	var l net.Listener
	var lastErr error
	eventually(t, waitShort, func() bool {
		var err error
		l, err = net.Listen("tcp", addr)
		lastErr = err
		return err == nil
	}, "listen again on %s for the restarted %s (last error: %v)", addr, name, mbLazy(func() string {
		if lastErr == nil {
			return "none"
		}
		return lastErr.Error()
	}))
	kv := newKV()
	cfg := fastConfig(name)
	cfg.Listener = l
	if pn != nil {
		cfg.Listener = pn.listener(name, l)
		cfg.Dial = pn.dialer(name)
	}
	cfg.InitialConfig = append([]exraft.Peer(nil), initial...)
	if configure != nil {
		configure(&cfg)
	}
	s := start(t, kv, cfg)
	if s.Addr() != addr || s.Name() != name {
		t.Fatalf("restarted server is %v, want %s@%s", s.Peer(), name, addr)
	}
	return s, kv
}

// mbStartAlone starts a server with no InitialConfig and MinMajority 2: it
// waits for a leader to add it (docs/design.md §6, MinMajority).
func mbStartAlone(t *testing.T, name string) (*exraft.Server, *kvSM) {
	t.Helper()
	kv := newKV()
	cfg := fastConfig(name)
	cfg.Listener = listen(t)
	cfg.MinMajority = 2
	return start(t, kv, cfg), kv
}

// mbDeadAddr returns a loopback address on which nothing listens.
func mbDeadAddr(t *testing.T) string {
	t.Helper()
	l := listen(t)
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return addr
}

// mbAllHave waits until every server applied k=v.
func mbAllHave(t *testing.T, servers []*exraft.Server, k, v string) {
	t.Helper()
	eventually(t, waitLong, func() bool {
		for _, s := range servers {
			if dirty(s, "get "+k) != v {
				return false
			}
		}
		return true
	}, "every server of %v to apply %s=%s:%s", names(servers), k, v, mbDumpLazy(servers...))
}

// mbTwoFollowers returns the two servers of a three-server list that are not
// leader.
func mbTwoFollowers(t *testing.T, servers []*exraft.Server, leader *exraft.Server) (*exraft.Server, *exraft.Server) {
	t.Helper()
	fs := others(servers, leader)
	if len(fs) != 2 {
		t.Fatalf("want two followers besides %s, got %v", leader.Name(), names(fs))
	}
	return fs[0], fs[1]
}

// ---------------------------------------------------------------------------
// Restarts (docs/design.md §2, §4)

// TestLostCommitScenario: V is committed by A and B while C is cut off; then
// B restarts blank and A stops. B (blank) and C (without V) are two of three
// names, but B is a new incarnation: its vote must not count, so no leader
// may be elected, and above all none that serves a state without V.
func TestLostCommitScenario(t *testing.T) {
	pn := newPartitionNet()
	c := startCluster(t, 3, clusterOptions{
		wrap:      func(i int, name string, l net.Listener) net.Listener { return pn.listener(name, l) },
		configure: func(i int, cfg *exraft.Config) { cfg.Dial = pn.dialer(cfg.Name) },
	})
	initial := mbPeers(c.servers)
	first := leaderVia(t, c.servers[0], c.servers)
	mustWrite(t, first, "set warm 1")
	mbAllHave(t, c.servers, "warm", "1")
	// The first leader binds the incarnations of all three (and all three
	// hold that configuration) before anything else happens.
	leader := mbSettle(t, c.servers, 300*time.Millisecond)

	// Roles: A leads, C is cut off, B is the other one.
	a := leader
	b, cc := mbTwoFollowers(t, c.servers, a)
	t.Logf("A=%s (leader) B=%s C=%s; before the cut:%s", a.Name(), b.Name(), cc.Name(), mbDump(c.servers...))

	pn.isolate(cc.Name())
	ab := []*exraft.Server{a, b}
	writeAny(t, ab, "set v V")
	mbAllHave(t, ab, "v", "V")
	if got := dirty(cc, "get v"); got == "V" {
		t.Fatalf("scenario broken: the isolated %s applied v=V", cc.Name())
	}
	t.Logf("V committed on A and B:%s", mbDump(c.servers...))

	b2, _ := mbRestart(t, b, initial, pn, nil)
	c.stop(a)
	t.Logf("B restarted blank and A stopped; B's v = %q:%s", dirty(b2, "get v"), mbDump(b2, cc))
	pn.heal(cc.Name())

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
			if err == nil && string(res) != "V" {
				t.Fatalf("LOST COMMIT: %s leads in term %d and its linearizable Read of v returns %q; V was committed:%s",
					s.Name(), st.Term, res, mbDump(survivors...))
			}
			t.Logf("%s leads in term %d; Read(get v) = %q, %v", s.Name(), st.Term, res, err)
		}
		if got := dirty(cc, "get v"); got == "V" {
			t.Fatalf("scenario broken: %s (which never got V) applied v=V:%s", cc.Name(), mbDump(survivors...))
		}
	}
	t.Logf("after %v: terms %v -> {%s:%d %s:%d}:%s", window, startTerms,
		b2.Name(), b2.Status().Term, cc.Name(), cc.Status().Term, mbDump(survivors...))
	if len(leaders) != 0 {
		t.Errorf("a leader was elected among the blank %s and %s (seen leading, in samples: %v); "+
			"docs/design.md §4: a cluster that lost a majority at once elects no leader",
			b2.Name(), cc.Name(), leaders)
	}
}

// TestRestartedFollowerRejoinsAutomatically: a follower restarted blank with
// the same name and address is caught up and re-admitted by the leader on its
// own, and then counts as a voter.
func TestRestartedFollowerRejoinsAutomatically(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	initial := mbPeers(c.servers)
	leader := leaderVia(t, c.servers[0], c.servers)
	want := map[string]string{}
	for i := range 5 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		writeAny(t, c.servers, "set "+k+" "+v)
		want[k] = v
	}
	leader = mbSettle(t, c.servers, 300*time.Millisecond)
	f, g := mbTwoFollowers(t, c.servers, leader)

	restartedAt := time.Now()
	f2, _ := mbRestart(t, f, initial, nil, nil)
	eventually(t, waitLong, func() bool {
		for k, v := range want {
			if dirty(f2, "get "+k) != v {
				return false
			}
		}
		lst, fst := leader.Status(), f2.Status()
		return lst.Role == exraft.Leader && mbHasPeer(lst.Members, f2.Peer()) && len(lst.Learners) == 0 &&
			fst.Role == exraft.Follower && fst.Leader == leader.Peer()
	}, "the restarted %s to be caught up and re-admitted by %s with no call:%s",
		f2.Name(), leader.Name(), mbDumpLazy(leader, f2, g))
	t.Logf("%s re-admitted %v after its restart:%s", f2.Name(), time.Since(restartedAt).Round(time.Millisecond),
		mbDump(leader, f2, g))

	// With the other original follower gone, the leader and the restarted
	// server must still commit: the new incarnation counts.
	c.stop(g)
	rest := []*exraft.Server{leader, f2}
	if err := mbCommitWithin(rest, "set after-restart yes", waitShort); err != nil {
		t.Fatalf("with %s stopped, the leader and the restarted %s cannot commit within %v (%v): "+
			"the new incarnation does not count as a voter:%s", g.Name(), f2.Name(), waitShort, err, mbDump(rest...))
	}
	mbAllHave(t, rest, "after-restart", "yes")
	for k, v := range want {
		if got := readAny(t, rest, "get "+k); got != v {
			t.Fatalf("after the restart, %s = %q, want %q", k, got, v)
		}
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
		t.Run(name, func(t *testing.T) { mbAddServerByHand(t, waitCaughtUp) })
	}
}

func mbAddServerByHand(t *testing.T, waitCaughtUp bool) {
	noAuto := func(cfg *exraft.Config) { cfg.DisableAutoRejoin = true }
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) { noAuto(cfg) }})
	initial := mbPeers(c.servers)
	leader := leaderVia(t, c.servers[0], c.servers)
	for i := range 3 {
		writeAny(t, c.servers, fmt.Sprintf("set k%d v%d", i, i))
	}
	leader = mbSettle(t, c.servers, 300*time.Millisecond)
	f, g := mbTwoFollowers(t, c.servers, leader)

	f2, _ := mbRestart(t, f, initial, nil, noAuto)
	if waitCaughtUp {
		eventually(t, waitLong, func() bool { return dirty(f2, "get k2") == "v2" },
			"the leader to replicate to the restarted %s:%s", f2.Name(), mbDumpLazy(leader, f2))
		if l := leader.Status().Learners; len(l) != 0 {
			t.Errorf("with DisableAutoRejoin the leader lists Learners %v on its own", l)
		}
	}
	before := leader.Status()
	began := time.Now()
	if err := leader.AddServer(ctxFor(t, waitLong), f2.Peer()); err != nil {
		t.Fatalf("AddServer(%v) of the restarted server: %v:%s", f2.Peer(), err, mbDump(leader, f2, g))
	}
	after := leader.Status()
	t.Logf("AddServer(%v) returned nil after %v; leader before: term=%d last=%d commit=%d, after: term=%d last=%d commit=%d",
		f2.Peer(), time.Since(began).Round(time.Millisecond), before.Term, before.LastIndex, before.CommitIndex,
		after.Term, after.LastIndex, after.CommitIndex)
	if after.LastIndex == before.LastIndex {
		t.Errorf("AddServer of the restarted %s returned nil without appending a configuration entry "+
			"(leader's last index still %d): the new incarnation was not re-admitted:%s",
			f2.Name(), after.LastIndex, mbDump(leader, f2, g))
	}
	if after.Role == exraft.Leader && after.Term == before.Term && after.CommitIndex < after.LastIndex {
		t.Errorf("AddServer returned before its configuration entry committed (leader commit %d < last %d, "+
			"nothing else was proposed); docs/design.md §6: AddServer returns when the configuration commits:%s",
			after.CommitIndex, after.LastIndex, mbDump(leader, f2, g))
	}
	if !mbHasPeer(after.Members, f2.Peer()) {
		t.Fatalf("leader's Members %v lack %v", after.Members, f2.Peer())
	}
	for i := range 3 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		eventually(t, waitLong, func() bool { return dirty(f2, "get "+k) == v },
			"restarted %s to hold %s=%s:%s", f2.Name(), k, v, mbDumpLazy(leader, f2))
	}

	c.stop(g)
	rest := []*exraft.Server{leader, f2}
	if err := mbCommitWithin(rest, "set after-add yes", waitShort); err != nil {
		t.Fatalf("with %s stopped, the leader and the re-added %s cannot commit within %v (%v): "+
			"the new incarnation does not count as a voter:%s", g.Name(), f2.Name(), waitShort, err, mbDump(rest...))
	}
	mbAllHave(t, rest, "after-add", "yes")
}

// mbCommitWithin writes cmd at whichever of servers leads, retrying while
// leadership moves, for at most d; it returns the last error if no write
// committed. Only for idempotent commands.
func mbCommitWithin(servers []*exraft.Server, cmd string, d time.Duration) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	last := errors.New("no server was leader")
	for {
		for _, s := range servers {
			if s.Status().Role != exraft.Leader {
				continue
			}
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			_, err := s.Write(ctx, []byte(cmd))
			cancel()
			if err == nil {
				return nil
			}
			last = err
		}
		if time.Now().After(deadline) {
			return last
		}
		<-tick.C
	}
}

// ---------------------------------------------------------------------------
// RemoveServer

// TestRemoveLeaderHandsOver: a leader that removes itself hands over at once
// (TimeoutNow), not after the followers' election timeout. The election
// timeouts are long here so that the two are far apart.
func TestRemoveLeaderHandsOver(t *testing.T) {
	const electMin, electMax = 3 * time.Second, 4 * time.Second
	const handoverBound = 2 * time.Second // below electMin: failure detection cannot be that fast
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = electMin, electMax
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set a 1")
	old := mbSettle(t, c.servers, 500*time.Millisecond)
	rest := others(c.servers, old)

	called := time.Now()
	if err := old.RemoveServer(ctxFor(t, waitLong), old.Name()); err != nil {
		t.Fatalf("%s.RemoveServer(itself): %v:%s", old.Name(), err, mbDump(c.servers...))
	}
	returned := time.Now()
	var next *exraft.Server
	eventually(t, waitLong, func() bool {
		for _, s := range rest {
			if s.Status().Role == exraft.Leader {
				next = s
				return true
			}
		}
		return false
	}, "a new leader among %v:%s", names(rest), mbDumpLazy(c.servers...))
	elected := time.Now()
	t.Logf("RemoveServer took %v; new leader %s %v after it returned (%v after the call); ElectionTimeoutMin %v",
		returned.Sub(called).Round(time.Millisecond), next.Name(), elected.Sub(returned).Round(time.Millisecond),
		elected.Sub(called).Round(time.Millisecond), electMin)
	if d := elected.Sub(returned); d >= handoverBound {
		t.Errorf("the new leader appeared %v after the removal committed, not below %v: "+
			"the handover waited for failure detection instead of TimeoutNow", d, handoverBound)
	}

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
			if got := s.Status().Term; got != terms[s.Name()] {
				t.Fatalf("%s's term moved from %d to %d after the handover:%s",
					s.Name(), terms[s.Name()], got, mbDump(c.servers...))
			}
		}
		if old.Status().Role == exraft.Leader {
			t.Fatalf("the removed %s leads again:%s", old.Name(), mbDump(c.servers...))
		}
	}
	if got := mustWrite(t, next, "set a 2"); got != "1" {
		t.Fatalf("write on the new leader returned %q, want the previous value 1", got)
	}
	if got := mustRead(t, next, "get a"); got != "2" {
		t.Fatalf("after the handover, a = %q, want 2", got)
	}
	if got := memberNames(next.Status().Members); !sameStrings(got, names(rest)) {
		t.Fatalf("new leader's Members = %v, want %v", got, names(rest))
	}
	if old.Status().Role == exraft.Leader {
		t.Fatalf("the removed %s leads again:%s", old.Name(), mbDump(c.servers...))
	}
}

// TestRemovedServerStaysQuiet: a removed follower that keeps running does not
// disturb the cluster: no term moves, it never leads, writes commit.
func TestRemovedServerStaysQuiet(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set a 0")
	leader := mbSettle(t, c.servers, 300*time.Millisecond)
	x, y := mbTwoFollowers(t, c.servers, leader)

	if err := leader.RemoveServer(ctxFor(t, waitLong), x.Name()); err != nil {
		t.Fatalf("RemoveServer(%s): %v:%s", x.Name(), err, mbDump(c.servers...))
	}
	rest := []*exraft.Server{leader, y}
	want := names(rest)
	if got := memberNames(leader.Status().Members); !sameStrings(got, memberNames(mbPeers(rest))) {
		t.Fatalf("leader's Members after removing %s = %v, want %v", x.Name(), got, want)
	}
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
			if got := s.Status().Term; got != terms[s.Name()] {
				t.Fatalf("%s's term moved from %d to %d with the removed %s running:%s",
					s.Name(), terms[s.Name()], got, x.Name(), mbDump(c.servers...))
			}
		}
		if st := x.Status(); st.Role == exraft.Leader {
			t.Fatalf("the removed %s became leader:%s", x.Name(), mbDump(c.servers...))
		}
		if time.Since(lastWrite) >= 100*time.Millisecond {
			lastWrite = time.Now()
			writes++
			mustWrite(t, leader, fmt.Sprintf("set a %d", writes))
		}
	}
	if got := mustRead(t, leader, "get a"); got != fmt.Sprint(writes) {
		t.Fatalf("a = %q, want %d", got, writes)
	}
	mbAllHave(t, rest, "a", fmt.Sprint(writes))
	t.Logf("%d writes committed over %v; terms %v; removed server:%s", writes, window, terms, mbDump(x))
}

// ---------------------------------------------------------------------------
// AddServer

// TestConcurrentAddServers: three AddServer calls at once queue behind each
// other and all succeed.
func TestConcurrentAddServers(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	leader := leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set base 1")
	leader = mbSettle(t, c.servers, 300*time.Millisecond)

	var added []*exraft.Server
	for i := 4; i <= 6; i++ {
		s, _ := mbStartAlone(t, fmt.Sprintf("raft%d", i))
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
			errs[i] = leader.AddServer(ctxFor(t, waitLong), s.Peer())
			took[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	t.Logf("three concurrent AddServer calls done in %v (each: %v)", time.Since(began).Round(time.Millisecond), took)
	all := append(append([]*exraft.Server(nil), c.servers...), added...)
	for i, err := range errs {
		if err != nil {
			t.Errorf("AddServer(%v): %v", added[i].Peer(), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	wantMembers := memberNames(mbPeers(all))
	if got := memberNames(leader.Status().Members); !sameStrings(got, wantMembers) {
		t.Fatalf("leader's Members = %v, want %v:%s", got, wantMembers, mbDump(all...))
	}
	for _, s := range all {
		if !mbHasPeer(leader.Status().Members, s.Peer()) {
			t.Fatalf("leader's Members %v lack %v", leader.Status().Members, s.Peer())
		}
	}
	writeAny(t, all, "set after-add 6")
	mbAllHave(t, all, "after-add", "6")
	mbAllHave(t, all, "base", "1")
	eventually(t, waitLong, func() bool {
		for _, s := range all {
			if !sameStrings(memberNames(s.Status().Members), wantMembers) {
				return false
			}
		}
		return true
	}, "every server to see six members:%s", mbDumpLazy(all...))
}

// TestAddUnreachableServerEndsWithCtx: AddServer of a server that never
// answers ends with its ctx, leaves the configuration as it was, and frees the
// queue for the next change.
func TestAddUnreachableServerEndsWithCtx(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set a 1")
	leader := mbSettle(t, c.servers, 300*time.Millisecond)
	members := memberNames(leader.Status().Members)

	ghost := exraft.Peer{Name: "ghost", Addr: mbDeadAddr(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	err := leader.AddServer(ctx, ghost)
	took := time.Since(began)
	t.Logf("AddServer(%v) returned %v after %v", ghost, err, took.Round(time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AddServer of an unreachable server: got %v, want context.DeadlineExceeded:%s", err, mbDump(leader))
	}
	if took > 1*time.Second+waitShort/2 {
		t.Errorf("AddServer with a 1s ctx took %v", took)
	}
	if got := memberNames(leader.Status().Members); !sameStrings(got, members) {
		t.Fatalf("Members after the failed AddServer = %v, want %v", got, members)
	}
	eventually(t, waitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the failed AddServer:%s", mbDumpLazy(leader))

	joiner, _ := mbStartAlone(t, "raft4")
	if err := leader.AddServer(ctxFor(t, waitLong), joiner.Peer()); err != nil {
		t.Fatalf("AddServer(%v) after the failed one: %v:%s", joiner.Peer(), err, mbDump(leader, joiner))
	}
	st := leader.Status()
	if !mbHasPeer(st.Members, joiner.Peer()) || mbHasName(st.Members, ghost.Name) || len(st.Members) != 4 {
		t.Fatalf("leader's Members = %v, want the three and %v", st.Members, joiner.Peer())
	}
	all := append(append([]*exraft.Server(nil), c.servers...), joiner)
	writeAny(t, all, "set b 2")
	mbAllHave(t, all, "b", "2")
}

// TestLearnersInStatus: a server being caught up shows in the leader's
// Status().Learners while AddServer is pending, and leaves it when the call is
// cancelled.
func TestLearnersInStatus(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set a 1")
	leader := mbSettle(t, c.servers, 300*time.Millisecond)
	members := memberNames(leader.Status().Members)
	if l := leader.Status().Learners; len(l) != 0 {
		t.Fatalf("leader's Learners = %v before any AddServer", l)
	}

	ghost := exraft.Peer{Name: "ghost", Addr: mbDeadAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- leader.AddServer(ctx, ghost) }()

	eventually(t, waitShort, func() bool { return mbHasPeer(leader.Status().Learners, ghost) },
		"the leader's Learners to list %v while AddServer is pending:%s", ghost, mbDumpLazy(leader))
	select {
	case err := <-done:
		t.Fatalf("AddServer of an unreachable server returned %v before its ctx ended", err)
	default:
	}
	st := leader.Status()
	if mbHasName(st.Members, ghost.Name) {
		t.Fatalf("the learner %v is already in Members %v", ghost, st.Members)
	}
	for _, f := range others(c.servers, leader) {
		if l := f.Status().Learners; len(l) != 0 {
			t.Errorf("follower %s reports Learners %v; only the leader reports them", f.Name(), l)
		}
	}
	t.Logf("while pending:%s", mbDump(leader))

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled AddServer returned %v, want context.Canceled", err)
		}
	case <-time.After(waitShort):
		t.Fatalf("AddServer did not return within %v of its ctx being cancelled", waitShort)
	}
	eventually(t, waitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the cancel:%s", mbDumpLazy(leader))
	if got := memberNames(leader.Status().Members); !sameStrings(got, members) {
		t.Fatalf("Members after the cancelled AddServer = %v, want %v", got, members)
	}
	writeAny(t, c.servers, "set a 2")
}
