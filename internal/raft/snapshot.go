package raft

import "math"

// Snapshots and log compaction (§7 of the paper, Figure 13; thesis §5).
//
// The state machine's snapshot is taken by the driver, off this core: it
// tells the core with compact which index the snapshot covers, and the core
// remembers that index, its term and the configuration in effect there, and
// forgets the log up to the snapshot less the trailing entries kept for
// followers that lag a little. A follower that needs an entry the leader no
// longer has is sent the snapshot instead: the leader emits a MsgSnap, its
// driver streams the snapshot's bytes after it, and the follower's driver,
// once it has restored its state machine from them, steps the MsgSnap into
// its core, which then continues the log from the snapshot.

// snapshotMeta is what the core knows of a snapshot: the last entry it
// covers and the configuration in effect at that entry.
type snapshotMeta struct {
	index, term uint64
	config      configRecord
}

// SnapshotMeta names a snapshot by the last entry it covers.
type SnapshotMeta struct {
	Index uint64
	Term  uint64
}

// compact records that the state machine's snapshot covers index, which
// the driver has applied, and drops the entries up to index less trailing.
func (c *core) compact(index, trailing uint64) (SnapshotMeta, error) {
	if index > c.handedOut || index < c.log.floor {
		return SnapshotMeta{}, ErrNotApplied
	}
	term, _ := c.log.term(index)
	c.snap = snapshotMeta{index: index, term: term, config: c.configAt(index)}
	if index > trailing {
		c.compactLog(min(index-trailing, c.sendingFloor()))
	}
	return SnapshotMeta{Index: index, Term: term}, nil
}

// sendingFloor is how far the leader may compact while it sends snapshots:
// not past the lowest of them. A follower restored from one takes the log
// after it; compacted meanwhile, it would need another snapshot, and under
// enough writes, another after that, for ever.
func (c *core) sendingFloor() uint64 {
	floor := uint64(math.MaxUint64)
	if c.role != Leader {
		return floor
	}
	for _, pr := range c.prs {
		if pr.state == stateSnapshot {
			floor = min(floor, pr.pendingSnapshot)
		}
	}
	return floor
}

// compactLog forgets the entries up to i, and the configurations that
// preceded the one in effect at i.
func (c *core) compactLog(i uint64) {
	if i <= c.log.floor {
		return
	}
	c.log.compact(i)
	keep := 0
	for keep+1 < len(c.configs) && c.configs[keep+1].index <= i {
		keep++
	}
	c.configs = append(c.configs[:0], c.configs[keep:]...)
}

// configAt is the configuration in effect at index: the latest one whose
// entry is at or before it.
func (c *core) configAt(index uint64) configRecord {
	for i := len(c.configs) - 1; i > 0; i-- {
		if c.configs[i].index <= index {
			return c.configs[i]
		}
	}
	return c.configs[0]
}

// needsSnapshot reports whether the next entry pr needs is compacted away.
func (c *core) needsSnapshot(pr *progress) bool {
	return pr.next <= c.log.floor
}

// sendSnapshot sends the follower the latest snapshot's header, for the
// driver to stream the snapshot after; no appends go to it meanwhile.
func (c *core) sendSnapshot(name string, pr *progress) {
	pr.becomeSnapshot(c.snap.index)
	c.send(Message{Type: MsgSnap, To: name, ToAddr: pr.addr, Term: c.term,
		LastIndex: c.snap.index, LastTerm: c.snap.term, Commit: c.commit,
		Entries: []Entry{{Index: c.snap.config.index, Type: EntryConfig, Data: encodeMembership(c.snap.config.m)}}})
}

// SnapshotStatus is how a snapshot's transfer to a follower ended, as the
// driver reports it.
type SnapshotStatus uint8

const (
	// SnapshotFinished: the transfer ended; the follower's answer, or the
	// probe past the snapshot that the leader sends at its next
	// heartbeat, tells it where to continue.
	SnapshotFinished SnapshotStatus = iota
	// SnapshotFailed: the transfer or the restore failed; the leader probes
	// the follower again at its next heartbeat, and sends the snapshot
	// again if it still needs it.
	SnapshotFailed
)

// reportSnapshot takes in how the transfer of the snapshot at index to name
// ended.
func (c *core) reportSnapshot(name string, index uint64, status SnapshotStatus) {
	pr := c.prs[name]
	if c.role != Leader || pr == nil || pr.state != stateSnapshot || pr.pendingSnapshot != index {
		return
	}
	next := pr.match + 1
	if status == SnapshotFinished {
		// The follower's answer may never come: its core can refuse the
		// header (from a leader it does not know yet, inside its lease).
		// Waiting for it would leave the follower with heartbeats alone
		// for good; a probe past the snapshot finds out.
		next = max(next, pr.pendingSnapshot+1)
	}
	pr.becomeProbe(next)
	pr.probeSent = true // the next try waits for a heartbeat
}

// snapshotOf reads a MsgSnap's header, and reports false for one that no
// leader would send.
func snapshotOf(m *Message) (snapshotMeta, bool) {
	if len(m.Entries) != 1 || m.LastTerm > m.Term || m.LastTerm == 0 {
		return snapshotMeta{}, false
	}
	e := m.Entries[0]
	if e.Type != EntryConfig || e.Index > m.LastIndex {
		return snapshotMeta{}, false
	}
	cfg, err := decodeMembership(e.Data)
	if err != nil {
		return snapshotMeta{}, false
	}
	return snapshotMeta{index: m.LastIndex, term: m.LastTerm, config: newConfigRecord(e.Index, cfg)}, true
}

// handleInstallSnapshot is the InstallSnapshot RPC's receiver (Figure 13).
// The driver has restored the state machine from the snapshot already;
// the log now continues from it: the entries that follow the snapshot are
// kept if the log holds its last entry (rule 6), else the whole log goes
// (rule 7).
func (c *core) handleInstallSnapshot(m Message) {
	meta, ok := snapshotOf(&m)
	if !ok {
		return
	}
	resp := Message{Type: MsgAppResp, Term: c.term}
	if meta.index > c.commit {
		if t, ok := c.log.term(meta.index); ok && t == meta.term {
			c.compactLog(meta.index)
		} else {
			c.log.restart(meta.index, meta.term)
			c.configs = c.configs[:0]
		}
		c.restoreConfigs(meta)
		c.commit = meta.index
		c.handedOut = meta.index
		c.snap = meta
	}
	resp.Match = c.commit
	resp.LastIndex = c.log.lastIndex()
	c.reply(m, resp)
}

// restoreConfigs puts the snapshot's configuration in place of every
// configuration up to the snapshot, and keeps those the log still holds
// after it.
func (c *core) restoreConfigs(meta snapshotMeta) {
	later := 0
	for later < len(c.configs) && c.configs[later].index <= meta.index {
		later++
	}
	c.configs = append([]configRecord{meta.config}, c.configs[later:]...)
	c.applyConfig()
}
