package raft

// startTransfer: a leader whose removal committed hands over to the most
// up-to-date voter (thesis §3.10), once that one holds its whole log, so
// that the cluster need not wait out an election timeout.
func (c *core) startTransfer() {
	best := ""
	var bestMatch uint64
	for _, v := range c.self.Voters {
		pr := c.prs[v.Name]
		if pr == nil || !sameIncarnation(v.Inc, pr.inc) {
			continue
		}
		if best == "" || pr.match > bestMatch {
			best, bestMatch = v.Name, pr.match
		}
	}
	if best == "" {
		c.becomeFollower(c.term, "", "")
		return
	}
	c.transferee, c.transferEl, c.handedOver = best, 0, false
	if bestMatch == c.log.lastIndex() {
		c.handOver()
		return
	}
	c.sendAppend(best, c.prs[best], newEntriesOnly)
}

// transferLeadership hands the leadership over to the voter name, on
// request (thesis §3.10): the leader takes no more proposals, catches name
// up, and tells it to campaign at once (handOver). It leads until name's
// election deposes it; if that has not happened within an election
// timeout, it takes proposals again (abandonTransfer). A transfer to this
// leader ends one in progress.
func (c *core) transferLeadership(name string) error {
	switch {
	case c.role != Leader:
		return ErrNotLeader
	case c.removed:
		return ErrTransferring // a removed leader hands over already
	case name == c.cfg.name:
		c.transferee = ""
		return nil
	}
	pr := c.prs[name]
	if pr == nil || !c.self.counts(name, pr.inc) {
		return ErrUnknownServer
	}
	c.transferee, c.transferEl, c.handedOver = name, 0, false
	if pr.match == c.log.lastIndex() {
		c.handOver()
		return nil
	}
	c.sendAppend(name, pr, newEntriesOnly)
	return nil
}

// handOver tells the transferee, which holds the whole log, to campaign at
// once (TimeoutNow), once. A removed leader steps down at the same time;
// one that hands over on request leads until the transferee's election
// deposes it, so that a lost TimeoutNow costs writes an election timeout
// rather than the cluster its leader.
func (c *core) handOver() {
	if pr := c.prs[c.transferee]; pr != nil && !c.handedOver {
		// Carry the commit index first so that the new leader knows it.
		c.sendHeartbeat(c.transferee, pr)
		c.send(Message{Type: MsgTimeoutNow, To: c.transferee, ToAddr: pr.addr, Term: c.term})
		c.handedOver = true
	}
	if c.removed {
		c.becomeFollower(c.term, "", "")
	}
}

// abandonTransfer: the transferee did not take over within an election
// timeout. A removed leader steps down all the same, and the others elect
// a leader among themselves; one that handed over on request leads on.
func (c *core) abandonTransfer() {
	if c.removed {
		c.becomeFollower(c.term, "", "")
		return
	}
	c.transferee = ""
}

// handleTimeoutNow is the transferee's side: campaign at once, with an
// election the voters grant inside their lease. Only this term's leader,
// or the one this server asked to hand over, hands its leadership over.
func (c *core) handleTimeoutNow(m Message) {
	if c.role != Leader && (m.From == c.lead || c.askedEl > 0 && m.From == c.askedOf) {
		c.campaign(campaignForced)
	}
}

// handleTransferLeader: a voter asks this leader to hand over to it.
func (c *core) handleTransferLeader(m Message) {
	if pr := c.prs[m.From]; pr != nil && c.self.counts(m.From, m.FromInc) {
		_ = c.transferLeadership(m.From) // refused only while removed: it hands over already
	}
}
