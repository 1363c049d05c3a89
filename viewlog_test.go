package exraft_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// TestViewChangesAreLogged: an operator reading one server's log learns who
// leads and since which term, that leadership moved and why, and when the
// membership changed, and that a leader was lost, without calling Status.
// Each line below is the only trace of its change in the log (viewlog.go).
func TestViewChangesAreLogged(t *testing.T) {
	logs := map[string]*exraft.TestLog{}
	c := testkit.StartCluster(t, 5, testkit.Options{Configure: func(_ int, cfg *exraft.Config) {
		if logs[cfg.Name] == nil {
			logs[cfg.Name] = &exraft.TestLog{}
		}
		cfg.Logger = logs[cfg.Name].Logger()
	}})
	leader := c.LeaderWithin(testkit.WaitLong)
	require.NotNil(t, leader)
	term := fmt.Sprint("term=", leader.Status().Term)
	testkit.Eventually(t, testkit.WaitLong, func() bool { return logs[leader.Name()].Has("became the leader", term) },
		"%s logs that it leads in %s", leader.Name(), term)
	var others []string
	for _, name := range c.Names() {
		if name != leader.Name() {
			others = append(others, name)
		}
	}
	for _, name := range others {
		testkit.Eventually(t, testkit.WaitLong, func() bool {
			return logs[name].Has("following a leader", "leader="+leader.Name(), term)
		}, "%s logs that it follows %s in %s", name, leader.Name(), term)
	}

	next := others[0]
	require.NoError(t, leader.TransferLeadership(testkit.Ctx(t, testkit.WaitLong), next))
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		return logs[leader.Name()].Has("handing the leadership over", "to="+next) &&
			logs[leader.Name()].Has("stepped down") && logs[next].Has("became the leader")
	}, "the handover from %s to %s is in both logs", leader.Name(), next)

	require.NoError(t, c.RemoveMember(others[1], testkit.WaitLong))
	testkit.Eventually(t, testkit.WaitLong, func() bool { return logs[next].Has("membership committed") },
		"%s logs the membership without %s", next, others[1])
	require.Zero(t, logs[next].Count("membership committed", others[1]+"@"), "the committed membership lists who is left")

	// The leader stops: whoever is elected next went through a term with
	// no leader, and says whom it last followed.
	require.NoError(t, c.Stop(next))
	var successor *exraft.Server
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		successor = c.Leader()
		return successor != nil && successor.Name() != next
	}, "a leader is elected after %s stops", next)
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		return logs[successor.Name()].Has("no leader known", "last_leader="+next) && logs[successor.Name()].Has("became the leader")
	}, "%s logs that it lost %s and then that it leads", successor.Name(), next)
}
