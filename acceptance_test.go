package exraft_test

// End-to-end acceptance tests of the public contract (the README), on real
// loopback TCP. Each test starts its own servers and stops them at its end.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exraft/exraft"
)

// TestExRaftReadmeWalkthrough follows the README: two servers bootstrap a
// cluster, a third one started alone with MinMajority 2 waits until the leader
// adds it, writes go to the leader, followers redirect, and the cluster survives
// the loss of its leader.
func TestExRaftReadmeWalkthrough(t *testing.T) {
	l1, l2 := listen(t), listen(t)
	p1 := exraft.Peer{Name: "raft1", Addr: l1.Addr().String()}
	p2 := exraft.Peer{Name: "raft2", Addr: l2.Addr().String()}
	initial := []exraft.Peer{p1, p2}

	cfg1 := fastConfig("raft1")
	cfg1.Listener, cfg1.InitialConfig = l1, initial
	cfg2 := fastConfig("raft2")
	cfg2.Listener, cfg2.InitialConfig = l2, initial
	cfg3 := fastConfig("raft3")
	cfg3.MinMajority = 2

	raft3 := start(t, newKV(), cfg3) // alone first: it must wait, not lead
	raft1 := start(t, newKV(), cfg1)
	raft2 := start(t, newKV(), cfg2)
	all := []*exraft.Server{raft1, raft2, raft3}
	if raft1.Peer() != p1 || raft2.Peer() != p2 {
		t.Fatalf("Peer() = %v, %v; want %v, %v", raft1.Peer(), raft2.Peer(), p1, p2)
	}
	if raft3.Peer().Name != "raft3" || raft3.Peer().Addr != raft3.Addr() {
		t.Fatalf("raft3.Peer() = %v, Addr() = %q", raft3.Peer(), raft3.Addr())
	}
	if _, _, err := net.SplitHostPort(raft3.Addr()); err != nil || strings.HasSuffix(raft3.Addr(), ":0") {
		t.Fatalf("raft3.Addr() = %q: want the bound host:port (err %v)", raft3.Addr(), err)
	}

	lp, err := raft1.AwaitLeader(ctxFor(t, waitLong))
	if err != nil {
		t.Fatalf("raft1.AwaitLeader: %v", err)
	}
	if lp != p1 && lp != p2 {
		t.Fatalf("raft1.AwaitLeader = %v, want raft1 or raft2", lp)
	}
	leader := raft1
	if lp == p2 {
		leader = raft2
	}
	// The server AwaitLeader names knows that it leads.
	if st := leader.Status(); st.Role != exraft.Leader {
		t.Fatalf("raft1.AwaitLeader named %v, but its Status says %v in term %d, leader %v",
			lp, st.Role, st.Term, st.Leader)
	}

	// raft3 waits passively: over several election timeouts it neither leads
	// nor learns a leader.
	_, err = raft3.AwaitLeader(ctxFor(t, noLeaderWindow))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("raft3.AwaitLeader before it is added: got %v, want context.DeadlineExceeded", err)
	}
	if p, ok := raft3.Leader(); ok {
		t.Fatalf("raft3.Leader() = %v, true before it was added; want unknown", p)
	}
	if st := raft3.Status(); st.Role == exraft.Leader || st.Leader != (exraft.Peer{}) {
		t.Fatalf("raft3 before it was added: role %v, leader %v", st.Role, st.Leader)
	}
	_, err = raft3.Write(ctxFor(t, waitShort), []byte("set lonely yes"))
	if !errors.Is(err, exraft.ErrNoLeader) || !errors.Is(err, exraft.ErrNotLeader) {
		t.Fatalf("Write on raft3 with no leader: got %v, want ErrNoLeader (matching ErrNotLeader)", err)
	}

	// The leader adds raft3.
	if err := leader.AddServer(ctxFor(t, waitLong), raft3.Peer()); err != nil {
		t.Fatalf("AddServer(raft3) on leader %s: %v", leader.Name(), err)
	}
	if got := memberNames(leader.Status().Members); !sameStrings(got, []string{"raft1", "raft2", "raft3"}) {
		t.Fatalf("leader's Members after AddServer = %v, want raft1 raft2 raft3", got)
	}
	// Adding a member again is a no-op.
	if err := leader.AddServer(ctxFor(t, waitLong), raft3.Peer()); err != nil {
		t.Fatalf("AddServer of a current member: %v, want nil", err)
	}
	if got := memberNames(leader.Status().Members); len(got) != 3 {
		t.Fatalf("Members after a repeated AddServer = %v, want 3 members", got)
	}
	if l3 := leaderVia(t, raft3, all); l3 != leader {
		t.Fatalf("raft3 follows %s, want %s", l3.Name(), leader.Name())
	}

	// Writes go to the leader and return Apply's result.
	if got := mustWrite(t, leader, "set greeting hello"); got != "ok" {
		t.Fatalf("first write returned %q, want %q", got, "ok")
	}
	if got := mustWrite(t, leader, "set greeting world"); got != "hello" {
		t.Fatalf("second write returned %q, want the previous value %q", got, "hello")
	}

	// Followers redirect, in process and by address.
	for _, f := range others(all, leader) {
		if l := leaderVia(t, f, all); l != leader {
			t.Fatalf("%s follows %s, want %s", f.Name(), l.Name(), leader.Name())
		}
		checkRedirect := func(what string, err error) {
			t.Helper()
			var re *exraft.RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("%s on follower %s: got %v (%T), want a *RedirectError", what, f.Name(), err, err)
			}
			if re.Leader != leader.Peer() {
				t.Fatalf("%s on follower %s: redirect names %v, want %v", what, f.Name(), re.Leader, leader.Peer())
			}
			if !errors.Is(err, exraft.ErrNotLeader) {
				t.Fatalf("%s on follower %s: %v does not match ErrNotLeader", what, f.Name(), err)
			}
		}
		_, err := f.Write(ctxFor(t, waitShort), []byte("set greeting from-follower"))
		checkRedirect("Write", err)
		_, err = f.Read(ctxFor(t, waitShort), []byte("get greeting"))
		checkRedirect("Read", err)
		_, err = exraft.Write(ctxFor(t, waitShort), f.Addr(), []byte("set greeting from-remote"))
		checkRedirect("remote Write", err)
		_, err = exraft.Read(ctxFor(t, waitShort), f.Addr(), []byte("get greeting"))
		checkRedirect("remote Read", err)
	}
	// Redirected writes were not applied.
	if got := mustRead(t, leader, "get greeting"); got != "world" {
		t.Fatalf("Read on the leader = %q, want %q", got, "world")
	}

	// The leader goes away; a survivor takes over with the data. First let
	// raft3 catch up: AddServer returns once its configuration commits, which
	// does not wait for raft3 itself to hold it, and a server that does not
	// know it is a voter yet refuses TriggerElection.
	eventually(t, waitLong, func() bool {
		return raft3.Status().AppliedIndex >= leader.Status().CommitIndex
	}, "raft3 to catch up with the leader; statuses:%v", statuses(all))
	stopped := leader.Name()
	if err := exraft.StopServer(leader); err != nil {
		t.Fatalf("StopServer(%s): %v", stopped, err)
	}
	survivors := others(all, leader)
	asker := raft3
	if leader == raft3 {
		asker = survivors[0]
	} else if err := raft3.TriggerElection(ctxFor(t, waitShort)); err != nil {
		t.Fatalf("raft3.TriggerElection: %v (raft3's status: %+v; stopped leader's: %+v)", err, raft3.Status(), leader.Status())
	}
	var newLeader *exraft.Server
	eventually(t, waitLong, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		p, err := asker.AwaitLeader(ctx)
		if err != nil || p.Name == stopped {
			return false
		}
		for _, s := range survivors {
			if s.Peer() == p {
				newLeader = s
				return true
			}
		}
		t.Fatalf("%s.AwaitLeader returned %v, which is no survivor", asker.Name(), p)
		return false
	}, "%s to learn a new leader among %v; statuses:%v", asker.Name(), names(survivors), statuses(survivors))

	if got := readAny(t, []*exraft.Server{newLeader}, "get greeting"); got != "world" {
		t.Fatalf("Read on the new leader %s = %q, want %q", newLeader.Name(), got, "world")
	}
	if got := mustWrite(t, newLeader, "set greeting again"); got != "world" {
		t.Fatalf("write on the new leader returned %q, want %q", got, "world")
	}
	if got := mustRead(t, newLeader, "get greeting"); got != "again" {
		t.Fatalf("Read after the new write = %q, want %q", got, "again")
	}
}

// TestOneServerCluster: a server that is its own cluster leads at once.
func TestOneServerCluster(t *testing.T) {
	for _, tc := range []struct {
		name        string
		withSelf    bool
		minMajority int
	}{
		{"empty InitialConfig, MinMajority 0", false, 0},
		{"empty InitialConfig, MinMajority 1", false, 1},
		{"InitialConfig self, MinMajority 0", true, 0},
		{"InitialConfig self, MinMajority 1", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastConfig("solo")
			cfg.MinMajority = tc.minMajority
			if tc.withSelf {
				l := listen(t)
				cfg.Listener = l
				cfg.InitialConfig = []exraft.Peer{{Name: "solo", Addr: l.Addr().String()}}
			}
			s := start(t, newKV(), cfg)
			p, err := s.AwaitLeader(ctxFor(t, 5*time.Second))
			if err != nil {
				t.Fatalf("AwaitLeader: %v", err)
			}
			if p != s.Peer() {
				t.Fatalf("AwaitLeader = %v, want itself %v", p, s.Peer())
			}
			if lp, ok := s.Leader(); !ok || lp != s.Peer() {
				t.Fatalf("Leader() = %v, %v; want itself", lp, ok)
			}
			st := s.Status()
			if st.Role != exraft.Leader || st.Name != "solo" || st.Addr != s.Addr() || st.Term == 0 {
				t.Fatalf("Status = %+v, want a leader named solo at %s in a term > 0", st, s.Addr())
			}
			if got := memberNames(st.Members); !sameStrings(got, []string{"solo"}) {
				t.Fatalf("Members = %v, want [solo]", got)
			}
			if got := mustWrite(t, s, "set a 1"); got != "ok" {
				t.Fatalf("Write = %q, want ok", got)
			}
			if got := mustWrite(t, s, "set a 2"); got != "1" {
				t.Fatalf("Write = %q, want 1", got)
			}
			if got := mustRead(t, s, "get a"); got != "2" {
				t.Fatalf("Read = %q, want 2", got)
			}
			if got := dirty(s, "get a"); got != "2" {
				t.Fatalf("ReadDirty = %q, want 2", got)
			}
			if got, err := exraft.Read(ctxFor(t, waitShort), s.Addr(), []byte("get a")); err != nil || string(got) != "2" {
				t.Fatalf("remote Read = %q, %v; want 2", got, err)
			}
			st = s.Status()
			if st.CommitIndex < 2 || st.AppliedIndex < 2 || st.LastIndex < st.CommitIndex {
				t.Fatalf("Status after two writes: %+v", st)
			}
		})
	}
}

// TestMinMajorityAboveMembersNeverElects: three servers whose quorum is four
// never elect a leader, and writes fail with ErrNoLeader.
func TestMinMajorityAboveMembersNeverElects(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) { cfg.MinMajority = 4 }})
	for _, s := range c.servers {
		_, err := s.AwaitLeader(ctxFor(t, noLeaderWindow))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s.AwaitLeader: got %v, want context.DeadlineExceeded", s.Name(), err)
		}
	}
	// Even a forced election cannot reach a quorum of four. (The server may
	// refuse to campaign at all, since it can never win.)
	if err := c.servers[0].TriggerElection(ctxFor(t, waitShort)); err != nil {
		t.Logf("TriggerElection with a quorum above the member count: %v", err)
		if errors.Is(err, exraft.ErrStopped) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("TriggerElection: %v", err)
		}
	}
	_, err := c.servers[0].AwaitLeader(ctxFor(t, noLeaderWindow))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitLeader after TriggerElection: got %v, want context.DeadlineExceeded", err)
	}
	for _, s := range c.servers {
		if st := s.Status(); st.Role == exraft.Leader {
			t.Fatalf("%s is leader with 3 members and MinMajority 4", s.Name())
		}
		if p, ok := s.Leader(); ok {
			t.Fatalf("%s.Leader() = %v; want unknown", s.Name(), p)
		}
		_, err := s.Write(ctxFor(t, waitShort), []byte("set a 1"))
		if !errors.Is(err, exraft.ErrNoLeader) || !errors.Is(err, exraft.ErrNotLeader) {
			t.Fatalf("%s.Write: got %v, want ErrNoLeader (matching ErrNotLeader)", s.Name(), err)
		}
		_, err = exraft.Write(ctxFor(t, waitShort), s.Addr(), []byte("set a 1"))
		if !errors.Is(err, exraft.ErrNoLeader) || !errors.Is(err, exraft.ErrNotLeader) {
			t.Fatalf("remote Write on %s: got %v, want ErrNoLeader (matching ErrNotLeader)", s.Name(), err)
		}
		var re *exraft.RedirectError
		if errors.As(err, &re) {
			t.Fatalf("remote Write on %s with no leader gave a redirect to %v", s.Name(), re.Leader)
		}
		if got := dirty(s, "get a"); got != "" {
			t.Fatalf("%s applied a write without a leader: a = %q", s.Name(), got)
		}
	}
}

// TestLeaderFailover: stop the leader (twice with five servers); a new leader
// is elected with every committed write, and new writes commit.
func TestLeaderFailover(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d servers", n), func(t *testing.T) {
			c := startCluster(t, n, clusterOptions{})
			leader := leaderVia(t, c.servers[0], c.servers)
			written := map[string]string{}
			for round := 0; round < (n-1)/2; round++ {
				for i := range 5 {
					k, v := fmt.Sprintf("k%d-%d", round, i), fmt.Sprintf("v%d-%d", round, i)
					writeAny(t, c.alive(), "set "+k+" "+v)
					written[k] = v
				}
				old := leader.Name()
				c.stop(leader)
				leader = awaitLeader(t, c.alive(), old)
				if leader.Name() == old {
					t.Fatalf("the stopped leader is still leader")
				}
				// Every survivor comes to know the new leader, not the stopped one.
				for _, s := range c.alive() {
					eventually(t, waitLong, func() bool {
						p, ok := s.Leader()
						return ok && p.Name != old && c.byName(p.Name) != nil && !c.stopped[p.Name]
					}, "%s to follow a live leader", s.Name())
				}
				for k, v := range written {
					if got := readAny(t, c.alive(), "get "+k); got != v {
						t.Fatalf("after failover %d: %s = %q, want %q", round+1, k, got, v)
					}
				}
				writeAny(t, c.alive(), fmt.Sprintf("set after%d yes", round))
				written[fmt.Sprintf("after%d", round)] = "yes"
				if got := readAny(t, c.alive(), fmt.Sprintf("get after%d", round)); got != "yes" {
					t.Fatalf("write after failover not readable: %q", got)
				}
				leader = awaitLeader(t, c.alive())
			}
			assertConverged(t, c, c.alive())
		})
	}
}

// assertConverged waits until every server in servers applied the same
// commands in the same order.
func assertConverged(t *testing.T, c *cluster, servers []*exraft.Server) {
	t.Helper()
	eventually(t, waitLong, func() bool {
		first := c.kvOf(servers[0]).history()
		for _, s := range servers[1:] {
			if !sameStrings(first, c.kvOf(s).history()) {
				return false
			}
		}
		return true
	}, "servers %v to apply the same log", names(servers))
	for _, s := range servers {
		if c.kvOf(s).overlap.Load() {
			t.Fatalf("%s: the state machine was called from two goroutines at once", s.Name())
		}
	}
}

// TestPartitionedLeaderCannotCommitOrReadStale isolates the leader: the
// majority elects another leader and commits; the old leader can neither
// commit nor serve a stale linearizable Read; after healing it catches up.
func TestPartitionedLeaderCannotCommitOrReadStale(t *testing.T) {
	for _, tc := range []struct {
		n int
		// slowOldLeader: raft1 has long election timeouts and is made leader,
		// so that, isolated, it keeps believing it leads (check quorum is
		// slow) while the majority elects and commits: its Read then must
		// not answer from its stale state.
		slowOldLeader bool
	}{{3, false}, {5, false}, {3, true}} {
		name := fmt.Sprintf("%d servers", tc.n)
		if tc.slowOldLeader {
			name += ", old leader still believes it leads"
		}
		t.Run(name, func(t *testing.T) {
			pn := newPartitionNet()
			c := startCluster(t, tc.n, clusterOptions{
				wrap: func(i int, name string, l net.Listener) net.Listener { return pn.listener(name, l) },
				configure: func(i int, cfg *exraft.Config) {
					cfg.Dial = pn.dialer(cfg.Name)
					if tc.slowOldLeader && i == 0 {
						cfg.ElectionTimeoutMin = 4 * time.Second
						cfg.ElectionTimeoutMax = 5 * time.Second
					}
				},
			})
			old := leaderVia(t, c.servers[0], c.servers)
			if tc.slowOldLeader && old != c.servers[0] {
				old = c.servers[0]
				var last time.Time
				eventually(t, waitLong, func() bool {
					if old.Status().Role == exraft.Leader {
						return true
					}
					if time.Since(last) > time.Second {
						last = time.Now()
						if err := old.TriggerElection(ctxFor(t, waitShort)); err != nil {
							t.Fatalf("TriggerElection(%s): %v", old.Name(), err)
						}
					}
					return false
				}, "%s to win the election it triggered", old.Name())
			}
			if got := mustWrite(t, old, "set x old"); got != "ok" {
				t.Fatalf("write before the partition returned %q", got)
			}
			majority := others(c.servers, old)
			eventually(t, waitLong, func() bool {
				for _, s := range majority {
					if dirty(s, "get x") != "old" {
						return false
					}
				}
				return true
			}, "every server to apply x=old")

			pn.isolate(old.Name())

			newLeader := awaitLeader(t, majority)
			writeAny(t, majority, "set x new")
			if got := readAny(t, majority, "get x"); got != "new" {
				t.Fatalf("majority side reads x = %q, want new", got)
			}
			newLeader = awaitLeader(t, majority)

			// The old leader still holds the old value locally...
			if got := dirty(old, "get x"); got != "old" {
				t.Fatalf("isolated old leader's ReadDirty = %q, want old", got)
			}
			// ...but can neither commit nor read it linearizably.
			if st := old.Status(); st.Role == exraft.Leader {
				t.Logf("isolated %s still believes it leads (term %d; the majority's leader %s is in term %d)",
					old.Name(), st.Term, newLeader.Name(), newLeader.Status().Term)
			} else if tc.slowOldLeader {
				t.Logf("isolated %s already stepped down (%v): the stale-read check is weaker this run", old.Name(), st.Role)
			}
			res, err := old.Read(ctxFor(t, time.Second), []byte("get x"))
			if err == nil {
				t.Fatalf("isolated old leader served a linearizable Read: %q (the committed value is new)", res)
			}
			t.Logf("isolated old leader's Read: %v", err)
			res, err = old.Write(ctxFor(t, time.Second), []byte("set y from-old-leader"))
			if err == nil {
				t.Fatalf("isolated old leader committed a write (result %q)", res)
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, exraft.ErrLeadershipLost) &&
				!errors.Is(err, exraft.ErrNotLeader) {
				t.Logf("isolated old leader's Write failed with an unexpected error: %v", err)
			}
			t.Logf("isolated old leader's Write: %v", err)

			pn.heal(old.Name())

			eventually(t, waitLong, func() bool {
				p, ok := old.Leader()
				return ok && p.Name != old.Name() && dirty(old, "get x") == "new"
			}, "the old leader to follow the new one and see x=new")
			if st := old.Status(); st.Role == exraft.Leader && newLeader.Status().Role == exraft.Leader &&
				st.Term == newLeader.Status().Term {
				t.Fatalf("two leaders in term %d", st.Term)
			}
			// The write the old leader accepted in isolation never commits.
			writeAny(t, c.servers, "set z final")
			eventually(t, waitLong, func() bool {
				for _, s := range c.servers {
					if dirty(s, "get z") != "final" {
						return false
					}
				}
				return true
			}, "every server to apply z=final")
			for _, s := range c.servers {
				if got := dirty(s, "get y"); got != "" {
					t.Fatalf("%s applied the write of the isolated old leader: y = %q", s.Name(), got)
				}
			}
			assertConverged(t, c, c.servers)
		})
	}
}

// TestValidateRejects: a Validator's refusal fails the Write with ErrRejected
// and its message, locally and remotely, and appends nothing.
func TestValidateRejects(t *testing.T) {
	vs := make([]*validatingKV, 3)
	c := startCluster(t, 3, clusterOptions{newSM: func(i int, kv *kvSM) exraft.StateMachine {
		vs[i] = &validatingKV{kvSM: kv}
		return vs[i]
	}})
	leader := leaderVia(t, c.servers[0], c.servers)
	if got := mustWrite(t, leader, "set a 1"); got != "ok" {
		t.Fatalf("valid write returned %q", got)
	}
	// Let the log settle (configuration entries binding the members included).
	var settled uint64
	eventually(t, waitLong, func() bool {
		st := leader.Status()
		if st.CommitIndex != st.LastIndex {
			return false
		}
		for _, s := range c.servers {
			if s.Status().AppliedIndex != st.LastIndex {
				return false
			}
		}
		settled = st.LastIndex
		return true
	}, "every server to apply the whole log")

	checkRejected := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: a command the validator refuses was accepted", what)
		}
		if !errors.Is(err, exraft.ErrRejected) {
			t.Fatalf("%s: got %v, want an error matching ErrRejected", what, err)
		}
		if !strings.Contains(err.Error(), validatorMessage) {
			t.Fatalf("%s: error %q does not carry the validator's message %q", what, err, validatorMessage)
		}
		if errors.Is(err, exraft.ErrNotLeader) {
			t.Fatalf("%s: a rejection matches ErrNotLeader: %v", what, err)
		}
		if li := leader.Status().LastIndex; li != settled {
			t.Fatalf("%s: LastIndex went from %d to %d: a rejected command was appended", what, settled, li)
		}
	}
	_, err := leader.Write(ctxFor(t, waitShort), []byte("bad set a 2"))
	checkRejected("Write", err)
	_, err = exraft.Write(ctxFor(t, waitShort), leader.Addr(), []byte("bad set a 3"))
	checkRejected("remote Write", err)

	if got := mustRead(t, leader, "get a"); got != "1" {
		t.Fatalf("after rejections a = %q, want 1", got)
	}
	if got := mustWrite(t, leader, "set a 4"); got != "1" {
		t.Fatalf("valid write after rejections returned %q, want 1", got)
	}
	assertConverged(t, c, c.servers)
	for i, s := range c.servers {
		for _, cmd := range c.kvs[i].history() {
			if strings.HasPrefix(cmd, "bad") {
				t.Fatalf("%s applied a refused command %q", s.Name(), cmd)
			}
		}
	}
}

// TestStopServer: StopServer frees the port, ends every goroutine, closes the
// state machine once, and every later or waiting call fails with ErrStopped.
func TestStopServer(t *testing.T) {
	t.Run("cleanup", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		client := &exraft.Client{}
		cl := make([]*closingKV, 3)
		c := startCluster(t, 3, clusterOptions{newSM: func(i int, kv *kvSM) exraft.StateMachine {
			cl[i] = &closingKV{kvSM: kv}
			return cl[i]
		}})
		leader := leaderVia(t, c.servers[0], c.servers)
		mustWrite(t, leader, "set a 1")
		if _, err := client.Write(ctxFor(t, waitShort), leader.Addr(), []byte("set b 2")); err != nil {
			t.Fatalf("remote Write: %v", err)
		}
		for _, s := range c.servers {
			if _, err := client.GetStatus(ctxFor(t, waitShort), s.Addr()); err != nil {
				t.Fatalf("GetStatus(%s): %v", s.Name(), err)
			}
		}
		// Follower, leader, follower: stop in an order that makes the
		// others notice.
		order := append([]*exraft.Server{others(c.servers, leader)[0], leader}, others(c.servers, leader)[1:]...)
		for _, s := range order {
			if err := exraft.StopServer(s); err != nil {
				t.Fatalf("StopServer(%s): %v", s.Name(), err)
			}
		}
		for i, s := range c.servers {
			l, err := net.Listen("tcp", s.Addr())
			if err != nil {
				t.Fatalf("%s's port is still in use after StopServer: %v", s.Name(), err)
			}
			l.Close()
			checkStopped(t, s)
			if n := cl[i].closed.Load(); n != 1 {
				t.Fatalf("%s: Close called %d times, want 1", s.Name(), n)
			}
			_ = exraft.StopServer(s) // a second stop must not close again
			_ = s.Stop()
			if n := cl[i].closed.Load(); n != 1 {
				t.Fatalf("%s: Close called %d times after repeated stops, want 1", s.Name(), n)
			}
		}
		closeIdle(client)
		waitGoroutines(t, baseline, waitShort)
	})

	t.Run("lone server frees its port", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		sm := &closingKV{kvSM: newKV()}
		cfg := fastConfig("lone")
		cfg.MinMajority = 2
		s := start(t, sm, cfg)
		done := make(chan error, 1)
		go func() {
			_, err := s.AwaitLeader(context.Background())
			done <- err
		}()
		if err := s.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, exraft.ErrStopped) {
				t.Fatalf("AwaitLeader waiting across Stop: got %v, want ErrStopped", err)
			}
		case <-time.After(waitShort):
			t.Fatalf("AwaitLeader still blocked %v after Stop", waitShort)
		}
		l, err := net.Listen("tcp", s.Addr())
		if err != nil {
			t.Fatalf("port still in use after Stop: %v", err)
		}
		l.Close()
		checkStopped(t, s)
		if n := sm.closed.Load(); n != 1 {
			t.Fatalf("Close called %d times, want 1", n)
		}
		waitGoroutines(t, baseline, waitShort)
	})

	t.Run("blocked write", func(t *testing.T) {
		// Slow elections, so that the leader keeps its leadership (check
		// quorum) for a while after losing its followers.
		c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
			cfg.HeartbeatInterval = 50 * time.Millisecond
			cfg.ElectionTimeoutMin = time.Second
			cfg.ElectionTimeoutMax = 2 * time.Second
		}})
		leader := leaderVia(t, c.servers[0], c.servers)
		mustWrite(t, leader, "set a 1")
		for _, f := range others(c.servers, leader) {
			c.stop(f)
		}
		before := leader.Status().LastIndex
		done := make(chan error, 1)
		go func() {
			_, err := leader.Write(context.Background(), []byte("set a 2"))
			done <- err
		}()
		var early error
		var returned bool
		eventually(t, waitShort, func() bool {
			select {
			case early = <-done:
				returned = true
				return true
			default:
			}
			return leader.Status().LastIndex > before
		}, "the write to be appended on the leader")
		if returned {
			t.Fatalf("Write without a quorum returned %v before the leader stopped", early)
		}
		c.stop(leader)
		select {
		case err := <-done:
			if !errors.Is(err, exraft.ErrStopped) && !errors.Is(err, exraft.ErrLeadershipLost) {
				t.Fatalf("Write blocked across Stop: got %v, want ErrStopped (or ErrLeadershipLost)", err)
			}
			if !errors.Is(err, exraft.ErrStopped) {
				t.Logf("Write blocked across Stop returned %v (leadership lost before the stop)", err)
			}
		case <-time.After(waitShort):
			t.Fatalf("Write still blocked %v after Stop", waitShort)
		}
	})
}

// TestStopAnswersEveryWaitingCall stops a server while 64 callers with no
// deadline keep writing and reading: each of them must get an answer. A
// caller whose ctx cannot end waits on its result alone, so a request that
// reached the server's queues just before Stop must still be answered.
func TestStopAnswersEveryWaitingCall(t *testing.T) {
	for round := 0; round < 10; round++ {
		cfg := fastConfig("solo")
		cfg.Listener = listen(t)
		cfg.InitialConfig = []exraft.Peer{{Name: "solo", Addr: cfg.Listener.Addr().String()}}
		s := start(t, newKV(), cfg)
		awaitLeader(t, []*exraft.Server{s})
		var succeeded sync.WaitGroup
		succeeded.Add(64)
		errs := make(chan error, 64)
		for i := 0; i < 64; i++ {
			go func() {
				first := true
				for {
					var err error
					if i%2 == 0 {
						_, err = s.Write(context.Background(), []byte("set k v"))
					} else {
						_, err = s.Read(context.Background(), []byte("get k"))
					}
					if err != nil {
						if first {
							succeeded.Done()
						}
						errs <- err
						return
					}
					if first {
						first = false
						succeeded.Done()
					}
				}
			}()
		}
		succeeded.Wait() // every caller is in its loop
		stopWithin(t, s, waitShort, fmt.Sprintf("round %d, with 64 callers waiting", round), nil)
		deadline := time.After(waitShort)
		for i := 0; i < 64; i++ {
			select {
			case err := <-errs:
				if !errors.Is(err, exraft.ErrStopped) && !errors.Is(err, exraft.ErrLeadershipLost) {
					t.Fatalf("a call across Stop returned %v, want ErrStopped", err)
				}
			case <-deadline:
				t.Fatalf("round %d: %d of 64 callers still waiting %v after Stop", round, 64-i, waitShort)
			}
		}
	}
}

// gateSM is a kvSM whose Apply of "block" waits until open is closed.
type gateSM struct {
	*kvSM
	entered, open chan struct{}
}

func (m *gateSM) Apply(command []byte) []byte {
	if string(command) == "block" {
		close(m.entered)
		<-m.open
	}
	return m.kvSM.Apply(command)
}

// TestStopAnswersCallersAnApplyWaitsOn: an Apply that waits for a caller
// of the same server, itself waiting on a write queued behind that Apply,
// must not keep Stop, or that caller, waiting for good. Stop answers the
// caller; the caller lets Apply go on.
func TestStopAnswersCallersAnApplyWaitsOn(t *testing.T) {
	cfg := fastConfig("solo")
	cfg.Listener = listen(t)
	cfg.InitialConfig = []exraft.Peer{{Name: "solo", Addr: cfg.Listener.Addr().String()}}
	sm := &gateSM{kvSM: newKV(), entered: make(chan struct{}), open: make(chan struct{})}
	var openOnce sync.Once
	open := func() { openOnce.Do(func() { close(sm.open) }) }
	t.Cleanup(open) // so that a failure leaves nothing stuck
	s := start(t, sm, cfg)
	awaitLeader(t, []*exraft.Server{s})

	blocked := make(chan error, 1)
	go func() {
		_, err := s.Write(context.Background(), []byte("block"))
		blocked <- err
	}()
	select {
	case <-sm.entered:
	case <-time.After(waitShort):
		t.Fatalf("Apply of the first write did not start within %v", waitShort)
	}
	commit := s.Status().CommitIndex
	behind := make(chan error, 1)
	go func() {
		_, err := s.Write(context.Background(), []byte("set k v"))
		behind <- err
		open() // what the Apply in progress waits for
	}()
	eventually(t, waitShort, func() bool { return s.Status().CommitIndex > commit },
		"the second write to commit behind the Apply in progress")

	stopWithin(t, s, waitShort, "with Apply waiting on a caller of the server", open)
	for name, c := range map[string]chan error{"the write being applied": blocked, "the write behind it": behind} {
		select {
		case err := <-c:
			if !errors.Is(err, exraft.ErrStopped) {
				t.Errorf("%s returned %v, want ErrStopped", name, err)
			}
		case <-time.After(waitShort):
			t.Errorf("%s still waiting %v after Stop returned", name, waitShort)
		}
	}
}

// checkStopped asserts that the calls of a stopped server fail with ErrStopped.
func checkStopped(t *testing.T, s *exraft.Server) {
	t.Helper()
	ctx := ctxFor(t, waitShort)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, exraft.ErrStopped) {
			t.Fatalf("%s on stopped %s: got %v, want ErrStopped", what, s.Name(), err)
		}
	}
	_, err := s.Write(ctx, []byte("set late 1"))
	check("Write", err)
	_, err = s.Read(ctx, []byte("get a"))
	check("Read", err)
	check("AddServer", s.AddServer(ctx, exraft.Peer{Name: "late", Addr: "127.0.0.1:1"}))
	check("RemoveServer", s.RemoveServer(ctx, "late"))
	_, err = s.AwaitLeader(ctx)
	check("AwaitLeader", err)
	check("TriggerElection", s.TriggerElection(ctx))
}

// TestConfigErrors: every invalid Config fails StartServer with an error naming
// the field, and starts nothing.
func TestConfigErrors(t *testing.T) {
	valid := func() exraft.Config { return fastConfig("cfg") }
	other := exraft.Peer{Name: "other", Addr: "127.0.0.1:7"}
	for _, tc := range []struct {
		name   string
		mutate func(*exraft.Config)
		fields []string // the message names one of these
	}{
		{"empty Name", func(c *exraft.Config) { c.Name = "" }, []string{"Name"}},
		{"ElectionTimeoutMin > ElectionTimeoutMax", func(c *exraft.Config) {
			c.ElectionTimeoutMin, c.ElectionTimeoutMax = 300*time.Millisecond, 200*time.Millisecond
		}, []string{"ElectionTimeoutMin", "ElectionTimeoutMax"}},
		{"duplicate names in InitialConfig", func(c *exraft.Config) {
			c.InitialConfig = []exraft.Peer{{Name: "cfg", Addr: c.Addr}, other, {Name: "other", Addr: "127.0.0.1:8"}}
		}, []string{"InitialConfig"}},
		{"negative MinMajority", func(c *exraft.Config) { c.MinMajority = -1 }, []string{"MinMajority"}},
		{"negative HeartbeatInterval", func(c *exraft.Config) { c.HeartbeatInterval = -time.Millisecond }, []string{"HeartbeatInterval"}},
		{"HeartbeatInterval = ElectionTimeoutMin", func(c *exraft.Config) { c.HeartbeatInterval = c.ElectionTimeoutMin }, []string{"HeartbeatInterval"}},
		{"HeartbeatInterval > ElectionTimeoutMin", func(c *exraft.Config) { c.HeartbeatInterval = 2 * c.ElectionTimeoutMin }, []string{"HeartbeatInterval"}},
		{"peer with empty Name", func(c *exraft.Config) {
			c.InitialConfig = []exraft.Peer{{Name: "cfg", Addr: c.Addr}, {Name: "", Addr: "127.0.0.1:9"}}
		}, []string{"InitialConfig"}},
		{"peer with empty Addr", func(c *exraft.Config) {
			c.InitialConfig = []exraft.Peer{{Name: "cfg", Addr: c.Addr}, {Name: "other", Addr: ""}}
		}, []string{"InitialConfig"}},
		{"unparsable Addr", func(c *exraft.Config) { c.Addr = "this is not an address" }, []string{"Addr"}},
		{"peer with unparsable Addr", func(c *exraft.Config) {
			c.InitialConfig = []exraft.Peer{{Name: "cfg", Addr: c.Addr}, {Name: "other", Addr: "no-port-here"}}
		}, []string{"InitialConfig", "Addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			cfg := valid()
			// A fixed free port, to check that nothing listens on it after.
			l := listen(t)
			cfg.Addr = l.Addr().String()
			l.Close()
			tc.mutate(&cfg)
			s, err := exraft.StartServer(newKV(), cfg)
			if err == nil {
				_ = exraft.StopServer(s)
				t.Fatalf("StartServer accepted %+v", cfg)
			}
			if s != nil {
				t.Errorf("StartServer returned a server with the error %v", err)
				_ = exraft.StopServer(s)
			}
			named := false
			for _, f := range tc.fields {
				named = named || strings.Contains(err.Error(), f)
			}
			if !named {
				t.Fatalf("error %q names none of %v", err, tc.fields)
			}
			if _, _, perr := net.SplitHostPort(cfg.Addr); perr == nil {
				l, lerr := net.Listen("tcp", cfg.Addr)
				if lerr != nil {
					t.Fatalf("a failed StartServer left %s in use: %v", cfg.Addr, lerr)
				}
				l.Close()
			}
			waitGoroutines(t, baseline, 5*time.Second)
		})
	}
}

// TestRemoteAPI: every call works by address, over DefaultClient and over a
// zero Client, with the same errors as in process.
func TestRemoteAPI(t *testing.T) {
	c := startCluster(t, 3, clusterOptions{})
	leader := leaderVia(t, c.servers[0], c.servers)
	followers := others(c.servers, leader)
	var zero exraft.Client

	// AwaitLeader by address, on every server, with both clients.
	for _, s := range c.servers {
		for _, aw := range []func(context.Context, string) (exraft.Peer, error){exraft.AwaitLeader, zero.AwaitLeader} {
			p, err := aw(ctxFor(t, waitLong), s.Addr())
			if err != nil || p != leader.Peer() {
				t.Fatalf("remote AwaitLeader on %s = %v, %v; want %v", s.Name(), p, err, leader.Peer())
			}
		}
	}

	// GetStatus.
	for _, s := range c.servers {
		for _, gs := range []func(context.Context, string) (exraft.Status, error){exraft.GetStatus, zero.GetStatus} {
			st, err := gs(ctxFor(t, waitShort), s.Addr())
			if err != nil {
				t.Fatalf("GetStatus(%s): %v", s.Name(), err)
			}
			want := exraft.Follower
			if s == leader {
				want = exraft.Leader
			}
			if st.Name != s.Name() || st.Addr != s.Addr() || st.Role != want || st.Term == 0 {
				t.Fatalf("GetStatus(%s) = %+v; want name %s, addr %s, role %v, term > 0", s.Name(), st, s.Name(), s.Addr(), want)
			}
			if got := memberNames(st.Members); !sameStrings(got, []string{"raft1", "raft2", "raft3"}) {
				t.Fatalf("GetStatus(%s).Members = %v", s.Name(), got)
			}
		}
	}

	// Write, Read, ReadDirty.
	res, err := exraft.Write(ctxFor(t, waitShort), leader.Addr(), []byte("set r 1"))
	if err != nil || string(res) != "ok" {
		t.Fatalf("remote Write = %q, %v; want ok", res, err)
	}
	res, err = zero.Write(ctxFor(t, waitShort), leader.Addr(), []byte("set r 2"))
	if err != nil || string(res) != "1" {
		t.Fatalf("zero Client Write = %q, %v; want 1", res, err)
	}
	for _, rd := range []func(context.Context, string, []byte) ([]byte, error){exraft.Read, zero.Read} {
		res, err = rd(ctxFor(t, waitShort), leader.Addr(), []byte("get r"))
		if err != nil || string(res) != "2" {
			t.Fatalf("remote Read = %q, %v; want 2", res, err)
		}
		_, err = rd(ctxFor(t, waitShort), followers[0].Addr(), []byte("get r"))
		var re *exraft.RedirectError
		if !errors.As(err, &re) || re.Leader != leader.Peer() || !errors.Is(err, exraft.ErrNotLeader) {
			t.Fatalf("remote Read on a follower: got %v, want a redirect to %v", err, leader.Peer())
		}
	}
	for _, f := range followers {
		for _, rd := range []func(context.Context, string, []byte) ([]byte, error){exraft.ReadDirty, zero.ReadDirty} {
			eventually(t, waitLong, func() bool {
				res, err := rd(ctxFor(t, waitShort), f.Addr(), []byte("get r"))
				return err == nil && string(res) == "2"
			}, "remote ReadDirty on %s to see r=2", f.Name())
		}
	}

	// AddServer, by address, of a server started alone.
	cfg4 := fastConfig("raft4")
	cfg4.MinMajority = 2
	raft4 := start(t, newKV(), cfg4)
	err = exraft.AddServer(ctxFor(t, waitShort), followers[0].Addr(), raft4.Peer())
	var re *exraft.RedirectError
	if !errors.As(err, &re) || re.Leader != leader.Peer() {
		t.Fatalf("remote AddServer on a follower: got %v, want a redirect to %v", err, leader.Peer())
	}
	if err := exraft.AddServer(ctxFor(t, waitLong), leader.Addr(), raft4.Peer()); err != nil {
		t.Fatalf("remote AddServer: %v", err)
	}
	st, err := exraft.GetStatus(ctxFor(t, waitShort), leader.Addr())
	if err != nil {
		t.Fatalf("GetStatus: %v", err)
	}
	if got := memberNames(st.Members); !sameStrings(got, []string{"raft1", "raft2", "raft3", "raft4"}) {
		t.Fatalf("Members after remote AddServer = %v", got)
	}
	eventually(t, waitLong, func() bool { return dirty(raft4, "get r") == "2" }, "raft4 to catch up")

	// RemoveServer, by address: an unknown name, then raft4.
	for _, rm := range []func(context.Context, string, string) error{exraft.RemoveServer, zero.RemoveServer} {
		err = rm(ctxFor(t, waitShort), leader.Addr(), "no-such-server")
		if !errors.Is(err, exraft.ErrUnknownServer) {
			t.Fatalf("remote RemoveServer of a non-member: got %v, want ErrUnknownServer", err)
		}
	}
	if err := zero.RemoveServer(ctxFor(t, waitLong), leader.Addr(), "raft4"); err != nil {
		t.Fatalf("remote RemoveServer(raft4): %v", err)
	}
	st, err = zero.GetStatus(ctxFor(t, waitShort), leader.Addr())
	if err != nil {
		t.Fatalf("GetStatus: %v", err)
	}
	if got := memberNames(st.Members); !sameStrings(got, []string{"raft1", "raft2", "raft3"}) {
		t.Fatalf("Members after remote RemoveServer = %v", got)
	}

	// TriggerElection by address: a caught-up follower takes over.
	target := followers[0]
	eventually(t, waitLong, func() bool {
		return target.Status().AppliedIndex == leader.Status().CommitIndex
	}, "%s to catch up before the election", target.Name())
	termBefore := leader.Status().Term
	if err := zero.TriggerElection(ctxFor(t, waitShort), leader.Addr()); err != nil {
		t.Fatalf("remote TriggerElection on the leader (a no-op): %v", err)
	}
	if err := exraft.TriggerElection(ctxFor(t, waitShort), target.Addr()); err != nil {
		t.Fatalf("remote TriggerElection on %s: %v", target.Name(), err)
	}
	eventually(t, waitLong, func() bool {
		st := target.Status()
		return st.Role == exraft.Leader && st.Term > termBefore
	}, "%s to win the election it triggered", target.Name())
	eventually(t, waitLong, func() bool {
		p, err := exraft.AwaitLeader(ctxFor(t, waitShort), leader.Addr())
		return err == nil && p == target.Peer()
	}, "the old leader to follow %s", target.Name())
	res, err = exraft.Write(ctxFor(t, waitShort), target.Addr(), []byte("set r 3"))
	if err != nil || string(res) != "2" {
		t.Fatalf("remote Write on the new leader = %q, %v; want 2", res, err)
	}
	closeIdle(&zero)
}

// TestRemoveServer: removing followers shrinks the membership and writes go
// on; the last voter cannot be removed; a leader can remove itself.
func TestRemoveServer(t *testing.T) {
	t.Run("down to one", func(t *testing.T) {
		c := startCluster(t, 3, clusterOptions{})
		leader := leaderVia(t, c.servers[0], c.servers)
		mustWrite(t, leader, "set a 1")
		if err := leader.RemoveServer(ctxFor(t, waitShort), "no-such-server"); !errors.Is(err, exraft.ErrUnknownServer) {
			t.Fatalf("RemoveServer of a non-member: got %v, want ErrUnknownServer", err)
		}
		want := []string{"raft1", "raft2", "raft3"}
		for i, f := range others(c.servers, leader) {
			if err := leader.RemoveServer(ctxFor(t, waitLong), f.Name()); err != nil {
				t.Fatalf("RemoveServer(%s): %v", f.Name(), err)
			}
			want = removeString(want, f.Name())
			if got := memberNames(leader.Status().Members); !sameStrings(got, want) {
				t.Fatalf("Members after removing %s = %v, want %v", f.Name(), got, want)
			}
			v := fmt.Sprint(i + 2)
			mustWrite(t, leader, "set a "+v)
			if got := mustRead(t, leader, "get a"); got != v {
				t.Fatalf("after removing %s, a = %q, want %s", f.Name(), got, v)
			}
		}
		err := leader.RemoveServer(ctxFor(t, waitShort), leader.Name())
		if !errors.Is(err, exraft.ErrLastServer) {
			t.Fatalf("RemoveServer of the last voter: got %v, want ErrLastServer", err)
		}
		_, err = exraft.Write(ctxFor(t, waitShort), leader.Addr(), []byte("set a 9"))
		if err != nil {
			t.Fatalf("write on the single remaining server: %v", err)
		}
		err = exraft.RemoveServer(ctxFor(t, waitShort), leader.Addr(), leader.Name())
		if !errors.Is(err, exraft.ErrLastServer) {
			t.Fatalf("remote RemoveServer of the last voter: got %v, want ErrLastServer", err)
		}
		// The removed servers do not disturb the remaining one.
		if st := leader.Status(); st.Role != exraft.Leader {
			t.Fatalf("remaining server is %v after removals", st.Role)
		}
	})

	t.Run("leader removes itself", func(t *testing.T) {
		c := startCluster(t, 3, clusterOptions{})
		leader := leaderVia(t, c.servers[0], c.servers)
		mustWrite(t, leader, "set a 1")
		if err := leader.RemoveServer(ctxFor(t, waitLong), leader.Name()); err != nil {
			t.Fatalf("leader RemoveServer(itself): %v", err)
		}
		rest := others(c.servers, leader)
		next := awaitLeader(t, rest)
		eventually(t, waitLong, func() bool {
			return sameStrings(memberNames(next.Status().Members), names(rest))
		}, "the new leader's Members to be %v", names(rest))
		writeAny(t, rest, "set a 2")
		if got := readAny(t, rest, "get a"); got != "2" {
			t.Fatalf("after the leader left, a = %q, want 2", got)
		}
		if leader.Status().Role == exraft.Leader {
			t.Fatalf("the removed leader still reports itself leader")
		}
	})
}

func removeString(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// TestConcurrentWrites: 8 writers × 50 writes on the leader all succeed, each
// writer sees its own writes in order, and every server ends in the same state.
func TestConcurrentWrites(t *testing.T) {
	const writers, perWriter = 8, 50
	c := startCluster(t, 3, clusterOptions{})
	leader := leaderVia(t, c.servers[0], c.servers)
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("w%d", w)
			for j := range perWriter {
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				res, err := leader.Write(ctx, []byte(fmt.Sprintf("set %s %d", key, j)))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("writer %d, write %d: %w", w, j, err)
					return
				}
				want := "ok"
				if j > 0 {
					want = fmt.Sprint(j - 1)
				}
				if string(res) != want {
					errs <- fmt.Errorf("writer %d, write %d: Apply returned %q, want %q", w, j, res, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	var want strings.Builder
	for w := range writers {
		fmt.Fprintf(&want, "w%d=%d\n", w, perWriter-1)
	}
	for _, s := range c.servers {
		eventually(t, waitLong, func() bool { return dirty(s, "dump") == want.String() },
			"%s's ReadDirty to show the final state", s.Name())
	}
	if got := mustRead(t, leader, "dump"); got != want.String() {
		t.Fatalf("Read dump = %q, want %q", got, want.String())
	}
	assertConverged(t, c, c.servers)
	if n := len(c.kvs[0].history()); n != writers*perWriter {
		t.Fatalf("%d commands applied, want %d (each exactly once)", n, writers*perWriter)
	}
}

// TestLaggingMemberVotesForAddedServer: raft3 is added while the follower of
// a two-server cluster is cut off from the leader, so that follower still has
// the old configuration (without raft3) and a shorter log. Then the leader
// stops. The two survivors are two of the three voters, a majority: raft3,
// whose log holds every committed entry, must be able to win with the lagging
// follower's vote (Raft servers vote for candidates that are not in their own
// configuration, §4.1 of the Raft thesis; disruption is prevented by leader
// stickiness, not by membership), and then bring the follower up to date.
func TestLaggingMemberVotesForAddedServer(t *testing.T) {
	pn := newPartitionNet()
	// Slower elections: the leader must keep its leadership while it adds
	// raft3 without hearing from its follower.
	slow := func(cfg *exraft.Config) {
		cfg.HeartbeatInterval = 30 * time.Millisecond
		cfg.ElectionTimeoutMin = 400 * time.Millisecond
		cfg.ElectionTimeoutMax = 800 * time.Millisecond
	}
	l1, l2, l3 := listen(t), listen(t), listen(t)
	initial := []exraft.Peer{{Name: "raft1", Addr: l1.Addr().String()}, {Name: "raft2", Addr: l2.Addr().String()}}
	var servers []*exraft.Server
	for i, l := range []net.Listener{l1, l2, l3} {
		name := fmt.Sprintf("raft%d", i+1)
		cfg := fastConfig(name)
		slow(&cfg)
		cfg.Listener = pn.listener(name, l)
		cfg.Dial = pn.dialer(name)
		if i < 2 {
			cfg.InitialConfig = initial
		} else {
			cfg.MinMajority = 2
		}
		servers = append(servers, start(t, newKV(), cfg))
	}
	raft3 := servers[2]
	leader := leaderVia(t, servers[0], servers[:2])
	follower := others(servers[:2], leader)[0]
	if got := mustWrite(t, leader, "set a 1"); got != "ok" {
		t.Fatalf("write = %q", got)
	}
	eventually(t, waitLong, func() bool { return dirty(follower, "get a") == "1" }, "the follower to apply a=1")

	pn.cut(leader.Name(), follower.Name())
	if err := leader.AddServer(ctxFor(t, waitLong), raft3.Peer()); err != nil {
		t.Fatalf("AddServer(raft3) while the follower is cut off: %v; statuses:%v", err, statuses(servers))
	}
	if got := mustWrite(t, leader, "set a 2"); got != "1" {
		t.Fatalf("write = %q", got)
	}
	eventually(t, waitLong, func() bool { return dirty(raft3, "get a") == "2" }, "raft3 to apply a=2")
	if got := memberNames(follower.Status().Members); len(got) != 2 {
		t.Logf("the follower already knows the new configuration %v: the scenario did not arise", got)
	}

	if err := exraft.StopServer(leader); err != nil {
		t.Fatalf("StopServer: %v", err)
	}
	survivors := []*exraft.Server{follower, raft3}
	if err := raft3.TriggerElection(ctxFor(t, waitShort)); err != nil {
		t.Fatalf("raft3.TriggerElection: %v; statuses:%v", err, statuses(survivors))
	}
	eventually(t, waitLong, func() bool {
		for _, s := range survivors {
			if s.Status().Role == exraft.Leader {
				return true
			}
		}
		return false
	}, "a leader among the two surviving voters of three; statuses:%v", statuses(survivors))
	if got := readAny(t, survivors, "get a"); got != "2" {
		t.Fatalf("after the election a = %q, want 2", got)
	}
	eventually(t, waitLong, func() bool { return dirty(follower, "get a") == "2" }, "the follower to catch up")
}
