package exraft_test

// Sessions under faults (issue 14): every write a Session makes is applied
// exactly once, whatever happens to the leader, to the replies and to the
// servers' logs, and a retry is answered with what the first apply
// returned, by whichever server leads when it arrives, whether that server
// applied the write from its log or received it in a snapshot.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// sessionAttempt bounds a test Session's wait for one server: short, so
// that a Session gives up on a stopped or cut-off leader quickly and
// retries elsewhere, which is what puts duplicates in the log.
const sessionAttempt = 300 * time.Millisecond

// tinySnapshots makes every server snapshot every runSnapThreshold entries
// and keep runSnapTrailing, so that a server started again blank is caught
// up by a snapshot, and the session table with it.
func tinySnapshots(_ int, cfg *exraft.Config) {
	cfg.SnapshotThreshold, cfg.TrailingLogs = runSnapThreshold, runSnapTrailing
}

// awaitEveryLogCompacted waits until every server has dropped the first entries of
// its log: from then on, a server started again blank can only be caught up
// by a snapshot.
func awaitEveryLogCompacted(t *testing.T, c *testkit.Cluster, past uint64, load func()) {
	t.Helper()
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		for _, s := range c.Live() {
			if s.Status().FirstIndex <= past+1 {
				load()
				return false
			}
		}
		return true
	}, "every server to compact its log past %d:%v", past, testkit.Lazy(c.Describe))
}

// lead makes name the leader, campaigning again until it wins, and returns
// its term.
func lead(t *testing.T, c *testkit.Cluster, name string) uint64 {
	t.Helper()
	s := c.Server(name)
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		if s.Status().Role == exraft.Leader {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.TriggerElection(ctx) // refused while it restores, say: campaign again
		cancel()
		return testkit.PollUntil(testkit.NoLeaderWindow, func() bool { return s.Status().Role == exraft.Leader })
	}, "%s to win an election:%v", name, testkit.Lazy(c.Describe))
	return s.Status().Term
}

// ---------------------------------------------------------------------------
// A duplicate answered from the table, by every server

// heldWrite is a Session write whose reply was lost, after which its
// client was cut off: the cluster applied it, and its retry waits until the
// test mends the client.
type heldWrite struct {
	sess *exraft.Session
	loss *testkit.ReplyLoss
	cmd  string
	done chan heldResult
}

type heldResult struct {
	val string
	err error
}

// holdWrite makes a Session whose first write is answered, then writes cmd
// with its reply lost, and returns once the cluster has applied cmd
// everywhere.
func holdWrite(t *testing.T, c *testkit.Cluster, key string) *heldWrite {
	t.Helper()
	loss := &testkit.ReplyLoss{}
	rc := &exraft.Client{Dial: loss.Dial, AttemptTimeout: sessionAttempt}
	t.Cleanup(func() { _ = rc.Close() })
	hw := &heldWrite{sess: rc.NewSession(addrsOf(c)...), loss: loss, cmd: "set " + key + " second", done: make(chan heldResult, 1)}
	_, err := hw.sess.Write(testkit.Ctx(t, testkit.WaitLong), []byte("set "+key+" first"))
	require.NoError(t, err, "the Session's first write, which registers it")

	loss.LoseNextAndCut()
	ctx := testkit.Ctx(t, 2*testkit.WaitLong) // the retry waits out the test's restarts and elections
	go func() {
		val, err := hw.sess.Write(ctx, []byte(hw.cmd))
		hw.done <- heldResult{string(val), err}
	}()
	testkit.Eventually(t, testkit.WaitLong, loss.IsCut, "the reply of %q to be lost", hw.cmd)
	awaitAppliedOnceEverywhere(t, c, hw.cmd)
	return hw
}

// release mends the held write's client and checks that its retry is
// answered with what the first apply returned, and applied nothing again.
func (hw *heldWrite) release(t *testing.T, c *testkit.Cluster) {
	t.Helper()
	require.Empty(t, hw.done, "%q returned while its client was cut off", hw.cmd)
	hw.loss.Mend()
	var res heldResult
	select {
	case res = <-hw.done:
	case <-time.After(testkit.WaitLong):
		require.FailNowf(t, "the retry did not return", "%q still waits %v after its client was mended", hw.cmd, testkit.WaitLong)
	}
	require.NoError(t, res.err, "the retry of %q", hw.cmd)
	assert.Equal(t, "first", res.val, "the retry of %q is answered with what its first apply returned", hw.cmd)
	awaitAppliedOnceEverywhere(t, c, hw.cmd)
}

// TestSessionDuplicateAnsweredByEveryLeader: each of three Sessions has a
// write applied whose reply was lost, while a follower is down. The
// follower comes back blank and is caught up, from the log or (with
// snapshots) by a snapshot that carries the session table, since every log
// was compacted past those writes. Then each server in turn is made the
// leader and one held write is let retry there: each server, the one
// caught up by a snapshot first, must answer the duplicate with the
// original result and apply nothing.
func TestSessionDuplicateAnsweredByEveryLeader(t *testing.T) {
	for _, snapshots := range []bool{false, true} {
		name := map[bool]string{false: "log", true: "snapshot"}[snapshots]
		t.Run(name, func(t *testing.T) { duplicateAnsweredByEveryLeader(t, snapshots) })
	}
}

func duplicateAnsweredByEveryLeader(t *testing.T, snapshots bool) {
	opts := testkit.Options{}
	snaps := testkit.NewSnapKVs()
	if snapshots {
		opts.NewSM, opts.Configure = snaps.NewSM, tinySnapshots
	}
	c := testkit.StartCluster(t, 3, opts)
	c.WarmUp(t)
	names := c.Names()
	// The first follower goes down, so that it learns of the held writes
	// only once it comes back blank.
	down := names[0]
	for _, n := range names {
		if n != c.Leader().Name() {
			down = n
			break
		}
	}
	require.NoError(t, c.Stop(down))

	held := make([]*heldWrite, len(names))
	for i := range held {
		held[i] = holdWrite(t, c, fmt.Sprintf("k%d", i))
	}
	if snapshots {
		heldAt := c.MaxCommit()
		filler := 0
		awaitEveryLogCompacted(t, c, heldAt, func() {
			testkit.WriteAny(t, c.Live(), fmt.Sprintf("set filler %d", filler))
			filler++
		})
	}
	commit := c.MaxCommit()
	require.NoError(t, c.Start(down))
	require.NoError(t, c.WatchRejoin(down, commit, testkit.WaitShort).Wait(), "%s after its restart", down)
	if snapshots {
		di := slices.Index(names, down)
		require.Positive(t, snaps.Of(di).Restores(), "%s must have been caught up by a snapshot", down)
	}

	// down leads first: its answer can only come from the table it restored.
	order := append([]string{down}, others(names, down)...)
	for i, leader := range order {
		term := lead(t, c, leader)
		held[i].release(t, c)
		st := c.Server(leader).Status()
		require.Truef(t, st.Role == exraft.Leader && st.Term == term,
			"%s lost its leadership during the retry (now %v in term %d): the duplicate was not answered by it", leader, st.Role, st.Term)
		got, err := held[i].sess.Read(testkit.Ctx(t, testkit.WaitLong), []byte(fmt.Sprintf("get k%d", i)))
		require.NoError(t, err)
		assert.Equal(t, "second", string(got), "a Session's read on %s, the new leader", leader)
	}
	c.AwaitConverged(t, "after the retries")
}

// others returns names without name.
func others(names []string, name string) []string {
	var out []string
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Many Sessions under leader restarts, election storms and lost replies

// The size of a fault run: several Sessions, each written by several
// goroutines at once, on few keys so that the results (the values the
// writes replaced) depend on the order of the log.
const (
	faultSessions = 3
	faultWriters  = 3 // goroutines per Session
	faultKeys     = 4
	faultTime     = 6 * time.Second
	faultMinAcked = 100
)

// faultRun is one run: the cluster, and the Sessions' writes and what they
// were answered.
type faultRun struct {
	c        *testkit.Cluster
	losses   []*testkit.ReplyLoss // one per Session's Client
	sessions []*exraft.Session
	log      *testkit.Schedule

	mu       sync.Mutex
	acked    map[string]string // command -> what its Session answered
	unknown  int
	odd      []error // errors that Session.Write does not document
	restarts int
	armed    int
}

func newFaultRun(t *testing.T, c *testkit.Cluster) *faultRun {
	r := &faultRun{c: c, acked: map[string]string{}, log: testkit.NewSchedule(t)}
	for range faultSessions {
		loss := &testkit.ReplyLoss{}
		rc := &exraft.Client{Dial: loss.Dial, AttemptTimeout: sessionAttempt}
		t.Cleanup(func() { _ = rc.Close() })
		r.losses = append(r.losses, loss)
		r.sessions = append(r.sessions, rc.NewSession(addrsOf(c)...))
	}
	return r
}

// writer writes unique commands through Session s until stop closes, each
// with a deadline of its own (testkit.SessionOpMin to SessionOpMax).
func (r *faultRun) writer(stop <-chan struct{}, rng *rand.Rand, s, g int) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		cmd := fmt.Sprintf("set k%d s%d.g%d.%d", (s+g+i)%faultKeys, s, g, i)
		ctx, cancel := context.WithTimeout(context.Background(), testkit.SessionOpMin+time.Duration(rng.Int64N(int64(testkit.SessionOpMax-testkit.SessionOpMin))))
		val, err := r.sessions[s].Write(ctx, []byte(cmd))
		cancel()
		r.record(cmd, val, err)
	}
}

func (r *faultRun) record(cmd string, val []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.acked[cmd] = string(val)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, exraft.ErrSessionExpired):
		r.unknown++ // applied once or never
	default:
		r.odd = append(r.odd, fmt.Errorf("%s: %w", cmd, err))
	}
}

// nemesis restarts the leader (now and then another server) blank, forces
// elections and loses replies on the Sessions' connections until ctx ends.
// One server at most is down at a time: each restarted one is re-admitted
// and caught up before the next fault. The first round restarts the leader,
// so that every run does.
func (r *faultRun) nemesis(ctx context.Context, rng *rand.Rand) error {
	for round := 0; ctx.Err() == nil; round++ {
		r.loseReplies(rng)
		switch k := rng.IntN(3); {
		case round == 0 || k == 0:
			if err := r.restart(rng); err != nil {
				return err
			}
		case k == 1:
			electionStorm(ctx, rng, r.c, r.log)
		}
		testkit.Pause(ctx, rng, 50, 300)
	}
	return nil
}

// loseReplies arms the loss of a reply or two on some Sessions' connections.
func (r *faultRun) loseReplies(rng *rand.Rand) {
	for _, i := range rng.Perm(len(r.losses))[:1+rng.IntN(len(r.losses))] {
		k := 1 + rng.IntN(2)
		r.losses[i].DropNext(k)
		r.log.Note("lose %d replies of session %d", k, i)
		r.mu.Lock()
		r.armed += k
		r.mu.Unlock()
	}
}

// lost returns how many replies were lost so far.
func (r *faultRun) lost() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.armed
	for _, l := range r.losses {
		n -= l.Pending()
	}
	return n
}

// restart stops the leader (or, a third of the time, any server), starts
// it again blank, and waits until it is a voter caught up again.
func (r *faultRun) restart(rng *rand.Rand) error {
	names := r.c.Names()
	name := names[rng.IntN(len(names))]
	if l := r.c.LeaderWithin(testkit.WaitShort); l != nil && rng.IntN(3) > 0 {
		name = l.Name()
	}
	commit := r.c.MaxCommit()
	if err := r.c.Stop(name); err != nil {
		return err
	}
	r.log.Note("stop %s", name)
	time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond) // pacing: stay down a while
	if err := r.c.Start(name); err != nil {
		return err
	}
	w := r.c.WatchRejoin(name, commit, testkit.WaitShort)
	if err := w.Wait(); err != nil {
		return fmt.Errorf("%s after its restart: %w", name, err)
	}
	r.log.Note("%s started again blank, re-admitted (on its own: %v)", name, w.Auto)
	r.mu.Lock()
	r.restarts++
	r.mu.Unlock()
	return nil
}

// TestSessionExactlyOnceUnderFaults: three Sessions, each written by three
// goroutines with short deadlines, while the leader is stopped and started
// again blank, elections are forced and replies are lost. Then: no command
// was applied twice on any server, every acknowledged write was applied
// exactly once on every server, and every answer is what Apply returned
// the first time. With snapshots, the restarted servers are caught up by
// snapshots, session table included.
func TestSessionExactlyOnceUnderFaults(t *testing.T) {
	t.Run("log", func(t *testing.T) { exactlyOnceUnderFaults(t, nil) })
	t.Run("snapshot", func(t *testing.T) {
		snaps := testkit.NewSnapKVs()
		exactlyOnceUnderFaults(t, snaps)
		started := snaps.All()[3:]
		require.NotEmpty(t, started)
		for i, m := range started {
			assert.Positive(t, m.Counts().Restores, "incarnation %d started during the run was caught up without a snapshot", i+1)
		}
	})
}

func exactlyOnceUnderFaults(t *testing.T, snaps *testkit.SnapKVs) {
	seed := testkit.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5e55))
	opts := testkit.Options{}
	if snaps != nil {
		opts.NewSM, opts.Configure = snaps.NewSM, tinySnapshots
	}
	c := testkit.StartCluster(t, 3, opts)
	c.WarmUp(t)
	r := newFaultRun(t, c)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range faultSessions {
		for g := range faultWriters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.writer(stop, rand.New(rand.NewPCG(seed, uint64(s*faultWriters+g))), s, g)
			}()
		}
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()
	if snaps != nil {
		// From the first fault on, a server started blank needs a snapshot.
		awaitEveryLogCompacted(t, c, 0, func() {})
	}

	ctx, cancel := context.WithTimeout(context.Background(), faultTime)
	err := r.nemesis(ctx, rng)
	cancel()
	stopWriters()
	require.NoError(t, err, "nemesis")
	_, final := c.AwaitConverged(t, t.Name())
	r.check(t, final)
}

// check checks the run against final, the history every server applied.
// The writers and the nemesis are done: what they recorded is final.
func (r *faultRun) check(t *testing.T, final []string) {
	t.Logf("%d writes acknowledged, %d of unknown outcome; %d replies lost, %d blank restarts",
		len(r.acked), r.unknown, r.lost(), r.restarts)
	require.Empty(t, r.odd, "Session.Write returned errors it does not document")
	require.GreaterOrEqual(t, len(r.acked), faultMinAcked, "too few writes acknowledged for the run to mean anything")
	require.Positive(t, r.lost(), "no reply was lost")

	for _, name := range r.c.Names() {
		_, times := testkit.Replay(r.c.KV(name).History())
		for cmd, n := range times {
			require.Equalf(t, 1, n, "%s applied %q %d times", name, cmd, n)
		}
		for cmd := range r.acked {
			require.Equalf(t, 1, times[cmd], "%s applied the acknowledged %q %d times", name, cmd, times[cmd])
		}
	}
	first, _ := testkit.Replay(final)
	for cmd, val := range r.acked {
		require.Equalf(t, first[cmd], val, "%q was answered %q, but its apply returned %q", cmd, val, first[cmd])
	}
	r.checkReads(t)
}

// checkReads reads every key through every Session, after the leader
// changes of the run: each must see the final state.
func (r *faultRun) checkReads(t *testing.T) {
	l := r.c.Leader()
	require.NotNil(t, l)
	for s, sess := range r.sessions {
		for k := range faultKeys {
			q := fmt.Sprintf("get k%d", k)
			got, err := sess.Read(testkit.Ctx(t, testkit.WaitLong), []byte(q))
			require.NoError(t, err, "session %d: Read(%s)", s, q)
			require.Equal(t, testkit.Dirty(l, q), string(got), "session %d: Read(%s)", s, q)
		}
	}
}

// ---------------------------------------------------------------------------
// Linearizability with Sessions

// sessionClients: runClients clients of Sessions over the wire, each
// Session on a Client of its own whose replies are lost now and then. The
// first ones have a Session each, exclusive, so that the history bounds
// their writes of unknown outcome by their next acknowledged one; the last
// two share one.
func sessionClients(seed uint64, c *testkit.Cluster, h *testkit.History, stop <-chan struct{}, wg *sync.WaitGroup) func() {
	var losses []*testkit.ReplyLoss
	var remotes []*exraft.Client
	newSession := func() *exraft.Session {
		loss := &testkit.ReplyLoss{}
		rc := &exraft.Client{Dial: loss.Dial, AttemptTimeout: sessionAttempt}
		losses, remotes = append(losses, loss), append(remotes, rc)
		return rc.NewSession(addrsOf(c)...)
	}
	var shared *exraft.Session
	for i := range runClients {
		sess, exclusive := shared, false
		switch {
		case i < runClients-2:
			sess, exclusive = newSession(), true
		case shared == nil:
			shared = newSession()
			sess = shared
		}
		cl := h.NewSessionClient(i, rand.New(rand.NewPCG(seed+uint64(i)+1, uint64(i))), sess, exclusive)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.Run(stop)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		loseRepliesUntil(stop, rand.New(rand.NewPCG(seed, 0x1055)), losses)
	}()
	return func() {
		for _, rc := range remotes {
			_ = rc.Close()
		}
	}
}

// loseRepliesUntil loses a reply on a random Session's connections every
// few hundred milliseconds until stop closes.
func loseRepliesUntil(stop <-chan struct{}, rng *rand.Rand, losses []*testkit.ReplyLoss) {
	for {
		t := time.NewTimer(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
			losses[rng.IntN(len(losses))].DropNext(1)
		}
	}
}

// TestLinearizableSessions: clients write and read through Sessions, with
// replies lost now and then, on servers that snapshot every few entries,
// while the nemesis partitions the cluster, then restarts servers (the
// leader often) blank, to be caught up by snapshots. Acknowledged session
// writes are definite: each must be applied exactly once, over the value
// it returned, and the history must be linearizable.
func TestLinearizableSessions(t *testing.T) {
	snaps := testkit.NewSnapKVs()
	runLinearizableClients(t, 3, snaps, partitionsThenRestarts, sessionClients)
	for i, m := range snaps.All()[3:] {
		assert.Positive(t, m.Counts().Restores, "incarnation %d started during the run was caught up without a snapshot", i+1)
	}
}

// partitionsThenRestarts runs partitionsNemesis for the first half of its
// time, then restartsNemesis.
func partitionsThenRestarts(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
	deadline, _ := ctx.Deadline()
	half, cancel := context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/2))
	err := partitionsNemesis(half, rng, c, log)
	cancel()
	c.Net().MakeReliable()
	c.Net().HealAll()
	log.Note("partitions done; network healed")
	if err != nil {
		return err
	}
	return restartsNemesis(ctx, rng, c, log)
}
