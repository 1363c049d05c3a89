package raft

// tick advances the logical clock by one tick: a leader's heartbeats (§5.2),
// its check-quorum and its transfer's timeout; anyone else's election
// timeout, which starts a pre-vote (thesis §9.6).
func (c *core) tick() {
	c.ticks++
	c.electionEl++
	if c.role == Leader {
		c.heartbeatEl++
		if c.transferee != "" {
			c.transferEl++
			if c.transferEl >= c.cfg.electionMin {
				c.abandonTransfer()
				if c.role != Leader {
					return
				}
			}
		}
		if c.electionEl >= c.cfg.electionMin {
			c.electionEl = 0
			if !c.checkQuorum() {
				c.becomeFollower(c.term, "", "")
				return
			}
		}
		if c.heartbeatEl >= c.cfg.heartbeat {
			c.heartbeatEl = 0
			c.bcastHeartbeat()
		}
		return
	}
	c.awaitHandOver()
	if c.role != Leader && c.electionEl >= c.timeout && c.promotable() {
		c.campaign(campaignPreVote)
	}
}

// checkQuorum: a leader that has not heard from a quorum of voters within an
// election timeout steps down, so that a partitioned leader stops serving
// (thesis §6.2). The leader is active itself unless it is removed.
func (c *core) checkQuorum() bool {
	active := 0
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			if !c.removed {
				active++
			}
			continue
		}
		if pr := c.prs[v.Name]; pr != nil && pr.active && sameIncarnation(v.Inc, pr.inc) {
			active++
		}
	}
	for _, pr := range c.prs {
		pr.active = false
	}
	return active >= c.quorum()
}
