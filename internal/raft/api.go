package raft

import (
	"errors"
	"fmt"
)

// This file is the whole contract between the protocol and its driver, as
// etcd-io/raft's rawnode.go is: the driver builds a Node with New, feeds it
// inputs one at a time (Step, Tick, Propose, ReadIndex, the membership
// calls), and after each batch of inputs takes what they produced with Ready
// and hands it back with Recycle. Status is everything the driver may know
// of the state. The messages and entries that cross are Message (message.go)
// and Entry (log.go), which the driver's wire codec encodes. A Node is not
// safe for concurrent use: one goroutine owns it.

// Peer names a server: its name, unique in the cluster, and the address its
// peers dial.
type Peer struct {
	Name string
	Addr string
}

// Role is a server's part in the protocol.
type Role uint8

// The roles of a server (§5.1).
const (
	Follower Role = iota
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// The errors of the inputs. The driver turns them into its own.
var (
	ErrNotLeader       = errors.New("raft: not the leader")
	ErrTransferring    = errors.New("raft: leadership is being handed over")
	ErrProposedType    = errors.New("raft: only EntryNormal and EntrySession entries can be proposed")
	ErrConfBusy        = errors.New("raft: a membership change is in progress")
	ErrNotCommittedYet = errors.New("raft: the leader has not committed an entry of its term yet")
	ErrAlreadyMember   = errors.New("raft: already a member")
	ErrNameTaken       = errors.New("raft: the name belongs to a member at another address")
	ErrUnknownServer   = errors.New("raft: no such member")
	ErrLastServer      = errors.New("raft: cannot remove the last voter")
	ErrNotApplied      = errors.New("raft: a snapshot can only cover entries handed out for applying, and not go back before the log's first")
	ErrNotVoter        = errors.New("raft: this server cannot campaign: it is not a voter of its configuration, or the configuration has fewer voters than MinMajority")
)

// Config is what a Node needs to start. Times are in ticks of the driver's
// clock.
type Config struct {
	Name        string
	Addr        string
	Incarnation uint64 // nonzero, new for every start (docs/design.md §2)
	Initial     []Peer // the bootstrap configuration; self is added if missing
	MinMajority int    // no quorum is smaller than this
	Heartbeat   int
	ElectionMin int // election timeouts are drawn from [ElectionMin, ElectionMax]
	ElectionMax int
	Rand        func(n int) int // a number in [0, n); the only randomness used
	MaxInflight int             // append messages in flight per follower; 64 if 0
	MaxBatch    int             // payload bytes per append message; 1 MiB if 0
	AutoRejoin  bool            // re-admit voters that restarted (docs/design.md §2)
}

// Node is one server's protocol state.
type Node struct{ c *core }

// New starts a server as a follower of its bootstrap configuration, or as the
// leader of a one-server cluster.
func New(cfg Config) *Node {
	return &Node{c: newCore(coreConfig{
		name: cfg.Name, addr: cfg.Addr, inc: cfg.Incarnation, initial: cfg.Initial,
		minMajority: cfg.MinMajority, heartbeat: cfg.Heartbeat,
		electionMin: cfg.ElectionMin, electionMax: cfg.ElectionMax, rand: cfg.Rand,
		maxInflight: cfg.MaxInflight, maxBatch: cfg.MaxBatch, autoRejoin: cfg.AutoRejoin,
	})}
}

// Step takes in one message from a peer. The log keeps copies of the
// payloads of the entries it takes in, not m's.
func (n *Node) Step(m Message) { n.c.step(m) }

// Tick advances the logical clock by one tick.
func (n *Node) Tick() { n.c.tick() }

// Propose appends commands to the leader's log and returns the index of the
// first and the term they were appended in. Each entry's Type is
// EntryNormal or EntrySession, and its Data the command; Propose sets Index
// and Term in es, and the log keeps copies of the entries and their Data, so
// the caller may reuse es and the commands' buffers.
func (n *Node) Propose(es []Entry) (first, term uint64, err error) { return n.c.propose(es) }

// ReadIndex registers a linearizable read under the driver's id; Ready
// releases it, with the index it must wait for, or fails it.
func (n *Node) ReadIndex(id uint64) error { return n.c.readIndex(id) }

// TriggerElection makes this server lead soon: a follower that hears from a
// leader asks it to hand over, which it does once it has caught this one
// up; any other server starts a forced election at once. On the leader it
// does nothing.
func (n *Node) TriggerElection() error { return n.c.askToLead() }

// AddServer starts catching p up to make it a voter; see JoinState.
func (n *Node) AddServer(p Peer) error { return n.c.addServer(p) }

// CancelJoin stops catching up a server that has not become a voter. A
// restarted voter's re-admission is not AddServer's, and goes on: whether
// the voter is still listed as one or already a learner of the
// configuration (docs/design.md §2).
func (n *Node) CancelJoin(name string) { n.c.cancelJoin(name) }

// RemoveServer appends a configuration without name, as a voter or a
// learner being re-admitted, and returns its index; 0 when name was only
// being caught up by AddServer and is simply forgotten.
func (n *Node) RemoveServer(name string) (uint64, error) { return n.c.removeServer(name) }

// Compact records that the state machine's snapshot covers index, which
// must have been handed out in Ready.Committed and applied, and drops the
// log's entries up to index less trailing. The leader sends this snapshot
// to a follower that needs an entry the log no longer holds (a MsgSnap in
// Ready.Messages, for the driver to stream the snapshot's bytes after).
func (n *Node) Compact(index, trailing uint64) (SnapshotMeta, error) {
	return n.c.compact(index, trailing)
}

// ReportSnapshot tells the leader how sending the snapshot at index to name
// ended. A report about another transfer than the one the leader waits on
// (an earlier one, to an earlier incarnation) changes nothing.
func (n *Node) ReportSnapshot(name string, index uint64, status SnapshotStatus) {
	n.c.reportSnapshot(name, index, status)
}

// Join is where the admission of a server stands on the leader.
type Join struct {
	// Pending: it is being verified or caught up.
	Pending bool
	// AdmitIndex, once not pending, is the index of the configuration entry
	// that made it a voter; 0 when it was a voter already.
	AdmitIndex uint64
	// Known is false once the leader has forgotten it (cancelled), or when
	// this server is not the leader.
	Known bool
}

// JoinState tells where the admission of name stands.
func (n *Node) JoinState(name string) Join { return n.c.joinState(name) }

// EntryTerm returns the term of the entry at index i, and false when the log
// has none there.
func (n *Node) EntryTerm(i uint64) (uint64, bool) { return n.c.log.term(i) }

// Status is the state a driver publishes.
type Status struct {
	Role      Role
	Term      uint64
	Leader    Peer // zero when none is known
	Commit    uint64
	LastIndex uint64
	// FirstIndex is the first index the log holds (LastIndex+1 when it
	// holds none); SnapshotIndex, the last index the latest snapshot
	// covers, 0 when there is none.
	FirstIndex    uint64
	SnapshotIndex uint64
	// Indexes of the configuration entries in use and last committed; 0 is
	// the bootstrap configuration. They change whenever Members and
	// CommittedMembers do.
	ConfigIndex          uint64
	CommittedConfigIndex uint64
	// Epoch counts membership events on the leader: servers added to or
	// dropped from catching up, admissions, verifications.
	Epoch uint64
	// The voters of the configuration in use and of the committed one.
	// Shared with the Node: never modified, by either side.
	Members          []Peer
	CommittedMembers []Peer
	// Transferee is the voter the leader hands over to, while it does.
	Transferee string
	Counts     Counts
	// TermCommitted: an entry of the current term is committed. A leader
	// then knows everything committed before it (§8), and its first
	// configuration, which binds the voters' incarnations, is held by a
	// majority, so that its death no longer leaves a cluster that needs
	// every voter of InitialConfig to elect the next (see Unanimous).
	TermCommitted bool
	// Unanimous: the configuration in use names a voter without its
	// incarnation, as InitialConfig does, so an election needs every voter.
	Unanimous bool
}

// Counts are events since the Node started.
type Counts struct {
	PreVotes  uint64 // pre-vote rounds this server started (thesis §9.6)
	Elections uint64 // elections this server started, each in a new term
}

// TransferLeadership hands the leadership over to the voter name (see
// transferLeadership); it fails with ErrNotLeader off the leader and
// ErrUnknownServer for a name that is not a voter. Status.Transferee shows
// the transfer until it ends: name leads, or it was abandoned after an
// election timeout.
func (n *Node) TransferLeadership(name string) error { return n.c.transferLeadership(name) }

// Status returns the state without copying the member lists.
func (n *Node) Status() Status {
	c := n.c
	st := Status{Role: c.role, Term: c.term, Commit: c.commit, LastIndex: c.log.lastIndex(), Epoch: c.epoch,
		FirstIndex: c.log.firstIndex(), SnapshotIndex: c.snap.index, Transferee: c.transferee, Counts: c.counts}
	if c.lead != "" {
		st.Leader = Peer{Name: c.lead, Addr: c.leadAddr}
	}
	if t, ok := c.log.term(c.commit); ok && t == c.term && c.term > 0 {
		st.TermCommitted = true
	}
	st.Unanimous = c.self.unanimous()
	in, committed := c.configs[len(c.configs)-1], c.committedRecord()
	st.ConfigIndex, st.Members = in.index, in.peers
	st.CommittedConfigIndex, st.CommittedMembers = committed.index, committed.peers
	return st
}

// Learners lists the servers the leader is catching up to become voters. It
// builds the list anew, so a driver asks only when ConfigIndex or Epoch has
// changed.
func (n *Node) Learners() []Peer { return n.c.learners() }

// Progress lists, on the leader, its view of every other server (sorted
// by name); nil elsewhere. It builds the list anew.
func (n *Node) Progress() []Progress { return n.c.progressList() }

// Ready is what the inputs produced since the last call to Node.Ready.
type Ready struct {
	// Messages to send. The transport may start a connection for each
	// address; ToStranger marks the addresses no configuration names.
	Messages []Message
	// Committed entries not handed out before, in log order, to apply.
	// Their Data are views of the log's storage: never to be modified.
	Committed []Entry
	// Reads released, in the order they were registered.
	Reads []ReadState
	// Reads that can no longer be served here: this server lost the lead.
	FailedReads []uint64
	// RoundHeld: a read round waits for the next Ready (see HoldRound).
	RoundHeld bool
}

// ReadState releases the read ID once the state machine has applied Index.
type ReadState struct {
	ID    uint64
	Index uint64
}

// ReadRound tells Ready whether it may hold back a read round.
type ReadRound uint8

const (
	// StartRound starts the read round waiting, if any.
	StartRound ReadRound = iota
	// HoldRound does not start a round in the same breath as Ready releases
	// the reads of the last one; RoundHeld then reports that one waits for
	// the next Ready. The driver yields in between, so that the readers
	// just answered can ask again and share that round with the reads
	// already waiting: otherwise readers settle into two groups that
	// alternate, and every round carries half of them.
	HoldRound
)

// Ready returns and clears what the inputs produced.
func (n *Node) Ready(r ReadRound) Ready { return n.c.takeReadyHolding(r) }

// Recycle hands back a Ready the driver is done with, so that the next one
// reuses its arrays. Nothing of rd's Messages and Reads may be used after.
func (n *Node) Recycle(rd *Ready) { n.c.recycle(rd) }

// takeReady is Ready with StartRound, for tests.
func (c *core) takeReady() Ready { return c.takeReadyHolding(StartRound) }

func (c *core) takeReadyHolding(r ReadRound) Ready {
	if c.bcastPending {
		c.bcastPending = false
		if c.role == Leader {
			c.bcastAppend()
		}
	}
	held := r == HoldRound && len(c.released) > 0 && c.readBcast
	if !held {
		c.startReadRound()
	}
	rd := Ready{RoundHeld: held}
	if c.commit > c.handedOut {
		rd.Committed = c.log.slice(c.handedOut+1, c.commit, int(^uint(0)>>1))
		c.handedOut = c.commit
	}
	rd.Messages, c.msgs = c.msgs, c.spareMsgs[:0]
	c.spareMsgs = nil
	for i := range rd.Messages {
		rd.Messages[i].ToStranger = !c.knowsAddr(rd.Messages[i].ToAddr)
	}
	rd.Reads, c.released = c.released, c.spareReads[:0]
	c.spareReads = nil
	rd.FailedReads, c.failedReads = c.failedReads, nil
	return rd
}

func (c *core) recycle(rd *Ready) {
	clear(rd.Messages)
	c.spareMsgs = rd.Messages[:0]
	rd.Messages = nil
	c.spareReads = rd.Reads[:0]
	rd.Reads = nil
}
