package exraft_test

import (
	"context"
	"testing"
	"time"

	"github.com/exraft/exraft"
)

func TestDiagLaggingAdded(t *testing.T) {
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
	raft3 := start(t, newKV(), cfg3)
	raft1 := start(t, newKV(), cfg1)
	raft2 := start(t, newKV(), cfg2)
	all := []*exraft.Server{raft1, raft2, raft3}
	leader := leaderVia(t, raft1, all)
	if err := leader.AddServer(ctxFor(t, waitLong), raft3.Peer()); err != nil {
		t.Skipf("AddServer on %s: %v; statuses %v", leader.Name(), err, statuses(all))
	}
	mustWrite(t, leader, "set a 1")
	mustWrite(t, leader, "set a 2")
	st3 := raft3.Status()
	stL := leader.Status()
	exraft.StopServer(leader)
	survivors := others(all, leader)
	err := raft3.TriggerElection(ctxFor(t, waitShort))
	t.Logf("trigger: %v; raft3 before stop: %+v; leader: %+v", err, st3, stL)
	eventually(t, waitLong, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		p, err := raft3.AwaitLeader(ctx)
		return err == nil && p.Name != leader.Name()
	}, "new leader; statuses:%v", statuses(survivors))
}
