package exraft

// msgType is the kind of a protocol message between servers.
type msgType uint8

const (
	msgPreVote msgType = iota + 1
	msgPreVoteResp
	msgVote
	msgVoteResp
	msgApp
	msgAppResp
	msgTimeoutNow
)

func (t msgType) String() string {
	switch t {
	case msgPreVote:
		return "PreVote"
	case msgPreVoteResp:
		return "PreVoteResp"
	case msgVote:
		return "Vote"
	case msgVoteResp:
		return "VoteResp"
	case msgApp:
		return "App"
	case msgAppResp:
		return "AppResp"
	case msgTimeoutNow:
		return "TimeoutNow"
	}
	return "Unknown"
}

// message is one protocol message. One struct serves every type, as in the
// Raft paper's RPCs collapsed into one-way messages: each response is a
// message of its own travelling back.
type message struct {
	_msgpack struct{} `msgpack:",as_array"`
	Type     msgType
	Term     uint64
	From     string
	FromInc  uint64 // the sender's incarnation (DESIGN.md §3)
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
	Entries   []entry
	Commit    uint64
	Seq       uint64 // the leader's read round, echoed by the follower

	// Append responses: on success the index the follower's log now matches;
	// on a reject, where the leader should try next (fast back-off).
	Match     uint64
	HintIndex uint64
	HintTerm  uint64

	toAddr string // set by the core for the transport; not on the wire
}
