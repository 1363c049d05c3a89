package raft

// pendingRead is a read waiting for its round.
type pendingRead struct {
	id    uint64
	index uint64 // 0 until the leader has committed an entry of its term
	seq   uint64 // the round that must complete first
}

// readIndex registers a linearizable read (thesis §6.4, docs/design.md §5).
// It is released with the commit index it must wait for once a quorum has
// acknowledged this leader in a round that began after the read arrived.
// Reads that arrive together share a round.
func (c *core) readIndex(id uint64) error {
	if c.role != Leader {
		return ErrNotLeader
	}
	r := pendingRead{id: id}
	if t, _ := c.log.term(c.commit); t == c.term {
		r.index = c.commit
		r.seq = c.seq + 1
		c.readBcast = true
	}
	// Nothing to release yet: its round has not started.
	c.reads = append(c.reads, r)
	return nil
}

// startWaitingReads: the first entry of this term committed (thesis §6.4,
// step 1: until then the leader does not know the commit index), so the
// reads that arrived before it can be served at the commit index now.
func (c *core) startWaitingReads() {
	for i := range c.reads {
		if c.reads[i].index == 0 {
			c.reads[i].index = c.commit
			c.reads[i].seq = c.seq + 1
			c.readBcast = true
		}
	}
}

// startReadRound starts a round for the reads waiting for one: a heartbeat
// whose acknowledgements show this server still leads (thesis §6.4, step 2).
func (c *core) startReadRound() {
	if !c.readBcast || c.role != Leader {
		return
	}
	if c.seq > c.ackedSeqs() {
		// A round is in flight: the next one, started when it completes,
		// takes in every read that arrives meanwhile. A lost round is
		// completed by the next heartbeat, which carries the same seq.
		return
	}
	c.readBcast = false
	c.seq++
	// A round needs a quorum, not everyone: when the followers that
	// answered the last round make a quorum with this leader, only they
	// get this one. Reads are bound by round trips, and a follower spared
	// is work spared. The others hear the same seq in the next heartbeat,
	// so if the chosen fall silent, the round still completes then.
	need := c.quorum()
	if !c.removed {
		need-- // this leader counts itself
	}
	few := 0
	for _, name := range c.prNames {
		if c.answeredLastRound(name) {
			few++
		}
	}
	sent := 0
	for _, name := range c.prNames {
		pr := c.prs[name]
		if pr.learner || few >= need && (sent >= need || !c.answeredLastRound(name)) {
			continue
		}
		c.sendHeartbeat(name, pr)
		sent++
	}
	c.releaseReads()
}

// answeredLastRound reports whether name is a voter whose answer counts and
// who acknowledged the read round before the current one.
func (c *core) answeredLastRound(name string) bool {
	pr := c.prs[name]
	return !pr.learner && pr.ackSeq == c.seq-1 && c.self.counts(name, pr.inc)
}

// releaseReads hands on the reads whose round a quorum acknowledged: the
// driver serves each once it has applied up to its index (steps 3 and 4).
func (c *core) releaseReads() {
	if len(c.reads) == 0 {
		return
	}
	acked := c.ackedSeqs()
	n := 0
	for n < len(c.reads) {
		r := c.reads[n]
		if r.index == 0 || r.seq > acked {
			break
		}
		c.released = append(c.released, ReadState{ID: r.id, Index: r.index})
		n++
	}
	c.reads = c.reads[:copy(c.reads, c.reads[n:])]
}

// ackedSeqs is the highest read round a quorum of counting voters has
// acknowledged, this leader included.
func (c *core) ackedSeqs() uint64 {
	return c.quorumAgreed(c.seq, func(pr *progress) uint64 { return pr.ackSeq })
}
