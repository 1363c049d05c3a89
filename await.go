package exraft

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// view is what the driver goroutine publishes after every step of the Node:
// the part of its state that calls made from other goroutines read and wait
// on.
type view struct {
	role     Role
	term     uint64
	leader   Peer
	commit   uint64
	last     uint64
	first    uint64 // the log's first index
	snapshot uint64 // the latest snapshot's last index
	members  []Peer // voters of the configuration in use
	learners []Peer
	// committedMembers are the voters of the latest committed configuration.
	committedMembers []Peer
	transferee       string // the voter this leader hands over to, while it does
	termCommitted    bool   // an entry of this term is committed (raft.Status)
	unanimous        bool   // the configuration needs every voter (raft.Status)
}

// board holds the latest view and wakes every waiter when it changes, so
// that waits block on a channel instead of polling.
type board struct {
	role    atomic.Int32 // v.role, readable without the lock
	mu      sync.Mutex
	v       view
	changed chan struct{}
	watched bool // someone holds changed: replace it on the next set
	// peers is the leader's view of the other servers (Status.Peers),
	// refreshed every tick apart from v, so that it wakes nobody.
	peers []PeerStatus
}

// setPeers replaces the leader's view of the other servers; the board
// keeps ps, which must not be modified afterwards.
func (b *board) setPeers(ps []PeerStatus) {
	b.mu.Lock()
	b.peers = ps
	b.mu.Unlock()
}

// getPeers returns the leader's view of the other servers; shared, so
// not to be modified.
func (b *board) getPeers() []PeerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peers
}

func newBoard() *board { return &board{changed: make(chan struct{})} }

// get returns the current view.
func (b *board) get() view {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

// watch returns the current view and a channel closed when it changes.
func (b *board) watch() (view, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watched = true
	return b.v, b.changed
}

func (b *board) set(v view) {
	b.mu.Lock()
	b.v = v
	b.role.Store(int32(v.role))
	if b.watched {
		// Only when someone waits: the view changes with every commit.
		close(b.changed)
		b.changed = make(chan struct{})
		b.watched = false
	}
	b.mu.Unlock()
}

// poke wakes the waiters as set does, for a change outside the view: the
// applied index, which Status reports beside it.
func (b *board) poke() {
	b.mu.Lock()
	if b.watched {
		close(b.changed)
		b.changed = make(chan struct{})
		b.watched = false
	}
	b.mu.Unlock()
}

// WaitStatus blocks until cond holds for this server's Status, and returns
// that Status. It does not poll: it calls cond, on the calling goroutine,
// once at first and again whenever the status may have changed (a role,
// term or leader, an index, the membership), so a wait for a new leader, an
// applied index or a member is one line:
//
//	st, err := s.WaitStatus(ctx, func(st exraft.Status) bool { return st.AppliedIndex >= index })
//
// cond may be called with statuses that differ in no field it looks at, and
// may miss one that lasted only between two of its calls; it must not block.
// When ctx ends first, WaitStatus returns the last Status cond refused and
// ctx.Err(). Once the server stops, it returns the stopped Status (Role
// Stopped) with ErrStopped, unless cond holds for that.
func (s *Server) WaitStatus(ctx context.Context, cond func(Status) bool) (Status, error) {
	for {
		_, changed := s.board.watch()
		st := s.Status()
		if cond(st) {
			return st, nil
		}
		if st.Role == Stopped {
			return st, ErrStopped
		}
		select {
		case <-changed:
		case <-s.stopc: // once more, with the stopped Status
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// await blocks until cond holds for the published view, ctx ends or the
// server stops. cond returns done and the error to return with it.
func (s *Server) await(ctx context.Context, cond func(v *view) (bool, error)) error {
	for {
		v, changed := s.board.watch()
		if done, err := cond(&v); done {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopc:
			return ErrStopped
		}
	}
}

// AwaitLeader returns the leader this server knows, blocking until it learns
// one. On the leader itself it returns once an entry of the leader's term
// has committed: the leader can then serve, and a majority holds the
// configuration it wrote first. Before that, in a new cluster, the
// configuration is still InitialConfig, in which an election needs every
// voter: a leader stopped then leaves the others unable to elect until it
// comes back.
//
// It fails with ErrStopped if the server stops, and with ctx.Err() if ctx
// ends first; when the configuration in use is still the initial one, that
// error says so and names the voters an election needs.
func (s *Server) AwaitLeader(ctx context.Context) (Peer, error) {
	if s.isStopped() {
		return Peer{}, ErrStopped
	}
	var p Peer
	var last view
	err := s.await(ctx, func(v *view) (bool, error) {
		p, last = v.leader, *v
		return p.Name != "" && (p.Name != s.name || v.termCommitted), nil
	})
	if err != nil && ctx.Err() != nil {
		err = s.whyNoLeader(err, last)
	}
	return p, err
}

// whyNoLeader adds to err, the end of AwaitLeader's ctx, what the wait was
// waiting on.
func (s *Server) whyNoLeader(err error, v view) error {
	switch {
	case v.leader.Name == s.name:
		return fmt.Errorf("%w: this server leads in term %d, but no entry of that term has committed yet: it waits for answers from enough of %s", err, v.term, peerNames(v.members))
	case v.leader.Name == "" && v.unanimous:
		return fmt.Errorf("%w: no leader yet, and the configuration is still InitialConfig, in which an election needs every voter (%s): start any that are down, blank if need be", err, peerNames(v.members))
	case v.leader.Name == "":
		return fmt.Errorf("%w: no leader yet in term %d: an election needs votes from enough of %s", err, v.term, peerNames(v.members))
	}
	return err
}

func peerNames(ps []Peer) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
