package exraft_test

import (
	"fmt"
	"strings"
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
	// endsInTerm reports whether name logged a line with msg and every one
	// of subs that ends in term n: the line's last attribute, matched whole
	// so that term 1 is not found in term 12.
	endsInTerm := func(name, msg string, n uint64, subs ...string) bool {
		for _, line := range strings.Split(logs[name].String(), "\n") {
			if strings.Contains(line, msg) && strings.HasSuffix(line, fmt.Sprint(" term=", n)) && containsAll(line, subs) {
				return true
			}
		}
		return false
	}
	term := leader.Status().Term
	testkit.Eventually(t, testkit.WaitLong, func() bool { return endsInTerm(leader.Name(), "became the leader", term) },
		"%s logs that it leads in term %d", leader.Name(), term)
	var others []string
	for _, s := range c.Others(leader) {
		others = append(others, s.Name())
	}
	for _, name := range others {
		testkit.Eventually(t, testkit.WaitLong, func() bool {
			return endsInTerm(name, "following a leader", term, "leader="+leader.Name())
		}, "%s logs that it follows %s in term %d", name, leader.Name(), term)
	}

	next := others[0]
	require.NoError(t, leader.TransferLeadership(testkit.Ctx(t, testkit.WaitLong), next))
	st, err := c.Server(next).WaitStatus(testkit.Ctx(t, testkit.WaitLong), func(st exraft.Status) bool { return st.Role == exraft.Leader })
	require.NoError(t, err)
	handedIn := st.Term
	require.Greater(t, handedIn, term, "%s leads in a term of its own", next)
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		return logs[leader.Name()].Has("handing the leadership over", "to="+next) &&
			endsInTerm(leader.Name(), "stepped down", handedIn) && endsInTerm(next, "became the leader", handedIn)
	}, "the handover from %s to %s in term %d is in both logs", leader.Name(), next, handedIn)

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
	elected := successor.Status().Term
	testkit.Eventually(t, testkit.WaitLong, func() bool {
		return logs[successor.Name()].Has("no leader known", "last_leader="+next) && endsInTerm(successor.Name(), "became the leader", elected)
	}, "%s logs that it lost %s and then that it leads in term %d", successor.Name(), next, elected)
}

func containsAll(line string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(line, sub) {
			return false
		}
	}
	return true
}
