package testkit

import "time"

// RejoinWatch follows, in the background, a server started again until its
// new incarnation is a voter. First it waits for the leader to re-admit the
// server on its own (auto-rejoin, docs/design.md §2), as far as Status
// shows: Status does not show incarnations, so this only approximates it
// (the server caught up past what was committed when it came back, so a
// leader heard from the new incarnation; then that leader catches nobody up
// and the server has committed all the leader had appended, which includes
// the re-admitting configuration entry). Then it confirms with AddServer of
// the same Peer, which returns once the configured incarnation is the
// running one, re-admitting it if that had not happened yet.
type RejoinWatch struct {
	Name     string
	Auto     bool // re-admitted on its own, as far as Status shows; read after Wait
	err      error
	finished chan struct{}
}

// WatchRejoin starts watching name, started again when the cluster had
// committed up to commit; autoWait bounds the wait for auto-rejoin.
func (c *Cluster) WatchRejoin(name string, commit uint64, autoWait time.Duration) *RejoinWatch {
	w := &RejoinWatch{Name: name, finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		w.Auto = c.awaitAutoRejoin(name, commit, autoWait)
		w.err = c.AddMember(name, WaitLong)
	}()
	return w
}

// Done reports, without blocking, whether the watch has finished.
func (w *RejoinWatch) Done() bool {
	select {
	case <-w.finished:
		return true
	default:
		return false
	}
}

// Wait waits for the watch and returns AddServer's error.
func (w *RejoinWatch) Wait() error {
	<-w.finished
	return w.err
}

// awaitAutoRejoin: see RejoinWatch.
func (c *Cluster) awaitAutoRejoin(name string, commit uint64, timeout time.Duration) bool {
	var target, term uint64
	var leader string
	rejoined := false
	PollUntil(timeout, func() bool {
		if c.isClosed() {
			return true
		}
		if c.IsDown(name) {
			return false
		}
		xs := c.Server(name).Status()
		if xs.AppliedIndex < commit {
			return false
		}
		l := c.Leader()
		if l == nil {
			target = 0
			return false
		}
		ls := l.Status()
		if HasName(ls.Learners, name) || !HasName(ls.Members, name) {
			target = 0
			return false
		}
		if target == 0 || leader != ls.Name || term != ls.Term {
			target, leader, term = ls.LastIndex, ls.Name, ls.Term
			return false
		}
		rejoined = xs.Term == ls.Term && xs.Leader.Name == ls.Name && xs.CommitIndex >= target
		return rejoined
	})
	return rejoined
}
