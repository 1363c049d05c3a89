package raft

// propose appends commands to the leader's log and returns the index of the
// first and the term they were appended in. The log keeps copies of the
// entries and their payloads, not es, whose Index and Term it sets.
func (c *core) propose(es []Entry) (first, term uint64, err error) {
	if c.role != Leader {
		return 0, 0, ErrNotLeader
	}
	if c.transferee != "" {
		return 0, 0, ErrTransferring
	}
	for i := range es {
		if t := es[i].Type; t != EntryNormal && t != EntrySession {
			return 0, 0, ErrProposedType
		}
	}
	if len(es) == 0 {
		return c.log.lastIndex() + 1, c.term, nil
	}
	c.appendToOwnLog(es)
	// Sent once per takeReady, so that everything proposed between two
	// takeReady calls travels in one append per follower.
	c.bcastPending = true
	c.maybeCommit()
	return es[0].Index, c.term, nil
}

// appendToOwnLog appends the leader's new entries, in its term (§5.3: a
// leader never overwrites or deletes entries in its log).
func (c *core) appendToOwnLog(es []Entry) {
	last := c.log.lastIndex()
	for i := range es {
		es[i].Index = last + 1 + uint64(i)
		es[i].Term = c.term
	}
	c.log.append(es...)
	c.appendedConfigs(es)
}

// bcastAppend sends every follower and learner what it lacks.
func (c *core) bcastAppend() {
	for _, name := range c.prNames {
		c.sendAppend(name, c.prs[name], newEntriesOnly)
	}
}

// appendMode says whether sendAppend sends an append without entries.
type appendMode uint8

const (
	// newEntriesOnly sends only when there are entries to send.
	newEntriesOnly appendMode = iota
	// evenIfEmpty sends even when there is nothing new: a heartbeat, or a
	// probe for the match point.
	evenIfEmpty
)

// sendAppend sends the follower what it lacks, within the in-flight bound.
func (c *core) sendAppend(name string, pr *progress, mode appendMode) {
	if pr.state == stateSnapshot || pr.state == stateProbe && pr.probeSent && mode == newEntriesOnly {
		return
	}
	if c.needsSnapshot(pr) {
		c.sendSnapshot(name, pr)
		return
	}
	if pr.state == stateReplicate && len(pr.inflight) >= c.cfg.maxInflight {
		if mode == newEntriesOnly {
			return
		}
		c.sendHeartbeat(name, pr)
		return
	}
	ents := c.log.slice(pr.next, c.log.lastIndex(), c.cfg.maxBatch)
	if len(ents) == 0 && mode == newEntriesOnly {
		return
	}
	prev := pr.next - 1
	prevTerm, _ := c.log.term(prev)
	c.send(Message{Type: MsgApp, To: name, ToAddr: pr.addr, Term: c.term,
		PrevIndex: prev, PrevTerm: prevTerm, Entries: ents, Commit: c.commit, Seq: c.seq})
	switch pr.state {
	case stateProbe:
		pr.probeSent = true
	case stateReplicate:
		if len(ents) > 0 {
			pr.next = ents[len(ents)-1].Index + 1
			pr.inflight = append(pr.inflight, pr.next-1)
		}
	}
}

// sendHeartbeat sends an empty append at the point known to match, carrying
// the commit index and the read round.
func (c *core) sendHeartbeat(name string, pr *progress) {
	prevTerm, _ := c.log.term(pr.match)
	c.send(Message{Type: MsgApp, To: name, ToAddr: pr.addr, Term: c.term,
		PrevIndex: pr.match, PrevTerm: prevTerm, Commit: c.commit, Seq: c.seq})
}

// bcastHeartbeat keeps the followers from campaigning (§5.2), carries the
// commit index and the read round, and repairs replication that stalled.
func (c *core) bcastHeartbeat() {
	for _, name := range c.prNames {
		pr := c.prs[name]
		switch pr.state {
		case stateProbe:
			// A lost probe would stall the follower: probe again.
			pr.probeSent = false
			c.sendAppend(name, pr, evenIfEmpty)
		case stateSnapshot:
			// Keeps it from campaigning while the snapshot travels.
			c.sendHeartbeat(name, pr)
		case stateReplicate:
			if pr.match == pr.hbMatch && pr.next-1 > pr.match {
				pr.stalls++
			} else {
				pr.stalls = 0
			}
			if pr.stalls >= 3 {
				// No progress for several heartbeats with appends in flight:
				// they were lost with a broken connection. Resend from the
				// match point.
				pr.stalls = 0
				pr.becomeProbe(pr.match + 1)
				c.sendAppend(name, pr, evenIfEmpty)
			} else {
				c.sendHeartbeat(name, pr)
			}
			pr.hbMatch = pr.match
		}
	}
}

// handleAppendEntries is the AppendEntries RPC's receiver (Figure 2, §5.3):
// accept entries that continue a matching prefix, drop a conflicting suffix,
// and advance the commit index.
func (c *core) handleAppendEntries(m Message) {
	if !wellFormedAppend(&m) {
		return // no leader sends this; whatever did must not crash us
	}
	resp := Message{Type: MsgAppResp, Term: c.term, Seq: m.Seq}
	if m.PrevIndex < c.commit {
		// Everything up to commit matches the leader already (Log Matching
		// and Leader Completeness); skip what is committed.
		skip := c.commit - m.PrevIndex
		if uint64(len(m.Entries)) <= skip {
			resp.Match = c.commit
			resp.LastIndex = c.log.lastIndex()
			c.reply(m, resp)
			return
		}
		m.Entries = m.Entries[skip:]
		m.PrevIndex = c.commit
		m.PrevTerm, _ = c.log.term(c.commit)
	}
	if t, ok := c.log.term(m.PrevIndex); !ok || t != m.PrevTerm {
		resp.Reject = true
		resp.PrevIndex = m.PrevIndex
		resp.HintIndex, resp.HintTerm = c.backoffHint(m.PrevIndex)
		resp.LastIndex = c.log.lastIndex()
		c.reply(m, resp)
		return
	}
	c.appendFromLeader(m.Entries)
	last := m.PrevIndex + uint64(len(m.Entries))
	if m.Commit > c.commit {
		c.commit = min(m.Commit, last)
	}
	resp.Match = last
	resp.LastIndex = c.log.lastIndex()
	c.reply(m, resp)
}

// appendFromLeader appends entries that follow a matching prefix, truncating
// at the first conflict (§5.3, rule 3 and 4). The entries start after the
// commit index (handleAppendEntries skips what is committed and wellFormedAppend
// checks the indexes), so a truncation never reaches a committed entry.
func (c *core) appendFromLeader(es []Entry) {
	for i := range es {
		t, ok := c.log.term(es[i].Index)
		if ok && t == es[i].Term {
			continue
		}
		if ok {
			c.log.truncateAfter(es[i].Index - 1)
			c.truncatedConfigs(es[i].Index - 1)
		}
		rest := es[i:]
		c.log.append(rest...)
		c.appendedConfigs(rest)
		return
	}
}

// wellFormedAppend: the entries follow PrevIndex one by one, their terms
// never go down, and none is of a later term than the message's own.
func wellFormedAppend(m *Message) bool {
	if m.PrevTerm > m.Term {
		return false
	}
	prev := m.PrevTerm
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Index != m.PrevIndex+1+uint64(i) || e.Term > m.Term || e.Term < prev {
			return false
		}
		prev = e.Term
	}
	return true
}

// backoffHint is the follower's half of fast log back-off: where the leader
// should look next after a mismatch at prevIndex. With a conflicting term it
// names that term and the first index this log holds of it.
func (c *core) backoffHint(prevIndex uint64) (index, term uint64) {
	last := c.log.lastIndex()
	if prevIndex > last {
		return last + 1, 0
	}
	term, _ = c.log.term(prevIndex)
	i := prevIndex
	for i > c.commit+1 {
		if t, _ := c.log.term(i - 1); t != term {
			break
		}
		i--
	}
	return i, term
}

// handleAppendResponse is the leader's side of replication: advance or back
// off the follower's progress, then try to commit.
func (c *core) handleAppendResponse(m Message) {
	pr := c.prs[m.From]
	if pr == nil || m.Match > c.log.lastIndex() {
		return // the latter acknowledges entries this leader never had: forged
	}
	if restarted := c.learnIncarnation(m, pr); restarted {
		c.sendAppend(m.From, pr, newEntriesOnly)
		return
	}
	pr.active = true
	pr.heard, pr.heardAt = true, c.ticks
	if m.Seq > pr.ackSeq {
		pr.ackSeq = m.Seq
		c.releaseReads()
	}
	if m.Reject {
		c.appendRejected(m, pr)
		return
	}
	c.appendAccepted(m, pr)
}

// appendRejected: the follower's log does not hold the entry before the ones
// sent (§5.3). Back off and probe again, unless the answer is stale.
func (c *core) appendRejected(m Message, pr *progress) {
	if m.HintIndex == 0 && m.PrevIndex == 0 {
		return // a stale-term reply, handled by the term check
	}
	if pr.state == stateSnapshot {
		return // an answer to a heartbeat: the snapshot decides
	}
	if pr.state == stateReplicate && m.PrevIndex <= pr.match {
		return // stale
	}
	if pr.state == stateProbe && m.PrevIndex != pr.next-1 {
		return // stale
	}
	pr.becomeProbe(max(c.backoffNext(m), pr.match+1))
	c.sendAppend(m.From, pr, newEntriesOnly)
}

// appendAccepted: the follower's log matches this one up to m.Match.
func (c *core) appendAccepted(m Message, pr *progress) {
	pr.match = max(pr.match, m.Match)
	pr.next = max(pr.next, m.Match+1)
	if pr.state == stateProbe || pr.state == stateSnapshot && pr.match >= pr.pendingSnapshot {
		pr.becomeReplicate()
	}
	pr.acknowledged(m.Match)
	c.maybeCommit()
	if c.role != Leader {
		return
	}
	if c.transferee == m.From && pr.match == c.log.lastIndex() {
		c.handOver()
		if c.role != Leader {
			return
		}
	}
	c.maybeChangeMembership()
	c.sendAppend(m.From, pr, newEntriesOnly)
}

// backoffNext is the leader's half of fast back-off: skip a whole
// conflicting term at once instead of one entry per round trip.
func (c *core) backoffNext(m Message) uint64 {
	next := m.HintIndex
	if m.HintTerm != 0 {
		// If this log has entries of the follower's conflicting term, the
		// logs agree up to the last of them.
		for i := min(m.PrevIndex, c.log.lastIndex()); i > 0; i-- {
			t, _ := c.log.term(i)
			if t == m.HintTerm {
				next = i + 1
				break
			}
			if t < m.HintTerm {
				break
			}
		}
	}
	if next > m.PrevIndex {
		next = m.PrevIndex
	}
	if next < 1 {
		next = 1
	}
	return next
}
