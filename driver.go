package exraft

import (
	"context"
	"errors"
	"time"

	"github.com/exraft/exraft/internal/raft"
)

// The driver is the one goroutine that owns the protocol (docs/design.md
// §1): it feeds the raft.Node ticks, messages from peers and callers'
// requests, and hands on what each batch of them produced. Everything of
// the Node it uses is in internal/raft's api.go. The Server's methods reach
// the Node only through onDriver, so on this goroutine too, and otherwise
// see what publish puts on the board.

// ctrl is a function run on the driver goroutine; done closes once the
// driver has also published what it changed.
type ctrl struct {
	f    func()
	done chan struct{}
}

// onDriver runs f on the driver goroutine, which owns the Node, and waits.
func (s *Server) onDriver(ctx context.Context, f func()) error {
	if s.isStopped() {
		return ErrStopped
	}
	done := make(chan struct{})
	select {
	case s.ctrlc <- ctrl{f: f, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-s.stopc:
		return ErrStopped
	}
}

func (s *Server) tryOnDriver(f func()) {
	_ = s.onDriver(context.Background(), f)
}

// newNode starts the protocol for s.
func newNode(s *Server, cfg Config, heartbeat, electionMin, electionMax int, rand func(int) int) *raft.Node {
	initial := make([]raft.Peer, len(cfg.InitialConfig))
	for i, p := range cfg.InitialConfig {
		initial[i] = raft.Peer(p)
	}
	return raft.New(raft.Config{
		Name:        s.name,
		Addr:        s.addr,
		Incarnation: s.inc,
		Initial:     initial,
		MinMajority: cfg.MinMajority,
		Heartbeat:   heartbeat,
		ElectionMin: electionMin,
		ElectionMax: electionMax,
		Rand:        rand,
		MaxBatch:    min(1<<20, cfg.MaxFrameSize/4),
		AutoRejoin:  !cfg.DisableAutoRejoin,
	})
}

// run is the driver goroutine: the only one that touches the Node. It feeds
// the Node ticks, messages and requests, draining whatever is queued before
// it hands the results on, so that writes arriving together share one append.
func (s *Server) run() {
	defer s.wg.Done()
	defer close(s.driverDone)
	ticker := time.NewTicker(s.tick)
	defer ticker.Stop()
	defer s.failAll(ErrStopped)
	s.stalls.driver.Store(goroutineID())
	s.process()
	for {
		s.stalls.loops.Add(1)
		select {
		case <-s.stopc:
			return
		case <-ticker.C:
			if !s.restoring() {
				s.node.Tick()
			}
			s.publishPeers()
		case in := <-s.recvc:
			s.step(in)
		case p := <-s.propc:
			s.commits.Yield()
			s.propose(p)
		case r := <-s.readc:
			s.rounds.Yield()
			s.read(r)
		case c := <-s.ctrlc:
			c.f()
			s.drain()
			s.process()
			close(c.done)
			continue
		}
		s.drain()
		s.process()
	}
}

// drain takes whatever else is queued, up to a bound that keeps the loop
// responsive.
//
// Single-case selects with a default are plain non-blocking receives, far
// cheaper than one select over every channel.
func (s *Server) drain() {
	for n := 0; n < 4096; {
		got := false
		select {
		case in := <-s.recvc:
			s.step(in)
			got = true
			n++
		default:
		}
		select {
		case p := <-s.propc:
			s.propose(p)
			got = true
			n++
		default:
		}
		select {
		case r := <-s.readc:
			s.read(r)
			got = true
			n++
		default:
		}
		if !got {
			return
		}
	}
}

// step hands the Node a message from a peer. The ack of a Step call's last
// message is closed once the batch's output is handed on (sendMessages).
func (s *Server) step(in inbound) {
	if !s.refusedWhileRestoring(&in.m) {
		s.node.Step(in.m)
	}
	if in.ack.done != nil {
		s.acks = append(s.acks, in.ack)
	}
}

func (s *Server) propose(first *proposal) {
	// The batch and its commands live in driver-owned arrays, reused from
	// batch to batch: the Node keeps the commands, not the array.
	batch := append(s.propBatch[:0], first)
	for len(batch) < 4096 {
		select {
		case p := <-s.propc:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	cmds := s.propCmds[:0]
	for _, p := range batch {
		cmds = append(cmds, raft.Entry{Type: p.kind, Data: p.data})
	}
	defer func() {
		clear(batch)
		clear(cmds)
		s.propBatch, s.propCmds = batch[:0], cmds[:0]
	}()
	idx, term, err := s.node.Propose(cmds)
	if err != nil {
		err = s.nodeErr(err)
		for _, p := range batch {
			p.done <- result{err: err}
		}
		return
	}
	for i, p := range batch {
		p.index, p.term = idx+uint64(i), term
		s.pending = append(s.pending, p)
	}
}

func (s *Server) read(r *readRequest) {
	id := s.readsFrom + uint64(len(s.reads))
	if err := s.node.ReadIndex(id); err != nil {
		r.done <- result{err: s.nodeErr(err)}
		return
	}
	s.reads = append(s.reads, r)
}

// takeRead removes and returns the read with id, nil if there is none.
func (s *Server) takeRead(id uint64) *readRequest {
	if id < s.readsFrom || id-s.readsFrom >= uint64(len(s.reads)) {
		return nil
	}
	i := id - s.readsFrom
	r := s.reads[i]
	s.reads[i] = nil
	return r
}

// trimReads drops the answered reads from the front of the queue.
func (s *Server) trimReads() {
	n := 0
	for n < len(s.reads) && s.reads[n] == nil {
		n++
	}
	if n > 0 {
		s.reads = s.reads[:copy(s.reads, s.reads[n:])]
		clear(s.reads[len(s.reads) : len(s.reads)+n])
		s.readsFrom += uint64(n)
	}
}

// nodeErr turns an error of the Node into the public error for the caller.
// It asks the Node, so it runs on the driver goroutine.
func (s *Server) nodeErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrTransferring):
		st := s.node.Status()
		if l := st.Leader; l.Name != "" && l.Name != s.name {
			return &RedirectError{Leader: Peer(l)}
		}
		if st.Transferee != "" {
			return &noLeaderError{msg: "exraft: no leader for a moment: the leadership is being handed over to " + st.Transferee + "; retry shortly"}
		}
		return ErrNoLeader
	case errors.Is(err, raft.ErrUnknownServer):
		return ErrUnknownServer
	case errors.Is(err, raft.ErrLastServer):
		return ErrLastServer
	case errors.Is(err, raft.ErrNotVoter):
		return errNotVoter
	}
	return err
}

// roleOf is the public name of a role.
func roleOf(r raft.Role) Role {
	switch r {
	case raft.Leader:
		return Leader
	case raft.Candidate:
		return Candidate
	}
	return Follower
}

// peersOf converts a list of the Node's peers; nil stays nil.
func peersOf(ps []raft.Peer) []Peer {
	if ps == nil {
		return nil
	}
	out := make([]Peer, len(ps))
	for i, p := range ps {
		out[i] = Peer(p)
	}
	return out
}

// process hands on what the Node produced: messages to the transport,
// committed entries and released reads to the applier, and the new view to
// waiters. When the Node holds back a read round (see raft.HoldRound), the
// readers just released may join it, by the rule of package gather; then
// it takes in what arrived meanwhile, and hands on again.
func (s *Server) process() {
	if s.processHolding(raft.HoldRound) {
		s.rounds.Yield()
		s.drain()
		s.processHolding(raft.StartRound)
	}
}

// processHolding is one Ready handed on, with the read round held back or
// not as r says.
func (s *Server) processHolding(r raft.ReadRound) (roundHeld bool) {
	rd := s.node.Ready(r)
	// Publish first: a peer that hears this server is leader may call it at
	// once, and must find it answering as the leader.
	s.publish()
	s.sendMessages(rd.Messages)
	if len(rd.Committed) > 0 {
		s.applyCommitted(rd.Committed)
	}
	if len(rd.Reads) > 0 {
		s.serveReads(rd.Reads)
	}
	for _, id := range rd.FailedReads {
		if r := s.takeRead(id); r != nil {
			r.done <- result{err: s.nodeErr(raft.ErrNotLeader)}
		}
	}
	s.trimReads()
	s.node.Recycle(&rd)
	if len(s.pending) > 0 {
		s.failLostWrites()
	}
	return rd.RoundHeld
}

// sendMessages hands msgs to the transport and lets the Step calls waiting
// on this batch reply.
func (s *Server) sendMessages(msgs []raft.Message) {
	for i := range msgs {
		if msgs[i].Type == raft.MsgSnap {
			s.sendSnapshot(&msgs[i]) // streamed on a connection of its own
			continue
		}
		// Messages for a peer whose Step call is waiting on this batch
		// leave in its reply: no need to wake the sender.
		quiet := false
		for _, a := range s.acks {
			if a.addr == msgs[i].ToAddr {
				quiet = true
				break
			}
		}
		s.transport.send(msgs[i], quiet)
	}
	for _, a := range s.acks {
		close(a.done)
	}
	clear(s.acks)
	s.acks = s.acks[:0]
}

// applyCommitted queues entries for the applier, with the writes waiting on
// them.
func (s *Server) applyCommitted(entries []raft.Entry) {
	var waiters []*proposal
	last := entries[len(entries)-1].Index
	n := 0
	for n < len(s.pending) && s.pending[n].index <= last {
		n++
	}
	if n > 0 {
		waiters = append(s.apply.spareWaiters(), s.pending[:n]...)
		s.pending = s.pending[:copy(s.pending, s.pending[n:])]
		s.commits.HandedOn(n)
	}
	s.apply.push(applyTask{entries: entries, waiters: waiters})
}

// serveReads queues the released reads for the applier, which queries the
// state machine for each once it has applied up to the read's index.
func (s *Server) serveReads(released []raft.ReadState) {
	reads := s.apply.spareReads()
	for _, rs := range released {
		if r := s.takeRead(rs.ID); r != nil {
			r.index = rs.Index
			reads = append(reads, r)
		}
	}
	if len(reads) > 0 {
		s.apply.push(applyTask{reads: reads})
		s.rounds.HandedOn(len(reads))
	}
}

// failLostWrites: once this server no longer leads, entries above its commit
// index may never commit; those at or below it still get their results when
// applied.
func (s *Server) failLostWrites() {
	st := s.node.Status()
	if st.Role == raft.Leader {
		return
	}
	keep := s.pending[:0]
	for _, p := range s.pending {
		if p.index > st.Commit {
			p.done <- result{err: ErrLeadershipLost}
		} else {
			keep = append(keep, p)
		}
	}
	s.pending = keep
}

// publish updates the view when something a waiter may wait on changed.
// The driver compares against the key it published last rather than read
// the view back from the board.
func (s *Server) publish() {
	st := s.node.Status()
	s.meters.noteView(st.Leader.Name, [2]uint64{st.Counts.PreVotes, st.Counts.Elections})
	k := pubKey{role: roleOf(st.Role), term: st.Term, leader: st.Leader, commit: st.Commit,
		last: st.LastIndex, first: st.FirstIndex, snapshot: st.SnapshotIndex,
		cfg: st.ConfigIndex, committedCfg: st.CommittedConfigIndex, epoch: st.Epoch, transferee: st.Transferee,
		termCommitted: st.TermCommitted, unanimous: st.Unanimous}
	first := !s.published
	if !first && k == s.pub {
		return
	}
	if first || k.cfg != s.pub.cfg {
		s.members = peersOf(st.Members)
	}
	if first || k.committedCfg != s.pub.committedCfg {
		s.committedMembers = peersOf(st.CommittedMembers)
	}
	if first || k.epoch != s.pub.epoch || k.cfg != s.pub.cfg {
		// The Node builds this list anew, so only when it may differ.
		s.learners = peersOf(s.node.Learners())
	}
	if first || k.role != s.pub.role || k.cfg != s.pub.cfg {
		// Status.Peers would otherwise wait for the next tick: a leader
		// just elected would report no peers to the waiter its election
		// wakes.
		s.publishPeers()
	}
	if !first {
		s.logViewChange(s.pub, k)
	}
	s.pub, s.published = k, true
	s.board.set(view{
		role:             k.role,
		term:             k.term,
		leader:           Peer(k.leader),
		commit:           k.commit,
		last:             k.last,
		first:            k.first,
		snapshot:         k.snapshot,
		members:          s.members,
		learners:         s.learners,
		committedMembers: s.committedMembers,
		transferee:       k.transferee,
		termCommitted:    k.termCommitted,
		unanimous:        k.unanimous,
	})
}

// publishPeers publishes the leader's view of the other servers, on every
// tick: what changes in it (a last contact, a match index) changes too
// often to be worth a view of its own each time.
func (s *Server) publishPeers() {
	ps := s.node.Progress()
	if ps == nil {
		if s.hadPeers {
			s.board.setPeers(nil)
			s.hadPeers = false
		}
		return
	}
	now := time.Now()
	out := make([]PeerStatus, len(ps))
	for i, p := range ps {
		out[i] = PeerStatus{Peer: Peer(p.Peer), Voter: !p.Learner, State: replicationStateOf(p.State), Match: p.Match}
		if p.Heard {
			out[i].LastContact = now.Add(-time.Duration(p.SinceHeard) * s.tick)
		}
	}
	s.board.setPeers(out)
	s.hadPeers = true
}

func replicationStateOf(s raft.ProgressState) ReplicationState {
	switch s {
	case raft.ProgressReplicate:
		return Replicating
	case raft.ProgressSnapshot:
		return SendingSnapshot
	}
	return Probing
}

// pubKey is what a published view is built from.
type pubKey struct {
	role              Role
	term              uint64
	leader            raft.Peer
	commit, last      uint64
	first, snapshot   uint64
	cfg, committedCfg uint64 // indexes of the configurations in use and committed
	epoch             uint64
	transferee        string
	termCommitted     bool
	unanimous         bool
}

// failLeftovers fails the requests that the driver left behind when it
// stopped, those still queued for either goroutine, and those of the
// applier's current batch it has not begun to serve. It runs after the
// driver has returned, so that nothing else takes from the channels or adds
// to the apply queue.
func (s *Server) failLeftovers() {
	s.apply.stop()
	for {
		select {
		case p := <-s.propc:
			p.done <- result{err: ErrStopped}
			continue
		case r := <-s.readc:
			r.done <- result{err: ErrStopped}
			continue
		default:
		}
		return
	}
}

// failAll fails every call waiting on the driver.
func (s *Server) failAll(err error) {
	for _, p := range s.pending {
		p.done <- result{err: err}
	}
	s.pending = nil
	for _, r := range s.reads {
		if r != nil {
			r.done <- result{err: err}
		}
	}
	s.readsFrom += uint64(len(s.reads))
	s.reads = nil
}
