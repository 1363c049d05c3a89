package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/exraft/exraft"
)

// stepTimeout bounds every wait of the demo: a step that takes longer than
// this has gone wrong, and the demo says so instead of hanging.
const stepTimeout = 10 * time.Second

// The demo's snapshot fields, far below the defaults, so that a few dozen
// writes make the servers snapshot and drop the start of their logs, and
// raft3, added after them, is caught up from a snapshot.
const (
	demoSnapshotThreshold = 20
	demoTrailingLogs      = 5
	demoItems             = 30
)

// step numbers the lines of the demo's story.
var step int

func say(format string, args ...any) {
	step++
	fmt.Printf("%2d. %s\n", step, fmt.Sprintf(format, args...))
}

// detail prints an indented line under the current step.
func detail(format string, args ...any) {
	fmt.Printf("    %s\n", fmt.Sprintf(format, args...))
}

func stepContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), stepTimeout)
}

// runDemo runs a three-server cluster inside this process and tells its story.
func runDemo() error {
	names := []string{"raft1", "raft2", "raft3"}

	// Listen first, so that every server's address is known before any
	// server starts: raft1 and raft2 name each other in their InitialConfig.
	listeners := make(map[string]net.Listener)
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close() // a no-op once the server that owns it has stopped
		listeners[name] = ln
	}
	peer := func(name string) exraft.Peer {
		return exraft.Peer{Name: name, Addr: listeners[name].Addr().String()}
	}

	// servers holds the servers still running; whatever is left when the demo
	// returns (early, on an error) is stopped.
	servers := make(map[string]*exraft.Server)
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()

	// Bootstrap a two-server cluster.
	say("Start raft1 and raft2 as a cluster of two (InitialConfig: raft1, raft2).")
	bootstrap := []exraft.Peer{peer("raft1"), peer("raft2")}
	for _, name := range []string{"raft1", "raft2"} {
		s, err := exraft.StartServer(newStore(), exraft.Config{
			Name:              name,
			Listener:          listeners[name],
			InitialConfig:     bootstrap,
			SnapshotThreshold: demoSnapshotThreshold,
			TrailingLogs:      demoTrailingLogs,
		})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		servers[name] = s
		detail("%s serves at %s", name, s.Addr())
	}

	// A third server that waits to be added. With MinMajority 2 it can
	// never win an election on its own vote, so it stays a passive follower
	// until a leader adds it to the cluster.
	say("Start raft3 alone with MinMajority 2: it waits until a leader adds it.")
	raft3, err := exraft.StartServer(newStore(), exraft.Config{
		Name:              "raft3",
		Listener:          listeners["raft3"],
		MinMajority:       2,
		SnapshotThreshold: demoSnapshotThreshold,
		TrailingLogs:      demoTrailingLogs,
	})
	if err != nil {
		return fmt.Errorf("start raft3: %w", err)
	}
	servers["raft3"] = raft3
	detail("raft3 serves at %s", raft3.Addr())

	// Wait for raft1 and raft2 to elect a leader.
	say("AwaitLeader on raft1.")
	ctx, cancel := stepContext()
	start := time.Now()
	leaderPeer, err := servers["raft1"].AwaitLeader(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("await leader: %w", err)
	}
	leader := servers[leaderPeer.Name]
	detail("the leader is %s (elected in %v)", leaderPeer, time.Since(start).Round(time.Millisecond))

	// Fill the log past a snapshot before raft3 joins, so that the leader
	// no longer holds the first entries raft3 lacks.
	say("Write %d keys on the leader, %s.", demoItems, leader.Name())
	ctx, cancel = stepContext()
	for i := range demoItems {
		if _, err := leader.Write(ctx, fmt.Appendf(nil, "set item%02d %d", i, i)); err != nil {
			cancel()
			return fmt.Errorf("write item%02d: %w", i, err)
		}
	}
	err = awaitCompacted(ctx, leader)
	cancel()
	if err != nil {
		return fmt.Errorf("%s compacting its log: %w", leader.Name(), err)
	}
	st := leader.Status()
	detail("SnapshotThreshold is %d in this demo: each server snapshots its store and drops the start of its log", demoSnapshotThreshold)
	detail("the leader's snapshot covers entries 1 to %d (SnapshotIndex); its log starts at entry %d (FirstIndex)", st.SnapshotIndex, st.FirstIndex)

	// Grow the cluster to three. The leader first catches raft3 up as a
	// non-voter, then commits a configuration that makes it a voter.
	say("AddServer(raft3) on the leader, %s.", leader.Name())
	ctx, cancel = stepContext()
	err = leader.AddServer(ctx, raft3.Peer())
	cancel()
	if err != nil {
		return fmt.Errorf("add raft3: %w", err)
	}
	detail("members are now [%s]", peerNames(leader.Status().Members))
	st = raft3.Status()
	detail("raft3 restored the leader's snapshot, then took the rest from its log: SnapshotIndex %d, FirstIndex %d",
		st.SnapshotIndex, st.FirstIndex)

	// Writes go to the leader. Write returns once the command is committed
	// and applied on the leader, with the state machine's answer.
	cmd := []byte("set greeting hello")
	say("Write %q on the leader, %s.", cmd, leader.Name())
	ctx, cancel = stepContext()
	result, err := leader.Write(ctx, cmd)
	cancel()
	if err != nil {
		return fmt.Errorf("write on the leader: %w", err)
	}
	detail("result: %s", result)

	// A follower does not write: it answers with a *RedirectError that
	// names the leader. The package-level exraft.Write sends the command to
	// any server by address, here the leader's.
	follower := anyServerBut(servers, leader.Name())
	cmd = []byte("set answer 42")
	say("Write %q on a follower, %s.", cmd, follower.Name())
	ctx, cancel = stepContext()
	defer cancel()
	if _, err := follower.AwaitLeader(ctx); err != nil { // so it knows whom to name
		return fmt.Errorf("await leader on %s: %w", follower.Name(), err)
	}
	_, err = follower.Write(ctx, cmd)
	var redirect *exraft.RedirectError
	if !errors.As(err, &redirect) {
		return fmt.Errorf("write on follower %s: want a *exraft.RedirectError, got %v", follower.Name(), err)
	}
	detail("error: %v", err)
	detail("errors.As(err, &redirect): redirect.Leader = %s; errors.Is(err, exraft.ErrNotLeader) = %t",
		redirect.Leader, errors.Is(err, exraft.ErrNotLeader))
	say("Follow the redirect: exraft.Write(ctx, %q, %q).", redirect.Leader.Addr, cmd)
	result, err = exraft.Write(ctx, redirect.Leader.Addr, cmd)
	cancel()
	if err != nil {
		return fmt.Errorf("write through the redirect: %w", err)
	}
	detail("result: %s", result)

	// A Session calls the cluster rather than one server: given addresses,
	// it finds the leader, follows redirects and waits out elections, and
	// a write it retries (after a lost answer, say) is applied only once.
	var addrs []string
	for _, name := range names {
		addrs = append(addrs, servers[name].Addr())
	}
	session := exraft.NewSession(addrs...)
	cmd = []byte("set counter 1")
	say("Write %q through a Session on the cluster's three addresses.", cmd)
	ctx, cancel = stepContext()
	result, err = session.Write(ctx, cmd)
	cancel()
	if err != nil {
		return fmt.Errorf("write through the session: %w", err)
	}
	detail("result: %s", result)

	// A write commits once a majority has it, so a follower may trail the
	// leader for a moment. Let both followers catch up before the leader
	// goes, so that either of them can take over.
	say("Wait until every follower has applied the leader's commit index.")
	ctx, cancel = stepContext()
	defer cancel()
	commit := leader.Status().CommitIndex
	for _, s := range servers {
		if err := awaitApplied(ctx, s, commit); err != nil {
			return fmt.Errorf("%s catching up to index %d: %w", s.Name(), commit, err)
		}
	}
	cancel()
	detail("all three servers have applied index %d", commit)

	// Lose the leader. Two of the three voters remain: still a majority,
	// so no committed data is lost and the cluster can elect a new leader.
	oldLeader := leader.Name()
	say("Stop the leader, %s.", oldLeader)
	if err := exraft.StopServer(leader); err != nil {
		return fmt.Errorf("stop %s: %w", oldLeader, err)
	}
	delete(servers, oldLeader)

	// Rather than wait for an election timeout, ask a survivor to start
	// an election now.
	candidate := anyServerBut(servers, oldLeader)
	say("TriggerElection on %s.", candidate.Name())
	ctx, cancel = stepContext()
	defer cancel()
	start = time.Now()
	if err := candidate.TriggerElection(ctx); err != nil {
		return fmt.Errorf("trigger election on %s: %w", candidate.Name(), err)
	}

	say("AwaitLeader on %s.", candidate.Name())
	leaderPeer, err = awaitNewLeader(ctx, candidate, oldLeader)
	cancel()
	if err != nil {
		return fmt.Errorf("await the new leader: %w", err)
	}
	leader = servers[leaderPeer.Name]
	detail("the new leader is %s (elected in %v)", leaderPeer, time.Since(start).Round(time.Millisecond))

	// Everything committed before the failure is still there. Read is
	// linearizable: it reflects every write that completed before it began.
	say("Read the values back from the new leader, %s.", leader.Name())
	ctx, cancel = stepContext()
	defer cancel()
	for _, key := range []string{"greeting", "answer"} {
		value, err := leader.Read(ctx, []byte("get "+key))
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		detail("get %s = %q", key, value)
	}

	// The cluster keeps working with two of its three voters. The Session
	// still has the stopped leader's address first: it moves on by itself.
	cmd = []byte("set survivors two-of-three")
	say("Write %q through the Session: it finds the new leader on its own.", cmd)
	result, err = session.Write(ctx, cmd)
	cancel()
	if err != nil {
		return fmt.Errorf("write through the session after the leader stopped: %w", err)
	}
	detail("result: %s", result)

	// Each server's view. The stopped server is still a member: it was
	// never removed, it is just not answering.
	say("Status of the surviving servers:")
	for _, name := range names {
		if s, ok := servers[name]; ok {
			printStatus("    ", s.Status())
		}
	}

	// A Session closed is forgotten by the cluster at once, rather than
	// when it expires (Config.SessionTimeout).
	closeSession(session)

	// Stop the rest.
	say("Stop the surviving servers.")
	for _, name := range names {
		if s, ok := servers[name]; ok {
			if err := s.Stop(); err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
			delete(servers, name)
		}
	}
	detail("done")
	return nil
}

// awaitNewLeader waits until s knows a leader other than old. A follower may
// still name a stopped leader for a moment after it stopped: until an election
// replaces it, that is the last leader it heard from.
func awaitNewLeader(ctx context.Context, s *exraft.Server, old string) (exraft.Peer, error) {
	for {
		p, err := s.AwaitLeader(ctx)
		if err != nil || p.Name != old {
			return p, err
		}
		select {
		case <-ctx.Done():
			return exraft.Peer{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// awaitApplied waits until s has applied every entry up to index. exraft has
// no call that waits for a follower, so it watches the follower's Status.
func awaitApplied(ctx context.Context, s *exraft.Server, index uint64) error {
	for s.Status().AppliedIndex < index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// awaitCompacted waits until s has dropped the start of its log: a snapshot
// is written on a goroutine of its own, after the write that crossed the
// threshold has returned.
func awaitCompacted(ctx context.Context, s *exraft.Server) error {
	for s.Status().FirstIndex <= 1 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// anyServerBut returns a running server other than the one named, preferring
// raft3: it is the one that was added at run time.
func anyServerBut(servers map[string]*exraft.Server, name string) *exraft.Server {
	for _, candidate := range []string{"raft3", "raft2", "raft1"} {
		if s, ok := servers[candidate]; ok && candidate != name {
			return s
		}
	}
	return nil
}
