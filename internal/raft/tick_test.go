package raft

import "testing"

// Tests of the rules the clock drives (tick.go): check-quorum (thesis §6.2).
// Each test fails when its rule is taken out.

// TestCoreCheckQuorum: a leader that has not heard from a quorum within an
// election timeout steps down; a leader that has stays.
func TestCoreCheckQuorum(t *testing.T) {
	n := newCluster(t, 9, names3)
	l := n.settle(100)
	term := l.term
	n.tickAll(100)
	if n.leader() != l || l.term != term {
		t.Fatal("a healthy leader lost its leadership")
	}
	n.isolate(l.cfg.name)
	for i := 0; i < 2*l.cfg.electionMin && l.role == Leader; i++ {
		n.tick(l.cfg.name, 1)
	}
	if l.role != Follower || l.term != term {
		t.Fatalf("leader cut off for two election timeouts is %v in term %d; want follower in term %d", l.role, l.term, term)
	}
}
