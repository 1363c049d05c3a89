package chaos

// Entry points. go test ./... runs a CI round: three server processes, one
// cycle of every fault (about a minute), in network namespaces as root on
// Linux, else on loopback with the proxy faults only. The environment
// changes it:
//
//	CHAOS_SEED=n         replay the fault schedule of seed n (printed at start)
//	CHAOS_DURATION=2h    the long mode: rounds of CHAOS_ROUND (10m) until then
//	CHAOS_SERVERS=5      servers per cluster (3 in CI, 5 in the long mode)
//	CHAOS_LOOPBACK=1     loopback and proxies even as root

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nodeBin is the server program, built once by TestMain.
var nodeBin string

func TestMain(m *testing.M) {
	os.Exit(mainWithCleanup(m))
}

func mainWithCleanup(m *testing.M) int {
	if ok, _ := netnsUsable(); ok {
		if swept := sweepLeftovers(); len(swept) > 0 {
			fmt.Printf("chaos: removed leftovers of runs that were killed: %v\n", swept)
		}
	}
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	nodeBin = filepath.Join(dir, "node")
	if out, err := exec.Command("go", "build", "-o", nodeBin, "./node").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building ./node: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TestChaos runs the rounds and fails on anything any check found.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes under faults; not in -short mode")
	}
	seed := envUint(t, "CHAOS_SEED", uint64(time.Now().UnixNano()))
	long := envDuration(t, "CHAOS_DURATION", 0)
	round := envDuration(t, "CHAOS_ROUND", 10*time.Minute)
	servers := 3
	if long > 0 {
		servers = 5
	}
	servers = int(envUint(t, "CHAOS_SERVERS", uint64(servers)))
	useNetns := networkMode(t)
	fmt.Printf("chaos: seed %d (CHAOS_SEED=%d replays the schedule)\n", seed, seed)

	deadline := time.Now().Add(long)
	for i := uint64(0); i == 0 || time.Now().Before(deadline); i++ {
		spec := ciSpec(seed+i, servers, useNetns, t.Logf)
		if long > 0 {
			spec.pace, spec.duration = longPacing, min(round, time.Until(deadline))
		}
		r, err := runRound(spec)
		require.NoError(t, err)
		t.Logf("round %d: %s", spec.seed, r)
		require.Empty(t, r.problems, "seed %d: the checks found problems; everything is in %s", spec.seed, r.dir)
		assert.GreaterOrEqual(t, r.writesOK, int64(100), "too few writes got through for the check to mean much")
		assert.GreaterOrEqual(t, r.readsOK, int64(100), "too few reads got through for the check to mean much")
	}
}

// TestDirtyReadsAreCaught shows that the checker catches a broken client
// path: reads with ReadDirty at a lagging follower must fail the
// linearizability check, and leave its visualization behind.
func TestDirtyReadsAreCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes; not in -short mode")
	}
	seed := envUint(t, "CHAOS_SEED", uint64(time.Now().UnixNano()))
	spec := ciSpec(seed, 3, networkMode(t), t.Logf)
	spec.dirtyReads, spec.duration = true, 5*time.Second
	r, err := runRound(spec)
	require.NoError(t, err)
	t.Logf("round %d: %s", spec.seed, r)
	require.Equal(t, porcupine.Illegal, r.verdict.linearizable, "ReadDirty on a lagging follower must not pass as linearizable")
	require.FileExists(t, r.verdict.visualization)
	require.NotEmpty(t, r.dir, "the folder of a failed round is kept")
	require.NoError(t, os.RemoveAll(r.dir)) // expected: nothing to keep
}

// ciSpec is a short round: every fault once, briefly.
func ciSpec(seed uint64, servers int, useNetns bool, logf func(string, ...any)) roundSpec {
	return roundSpec{seed: seed, servers: servers, workers: 6, keys: 4, netns: useNetns, cycles: 1, pace: ciPacing,
		threshold: 40, trailing: 8, bin: nodeBin, logf: logf, leaderBound: 20 * time.Second}
}

// networkMode picks namespaces when it can, and says so either way.
func networkMode(t *testing.T) bool {
	ok, why := netnsUsable()
	if ok {
		t.Log("network: one namespace per server on a bridge; partitions drop packets silently; toxiproxy faults too")
	} else {
		t.Logf("network: LOOPBACK FALLBACK (%s): no partitions, only toxiproxy's faults (latency, resets, sliced writes) besides the process and cluster faults", why)
	}
	return ok
}

func envUint(t *testing.T, name string, def uint64) uint64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, name)
	return v
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	require.NoError(t, err, name)
	return v
}
