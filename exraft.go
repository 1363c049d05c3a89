// Package exraft builds consistent, replicated state machines with the Raft
// consensus protocol, in the style of the Elixir library ExRaft.
//
// Every server keeps its log and its state machine in memory and talks to its
// peers with net/rpc over TCP, encoded with msgpack. A user starts servers with
// StartServer, waits for a leader with AwaitLeader, changes the replicated state
// with Write, reads it with Read (linearizable) or ReadDirty (local), and changes
// the membership at run time with AddServer and RemoveServer.
//
// Calls made on a server that is not the leader fail with an error that matches
// ErrNotLeader; when the server knows the leader the error is a *RedirectError
// that names it, so the caller can retry there. Every call is also available
// against a server's address through a Client (or the package-level functions,
// which use DefaultClient), and its errors match the same sentinels with
// errors.Is and errors.As as the in-process methods do.
//
// Nothing is written to disk. The data survives as long as a majority of the
// voters keeps running; see the README for what survives what.
package exraft

import (
	"fmt"
	"io"
	"time"
)

// StateMachine is the value that Raft replicates. Each server has its own
// instance; exraft calls it from one goroutine at a time.
type StateMachine interface {
	// Apply applies a committed command. It is called on every server, in log
	// order, exactly once per command, and its result is returned by the
	// Write that proposed the command. command is a view of the log's own
	// storage, which packs many entries' commands together: Apply must not
	// change it, and what it keeps of it, or returns, it should copy
	// (converting to a string copies), lest it keep alive log memory that
	// compaction would have freed.
	Apply(command []byte) []byte
	// Query answers a read. It must not change the state.
	Query(query []byte) []byte
}

// Validator is an optional interface of a StateMachine. The leader calls
// Validate before a command enters the log; a non-nil error fails the Write
// with an error that wraps ErrRejected and carries the error's message, and
// nothing is appended.
type Validator interface {
	Validate(command []byte) error
}

// Snapshotter is an optional interface of a StateMachine. With it, a server
// bounds its memory: every Config.SnapshotThreshold applied entries it
// captures the state and forgets the log entries the capture covers, but
// for Config.TrailingLogs of them. A follower that needs forgotten entries,
// a new or restarted server included, is sent the latest capture instead and
// restores from it. Without it, every server keeps its whole log.
type Snapshotter interface {
	// Snapshot captures the state as of the last Apply. exraft calls it
	// between two Applies, so it must not dawdle: do the cheap part here
	// (copy the state, or take an immutable view of it) and leave the
	// encoding to the WriterTo. That runs on its own goroutine while
	// later Applies (and a Restore) go on, so it must read nothing they
	// change.
	Snapshot() (io.WriterTo, error)
	// Restore throws the whole state away and replaces it with the one
	// that a WriterTo of Snapshot wrote, read from r. It is called
	// between two Applies. After an error, exraft applies nothing more
	// and answers no read from this state machine until a later Restore
	// succeeds: it may be left half restored.
	Restore(r io.Reader) error
}

// Closer is an optional interface of a StateMachine: Close is called once,
// when the server stops.
type Closer interface {
	Close() error
}

// Peer names a server: Name is unique in the cluster and Addr is the host:port
// its peers dial.
type Peer struct {
	Name string
	Addr string
}

func (p Peer) String() string {
	if p.Name == "" && p.Addr == "" {
		return "<none>"
	}
	return p.Name + "@" + p.Addr
}

// Role is a server's part in the protocol.
type Role int

// The roles of a server.
const (
	Follower Role = iota
	Candidate
	Leader
	// Stopped is the Role in the Status of a server after Stop.
	Stopped
)

func (r Role) String() string {
	switch r {
	case Stopped:
		return "stopped"
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Status is a snapshot of a server's view of the cluster.
type Status struct {
	Name string
	Addr string
	Role Role
	Term uint64
	// Leader is the leader this server knows; zero when none is known.
	Leader       Peer
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	// SnapshotIndex is the last entry that this server's latest snapshot
	// covers, whether it took the snapshot or restored it from the
	// leader's; 0 when it has none (always, without a Snapshotter).
	SnapshotIndex uint64
	// FirstIndex is the first entry the log still holds: the ones before
	// it were dropped once a snapshot covered them. It is 1 until then,
	// and LastIndex+1 when the log holds no entry.
	FirstIndex uint64
	// Members are the voters of the configuration in use.
	Members []Peer
	// Learners are servers the leader is catching up before they become
	// voters (AddServer, or a member that came back as a new incarnation).
	// Only the leader reports them.
	Learners []Peer
	// Peers is, on the leader only, its view of every other server, by
	// name: a member that stopped answering shows an old LastContact. It is
	// refreshed on every tick of the server's clock (a few milliseconds),
	// which does not by itself wake WaitStatus.
	Peers []PeerStatus
	// Unreachable lists the servers this one tried to connect to and
	// could not, and why (nothing listens there, or it refused: another
	// ClusterID, Secret or TLS setting), until a connection succeeds: the
	// peers a server that waits for a leader or for votes waits on.
	Unreachable []Unreachable
}

// PeerStatus is the leader's view of one other server.
type PeerStatus struct {
	Peer
	// Voter is false for a learner, a server being caught up before it
	// votes.
	Voter bool
	// State is how the leader replicates to it.
	State ReplicationState
	// Match is the last index known to be in its log, and Lag how far that
	// is behind the leader's last index.
	Match, Lag uint64
	// LastContact is when it last answered the leader; zero if it never
	// did during this leadership.
	LastContact time.Time
}

// ReplicationState is how a leader replicates to one server.
type ReplicationState int

const (
	// Probing: looking for where the server's log matches the leader's,
	// one append at a time (after a leader change, a lost message, or a
	// restart of that server).
	Probing ReplicationState = iota
	// Replicating: appends stream to it.
	Replicating
	// SendingSnapshot: it needs entries the leader dropped, and is being
	// sent the leader's snapshot.
	SendingSnapshot
)

func (s ReplicationState) String() string {
	switch s {
	case Probing:
		return "probing"
	case Replicating:
		return "replicating"
	case SendingSnapshot:
		return "sending snapshot"
	}
	return fmt.Sprintf("ReplicationState(%d)", int(s))
}

// Unreachable is a server this one could not connect to.
type Unreachable struct {
	Addr  string
	Err   string    // why the last attempt failed
	Since time.Time // the first failure since it was last reached
}
