package exraft_test

// This file is the ExRaft README's story, told in Go.
//
// The Elixir library ExRaft (github.com/bajankristof/ex_raft) walks its users
// through one cluster's life: two servers start from an initial_config and
// elect a leader, a third one started with min_majority: 2 waits until the
// leader adds it, writes go to the leader and a follower answers with a
// redirect, and when the leader stops, trigger_election and await_leader on
// the third server show the cluster recovering. Its ExRaft.StateMachine docs
// add reads through the leader and dirty reads on followers. TestExRaftStory
// follows that sequence with exraft's API, one t.Run per chapter, and carries
// it on through what ExRaft's module docs describe but its example does not
// show: remove_server (of a dead member, of the leader itself, down to the
// last voter), a caller's redirect loop, and the same calls made by address
// through the Client.
//
// The state machine is a stack (storyStack) in the spirit of ExRaft's key-value
// store: Validate plays the part of its command? callback, Apply that of
// handle_write, Query that of handle_read, and Close that of terminate.
//
// Every server runs on loopback with fast timing; every wait is a context with
// a generous deadline or a poll of a condition with one, never a bare sleep.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// The story's timing. The servers are fast, but the deadlines leave room for
// a 2-core machine shared with other work, under -race.
const (
	storyHeartbeat = 20 * time.Millisecond
	storyElectMin  = 100 * time.Millisecond
	storyElectMax  = 200 * time.Millisecond

	storyWait = 20 * time.Second              // elections, catch-up, membership changes
	storyCall = 10 * time.Second              // one call that should answer quickly
	storyTick = 10 * time.Millisecond         // how often a condition is polled
	storyIdle = 5 * storyElectMax             // long enough for a server to elect itself, if it could
	storyNone = "<empty>"                     // the stack's answer to peek when it is empty
	storySep  = ","                           // separates the items in the answer to "all"
	storyPush = "push "                       // the prefix of a push command
	storyPop  = "pop"                         // the pop command
	storyRej  = "storyStack: unknown command" // the start of Validate's refusal
)

// ---------------------------------------------------------------------------
// The state machine

// storyStack is a replicated stack of strings.
//
// Commands: "push <item>" puts item on top and answers the new depth; "pop"
// takes the top item off and answers it (storyNone when the stack is empty).
// Queries: "peek" (the top item, or storyNone), "len" (the depth) and "all"
// (every item, bottom first, joined by storySep).
//
// exraft calls it from one goroutine at a time, so it needs no lock; closed
// is atomic only because the test reads it after Stop.
type storyStack struct {
	items  []string
	closed atomic.Int32
}

// Validate refuses, on the leader and before anything enters the log, every
// command that is not a push of a non-empty item or a pop: like ExRaft's
// command? callback, it decides what is a command at all.
func (s *storyStack) Validate(cmd []byte) error {
	c := string(cmd)
	if c == storyPop || (strings.HasPrefix(c, storyPush) && len(c) > len(storyPush)) {
		return nil
	}
	return fmt.Errorf("%s %q", storyRej, c)
}

// Apply runs on every server, once per committed command, in log order.
func (s *storyStack) Apply(cmd []byte) []byte {
	c := string(cmd)
	if c == storyPop {
		if len(s.items) == 0 {
			return []byte(storyNone)
		}
		top := s.items[len(s.items)-1]
		s.items = s.items[:len(s.items)-1]
		return []byte(top)
	}
	// Validate let only pushes and pops into the log.
	s.items = append(s.items, strings.TrimPrefix(c, storyPush))
	return []byte(strconv.Itoa(len(s.items)))
}

// Query answers a read without changing the stack.
func (s *storyStack) Query(q []byte) []byte {
	switch string(q) {
	case "peek":
		if len(s.items) == 0 {
			return []byte(storyNone)
		}
		return []byte(s.items[len(s.items)-1])
	case "len":
		return []byte(strconv.Itoa(len(s.items)))
	case "all":
		return []byte(strings.Join(s.items, storySep))
	}
	return nil
}

// Close is called once, when the server stops (ExRaft's terminate).
func (s *storyStack) Close() error {
	s.closed.Add(1)
	return nil
}

// The stack is a StateMachine with both optional interfaces.
var (
	_ exraft.StateMachine = (*storyStack)(nil)
	_ exraft.Validator    = (*storyStack)(nil)
	_ exraft.Closer       = (*storyStack)(nil)
)

// ---------------------------------------------------------------------------
// What a user of exraft writes

// storyWriteVia is the redirect loop a caller writes around Write: it starts
// at any server's address and follows the answers until a leader applies
// cmd. It returns Apply's result and how many redirects it followed.
func storyWriteVia(ctx context.Context, addr string, cmd []byte) (result []byte, hops int, err error) {
	for ; hops <= 5; hops++ {
		result, err = exraft.Write(ctx, addr, cmd)
		var redirect *exraft.RedirectError
		switch {
		case err == nil:
			return result, hops, nil
		case errors.As(err, &redirect):
			// A follower that knows the leader names it: retry there.
			addr = redirect.Leader.Addr
		case errors.Is(err, exraft.ErrNoLeader):
			// An election is under way: wait for its outcome, then retry.
			leader, err := exraft.AwaitLeader(ctx, addr)
			if err != nil {
				return nil, hops, err
			}
			addr = leader.Addr
		default:
			// ErrRejected, ErrLeadershipLost, ctx.Err(), a network error:
			// nothing a redirect can fix.
			return nil, hops, err
		}
	}
	return nil, hops, fmt.Errorf("still no leader after %d redirects: %w", hops, err)
}

// ---------------------------------------------------------------------------
// Test helpers

// storyConfig is the Config of one server of the story: fast timing on
// loopback, the rest left to the caller.
func storyConfig(name string) exraft.Config {
	return exraft.Config{
		Name:               name,
		Addr:               "127.0.0.1:0",
		HeartbeatInterval:  storyHeartbeat,
		ElectionTimeoutMin: storyElectMin,
		ElectionTimeoutMax: storyElectMax,
	}
}

// storyStart starts a server on a fresh stack and stops it when owner, the
// whole story, ends: the servers outlive the step that starts them. Stop runs
// whatever the story did to the server, since stopping twice is harmless.
func storyStart(t, owner *testing.T, cfg exraft.Config) (*exraft.Server, *storyStack) {
	t.Helper()
	sm := &storyStack{}
	s, err := exraft.StartServer(sm, cfg)
	require.NoError(t, err, "StartServer(%s)", cfg.Name)
	require.NotNil(t, s)
	owner.Cleanup(func() { _ = exraft.StopServer(s) })
	return s, sm
}

// storyCtx returns a context that ends after d, or with the (sub)test.
func storyCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// storyStatuses describes each server's view, for failure messages.
func storyStatuses(servers ...*exraft.Server) string {
	var b strings.Builder
	for _, s := range servers {
		st := s.Status()
		fmt.Fprintf(&b, "\n  %s: %v term %d leader %q commit %d applied %d last %d members %v",
			st.Name, st.Role, st.Term, st.Leader.Name, st.CommitIndex, st.AppliedIndex, st.LastIndex, st.Members)
	}
	return b.String()
}

// storyAgreedLeader waits until every one of servers names the same leader,
// one of servers, and that server's own Status says it leads. It polls,
// because agreement is a property of several servers at once.
func storyAgreedLeader(t *testing.T, servers ...*exraft.Server) *exraft.Server {
	t.Helper()
	var leader *exraft.Server
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		p, ok := servers[0].Leader()
		require.True(c, ok, "%s knows no leader", servers[0].Name())
		var found *exraft.Server
		for _, s := range servers {
			q, ok := s.Leader()
			require.True(c, ok, "%s knows no leader", s.Name())
			require.Equal(c, p, q, "%s and %s name different leaders", servers[0].Name(), s.Name())
			if s.Peer() == p {
				found = s
			}
		}
		require.NotNil(c, found, "the leader %v is none of the servers asked", p)
		require.Equal(c, exraft.Leader, found.Status().Role, "%s is named leader but does not lead", p.Name)
		leader = found
	}, storyWait, storyTick, "no agreed leader among the servers:%s", storyStatusesLazy(servers))
	return leader
}

// storyStatusesLazy defers storyStatuses until a failure message is printed,
// so that it shows the servers as they were when the wait gave up.
type storyStatusesLazy []*exraft.Server

func (l storyStatusesLazy) String() string { return storyStatuses(l...) }

// storyCaughtUp waits until every one of servers has applied everything the
// leader had committed when the wait began, and holds the same configuration:
// a follower answers ReadDirty, and can campaign, only from what it applied.
func storyCaughtUp(t *testing.T, leader *exraft.Server, servers ...*exraft.Server) {
	t.Helper()
	commit := leader.Status().CommitIndex
	members := leader.Status().Members
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, s := range servers {
			st := s.Status()
			assert.GreaterOrEqual(c, st.AppliedIndex, commit, "%s has not applied up to %d", s.Name(), commit)
			assert.ElementsMatch(c, members, st.Members, "%s's configuration", s.Name())
		}
	}, storyWait, storyTick, "servers did not catch up with %s:%s", leader.Name(), storyStatusesLazy(append([]*exraft.Server{leader}, servers...)))
}

// storyRequireRedirect checks that err is a redirect to leader, as both
// errors.As and errors.Is see it.
func storyRequireRedirect(t *testing.T, err error, leader exraft.Peer, what string) {
	t.Helper()
	var redirect *exraft.RedirectError
	require.ErrorAs(t, err, &redirect, "%s: want a *RedirectError", what)
	assert.Equal(t, leader, redirect.Leader, "%s: the redirect names the wrong leader", what)
	assert.ErrorIs(t, err, exraft.ErrNotLeader, "%s: a redirect means not the leader", what)
	assert.NotErrorIs(t, err, exraft.ErrNoLeader, "%s: a redirect knows the leader", what)
}

// storyWithout returns servers without drop.
func storyWithout(servers []*exraft.Server, drop ...*exraft.Server) []*exraft.Server {
	var out []*exraft.Server
next:
	for _, s := range servers {
		for _, d := range drop {
			if s == d {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// storyPeers returns the Peers of servers.
func storyPeers(servers ...*exraft.Server) []exraft.Peer {
	out := make([]exraft.Peer, 0, len(servers))
	for _, s := range servers {
		out = append(out, s.Peer())
	}
	return out
}

// ---------------------------------------------------------------------------
// The story

// TestExRaftStory is the ExRaft README's example, step by step. Each step
// builds on the ones before it, so the story stops at the first step that
// fails.
func TestExRaftStory(t *testing.T) {
	// Registered first, so it runs last, once every server has stopped: the
	// calls by address leave DefaultClient with pooled connections.
	t.Cleanup(func() { _ = exraft.DefaultClient.Close() })

	story := t
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	var (
		raft1, raft2, raft3, raft4 *exraft.Server
		stacks                     = map[*exraft.Server]*storyStack{}
		leader                     *exraft.Server // the leader as of the last step
		voters                     []*exraft.Server
		want                       []string // the stack every server should converge to
	)
	wantAll := func() string { return strings.Join(want, storySep) }
	// push writes "push item" on s, which must lead, and checks that Apply
	// answered the new depth.
	push := func(t *testing.T, s *exraft.Server, item string) {
		t.Helper()
		got, err := s.Write(storyCtx(t, storyCall), []byte(storyPush+item))
		require.NoError(t, err, "Write(push %s) on %s", item, s.Name())
		want = append(want, item)
		require.Equal(t, strconv.Itoa(len(want)), string(got), "Apply's answer to push %s", item)
	}

	step("start_server: two from an initial config, a third alone with MinMajority 2", func(t *testing.T) {
		// Listen first, so that every address of the initial configuration
		// is known before either server starts.
		ln1, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ln2, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		initial := []exraft.Peer{
			{Name: "raft1", Addr: ln1.Addr().String()},
			{Name: "raft2", Addr: ln2.Addr().String()},
		}

		cfg1 := storyConfig("raft1")
		cfg1.Listener, cfg1.InitialConfig = ln1, initial
		cfg2 := storyConfig("raft2")
		cfg2.Listener, cfg2.InitialConfig = ln2, initial
		// raft3 knows no one and needs a majority of at least 2: it can never
		// elect itself, only wait until a leader adds it.
		cfg3 := storyConfig("raft3")
		cfg3.MinMajority = 2

		for _, cfg := range []exraft.Config{cfg1, cfg2, cfg3} {
			s, sm := storyStart(t, story, cfg)
			stacks[s] = sm
			switch cfg.Name {
			case "raft1":
				raft1 = s
			case "raft2":
				raft2 = s
			case "raft3":
				raft3 = s
			}
		}
		assert.Equal(t, initial[0], raft1.Peer(), "raft1 serves the listener it was given")
		assert.Equal(t, initial[1], raft2.Peer(), "raft2 serves the listener it was given")
		// raft3 listened on port 0 and reports the port it got.
		host, port, err := net.SplitHostPort(raft3.Addr())
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1", host)
		assert.NotEqual(t, "0", port)
		assert.Equal(t, exraft.Peer{Name: "raft3", Addr: raft3.Addr()}, raft3.Peer())
	})

	step("await_leader: raft1 and raft2 elect one leader and agree on it", func(t *testing.T) {
		// AwaitLeader blocks until the server learns a leader; any server of
		// the cluster can be asked.
		p, err := raft1.AwaitLeader(storyCtx(t, storyWait))
		require.NoError(t, err, "raft1.AwaitLeader:%s", storyStatuses(raft1, raft2))
		assert.Contains(t, []exraft.Peer{raft1.Peer(), raft2.Peer()}, p, "the leader is one of the initial config")

		leader = storyAgreedLeader(t, raft1, raft2)
		assert.Equal(t, p, leader.Peer(), "raft1's AwaitLeader and the agreed leader")
		follower := storyWithout([]*exraft.Server{raft1, raft2}, leader)[0]
		lst, fst := leader.Status(), follower.Status()
		assert.Equal(t, exraft.Follower, fst.Role)
		assert.Equal(t, lst.Term, fst.Term, "leader and follower are in the same term")
		assert.ElementsMatch(t, storyPeers(raft1, raft2), lst.Members)
		voters = []*exraft.Server{raft1, raft2}
	})

	step("min_majority: raft3 waits to be added instead of electing itself", func(t *testing.T) {
		// Over several election timeouts raft3 neither leads nor learns a
		// leader: AwaitLeader can only give up.
		_, err := raft3.AwaitLeader(storyCtx(t, storyIdle))
		require.ErrorIs(t, err, context.DeadlineExceeded, "raft3 found a leader before it was added:%s", storyStatuses(raft3))
		_, known := raft3.Leader()
		assert.False(t, known)
		assert.NotEqual(t, exraft.Leader, raft3.Status().Role)

		// A write there is refused with ErrNoLeader, which is no redirect.
		_, err = raft3.Write(storyCtx(t, storyCall), []byte(storyPush+"lonely"))
		require.ErrorIs(t, err, exraft.ErrNoLeader)
		assert.ErrorIs(t, err, exraft.ErrNotLeader)
		var redirect *exraft.RedirectError
		assert.False(t, errors.As(err, &redirect), "raft3 knows no leader to redirect to")

		// Nor can it be pushed into campaigning: it is no voter yet.
		assert.Error(t, raft3.TriggerElection(storyCtx(t, storyCall)), "TriggerElection on a server waiting to be added")
		// Its own stack answers, and is empty.
		got, err := raft3.ReadDirty(storyCtx(t, storyCall), []byte("len"))
		require.NoError(t, err)
		assert.Equal(t, "0", string(got))
	})

	step("add_server: the leader adds raft3 at run time", func(t *testing.T) {
		// AddServer catches raft3 up, then commits a configuration in which
		// it votes, and returns once that commits.
		require.NoError(t, leader.AddServer(storyCtx(t, storyWait), raft3.Peer()), "AddServer(raft3):%s", storyStatuses(raft1, raft2, raft3))
		voters = []*exraft.Server{raft1, raft2, raft3}
		assert.ElementsMatch(t, storyPeers(voters...), leader.Status().Members)

		// raft3 now follows the leader: AwaitLeader returns it.
		p, err := raft3.AwaitLeader(storyCtx(t, storyWait))
		require.NoError(t, err)
		assert.Equal(t, leader.Peer(), p)

		// Adding a current member again changes nothing.
		require.NoError(t, leader.AddServer(storyCtx(t, storyWait), raft3.Peer()))
		assert.Len(t, leader.Status().Members, 3)

		// A name is one server: raft3's name at another address is refused.
		err = leader.AddServer(storyCtx(t, storyCall), exraft.Peer{Name: "raft3", Addr: raft1.Addr()})
		assert.ErrorIs(t, err, exraft.ErrNameTaken)

		// Everyone, raft3 included, ends up with the same configuration.
		storyCaughtUp(t, leader, storyWithout(voters, leader)...)
	})

	step("write: commands go through the leader and answer Apply's result", func(t *testing.T) {
		push(t, leader, "a")
		push(t, leader, "b")
		push(t, leader, "c")
		got, err := leader.Write(storyCtx(t, storyCall), []byte(storyPop))
		require.NoError(t, err)
		assert.Equal(t, "c", string(got), "pop answers the item it took")
		want = want[:len(want)-1]

		// Validate refuses what is not a command: the Write fails with
		// ErrRejected, keeps the refusal's message, and nothing is appended.
		last := leader.Status().LastIndex
		_, err = leader.Write(storyCtx(t, storyCall), []byte("shove d"))
		require.ErrorIs(t, err, exraft.ErrRejected)
		assert.Contains(t, err.Error(), storyRej)
		assert.Equal(t, last, leader.Status().LastIndex, "a rejected command is not in the log")

		got, err = leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
	})

	step("write on a follower: a redirect names the leader", func(t *testing.T) {
		for _, f := range storyWithout(voters, leader) {
			got, err := f.Write(storyCtx(t, storyCall), []byte(storyPush+"nope"))
			storyRequireRedirect(t, err, leader.Peer(), "Write on "+f.Name())
			assert.Nil(t, got)
		}
		// The refused writes were not applied anywhere.
		got, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))

		// A caller that starts at a follower follows one redirect and lands
		// its write on the leader, once.
		follower := storyWithout(voters, leader)[0]
		res, hops, err := storyWriteVia(storyCtx(t, storyWait), follower.Addr(), []byte(storyPush+"d"))
		require.NoError(t, err)
		want = append(want, "d")
		assert.Equal(t, strconv.Itoa(len(want)), string(res))
		assert.Equal(t, 1, hops, "one redirect from a follower to the leader")
		// At the leader itself, no redirect is needed.
		res, hops, err = storyWriteVia(storyCtx(t, storyWait), leader.Addr(), []byte(storyPush+"e"))
		require.NoError(t, err)
		want = append(want, "e")
		assert.Equal(t, strconv.Itoa(len(want)), string(res))
		assert.Zero(t, hops)

		got, err = leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got), "each write applied exactly once")
	})

	step("read: linearizable on the leader, read_dirty on followers once applied", func(t *testing.T) {
		// A Read reflects every Write that returned before it began: right
		// after each push, the leader's peek shows it.
		for i := range 5 {
			item := "r" + strconv.Itoa(i)
			push(t, leader, item)
			got, err := leader.Read(storyCtx(t, storyCall), []byte("peek"))
			require.NoError(t, err)
			require.Equal(t, item, string(got), "a Read right after a Write")
		}

		followers := storyWithout(voters, leader)
		for _, f := range followers {
			// A linearizable read is the leader's to serve.
			_, err := f.Read(storyCtx(t, storyCall), []byte("peek"))
			storyRequireRedirect(t, err, leader.Peer(), "Read on "+f.Name())
		}

		// ReadDirty asks a follower's own stack: once the follower has applied
		// what the leader committed, it answers the same.
		storyCaughtUp(t, leader, followers...)
		for _, f := range followers {
			got, err := f.ReadDirty(storyCtx(t, storyCall), []byte("all"))
			require.NoError(t, err)
			assert.Equal(t, wantAll(), string(got), "ReadDirty on %s", f.Name())
		}
		// On the leader, ReadDirty and Read agree too.
		got, err := leader.ReadDirty(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
	})

	step("client: a call by address behaves like the method", func(t *testing.T) {
		follower := storyWithout(voters, leader)[0]

		// Write: the result is Apply's, as from the method.
		res, err := exraft.Write(storyCtx(t, storyCall), leader.Addr(), []byte(storyPush+"f"))
		require.NoError(t, err)
		want = append(want, "f")
		assert.Equal(t, strconv.Itoa(len(want)), string(res))

		// The errors are the same values on both sides of the wire.
		_, methodErr := follower.Write(storyCtx(t, storyCall), []byte(storyPush+"nope"))
		_, clientErr := exraft.Write(storyCtx(t, storyCall), follower.Addr(), []byte(storyPush+"nope"))
		storyRequireRedirect(t, methodErr, leader.Peer(), "method Write on a follower")
		storyRequireRedirect(t, clientErr, leader.Peer(), "client Write on a follower")

		_, methodErr = leader.Write(storyCtx(t, storyCall), []byte("shove"))
		_, clientErr = exraft.Write(storyCtx(t, storyCall), leader.Addr(), []byte("shove"))
		assert.ErrorIs(t, methodErr, exraft.ErrRejected)
		assert.ErrorIs(t, clientErr, exraft.ErrRejected)
		assert.Contains(t, clientErr.Error(), storyRej, "the refusal's message crosses the wire")

		methodErr = leader.RemoveServer(storyCtx(t, storyCall), "nobody")
		clientErr = exraft.RemoveServer(storyCtx(t, storyCall), leader.Addr(), "nobody")
		assert.ErrorIs(t, methodErr, exraft.ErrUnknownServer)
		assert.ErrorIs(t, clientErr, exraft.ErrUnknownServer)

		_, clientErr = exraft.Read(storyCtx(t, storyCall), follower.Addr(), []byte("peek"))
		storyRequireRedirect(t, clientErr, leader.Peer(), "client Read on a follower")

		// Read and AwaitLeader answer what the methods answer.
		byMethod, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		byClient, err := exraft.Read(storyCtx(t, storyCall), leader.Addr(), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, string(byMethod), string(byClient))
		assert.Equal(t, wantAll(), string(byClient))

		for _, s := range voters {
			byMethod, err := s.AwaitLeader(storyCtx(t, storyCall))
			require.NoError(t, err)
			byClient, err := exraft.AwaitLeader(storyCtx(t, storyCall), s.Addr())
			require.NoError(t, err)
			assert.Equal(t, byMethod, byClient, "AwaitLeader on %s", s.Name())
		}

		// ReadDirty and GetStatus, once the follower has applied the write.
		storyCaughtUp(t, leader, follower)
		dirtyMethod, err := follower.ReadDirty(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		dirtyClient, err := exraft.ReadDirty(storyCtx(t, storyCall), follower.Addr(), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, string(dirtyMethod), string(dirtyClient))
		assert.Equal(t, wantAll(), string(dirtyClient))

		st, err := exraft.GetStatus(storyCtx(t, storyCall), leader.Addr())
		require.NoError(t, err)
		assert.Equal(t, leader.Name(), st.Name)
		assert.Equal(t, leader.Addr(), st.Addr)
		assert.Equal(t, exraft.Leader, st.Role)
		assert.Equal(t, leader.Peer(), st.Leader)
		assert.ElementsMatch(t, leader.Status().Members, st.Members)

		// A Client of one's own works the same, from its zero value.
		var own exraft.Client
		t.Cleanup(func() { _ = own.Close() })
		res, err = own.Write(storyCtx(t, storyCall), leader.Addr(), []byte(storyPop))
		require.NoError(t, err)
		assert.Equal(t, "f", string(res))
		want = want[:len(want)-1]
	})

	step("trigger_election: a follower campaigns and takes over", func(t *testing.T) {
		// Pick a follower of the initial config, so that raft3 is still a
		// follower for the README's last act.
		var target *exraft.Server
		for _, s := range []*exraft.Server{raft1, raft2, raft3} {
			if s != leader {
				target = s
				break
			}
		}
		// A candidate wins only with a log as long as its voters': wait until
		// the target has everything the leader has.
		storyCaughtUp(t, leader, target)
		oldLeader, oldTerm := leader, leader.Status().Term

		// On the leader itself, TriggerElection does nothing.
		require.NoError(t, oldLeader.TriggerElection(storyCtx(t, storyCall)))
		assert.Equal(t, exraft.Leader, oldLeader.Status().Role)

		require.NoError(t, target.TriggerElection(storyCtx(t, storyCall)))
		// TriggerElection returns once the campaign has begun; the outcome is
		// a condition to wait for.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			st := target.Status()
			assert.Equal(c, exraft.Leader, st.Role)
			assert.Greater(c, st.Term, oldTerm)
		}, storyWait, storyTick, "%s did not win the election it triggered:%s", target.Name(), storyStatusesLazy(voters))
		leader = storyAgreedLeader(t, voters...)
		require.Equal(t, target, leader, "the cluster follows the server that campaigned")

		// The old leader now redirects to the new one, and nothing was lost.
		_, err := oldLeader.Write(storyCtx(t, storyCall), []byte(storyPush+"nope"))
		storyRequireRedirect(t, err, target.Peer(), "Write on the old leader")
		got, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
		push(t, leader, "g")
	})

	var stopped *exraft.Server
	step("stop_server: the leader stops and the rest recover", func(t *testing.T) {
		// raft3 must know it votes before it can campaign.
		storyCaughtUp(t, leader, storyWithout(voters, leader)...)
		stopped = leader
		survivors := storyWithout(voters, stopped)

		require.NoError(t, exraft.StopServer(stopped))
		assert.EqualValues(t, 1, stacks[stopped].closed.Load(), "Stop closes the state machine once")

		// Every later call on the stopped server fails with ErrStopped.
		ctx := storyCtx(t, storyCall)
		_, err := stopped.Write(ctx, []byte(storyPush+"late"))
		assert.ErrorIs(t, err, exraft.ErrStopped, "Write")
		_, err = stopped.Read(ctx, []byte("peek"))
		assert.ErrorIs(t, err, exraft.ErrStopped, "Read")
		_, err = stopped.ReadDirty(ctx, []byte("peek"))
		assert.ErrorIs(t, err, exraft.ErrStopped, "ReadDirty")
		_, err = stopped.AwaitLeader(ctx)
		assert.ErrorIs(t, err, exraft.ErrStopped, "AwaitLeader")
		assert.ErrorIs(t, stopped.AddServer(ctx, raft3.Peer()), exraft.ErrStopped, "AddServer")
		assert.ErrorIs(t, stopped.RemoveServer(ctx, "raft3"), exraft.ErrStopped, "RemoveServer")
		assert.ErrorIs(t, stopped.TriggerElection(ctx), exraft.ErrStopped, "TriggerElection")
		assert.Equal(t, exraft.Stopped, stopped.Status().Role)
		_, known := stopped.Leader()
		assert.False(t, known)
		// Stopping again is harmless and does not close the stack twice.
		require.NoError(t, stopped.Stop())
		assert.EqualValues(t, 1, stacks[stopped].closed.Load())

		// As in the README: trigger an election on raft3 and await its
		// outcome there. (Should raft3 have been the leader, another
		// survivor plays its part.)
		asker := raft3
		if stopped == raft3 {
			asker = survivors[0]
		}
		require.NoError(t, asker.TriggerElection(storyCtx(t, storyCall)), "TriggerElection on %s:%s", asker.Name(), storyStatuses(survivors...))
		p, err := asker.AwaitLeader(storyCtx(t, storyWait))
		require.NoError(t, err)
		assert.Contains(t, storyPeers(survivors...), p, "the new leader is a survivor")

		leader = storyAgreedLeader(t, survivors...)
		assert.NotEqual(t, stopped, leader)
		// The new leader has every write, and two of three voters still make
		// a quorum.
		got, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
		push(t, leader, "h")
	})

	step("add_server and remove_server: raft4 replaces the stopped server", func(t *testing.T) {
		// A replacement starts like raft3 did: alone, with MinMajority 2.
		cfg4 := storyConfig("raft4")
		cfg4.MinMajority = 2
		var sm *storyStack
		raft4, sm = storyStart(t, story, cfg4)
		stacks[raft4] = sm

		// Adding first keeps the cluster's tolerance during the change.
		require.NoError(t, leader.AddServer(storyCtx(t, storyWait), raft4.Peer()), "AddServer(raft4):%s", storyStatuses(voters...))
		require.NoError(t, leader.RemoveServer(storyCtx(t, storyWait), stopped.Name()), "RemoveServer(%s)", stopped.Name())
		voters = append(storyWithout(voters, stopped), raft4)
		assert.ElementsMatch(t, storyPeers(voters...), leader.Status().Members)

		// The stopped server is gone for good: removing it again fails.
		err := leader.RemoveServer(storyCtx(t, storyCall), stopped.Name())
		assert.ErrorIs(t, err, exraft.ErrUnknownServer)

		// raft4 was caught up from the leader's log.
		storyCaughtUp(t, leader, storyWithout(voters, leader)...)
		got, err := raft4.ReadDirty(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
	})

	step("remove_server: the leader removes itself and hands over", func(t *testing.T) {
		old := leader
		rest := storyWithout(voters, old)
		require.NoError(t, old.RemoveServer(storyCtx(t, storyWait), old.Name()), "RemoveServer of the leader:%s", storyStatuses(voters...))

		// Once the configuration without it commits, the old leader steps
		// down and one of the rest takes over.
		leader = storyAgreedLeader(t, rest...)
		assert.NotEqual(t, old, leader)
		assert.ElementsMatch(t, storyPeers(rest...), leader.Status().Members)
		assert.NotEqual(t, exraft.Leader, old.Status().Role, "the removed leader stepped down")
		voters = rest

		got, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got), "the hand-over lost nothing")
		push(t, leader, "i")

		// The removed server is no longer needed.
		require.NoError(t, exraft.StopServer(old))
		_, err = old.Write(storyCtx(t, storyCall), []byte(storyPush+"late"))
		assert.ErrorIs(t, err, exraft.ErrStopped)
	})

	step("remove_server: down to the last voter, which cannot go", func(t *testing.T) {
		follower := storyWithout(voters, leader)[0]
		require.NoError(t, leader.RemoveServer(storyCtx(t, storyWait), follower.Name()))
		voters = []*exraft.Server{leader}
		assert.Equal(t, []exraft.Peer{leader.Peer()}, leader.Status().Members)

		// The one voter left is a cluster of its own: it keeps leading and
		// writing, and refuses to remove itself.
		assert.ErrorIs(t, leader.RemoveServer(storyCtx(t, storyCall), leader.Name()), exraft.ErrLastServer)
		push(t, leader, "j")
		got, err := leader.Read(storyCtx(t, storyCall), []byte("all"))
		require.NoError(t, err)
		assert.Equal(t, wantAll(), string(got))
	})
}
