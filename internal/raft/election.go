package raft

import "math"

// voteRecord is a voter's answer, and the incarnation that gave it.
type voteRecord struct {
	granted bool
	inc     uint64
}

// resetTimeout draws this term's election timeout anew (§5.2: randomized,
// so that split votes are rare) and restarts the timers.
func (c *core) resetTimeout() {
	c.electionEl = 0
	c.heartbeatEl = 0
	span := c.cfg.electionMax - c.cfg.electionMin
	c.timeout = c.cfg.electionMin
	if span > 0 && c.cfg.rand != nil {
		c.timeout += c.cfg.rand(span + 1)
	}
}

// becomeFollower is where every server returns when it sees a later term,
// loses an election or stops leading (§5.1); lead is the leader of term if
// known.
func (c *core) becomeFollower(term uint64, lead, leadAddr string) {
	if term > c.term {
		c.term = term
		c.votedFor, c.votedInc = "", 0
	}
	wasLeader := c.role == Leader
	c.role = Follower
	c.preVote = false
	c.lead, c.leadAddr = lead, leadAddr
	c.votes = nil
	if wasLeader {
		c.dropLeaderState()
	}
	c.resetTimeout()
}

// dropLeaderState forgets what only a leader keeps. Reads waiting here fail:
// only a leader can confirm them.
func (c *core) dropLeaderState() {
	c.prs, c.prNames = nil, nil
	c.transferee = ""
	for _, r := range c.reads {
		c.failedReads = append(c.failedReads, r.id)
	}
	c.reads = nil
	c.readBcast = false
}

// campaignType is how a candidate asks for votes.
type campaignType uint8

const (
	// campaignPreVote asks first whether an election could be won, without
	// raising any term (thesis §9.6): a server that was cut off does not
	// depose a healthy leader when it comes back.
	campaignPreVote campaignType = iota
	// campaignElection is the election proper (§5.2).
	campaignElection
	// campaignForced is an election that voters grant even inside their
	// leader lease: a leadership transfer (thesis §3.10) or TriggerElection.
	campaignForced
)

// campaign starts an election of the given type.
func (c *core) campaign(t campaignType) {
	if !c.promotable() || c.term == math.MaxUint64 {
		// The last term: the next would wrap to 0. Only a forged message
		// gets a server here, and no bound on terms would help: it would
		// only move this wall lower, and strand servers behind it.
		return
	}
	if c.role == Leader {
		c.dropLeaderState()
	}
	c.role = Candidate
	c.preVote = t == campaignPreVote
	c.lead, c.leadAddr = "", ""
	c.votes = map[string]voteRecord{c.cfg.name: {granted: true, inc: c.cfg.inc}}
	c.resetTimeout()
	req := MsgVote
	term := c.term + 1
	if c.preVote {
		req = MsgPreVote
		c.counts.PreVotes++
	} else {
		c.counts.Elections++
		c.term++
		c.votedFor, c.votedInc = c.cfg.name, c.cfg.inc
		term = c.term
	}
	if c.tallyVotes() {
		c.winElection()
		return
	}
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			continue
		}
		c.send(Message{Type: req, To: v.Name, ToAddr: v.Addr, Term: term,
			LastIndex: c.log.lastIndex(), LastTerm: c.log.lastTerm(), Force: t == campaignForced})
	}
}

// tallyVotes reports whether the votes granted by counting voters reach the
// quorum. Votes from another incarnation than the configured one never count
// (docs/design.md §2): that is what keeps a restarted voter from voting twice.
func (c *core) tallyVotes() bool {
	granted := 0
	for _, v := range c.self.Voters {
		if r, ok := c.votes[v.Name]; ok && r.granted && sameIncarnation(v.Inc, r.inc) {
			granted++
		}
	}
	return granted >= c.quorum()
}

// lostElection reports whether so many voters refused that the rest cannot
// make a quorum: better to wait as a follower than to time out again.
func (c *core) lostElection() bool {
	rejected := 0
	for _, v := range c.self.Voters {
		if r, ok := c.votes[v.Name]; ok && !r.granted {
			rejected++
		}
	}
	return len(c.self.Voters)-rejected < c.quorum()
}

// winElection: a won pre-vote leads to the election proper.
func (c *core) winElection() {
	if c.preVote {
		c.campaign(campaignElection)
		return
	}
	c.becomeLeader()
}

// becomeLeader starts a term with a no-op entry (§8: a leader learns what is
// committed only once an entry of its own term commits) and binds the
// incarnations of the voters that elected it (docs/design.md §3).
func (c *core) becomeLeader() {
	c.role = Leader
	c.preVote = false
	c.lead, c.leadAddr = c.cfg.name, c.cfg.addr
	c.transferee = ""
	c.prs = map[string]*progress{}
	c.prNames = nil
	c.resetTimeout()
	c.syncProgress()
	for name, r := range c.votes {
		if pr := c.prs[name]; pr != nil && r.granted {
			pr.inc = r.inc
			// A vote that did not count may come from a restarted voter.
			c.noticeIncarnation(name, pr)
		}
	}
	c.votes = nil
	c.appendToOwnLog([]Entry{{Type: EntryNoop}})
	// Configuration entries of earlier terms may be uncommitted: no change
	// until everything up to here has committed.
	c.pendingConf = c.log.lastIndex()
	if m, ok := c.bindings(); ok {
		c.appendToOwnLog([]Entry{{Type: EntryConfig, Data: encodeMembership(m)}})
		c.pendingConf = c.log.lastIndex()
	}
	c.bcastAppend()
	c.maybeCommit()
}

// mayVoteFor: votes go to voters of this server's configuration (so removed
// servers and restarted incarnations get none), and to a server outside it
// whose log is strictly newer than this one. That one was added by entries
// this server has not received yet: refusing it could leave a cluster with
// a live majority unable to elect anyone. A removed server's log never
// holds the committed entry that removed it, so it cannot win that way.
func (c *core) mayVoteFor(m Message) bool {
	if c.self.counts(m.From, m.FromInc) {
		return true
	}
	last, lastTerm := c.log.lastIndex(), c.log.lastTerm()
	return m.LastTerm > lastTerm || (m.LastTerm == lastTerm && m.LastIndex > last)
}

// voteRespType is the answer to a vote request of type t.
func voteRespType(t MessageType) MessageType {
	if t == MsgPreVote {
		return MsgPreVoteResp
	}
	return MsgVoteResp
}

// handleVoteRequest is RequestVote's receiver rule (§5.2, §5.4.1): grant at
// most one vote per term, to a candidate whose log is at least as up to date.
// Pre-votes are granted by the same rule without recording anything.
func (c *core) handleVoteRequest(m Message) {
	upToDate := c.log.isUpToDate(m.LastIndex, m.LastTerm)
	eligible := c.mayVoteFor(m)
	if m.Type == MsgPreVote {
		grant := m.Term > c.term && upToDate && eligible
		term := c.term
		if grant {
			term = m.Term
		}
		c.reply(m, Message{Type: MsgPreVoteResp, Term: term, Reject: !grant})
		return
	}
	canVote := c.votedFor == "" || (c.votedFor == m.From && c.votedInc == m.FromInc)
	grant := canVote && upToDate && eligible && c.role != Leader
	if grant {
		c.votedFor, c.votedInc = m.From, m.FromInc
		c.electionEl = 0
	}
	c.reply(m, Message{Type: MsgVoteResp, Term: c.term, Reject: !grant})
}

// handleVoteResponse counts an answer to this candidate's requests.
func (c *core) handleVoteResponse(m Message) {
	if (m.Type == MsgPreVoteResp) != c.preVote {
		return // from an earlier phase
	}
	if c.preVote && !m.Reject && m.Term != c.term+1 {
		return
	}
	c.votes[m.From] = voteRecord{granted: !m.Reject, inc: m.FromInc}
	if c.tallyVotes() {
		c.winElection()
	} else if c.lostElection() {
		c.becomeFollower(c.term, "", "")
	}
}

// triggerElection starts a forced election at once. It is a no-op on the
// leader.
func (c *core) triggerElection() error {
	if c.role == Leader {
		return nil
	}
	if !c.promotable() {
		return ErrNotVoter
	}
	c.campaign(campaignForced)
	return nil
}

// askToLead is TriggerElection: a follower that heard from its leader
// lately asks it to hand over (thesis §3.10), as an election of its own
// would fail if its log lagged, and depose the leader all the same; the
// leader catches it up first. Without such a leader it campaigns at once.
func (c *core) askToLead() error {
	if c.role == Follower && c.lead != "" && c.electionEl < c.cfg.electionMin && c.promotable() {
		c.send(Message{Type: MsgTransferLeader, To: c.lead, ToAddr: c.leadAddr, Term: c.term})
		// It no longer counts on that leader: one that is gone must not
		// be reported, and one that lives is heard again at its next
		// heartbeat.
		c.askedEl, c.askedOf = 1, c.lead
		c.lead, c.leadAddr = "", ""
		return nil
	}
	return c.triggerElection()
}

// awaitHandOver is a follower's tick while it waits for the leader it asked
// to hand over: a leader that sends nothing for two heartbeat intervals is
// taken for dead, and this server campaigns as TriggerElection asked; one
// that lives hands over, or gives up, within its election timeout.
func (c *core) awaitHandOver() {
	if c.askedEl == 0 {
		return
	}
	c.askedEl++
	switch {
	case c.role != Follower || c.askedEl > c.cfg.electionMax:
		c.askedEl = 0
	case c.lead != "" && c.lead != c.askedOf:
		// Another server leads now: the request is moot, and a campaign
		// at that leader's first late heartbeat would depose it.
		c.askedEl = 0
	case c.electionEl >= 2*c.cfg.heartbeat:
		c.askedEl = 0
		c.triggerElection()
	}
}
