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
	c.transferee = best
	c.transferEl = 0
	if bestMatch == c.log.lastIndex() {
		c.handOver()
		return
	}
	c.sendAppend(best, c.prs[best], newEntriesOnly)
}

// handOver tells the transferee, which holds the whole log, to campaign at
// once (TimeoutNow), and steps down.
func (c *core) handOver() {
	if pr := c.prs[c.transferee]; pr != nil {
		// Carry the commit index first so that the new leader knows it.
		c.sendHeartbeat(c.transferee, pr)
		c.send(Message{Type: MsgTimeoutNow, To: c.transferee, ToAddr: pr.addr, Term: c.term})
	}
	c.becomeFollower(c.term, "", "")
}

// abandonTransfer: the transferee did not catch up within an election
// timeout. The leader steps down all the same: it is removed, and the others
// elect a leader among themselves.
func (c *core) abandonTransfer() {
	c.becomeFollower(c.term, "", "")
}

// handleTimeoutNow is the transferee's side: campaign at once, with an
// election the voters grant inside their lease. Only this term's leader
// hands its leadership over.
func (c *core) handleTimeoutNow(m Message) {
	if c.role != Leader && m.From == c.lead {
		c.campaign(campaignForced)
	}
}
