package exraft_test

// Linearizability under faults: real servers on loopback TCP, a nemesis that
// cuts links, partitions the cluster, stops and restarts servers, forces
// elections and changes the membership, and concurrent clients whose history
// is checked with porcupine against a sequential key-value model. The
// network, the cluster, the model and the clients are testkit's.
//
// The nemesis draws its choices from a seed that every test logs; set
// EXRAFT_CHAOS_SEED to replay the same choices (timing still varies).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// The size of a run: enough clients and keys for concurrent operations on
// the same key, few enough keys that they collide, and minimum counts below
// which the history is too thin for the check to mean anything.
const (
	runClients  = 6
	runKeys     = 5
	nemesisTime = 8 * time.Second
	minWrites   = 200
	minReads    = 50
)

// nemesis injects faults until ctx ends, then returns with the cluster
// whole again (every server running and a member), though possibly with
// links cut. An error means the harness could not do what it meant to.
type nemesis func(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error

// The snapshot fields of a run with snapshots: small enough that every
// server snapshots and compacts many times a second under the clients'
// load, so that a server that falls behind, or comes back blank, has to be
// caught up through a snapshot.
const (
	runSnapThreshold = 20
	runSnapTrailing  = 5
)

// runLinearizable runs clients against a fresh cluster of n servers while
// nem runs, then checks convergence and the history.
func runLinearizable(t *testing.T, n int, nem nemesis) {
	runLinearizableWith(t, n, nil, nem)
}

// runLinearizableWith is runLinearizable with the state machines built by
// snaps, if not nil, and snapshots every runSnapThreshold entries. The
// nemesis then starts once every server has compacted its log, so that
// from its first fault on, a server that needs what it missed cannot get
// all of it from a log. A SnapKV's snapshot carries the commands it
// applied, so the final log and the convergence checks cover the servers
// that were restored.
func runLinearizableWith(t *testing.T, n int, snaps *testkit.SnapKVs, nem nemesis) {
	runLinearizableClients(t, n, snaps, nem, plainClients)
}

// startClients starts the recording clients of a run, each on a goroutine
// of wg that returns once stop closes, and returns what to call after
// them.
type startClients func(seed uint64, c *testkit.Cluster, h *testkit.History, stop <-chan struct{}, wg *sync.WaitGroup) (cleanup func())

// plainClients: runClients clients of Server.Write and Server.Read, half of
// them in process and half over the wire, each starting at a server of its
// own.
func plainClients(seed uint64, c *testkit.Cluster, h *testkit.History, stop <-chan struct{}, wg *sync.WaitGroup) func() {
	var remotes []*exraft.Client
	n := len(c.Names())
	for i := range runClients {
		var remote *exraft.Client
		if i%2 == 1 { // half of the clients go over the wire
			remote = &exraft.Client{}
			remotes = append(remotes, remote)
		}
		cl := h.NewClient(i, rand.New(rand.NewPCG(seed+uint64(i)+1, uint64(i))), c.Names()[i%n], remote)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.Run(stop)
		}()
	}
	return func() {
		for _, rc := range remotes {
			_ = rc.Close()
		}
	}
}

// runLinearizableClients is runLinearizableWith with the clients that
// clients starts.
func runLinearizableClients(t *testing.T, n int, snaps *testkit.SnapKVs, nem nemesis, clients startClients) {
	seed := testkit.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	opts := testkit.Options{Net: testkit.NewNet()}
	if snaps != nil {
		opts.NewSM = snaps.NewSM
		opts.Configure = func(i int, cfg *exraft.Config) {
			cfg.SnapshotThreshold, cfg.TrailingLogs = runSnapThreshold, runSnapTrailing
		}
	}
	c := testkit.StartCluster(t, n, opts)
	c.WarmUp(t)
	log := testkit.NewSchedule(t)

	var keys []string
	for i := range runKeys {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	h := testkit.NewHistory(c, keys, runClients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer clients(seed, c, h, stop, &wg)()
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopClients() // when a wait below fails the test, too

	if snaps != nil {
		testkit.Eventually(t, testkit.WaitLong, func() bool {
			for _, s := range c.Servers() {
				if s.Status().FirstIndex <= 1 {
					return false
				}
			}
			return true
		}, "every server to compact its log under the clients' load:%v", testkit.Lazy(c.Describe))
		log.Note("every server compacted its log: %v", snaps.Totals())
	}

	ctx, cancel := context.WithTimeout(context.Background(), nemesisTime)
	nemErr := nem(ctx, rng, c, log)
	cancel()
	c.Net().MakeReliable()
	c.Net().HealAll()
	log.Note("nemesis done; network healed")
	stopClients()
	end := h.Now() + 1
	require.NoError(t, nemErr, "nemesis")
	t.Logf("nemesis: %d actions", log.Len())
	if snaps != nil {
		t.Logf("state machines by the end of the nemesis: %v", snaps.Totals())
	}

	leader, final := c.AwaitConverged(t, t.Name())
	t.Logf("converged at term %d, commit index %d", leader.Status().Term, leader.Status().CommitIndex)
	if snaps != nil {
		t.Logf("after convergence: %v; servers:%s", snaps.Totals(), c.Describe())
	}
	// The final leader answers a linearizable read of every key with what
	// the log says.
	want := map[string]string{}
	for _, cmd := range final {
		if parts := strings.SplitN(cmd, " ", 3); len(parts) == 3 {
			want[parts[1]] = parts[2]
		}
	}
	for _, k := range keys {
		require.Equal(t, want[k], testkit.MustRead(t, leader, "get "+k),
			"Read(get %s) on the final leader %s against the applied log", k, leader.Name())
	}
	w, rd := h.Succeeded()
	require.Truef(t, w >= minWrites && rd >= minReads,
		"too little got through to mean anything: %d writes and %d reads succeeded, want at least %d and %d", w, rd, minWrites, minReads)
	h.Check(t, final, end)
}

// ---------------------------------------------------------------------------
// The tests

// TestLinearizablePartitions: single links cut (both ways or one way),
// majority/minority partitions and an isolated leader, healed in between, on
// a network that also delays writes a little and drops a connection now and
// then.
func TestLinearizablePartitions(t *testing.T) {
	runLinearizable(t, 5, partitionsNemesis)
}

// partitionsNemesis: see TestLinearizablePartitions.
func partitionsNemesis(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
	c.Net().MakeFlaky(100, 2, 3*time.Millisecond)
	names := c.Names()
	pair := func() (string, string) {
		p := rng.Perm(len(names))
		return names[p[0]], names[p[1]]
	}
	for ctx.Err() == nil {
		for range 1 + rng.IntN(3) {
			switch k := rng.IntN(10); {
			case k < 3:
				a, b := pair()
				c.Net().Cut(a, b)
				log.Note("cut %s<->%s", a, b)
			case k < 4:
				a, b := pair()
				c.Net().CutOneWay(a, b)
				log.Note("cut %s->%s", a, b)
			case k < 5:
				if cut := c.Net().CutLinks(); len(cut) > 0 {
					l := cut[rng.IntN(len(cut))]
					c.Net().Mend(l.From, l.To)
					log.Note("heal %s<->%s", l.From, l.To)
				}
			case k < 7:
				// Half the time the leader is on the minority side.
				p := rng.Perm(len(names))
				if l := c.Leader(); l != nil && rng.IntN(2) == 0 {
					for i, j := range p {
						if names[j] == l.Name() {
							p[0], p[i] = p[i], p[0]
						}
					}
				}
				small := 1 + rng.IntN(len(names)/2)
				var minority, majority []string
				for i, j := range p {
					if i < small {
						minority = append(minority, names[j])
					} else {
						majority = append(majority, names[j])
					}
				}
				c.Net().Partition(majority, minority)
				log.Note("partition %v | %v", majority, minority)
			default:
				if l := c.Leader(); l != nil {
					c.Net().Isolate(l.Name())
					log.Note("isolate leader %s", l.Name())
				}
			}
			testkit.Pause(ctx, rng, 150, 700)
		}
		c.Net().HealAll()
		log.Note("heal all")
		testkit.Pause(ctx, rng, 200, 600)
	}
	return nil
}

// TestLinearizableRestarts: servers, the leader among them, stop and start
// again blank on the same address, one at a time; the leader re-admits each
// as a new incarnation before the next one goes.
func TestLinearizableRestarts(t *testing.T) {
	runLinearizable(t, 5, restartsNemesis)
}

// restartsNemesis: see TestLinearizableRestarts.
func restartsNemesis(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
	names := c.Names()
	for ctx.Err() == nil {
		name := names[rng.IntN(len(names))]
		if l := c.Leader(); l != nil && rng.IntN(100) < 40 {
			name = l.Name()
		}
		commit := c.MaxCommit()
		if err := c.Stop(name); err != nil {
			return err
		}
		log.Note("stop %s", name)
		time.Sleep(time.Duration(50+rng.IntN(350)) * time.Millisecond) // pacing: stay down a while
		if err := c.Start(name); err != nil {
			return err
		}
		log.Note("start %s again (blank)", name)
		w := c.WatchRejoin(name, commit, testkit.WaitShort)
		if err := w.Wait(); err != nil {
			return fmt.Errorf("%s after its restart: %w", name, err)
		}
		if !w.Auto {
			return fmt.Errorf("the leader did not re-admit %s on its own within %v after its restart", name, testkit.WaitShort)
		}
		log.Note("%s re-admitted", name)
		testkit.Pause(ctx, rng, 100, 500)
	}
	return nil
}

// TestLinearizableChurn: storms of forced elections on followers, and
// members removed (the leader too, sometimes) and added back, either as
// they are or restarted blank.
func TestLinearizableChurn(t *testing.T) {
	runLinearizable(t, 5, churnNemesis)
}

// churnNemesis: see TestLinearizableChurn.
func churnNemesis(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
	names := c.Names()
	for ctx.Err() == nil {
		if rng.IntN(2) == 0 {
			electionStorm(ctx, rng, c, log)
		} else {
			l := c.LeaderWithin(5 * time.Second)
			if l == nil {
				log.Note("no leader for 5s")
				continue
			}
			name := l.Name()
			if rng.IntN(100) >= 20 {
				for _, x := range rng.Perm(len(names)) {
					if names[x] != name {
						name = names[x]
						break
					}
				}
			}
			if err := c.RemoveMember(name, testkit.WaitLong); err != nil {
				return err
			}
			log.Note("removed %s (leader was %s)", name, l.Name())
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond) // pacing
			if rng.IntN(2) == 0 {
				if err := c.Stop(name); err != nil {
					return err
				}
				if err := c.Start(name); err != nil {
					return err
				}
				log.Note("restarted %s blank", name)
			}
			if err := c.AddMember(name, testkit.WaitLong); err != nil {
				return err
			}
			log.Note("added %s back", name)
		}
		testkit.Pause(ctx, rng, 200, 500)
	}
	return nil
}

// electionStorm forces one to three elections on followers, in quick
// succession.
func electionStorm(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) {
	names := c.Names()
	for range 1 + rng.IntN(3) {
		s := c.Server(names[rng.IntN(len(names))])
		if s.Status().Role == exraft.Leader {
			continue
		}
		tctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.TriggerElection(tctx)
		cancel()
		log.Note("TriggerElection on %s: %v", s.Name(), err)
		testkit.Pause(ctx, rng, 1, 60)
	}
}

// TestLinearizableSnapshots: the three runs above again, with state
// machines that snapshot every runSnapThreshold entries and keep
// runSnapTrailing: servers that fall behind under partitions, and servers
// that come back blank, are caught up through snapshots while the clients
// go on, and the history must still be linearizable. Each run checks that
// restores happened where its faults make them certain.
func TestLinearizableSnapshots(t *testing.T) {
	t.Run("partitions", func(t *testing.T) {
		snaps := testkit.NewSnapKVs()
		var atEnd testkit.SnapCounts
		runLinearizableWith(t, 5, snaps, func(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
			c.Net().MakeFlaky(100, 2, 3*time.Millisecond)
			// Random partitions rarely last long enough to leave a server
			// behind every log; this one does, once, before them.
			err := lagBehindLogs(rng, c, snaps, log)
			if err == nil {
				err = partitionsNemesis(ctx, rng, c, log)
			}
			atEnd = snaps.Totals()
			return err
		})
		assert.Positive(t, atEnd.Restores, "restores during the nemesis: %v", atEnd)
		assert.Zero(t, atEnd.RestoreErrors, "a Restore failed: %v", atEnd)
	})

	// With every log compacted before the first fault, a server started
	// again blank can only be caught up through a snapshot, and each of
	// these nemeses waits for its re-admission before it goes on: every
	// incarnation started during the run must have restored one.
	for _, tc := range []struct {
		name string
		nem  nemesis
	}{{"restarts", restartsNemesis}, {"churn", churnNemesis}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5
			snaps := testkit.NewSnapKVs()
			var restarted []testkit.SnapCounts
			runLinearizableWith(t, n, snaps, func(ctx context.Context, rng *rand.Rand, c *testkit.Cluster, log *testkit.Schedule) error {
				err := tc.nem(ctx, rng, c, log)
				for _, m := range snaps.All()[n:] {
					restarted = append(restarted, m.Counts())
				}
				return err
			})
			t.Logf("incarnations started during the nemesis: %d", len(restarted))
			if tc.name == "restarts" {
				require.NotEmpty(t, restarted, "the nemesis started no server again")
			}
			for i, counts := range restarted {
				assert.Positive(t, counts.Restores, "incarnation %d started during the run was caught up without a snapshot: %v", i+1, counts)
			}
		})
	}
}

// lagBehindLogs isolates a follower until every other server has compacted
// its log past the follower's last entry, then heals it and waits until
// the follower has restored a snapshot: whoever leads, the log can no
// longer catch it up.
func lagBehindLogs(rng *rand.Rand, c *testkit.Cluster, snaps *testkit.SnapKVs, log *testkit.Schedule) error {
	l := c.LeaderWithin(testkit.WaitShort)
	if l == nil {
		return fmt.Errorf("no leader within %v to lag behind", testkit.WaitShort)
	}
	names := c.Names()
	fi := -1
	for _, i := range rng.Perm(len(names)) {
		if names[i] != l.Name() {
			fi = i
			break
		}
	}
	name, sm := names[fi], snaps.Of(fi)
	before := sm.Restores()
	c.Net().Isolate(name)
	log.Note("isolate %s until every log is compacted past its last entry", name)
	var last uint64
	compacted := testkit.PollUntil(testkit.WaitLong, func() bool {
		// Read again each time: what was in flight when the links were
		// cut may still arrive.
		last = c.Server(name).Status().LastIndex
		for _, s := range c.Live() {
			if s.Name() != name && s.Status().FirstIndex <= last+1 {
				return false
			}
		}
		return true
	})
	if !compacted {
		return fmt.Errorf("the others did not compact past %s's last index %d within %v:%s", name, last, testkit.WaitLong, c.Describe())
	}
	c.Net().Heal(name)
	log.Note("heal %s, at last index %d behind every log", name, last)
	if !testkit.PollUntil(testkit.WaitLong, func() bool { return sm.Restores() > before }) {
		return fmt.Errorf("%s, behind every log, restored no snapshot within %v:%s", name, testkit.WaitLong, c.Describe())
	}
	log.Note("%s restored a snapshot, now at %d", name, c.Server(name).Status().AppliedIndex)
	return nil
}

// TestLinearizableModel checks the checker: the model accepts histories that
// are linearizable (unknown writes that took effect or did not) and rejects
// stale reads, lost writes and wrong previous values, so that the tests above
// cannot pass vacuously.
func TestLinearizableModel(t *testing.T) {
	const end = 1000
	put := func(client int, key, val, prev string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: testkit.KVInput{Put: true, Key: key, Val: val},
			Output: testkit.KVOutput{Val: prev}, Call: call, Return: ret}
	}
	maybe := func(client int, key, val string, call int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: testkit.KVInput{Put: true, Key: key, Val: val},
			Output: testkit.KVOutput{Unknown: true}, Call: call, Return: end}
	}
	get := func(client int, key, val string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: testkit.KVInput{Key: key},
			Output: testkit.KVOutput{Val: val}, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "a", 11, 20), put(0, "k", "b", "a", 21, 30), get(1, "k", "b", 31, 40),
		}, porcupine.Ok},
		{"concurrent writes", []porcupine.Operation{
			put(0, "k", "a", "b", 0, 10), put(1, "k", "b", "", 0, 10), get(2, "k", "a", 11, 20),
		}, porcupine.Ok},
		{"unknown write took effect", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), maybe(1, "k", "b", 11), get(2, "k", "b", 50, 60), put(0, "k", "c", "b", 61, 70),
		}, porcupine.Ok},
		{"unknown write did not take effect", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), maybe(1, "k", "b", 11), get(2, "k", "a", 50, 60), put(0, "k", "c", "a", 61, 70),
		}, porcupine.Ok},
		{"keys are independent", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(1, "j", "b", "", 0, 10), get(2, "k", "a", 11, 20), get(2, "j", "b", 21, 30),
		}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(0, "k", "b", "a", 11, 20), get(1, "k", "a", 21, 30),
		}, porcupine.Illegal},
		{"lost write", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "", 11, 20),
		}, porcupine.Illegal},
		{"wrong previous value", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), put(1, "k", "b", "", 11, 20),
		}, porcupine.Illegal},
		{"value from nowhere", []porcupine.Operation{
			put(0, "k", "a", "", 0, 10), get(1, "k", "z", 11, 20),
		}, porcupine.Illegal},
		{"unknown write seen, then unseen", []porcupine.Operation{
			maybe(0, "k", "a", 0), get(1, "k", "a", 10, 20), get(1, "k", "", 21, 30),
		}, porcupine.Illegal},
	} {
		assert.Equal(t, tc.want, porcupine.CheckOperationsTimeout(testkit.KVModel, tc.history, 10*time.Second), tc.name)
	}
}
