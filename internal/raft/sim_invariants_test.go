package raft

import "fmt"

// The simulator's side of the cores' output, and the invariants it checks
// (sim_helpers_test.go).

// ---- output of the cores -------------------------------------------------------

func (s *sim) violate(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

// output takes what n's core produced besides the messages, which the
// network has sent: entries are applied, reads are answered.
func (s *sim) output(n *server, rd Ready) {
	if from := n.c.handedOut - uint64(len(rd.Committed)); from > n.handed {
		// The core took a snapshot's header: it hands out what follows the
		// snapshot, which the state machine must hold by now.
		if from != n.c.snap.index || n.applied < from {
			s.violate("%v: the core continues from a snapshot at %d, the state machine has applied %d", n.id(), from, n.applied)
		}
		n.handed = from
	}
	if len(rd.Committed) > 0 {
		s.ev(event{kind: evApply, node: n.id(), a: rd.Committed[0].Index, b: rd.Committed[len(rd.Committed)-1].Index})
	}
	for i := range rd.Committed {
		s.applyEntry(n, &rd.Committed[i])
	}
	for _, r := range rd.Reads {
		s.readReleased(n, r)
	}
	for _, id := range rd.FailedReads {
		s.ev(event{kind: evReadFail, node: n.id(), a: id})
		delete(s.reads, id)
	}
	n.dirty = true
	// Check after every input to a core, even inside a compound step (tick
	// all, deliver everything), so that no state goes unseen.
	if s.err == nil {
		s.err = s.checkInvariants()
	}
	// After the check, which records what was committed from the log.
	s.maybeSnapshot(n)
}

func (s *sim) applyEntry(n *server, e *Entry) {
	if e.Index != n.handed+1 {
		s.violate("applied indexes go back or skip: %v handed out index %d after %d", n.id(), e.Index, n.handed)
	}
	n.handed = e.Index
	if e.Index > n.applied {
		n.applied = e.Index
		if e.Type == EntrySession {
			s.applySession(n, e)
		} else {
			n.hash = stateAfter(n.hash, entryKey(e))
		}
	}
	if !s.global {
		return
	}
	// State machine safety: the same entry at each index on every server,
	// and so the same state after it.
	switch {
	case e.Index <= uint64(len(s.applied)):
		if !sameEntry(e, s.applied[e.Index-1]) {
			s.violate("state machine safety: %v applied %d/%s at index %d, another server applied %s",
				n.id(), e.Term, entryString(*e), e.Index, keyString(s.applied[e.Index-1]))
		}
		if n.applied == e.Index {
			s.checkTable(n, e.Index)
			if n.hash != s.stateHash[e.Index-1] {
				s.violate("state machine safety: %v's state after index %d differs from the others'", n.id(), e.Index)
			}
		}
	case e.Index == uint64(len(s.applied))+1:
		s.learnSessions(n, e)
		s.applied = append(s.applied, entryKey(e))
		s.stateHash = append(s.stateHash, n.hash)
	default:
		s.violate("applied index %d on %v with only %d applied anywhere", e.Index, n.id(), len(s.applied))
	}
	// A write finishes when the server that proposed it applies it in the
	// term it was proposed in.
	if e.Type == EntryNormal {
		if p := s.props[string(e.Data)]; p != nil && !p.finished && p.by == n.id() && p.index == e.Index && p.term == e.Term {
			p.finished = true
			s.stats.finishedWrites++
			s.finMax = max(s.finMax, e.Index)
		}
	}
}

// stateAfter is the hash of a state machine's state after it applied the
// entry key to the state of hash h (FNV-1a over the applied entries).
func stateAfter(h uint64, key string) uint64 {
	if h == 0 {
		h = 14695981039346656037
	}
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return (h ^ 0xff) * 1099511628211 // an end marker, so keys cannot run together
}

// maybeSnapshot takes a snapshot of n's state machine once it has applied
// snapEvery entries since the last, and compacts n's log behind it.
func (s *sim) maybeSnapshot(n *server) {
	if s.snapEvery == 0 || n.c == nil || n.applied < n.snapIndex+s.snapEvery || n.applied != n.handed {
		return
	}
	if _, err := n.c.compact(n.applied, s.trailing); err != nil {
		s.violate("%v: compact at %d: %v", n.id(), n.applied, err)
		return
	}
	n.snapIndex, n.snapHash = n.applied, n.hash
	n.snapshotSessions()
	s.stats.snapshots++
	s.ev(event{kind: evSnapshot, node: n.id(), a: n.applied, b: n.c.log.firstIndex()})
}

// snapshotHeld admits a snapshot's header only while its sender holds the
// snapshot it names: its bytes would follow it from there.
func (s *sim) snapshotHeld(m Message) bool {
	if m.Type != MsgSnap {
		return true
	}
	from := s.nodes[m.From]
	return from != nil && from.c != nil && from.inc == m.FromInc && from.snapIndex == m.LastIndex
}

// restore is the follower's driver receiving a snapshot: it restores the
// state machine from the sender's snapshot before its core takes the
// header, unless its core has committed the snapshot's entries already.
// A restored state must be the state every server had at that index.
func (s *sim) restore(n *server, m Message) {
	if n == nil || n.c == nil || m.LastIndex <= n.c.commit || m.LastIndex <= n.applied || !s.snapshotHeld(m) {
		return
	}
	from := s.nodes[m.From]
	n.kept = &heldSnapshot{index: n.snapIndex, hash: n.snapHash, table: n.snapTable, seqs: n.snapSeqs}
	n.hash, n.applied = from.snapHash, m.LastIndex
	n.snapIndex, n.snapHash = m.LastIndex, from.snapHash
	s.stats.installs++
	s.ev(event{kind: evInstall, node: n.id(), a: m.LastIndex})
	if s.global && (m.LastIndex > uint64(len(s.stateHash)) || s.stateHash[m.LastIndex-1] != n.hash) {
		s.violate("%v restored a snapshot at index %d that differs from the state the others applied there", n.id(), m.LastIndex)
	}
	s.restoreSessions(n, from, m.LastIndex)
}

// snapshotTaken runs once n's core has stepped a snapshot's header that n
// restored: a core that refused it (a stale leader's, or one from a leader
// it does not know yet, inside its lease) still has its earlier snapshot,
// and that is the one n holds to send, as its driver would.
func (s *sim) snapshotTaken(n *server, m Message) {
	if n == nil || n.kept == nil {
		return
	}
	if n.c.snap.index != m.LastIndex {
		n.snapIndex, n.snapHash, n.snapTable, n.snapSeqs = n.kept.index, n.kept.hash, n.kept.table, n.kept.seqs
	}
	n.kept = nil
}

// snapshotSent tells the sender of a snapshot header just delivered that
// the transfer finished, as its driver would once the bytes are across:
// whether the receiver's core takes the header is another matter.
func (s *sim) snapshotSent(m Message) {
	from := s.nodes[m.From]
	if from == nil || from.c == nil || from.inc != m.FromInc {
		return
	}
	from.c.reportSnapshot(m.To, m.LastIndex, SnapshotFinished)
	s.net.collect(from.name)
}

// snapshotLost tells the sender of a lost snapshot header that the
// transfer failed, as its driver would.
func (s *sim) snapshotLost(m Message) {
	from := s.nodes[m.From]
	if from == nil || from.c == nil || from.inc != m.FromInc {
		return
	}
	from.c.reportSnapshot(m.To, m.LastIndex, SnapshotFailed)
	s.net.collect(from.name)
}

// readReleased checks a released ReadIndex read: the state at its index must
// include every write and read that finished before the read began.
func (s *sim) readReleased(n *server, rs ReadState) {
	s.ev(event{kind: evReadDone, node: n.id(), a: rs.ID, b: rs.Index})
	r := s.reads[rs.ID]
	if r == nil {
		s.violate("read %d released by %v twice or without being asked", rs.ID, n.id())
		return
	}
	delete(s.reads, rs.ID)
	if r.by != n.id() {
		s.violate("read %d asked of %v released by %v", rs.ID, r.by, n.id())
	}
	if rs.Index > n.applied {
		s.violate("read %d released by %v at index %d above what it applied (%d)", rs.ID, n.id(), rs.Index, n.handed)
	}
	if !s.global {
		return
	}
	if rs.Index < r.min {
		s.violate("linearizability: read %d on %v (asked at step %d) released at index %d, "+
			"but a write or read that finished before it began covers index %d",
			rs.ID, n.id(), r.step, rs.Index, r.min)
	}
	s.stats.readsDone++
	s.readDone[rs.ID] = true
	s.finMax = max(s.finMax, rs.Index)
}

// ---- the invariants ------------------------------------------------------------

// checkInvariants checks, after a step:
//  1. at most one leader per term, over the whole run (by name and incarnation);
//  2. log matching: two logs holding an entry of the same index and term agree
//     on that entry and on everything before it (checked as: an (index, term)
//     determines the entry and the term of the entry before it);
//  3. leader completeness: an entry seen committed by a server in term t is in
//     the log of every leader of a term >= t, at the same index;
//  4. state machine safety: every server applies the same entry at an index
//     (checked while collecting output), and no two servers see different
//     entries committed at one index;
//  5. per incarnation, term and commit never go back, commit <= last index,
//     entries are handed out for applying in order without gaps or repeats;
//  6. linearizable reads (checked when a read is released, see readReleased);
//  7. session exactly-once: no server's state machine applies the command of
//     one (session, seq) twice, and it applies each the table answers
//     Applied (checked as it applies one, see checkExactlyOnce);
//  8. session table agreement: servers that applied up to the same index hold
//     byte-identical session tables (checked as they apply an entry or
//     restore a snapshot, see checkTable);
//  9. session admission: a write's command is applied only when the table
//     answers Applied, never Expired or Stale, and only for a registered,
//     unclosed session and a seq its client still waits on (see
//     checkAdmission).
func (s *sim) checkInvariants() error {
	if s.err != nil {
		return s.err
	}
	for _, name := range s.net.names {
		n := s.nodes[name]
		c := n.c
		if c == nil {
			continue
		}
		if c.term < n.term {
			return fmt.Errorf("term went back on %v: %d after %d", n.id(), c.term, n.term)
		}
		if c.commit < n.commit {
			return fmt.Errorf("commit index went back on %v: %d after %d", n.id(), c.commit, n.commit)
		}
		if c.commit > c.log.lastIndex() {
			return fmt.Errorf("commit index %d above last index %d on %v", c.commit, c.log.lastIndex(), n.id())
		}
		if c.handedOut != n.handed {
			return fmt.Errorf("%v: handedOut %d but %d handed out", n.id(), c.handedOut, n.handed)
		}
		if c.role != n.role || c.term != n.term {
			s.ev(event{kind: evState, node: n.id(), s: fmt.Sprintf("%s term %d", c.role, c.term)})
		}
		n.term, n.role = c.term, c.role
		if !s.global {
			n.commit = c.commit
			continue
		}
		if n.dirty {
			if err := s.checkLogMatching(n); err != nil {
				return err
			}
			n.dirty = false
		}
		if c.commit > n.commit {
			if err := s.recordCommits(n); err != nil {
				return err
			}
		}
		if c.role == Leader {
			if prev, ok := s.leaders[c.term]; ok && prev != n.id() {
				return fmt.Errorf("two leaders in term %d: %v and %v", c.term, prev, n.id())
			}
			if _, ok := s.leaders[c.term]; !ok {
				s.leaders[c.term] = n.id()
				s.stats.leaders++
			}
			if n.leaderTerm == c.term && c.log.lastIndex() < n.leaderLast {
				return fmt.Errorf("leader %v of term %d lost entries of its log: last index %d after %d", n.id(), c.term, c.log.lastIndex(), n.leaderLast)
			}
			n.leaderLast = c.log.lastIndex()
			if n.leaderTerm != c.term {
				n.leaderTerm = c.term
				for i := range s.committed {
					if err := s.leaderHas(n, uint64(i+1)); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, i := range s.newCommits {
		for _, n := range s.alive() {
			if n.c.role == Leader {
				if err := s.leaderHas(n, i); err != nil {
					return err
				}
			}
		}
	}
	s.newCommits = s.newCommits[:0]
	return nil
}

// leaderHas checks that the leader n holds the committed entry at index i,
// if i was seen committed in a term no later than n's.
func (s *sim) leaderHas(n *server, i uint64) error {
	rec := &s.committed[i-1]
	c := n.c
	if rec.recTerm > c.term || i <= c.log.floor {
		// Compacted entries are in the leader's snapshot, whose state
		// was checked when it was applied or restored.
		return nil
	}
	if i <= c.log.lastIndex() {
		if e := c.log.at(i); e.Term == rec.term && sameEntry(&e, rec.key) {
			return nil
		}
	}
	have := "nothing"
	if i <= c.log.lastIndex() && i > c.log.floor {
		e := c.log.at(i)
		have = fmt.Sprintf("%d/%s", e.Term, entryString(e))
	}
	return fmt.Errorf("leader completeness: leader %v of term %d lacks index %d (%d/%s), "+
		"seen committed by %v in term %d; it has %s there (last index %d)",
		n.id(), c.term, i, rec.term, keyString(rec.key), rec.by, rec.recTerm, have, c.log.lastIndex())
}

// recordCommits records the entries n's commit index now covers.
func (s *sim) recordCommits(n *server) error {
	c := n.c
	for i := n.commit + 1; i <= c.commit; i++ {
		if i <= c.log.floor {
			// Restored from a snapshot, whose state was checked against
			// what the others applied; its entries were seen committed.
			if i > uint64(len(s.committed)) {
				return fmt.Errorf("%v holds a snapshot at %d beyond anything seen committed (%d)", n.id(), c.log.floor, len(s.committed))
			}
			continue
		}
		e := c.log.at(i)
		if i <= uint64(len(s.committed)) {
			rec := &s.committed[i-1]
			if rec.term != e.Term || !sameEntry(&e, rec.key) {
				return fmt.Errorf("two entries committed at index %d: %d/%s (seen by %v in term %d) and %d/%s (seen by %v in term %d)",
					i, rec.term, keyString(rec.key), rec.by, rec.recTerm, e.Term, entryString(e), n.id(), c.term)
			}
			if c.term < rec.recTerm {
				rec.recTerm, rec.by = c.term, n.id()
				s.newCommits = append(s.newCommits, i)
			}
			continue
		}
		s.committed = append(s.committed, commitRecord{term: e.Term, key: entryKey(&e), recTerm: c.term, by: n.id()})
		s.newCommits = append(s.newCommits, i)
		s.stats.commits++
		if e.Type == EntryConfig {
			s.configCommitted(i, &e)
		}
	}
	n.commit = c.commit
	s.stats.maxCommit = max(s.stats.maxCommit, c.commit)
	return nil
}

// checkLogMatching checks the entries of n's log that changed since its last
// check against every (index, term) seen in any log.
func (s *sim) checkLogMatching(n *server) error {
	c := n.c
	last := c.log.lastIndex()
	// The entries up to the floor are compacted: they were checked while
	// in the log, or come with a restored snapshot.
	floor := c.log.floor
	for uint64(len(n.terms)) < floor {
		n.terms = append(n.terms, 0)
	}
	from := floor + 1
	for from <= last && from <= uint64(len(n.terms)) {
		if t, _ := c.log.term(from); t != n.terms[from-1] {
			break
		}
		from++
	}
	n.terms = n.terms[:from-1]
	for i := from; i <= last; i++ {
		e := c.log.at(i)
		if e.Index != i {
			return fmt.Errorf("log of %v holds index %d at position %d", n.id(), e.Index, i)
		}
		prevTerm, _ := c.log.term(i - 1)
		if e.Term > c.term {
			return fmt.Errorf("log of %v in term %d holds an entry of the later term %d at index %d", n.id(), c.term, e.Term, i)
		}
		if e.Term < prevTerm {
			return fmt.Errorf("log of %v: term %d at index %d after term %d", n.id(), e.Term, i, prevTerm)
		}
		k := indexTerm{i, e.Term}
		rec, ok := s.logRecs[k]
		if !ok {
			s.logRecs[k] = logRecord{prevTerm: prevTerm, key: entryKey(&e)}
		} else if rec.prevTerm != prevTerm || !sameEntry(&e, rec.key) {
			return fmt.Errorf("log matching: %v holds %d/%s at index %d after term %d; another log holds %s there after term %d",
				n.id(), e.Term, entryString(e), i, prevTerm, keyString(rec.key), rec.prevTerm)
		}
		n.terms = append(n.terms, e.Term)
	}
	return nil
}

// configCommitted records whom the configuration entry e, committed at i,
// keeps in the cluster (sim.members).
func (s *sim) configCommitted(i uint64, e *Entry) {
	m, err := decodeMembership(e.Data)
	if err != nil {
		s.violate("committed configuration entry at %d does not decode: %v", i, err)
		return
	}
	for _, v := range append(m.Voters, m.Learners...) {
		s.members[v.Name] = true
		if at, ok := s.removedAt[v.Name]; ok && i > at {
			delete(s.removedAt, v.Name)
		}
	}
}
