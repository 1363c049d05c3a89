package raft

// MessageType is the kind of a protocol message between servers.
type MessageType uint8

const (
	MsgPreVote MessageType = iota + 1
	MsgPreVoteResp
	MsgVote
	MsgVoteResp
	MsgApp
	MsgAppResp
	MsgTimeoutNow
	// MsgSnap is the InstallSnapshot RPC's header (Figure 13): LastIndex
	// and LastTerm name the last entry the snapshot covers, Entries[0] is
	// the configuration in effect there, and the driver streams the
	// snapshot's bytes with it. The answer is a MsgAppResp.
	MsgSnap
	// MsgTransferLeader asks the leader to hand its leadership over to the
	// sender (TriggerElection on a follower that hears from a leader).
	MsgTransferLeader
)

func (t MessageType) String() string {
	switch t {
	case MsgPreVote:
		return "PreVote"
	case MsgPreVoteResp:
		return "PreVoteResp"
	case MsgVote:
		return "Vote"
	case MsgVoteResp:
		return "VoteResp"
	case MsgApp:
		return "App"
	case MsgAppResp:
		return "AppResp"
	case MsgTimeoutNow:
		return "TimeoutNow"
	case MsgSnap:
		return "Snap"
	case MsgTransferLeader:
		return "TransferLeader"
	}
	return "Unknown"
}

// Message is one protocol message. One struct serves every type, as in the
// Raft paper's RPCs collapsed into one-way messages: each response is a
// message of its own travelling back. The wire codec encodes the fields up
// to HintTerm, in order; the last two are for the driver only.
type Message struct {
	_msgpack struct{} `msgpack:",as_array"`
	Type     MessageType
	Term     uint64
	From     string
	FromInc  uint64 // the sender's incarnation (docs/design.md §2)
	FromAddr string // where to send the answer
	To       string
	ToInc    uint64 // on responses: the incarnation that asked

	// Vote requests: the candidate's last entry. Responses to appends: the
	// follower's last index.
	LastIndex uint64
	LastTerm  uint64
	Force     bool // a forced election (TriggerElection, leadership transfer)
	Reject    bool

	// Appends.
	PrevIndex uint64
	PrevTerm  uint64
	Entries   []Entry
	Commit    uint64
	Seq       uint64 // the leader's read round, echoed by the follower

	// Append responses: on success the index the follower's log now matches;
	// on a reject, where the leader should try next (fast back-off).
	Match     uint64
	HintIndex uint64
	HintTerm  uint64

	// ToAddr is where the transport delivers the message. ToStranger:
	// that address is neither a voter's, nor a server's the leader is
	// catching up, nor the known leader's (see Node.Ready).
	ToAddr     string `msgpack:"-"`
	ToStranger bool   `msgpack:"-"`
}

// send stamps m with this server's identity and queues it for Ready.
func (c *core) send(m Message) {
	m.From, m.FromInc, m.FromAddr = c.cfg.name, c.cfg.inc, c.cfg.addr
	c.msgs = append(c.msgs, m)
}

// reply answers the message to: to the incarnation that asked, at the
// address it asked from.
func (c *core) reply(to Message, m Message) {
	m.To = to.From
	m.ToInc = to.FromInc
	m.ToAddr = to.FromAddr
	c.send(m)
}
