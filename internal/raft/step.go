package raft

// step processes one message from a peer.
func (c *core) step(m Message) {
	if m.From == c.cfg.name && m.FromInc == c.cfg.inc {
		return
	}
	if !sameIncarnation(m.ToInc, c.cfg.inc) {
		// An answer to an earlier incarnation of this server: a vote or
		// an acknowledgement it must not count.
		return
	}
	if !c.checkTerm(m) {
		return
	}
	switch m.Type {
	case MsgPreVote, MsgVote:
		c.handleVoteRequest(m)
		return
	case MsgTimeoutNow:
		c.handleTimeoutNow(m)
		return
	}
	switch c.role {
	case Follower:
		if m.Type == MsgApp {
			if c.lead != "" && m.From != c.lead {
				// A term has one leader (Election Safety): a second one
				// is forged.
				return
			}
			c.electionEl = 0
			c.lead, c.leadAddr = m.From, m.FromAddr
			c.handleAppendEntries(m)
		}
		if m.Type == MsgSnap && (c.lead == "" || m.From == c.lead) {
			c.electionEl = 0
			c.lead, c.leadAddr = m.From, m.FromAddr
			c.handleInstallSnapshot(m)
		}
	case Candidate:
		switch m.Type {
		case MsgApp:
			c.becomeFollower(m.Term, m.From, m.FromAddr)
			c.handleAppendEntries(m)
		case MsgSnap:
			c.becomeFollower(m.Term, m.From, m.FromAddr)
			c.handleInstallSnapshot(m)
		case MsgPreVoteResp, MsgVoteResp:
			c.handleVoteResponse(m)
		}
	case Leader:
		switch m.Type {
		case MsgAppResp:
			c.handleAppendResponse(m)
		case MsgTransferLeader:
			c.handleTransferLeader(m)
		}
	}
}

// checkTerm is the rule on terms every server follows (Figure 2, "Rules for
// All Servers"): a later term makes this server a follower in it, and a
// message of an earlier term is answered with the current one, so that its
// sender catches up. It reports whether m goes on to the rule of its type.
func (c *core) checkTerm(m Message) bool {
	switch {
	case m.Term > c.term:
		return c.laterTerm(m)
	case m.Term < c.term:
		switch m.Type {
		case MsgApp, MsgSnap:
			// A stale leader: tell it the term so it steps down.
			c.reply(m, Message{Type: MsgAppResp, Term: c.term, Reject: true, LastIndex: c.log.lastIndex()})
		case MsgPreVote, MsgVote:
			c.reply(m, Message{Type: voteRespType(m.Type), Term: c.term, Reject: true})
		}
		return false
	}
	return true
}

// laterTerm is checkTerm for a message of a later term. Inside the leader
// lease only known servers and forced elections move the term (thesis §4.2.3
// and §9.6), and a pre-vote moves nothing: it asks about a term that may
// never be.
func (c *core) laterTerm(m Message) bool {
	if c.inLease() && !c.knows(m.From) {
		return false
	}
	if m.Type == MsgPreVote || m.Type == MsgVote {
		if !m.Force && c.inLease() {
			return false
		}
		if !c.mayVoteFor(m) {
			// Removed or unknown servers get no vote and must not move
			// our term.
			c.reply(m, Message{Type: voteRespType(m.Type), Term: c.term, Reject: true})
			return false
		}
	}
	switch {
	case m.Type == MsgPreVote:
		// A pre-vote asks about a future term; answering it changes nothing.
	case m.Type == MsgPreVoteResp && !m.Reject:
		// Granted for the term we would campaign in.
	case m.Type == MsgApp || m.Type == MsgSnap || m.Type == MsgTimeoutNow:
		c.becomeFollower(m.Term, m.From, m.FromAddr)
	default:
		c.becomeFollower(m.Term, "", "")
	}
	return true
}

// inLease reports whether this server heard from a leader within the minimum
// election timeout. Such a server ignores vote requests (leader stickiness),
// so a server that can reach only some of the cluster cannot depose a
// healthy leader.
func (c *core) inLease() bool {
	return c.lead != "" && c.electionEl < c.cfg.electionMin
}

// knows reports whether name is a voter of this server's configuration or,
// on a leader, a server it is catching up.
//
// Outsiders do not move the term of a server that hears from a leader
// (inLease): such a message comes from a removed server, a server of
// another cluster, or a forger, and obeying it would depose a healthy
// leader. This is the thesis's defence against disruptive servers
// (§4.2.3), widened from vote requests to every message. It cannot delay a
// real leader that this server has not learned of yet (added by entries it
// lacks) beyond one election timeout: the lease lapses without the old
// leader, and then the new one is followed as usual.
func (c *core) knows(name string) bool {
	if _, ok := c.self.find(name); ok {
		return true
	}
	return c.role == Leader && c.prs[name] != nil
}

// knowsAddr reports whether addr is where a voter, a server being caught up,
// or the known leader lives. Ready marks messages to any other address: the
// transport bounds the connections it opens to such strangers, since a
// forged message can name any address to answer.
func (c *core) knowsAddr(addr string) bool {
	if addr == c.leadAddr {
		return true
	}
	for _, v := range c.self.Voters {
		if v.Addr == addr {
			return true
		}
	}
	for _, pr := range c.prs {
		if pr.addr == addr {
			return true
		}
	}
	return false
}
