package raft

import "sort"

// progState is how the leader replicates to one follower, after etcd-io/raft.
type progState uint8

const (
	stateProbe     progState = iota // one append at a time until the match point is found
	stateReplicate                  // optimistic pipelining
	stateSnapshot                   // being sent a snapshot; no appends meanwhile
)

// progress is the leader's view of one follower or learner.
type progress struct {
	addr      string
	inc       uint64 // incarnation of the last response; 0 until one arrives
	match     uint64
	next      uint64
	state     progState
	probeSent bool
	inflight  []uint64 // last index of each append in flight (replicate)
	active    bool     // heard from since the last check-quorum
	heardAt   uint64   // core.ticks when it last answered; heard: it did
	heard     bool
	ackSeq    uint64 // highest read round acknowledged
	hbMatch   uint64 // match at the previous heartbeat, to spot lost appends
	learner   bool   // not a voter: being caught up by AddServer, or listed
	joining   bool   // to be made a voter (or re-bound) once caught up
	// listed: a learner of the configuration, being re-admitted; unlike a
	// server AddServer catches up, it is not this leader's alone to forget.
	listed  bool
	leaving bool // removed by an uncommitted configuration
	stalls  int  // heartbeats in a row without progress
	// verify: AddServer named this member again; the next response tells
	// whether it is the configured incarnation (a no-op) or a new one.
	verify bool
	// admitIndex is the index of the configuration entry that last made
	// this server a voter; 0 when AddServer found it a voter already.
	admitIndex uint64
	// pendingSnapshot is the index of the snapshot being sent, in
	// stateSnapshot.
	pendingSnapshot uint64
}

// becomeProbe starts looking for the point where the follower's log matches
// this one, at next: one append at a time, since whatever is sent past a
// mismatch is wasted (§5.3).
func (pr *progress) becomeProbe(next uint64) {
	pr.state = stateProbe
	pr.next = next
	pr.inflight = pr.inflight[:0]
	pr.probeSent = false
}

// becomeReplicate: the match point is found; appends are pipelined from it.
func (pr *progress) becomeReplicate() {
	pr.state = stateReplicate
	pr.next = pr.match + 1
	pr.inflight = pr.inflight[:0]
	pr.probeSent = false
}

// becomeSnapshot: the follower needs entries this log no longer has; it is
// sent the snapshot at index instead, and nothing else until that ends.
func (pr *progress) becomeSnapshot(index uint64) {
	pr.state = stateSnapshot
	pr.pendingSnapshot = index
	pr.inflight = pr.inflight[:0]
	pr.probeSent = false
}

// acknowledged frees the in-flight slots of the appends up to match.
func (pr *progress) acknowledged(match uint64) {
	n := 0
	for n < len(pr.inflight) && pr.inflight[n] <= match {
		n++
	}
	pr.inflight = pr.inflight[:copy(pr.inflight, pr.inflight[n:])]
}

// syncProgress keeps one progress per voter and learner other than self.
func (c *core) syncProgress() {
	for name, pr := range c.prs {
		_, voter := c.self.find(name)
		_, listed := c.self.findLearner(name)
		switch {
		case voter:
			// Its configuration entry is in the log now.
			pr.learner, pr.listed, pr.leaving = false, false, false
		case listed:
			pr.readmit()
		case !pr.learner || pr.listed:
			// Removed by a configuration not yet committed: keep sending so
			// it learns of its removal; dropped once that commits.
			pr.leaving, pr.joining, pr.listed = true, false, false
		}
	}
	for _, v := range c.self.Voters {
		c.keepProgress(v)
	}
	for _, l := range c.self.Learners {
		c.keepProgress(l).readmit()
	}
	c.sortProgress()
}

// keepProgress returns the progress of the member v, made if there is none;
// nil for self.
func (c *core) keepProgress(v member) *progress {
	if v.Name == c.cfg.name {
		return nil
	}
	pr := c.prs[v.Name]
	if pr == nil {
		pr = &progress{addr: v.Addr, next: c.log.lastIndex() + 1}
		c.prs[v.Name] = pr
	} else if !pr.joining {
		pr.addr = v.Addr
	}
	return pr
}

// readmit marks a learner of the configuration: whichever leader holds the
// configuration catches it up and admits it (maybeChangeMembership).
func (pr *progress) readmit() {
	if pr != nil {
		pr.learner, pr.joining, pr.listed, pr.leaving = true, true, true, false
	}
}

// sortProgress lists the progress names in order: maps iterate at random,
// and the core must do the same thing each time it is fed the same inputs.
func (c *core) sortProgress() {
	c.prNames = c.prNames[:0]
	for name := range c.prs {
		c.prNames = append(c.prNames, name)
	}
	sort.Strings(c.prNames)
}

// ProgressState is how the leader replicates to one server.
type ProgressState uint8

const (
	// ProgressProbe: looking for where the server's log matches, one
	// append at a time.
	ProgressProbe ProgressState = iota
	// ProgressReplicate: appends are pipelined.
	ProgressReplicate
	// ProgressSnapshot: the server is being sent a snapshot.
	ProgressSnapshot
)

// Progress is the leader's view of one other server.
type Progress struct {
	Peer
	Learner bool // being caught up, not (yet) a voter
	Match   uint64
	State   ProgressState
	// Heard: the server answered this leader; SinceHeard ticks ago.
	Heard      bool
	SinceHeard uint64
}

// progressList is the leader's view of every other server, by name.
func (c *core) progressList() []Progress {
	if c.role != Leader {
		return nil
	}
	out := make([]Progress, 0, len(c.prNames))
	for _, name := range c.prNames {
		pr := c.prs[name]
		p := Progress{Peer: Peer{Name: name, Addr: pr.addr}, Learner: pr.learner, Match: pr.match,
			State: pr.state.public(), Heard: pr.heard}
		if pr.heard {
			p.SinceHeard = c.ticks - pr.heardAt
		}
		out = append(out, p)
	}
	return out
}

func (s progState) public() ProgressState {
	switch s {
	case stateReplicate:
		return ProgressReplicate
	case stateSnapshot:
		return ProgressSnapshot
	}
	return ProgressProbe
}
