package raft

import "slices"

// maybeCommit is the leader's commit rule (§5.3, §5.4.2): an index is
// committed once a quorum of counting voters holds it and its entry is of the
// current term; earlier entries commit with it.
func (c *core) maybeCommit() {
	n := c.quorumAgreed(c.log.lastIndex(), func(pr *progress) uint64 { return pr.match })
	if n <= c.commit {
		return
	}
	if t, _ := c.log.term(n); t != c.term {
		// Figure 8: an entry of an earlier term can be overwritten even
		// once a majority holds it. It commits with one of this term.
		return
	}
	oldCommit := c.commit
	c.commit = n
	c.committed(oldCommit)
}

// quorumAgreed is the highest value a quorum of counting voters has reached:
// the quorum-th highest of their values, this leader's own included unless
// it is removed, and a voter not heard from as its bound incarnation
// counting as 0. Match indexes decide commits by it, and acknowledged read
// rounds decide reads (readindex.go).
func (c *core) quorumAgreed(own uint64, of func(*progress) uint64) uint64 {
	vals := c.scratch[:0]
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			if !c.removed {
				vals = append(vals, own)
			}
			continue
		}
		if pr := c.prs[v.Name]; pr != nil && sameIncarnation(v.Inc, pr.inc) {
			vals = append(vals, of(pr))
		}
	}
	c.scratch = vals
	q := c.quorum()
	if len(vals) < q {
		return 0
	}
	slices.Sort(vals)
	return vals[len(vals)-q]
}

// committed runs what follows a commit advance on the leader.
func (c *core) committed(oldCommit uint64) {
	if t, _ := c.log.term(oldCommit); t != c.term {
		c.startWaitingReads()
	}
	if c.pendingConf > oldCommit && c.pendingConf <= c.commit {
		if handedOver := c.configCommitted(); handedOver {
			return
		}
	}
	c.releaseReads()
	c.maybeChangeMembership()
}
