package exraft

import (
	"errors"
	"math"
	"slices"
	"sort"
)

// core is the Raft protocol as a deterministic state machine, after
// etcd-io/raft: no goroutines, clocks, locks or I/O. The server feeds it
// ticks, messages and requests, one at a time, and after each one takes what
// it produced with takeReady: messages to send, entries to apply, reads to
// release. Randomness (election timeouts) comes from coreConfig.rand.
//
// Behaviour is switched by role; each rule of the paper lives in one method
// named after it.
type core struct {
	cfg coreConfig

	// Persistent state in the paper's sense, kept in memory only; a restart
	// is a new incarnation (DESIGN.md §3).
	term     uint64
	votedFor string
	votedInc uint64
	log      raftLog

	role        Role
	preVote     bool // a candidate still in its pre-vote phase
	lead        string
	leadAddr    string
	commit      uint64
	handedOut   uint64 // highest index returned to the server for applying
	configs     []configRecord
	self        membership // == configs[len-1].m, the configuration in use
	removed     bool       // this server is not a voter of its configuration
	electionEl  int        // ticks since the last election timeout reset
	heartbeatEl int
	timeout     int // this term's randomized election timeout

	// Candidate state: responses by voter name.
	votes map[string]voteRecord

	// Leader state.
	prs          map[string]*progress
	prNames      []string // sorted keys of prs, for a deterministic order
	pendingConf  uint64   // index of the latest configuration entry appended
	transferee   string   // when the leader removed itself: who takes over
	transferEl   int
	epoch        uint64 // counts membership events, so waiters can tell
	seq          uint64 // read round, see readIndex
	readBcast    bool
	bcastPending bool // proposals appended since the last takeReady
	reads        []pendingRead

	scratch []uint64 // for sorting matches and read rounds

	// Output, emptied by takeReady.
	msgs        []message
	spareMsgs   []message // see recycle
	released    []readState
	spareReads  []readState // see recycle
	failedReads []uint64
}

type coreConfig struct {
	name        string
	addr        string
	inc         uint64
	initial     []Peer
	minMajority int
	heartbeat   int // ticks
	electionMin int // ticks
	electionMax int // ticks
	rand        func(n int) int
	maxInflight int // append messages in flight per follower
	maxBatch    int // payload bytes per append message
	autoRejoin  bool
}

type configRecord struct {
	index uint64
	m     membership
}

type voteRecord struct {
	granted bool
	inc     uint64
}

type progState uint8

const (
	stateProbe     progState = iota // one append at a time until the match point is found
	stateReplicate                  // optimistic pipelining
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
	ackSeq    uint64   // highest read round acknowledged
	hbMatch   uint64   // match at the previous heartbeat, to spot lost appends
	learner   bool     // not a voter: being caught up by AddServer
	joining   bool     // to be made a voter (or re-bound) once caught up
	leaving   bool     // removed by an uncommitted configuration
	stalls    int      // heartbeats in a row without progress
	// verify: AddServer named this member again; the next response tells
	// whether it is the configured incarnation (a no-op) or a new one.
	verify bool
	// admitIndex is the index of the configuration entry that last made
	// this server a voter; 0 when AddServer found it a voter already.
	admitIndex uint64
}

type pendingRead struct {
	id    uint64
	index uint64 // 0 until the leader has committed an entry of its term
	seq   uint64
}

type readState struct {
	id    uint64
	index uint64
}

// ready is what the core produced since the last takeReady.
type ready struct {
	msgs        []message
	apply       []entry // committed entries not handed out before, in order
	reads       []readState
	failedReads []uint64 // reads that can no longer be served here
	roundHeld   bool     // see takeReadyHolding
}

var (
	errNotLeaderCore   = errors.New("exraft: not the leader")
	errConfBusy        = errors.New("exraft: a membership change is in progress")
	errAlreadyMember   = errors.New("exraft: already a member")
	errNameTaken       = errors.New("exraft: the name belongs to a member at another address")
	errTransferring    = errors.New("exraft: leadership is being handed over")
	errNotCommittedYet = errors.New("exraft: the leader has not committed an entry of its term yet")
)

func newCore(cfg coreConfig) *core {
	if cfg.maxInflight <= 0 {
		cfg.maxInflight = 64
	}
	if cfg.maxBatch <= 0 {
		cfg.maxBatch = 1 << 20
	}
	c := &core{cfg: cfg}
	boot := newMembership(Peer{Name: cfg.name, Addr: cfg.addr}, cfg.initial)
	// This server knows its own incarnation from the start.
	if v, ok := boot.find(cfg.name); ok {
		v.Inc = cfg.inc
		boot = boot.with(v)
	}
	c.configs = []configRecord{{index: 0, m: boot}}
	c.applyConfig()
	c.becomeFollower(0, "", "")
	if c.promotable() && c.self.quorum(c.cfg.minMajority) == 1 {
		// A one-server cluster leads at once.
		c.campaign(false, false)
	}
	return c
}

// ---- configuration ----------------------------------------------------------

// applyConfig makes the latest configuration in the log the one in use: in
// Raft a server uses a configuration as soon as it is in its log (§4.1 of the
// dissertation), committed or not.
func (c *core) applyConfig() {
	c.self = c.configs[len(c.configs)-1].m
	c.removed = !c.self.counts(c.cfg.name, c.cfg.inc)
	if c.role == Leader {
		c.syncProgress()
	}
}

// promotable reports whether this server may campaign: it is a voter of its
// configuration and the configuration has enough voters to reach a quorum.
//
// A server whose removal is in its log but not committed still campaigns:
// its log may be the only one holding entries a quorum acknowledged, and
// without it the rest could not elect anyone. It does not vote for itself
// (tallyVotes counts the configuration in use), and once it leads it
// commits its removal and hands over.
func (c *core) promotable() bool {
	if c.removed && !c.committedConfig().counts(c.cfg.name, c.cfg.inc) {
		return false
	}
	return len(c.self.Voters) >= c.self.quorum(c.cfg.minMajority)
}

func (c *core) quorum() int { return c.self.quorum(c.cfg.minMajority) }

// appendedConfigs records configuration entries as they enter the log.
func (c *core) appendedConfigs(es []entry) {
	changed := false
	for i := range es {
		if es[i].Type != entryConfig {
			continue
		}
		m, err := decodeMembership(es[i].Data)
		if err != nil {
			continue // cannot happen for entries a leader made; never trust it to
		}
		c.configs = append(c.configs, configRecord{index: es[i].Index, m: m})
		changed = true
	}
	if changed {
		c.applyConfig()
	}
}

// truncatedConfigs forgets configurations above index i after a truncation.
func (c *core) truncatedConfigs(i uint64) {
	n := len(c.configs)
	for n > 1 && c.configs[n-1].index > i {
		n--
	}
	if n != len(c.configs) {
		c.configs = c.configs[:n]
		c.applyConfig()
	}
}

// committedConfig is the latest configuration whose entry is committed.
func (c *core) committedConfig() membership { return c.committedRecord().m }

// committedRecord is the latest configuration record whose entry is
// committed (the bootstrap one, at index 0, at the least).
func (c *core) committedRecord() configRecord {
	for i := len(c.configs) - 1; i > 0; i-- {
		if c.configs[i].index <= c.commit {
			return c.configs[i]
		}
	}
	return c.configs[0]
}

// ---- role changes -----------------------------------------------------------

func (c *core) resetTimeout() {
	c.electionEl = 0
	c.heartbeatEl = 0
	span := c.cfg.electionMax - c.cfg.electionMin
	c.timeout = c.cfg.electionMin
	if span > 0 && c.cfg.rand != nil {
		c.timeout += c.cfg.rand(span + 1)
	}
}

func (c *core) becomeFollower(term uint64, lead, leadAddr string) {
	if term > c.term {
		c.term = term
		c.votedFor, c.votedInc = "", 0
	}
	wasLeader := c.role == Leader
	c.role = Follower
	c.preVote = false
	c.lead, c.leadAddr = lead, leadAddr
	c.votes = nil
	if wasLeader {
		c.dropLeaderState()
	}
	c.resetTimeout()
}

func (c *core) dropLeaderState() {
	c.prs, c.prNames = nil, nil
	c.transferee = ""
	for _, r := range c.reads {
		c.failedReads = append(c.failedReads, r.id)
	}
	c.reads = nil
	c.readBcast = false
}

// campaign starts an election: with pre-vote first unless forced (§9.6 of
// the dissertation); a forced one is a leadership transfer (§3.10) and asks
// voters to ignore their leader lease.
func (c *core) campaign(pre, force bool) {
	if !c.promotable() || c.term == math.MaxUint64 {
		// The last term: the next would wrap to 0. Only a forged message
		// gets a server here, and no bound on terms would help: it would
		// only move this wall lower, and strand servers behind it.
		return
	}
	if c.role == Leader {
		c.dropLeaderState()
	}
	c.role = Candidate
	c.preVote = pre
	c.lead, c.leadAddr = "", ""
	c.votes = map[string]voteRecord{c.cfg.name: {granted: true, inc: c.cfg.inc}}
	c.resetTimeout()
	t := msgVote
	term := c.term + 1
	if pre {
		t = msgPreVote
	} else {
		c.term++
		c.votedFor, c.votedInc = c.cfg.name, c.cfg.inc
		term = c.term
	}
	if c.tallyVotes() {
		c.winElection()
		return
	}
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			continue
		}
		c.send(message{Type: t, To: v.Name, toAddr: v.Addr, Term: term,
			LastIndex: c.log.lastIndex(), LastTerm: c.log.lastTerm(), Force: force})
	}
}

// tallyVotes reports whether the votes granted by counting voters reach the
// quorum. Votes from another incarnation than the configured one never count
// (DESIGN.md §3): that is what keeps a restarted voter from voting twice.
func (c *core) tallyVotes() bool {
	granted := 0
	for _, v := range c.self.Voters {
		if r, ok := c.votes[v.Name]; ok && r.granted && (v.Inc == 0 || v.Inc == r.inc) {
			granted++
		}
	}
	return granted >= c.quorum()
}

func (c *core) lostElection() bool {
	rejected := 0
	for _, v := range c.self.Voters {
		if r, ok := c.votes[v.Name]; ok && !r.granted {
			rejected++
		}
	}
	return len(c.self.Voters)-rejected < c.quorum()
}

func (c *core) winElection() {
	if c.preVote {
		c.campaign(false, false)
		return
	}
	c.becomeLeader()
}

// becomeLeader starts a term with a no-op entry (§8: a leader learns what is
// committed only once an entry of its own term commits) and binds the
// incarnations of the voters that elected it (DESIGN.md §3).
func (c *core) becomeLeader() {
	c.role = Leader
	c.preVote = false
	c.lead, c.leadAddr = c.cfg.name, c.cfg.addr
	c.transferee = ""
	c.prs = map[string]*progress{}
	c.prNames = nil
	c.resetTimeout()
	c.syncProgress()
	for name, r := range c.votes {
		if pr := c.prs[name]; pr != nil && r.granted {
			pr.inc = r.inc
			// A vote that did not count may come from a restarted voter.
			c.noticeIncarnation(name, pr)
		}
	}
	c.votes = nil
	c.appendEntries([]entry{{Type: entryNoop}})
	// Configuration entries of earlier terms may be uncommitted: no change
	// until everything up to here has committed.
	c.pendingConf = c.log.lastIndex()
	if m, ok := c.bindings(); ok {
		c.appendEntries([]entry{{Type: entryConfig, Data: encodeMembership(m)}})
		c.pendingConf = c.log.lastIndex()
	}
	c.bcastAppend()
	c.maybeCommit()
}

// syncProgress keeps one progress per voter and learner other than self.
func (c *core) syncProgress() {
	want := map[string]string{}
	for _, v := range c.self.Voters {
		if v.Name != c.cfg.name {
			want[v.Name] = v.Addr
		}
	}
	for name, pr := range c.prs {
		if _, ok := want[name]; ok {
			if pr.learner {
				pr.learner = false // its configuration entry is in the log now
			}
			pr.leaving = false
			continue
		}
		if !pr.learner {
			// Removed by a configuration not yet committed: keep sending so
			// it learns of its removal; dropped once that commits.
			pr.leaving = true
		}
	}
	for name, addr := range want {
		if _, ok := c.prs[name]; !ok {
			c.prs[name] = &progress{addr: addr, next: c.log.lastIndex() + 1}
		} else if !c.prs[name].joining {
			c.prs[name].addr = addr
		}
	}
	c.sortProgress()
}

func (c *core) sortProgress() {
	c.prNames = c.prNames[:0]
	for name := range c.prs {
		c.prNames = append(c.prNames, name)
	}
	sort.Strings(c.prNames)
}

// ---- inputs -----------------------------------------------------------------

// tick advances the logical clock by one tick.
func (c *core) tick() {
	c.electionEl++
	if c.role == Leader {
		c.heartbeatEl++
		if c.transferee != "" {
			c.transferEl++
			if c.transferEl >= c.cfg.electionMin {
				c.finishTransfer(false)
				return
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
	if c.electionEl >= c.timeout && c.promotable() {
		c.campaign(true, false)
	}
}

// checkQuorum: a leader that has not heard from a quorum of voters within an
// election timeout steps down, so that a partitioned leader stops serving
// (§6.2 of the dissertation).
func (c *core) checkQuorum() bool {
	active := 0
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			if !c.removed {
				active++
			}
			continue
		}
		if pr := c.prs[v.Name]; pr != nil && pr.active && (v.Inc == 0 || v.Inc == pr.inc) {
			active++
		}
	}
	for _, pr := range c.prs {
		pr.active = false
	}
	return active >= c.quorum()
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
// leader. This is the dissertation's defence against disruptive servers
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
// or the known leader lives.
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

// step processes one message from a peer.
func (c *core) step(m message) {
	if m.From == c.cfg.name && m.FromInc == c.cfg.inc {
		return
	}
	if m.ToInc != 0 && m.ToInc != c.cfg.inc {
		// An answer to an earlier incarnation of this server: a vote or
		// an acknowledgement it must not count.
		return
	}
	switch {
	case m.Term > c.term:
		if c.inLease() && !c.knows(m.From) {
			return
		}
		if m.Type == msgPreVote || m.Type == msgVote {
			if !m.Force && c.inLease() {
				return
			}
			if !c.mayVoteFor(m) {
				// Removed or unknown servers get no vote and must not move
				// our term.
				c.reply(m, message{Type: voteRespType(m.Type), Term: c.term, Reject: true})
				return
			}
		}
		switch {
		case m.Type == msgPreVote:
			// A pre-vote asks about a future term; answering it changes nothing.
		case m.Type == msgPreVoteResp && !m.Reject:
			// Granted for the term we would campaign in.
		case m.Type == msgApp || m.Type == msgTimeoutNow:
			c.becomeFollower(m.Term, m.From, m.FromAddr)
		default:
			c.becomeFollower(m.Term, "", "")
		}
	case m.Term < c.term:
		switch m.Type {
		case msgApp:
			// A stale leader: tell it the term so it steps down.
			c.reply(m, message{Type: msgAppResp, Term: c.term, Reject: true, LastIndex: c.log.lastIndex()})
		case msgPreVote, msgVote:
			c.reply(m, message{Type: voteRespType(m.Type), Term: c.term, Reject: true})
		}
		return
	}

	switch m.Type {
	case msgPreVote, msgVote:
		c.handleVoteRequest(m)
		return
	case msgTimeoutNow:
		// Only this term's leader hands its leadership over.
		if c.role != Leader && m.From == c.lead {
			c.campaign(false, true)
		}
		return
	}

	switch c.role {
	case Follower:
		if m.Type == msgApp {
			if c.lead != "" && m.From != c.lead {
				// A term has one leader (Election Safety): a second one
				// is forged.
				return
			}
			c.electionEl = 0
			c.lead, c.leadAddr = m.From, m.FromAddr
			c.handleAppend(m)
		}
	case Candidate:
		switch m.Type {
		case msgApp:
			c.becomeFollower(m.Term, m.From, m.FromAddr)
			c.handleAppend(m)
		case msgPreVoteResp, msgVoteResp:
			c.handleVoteResponse(m)
		}
	case Leader:
		if m.Type == msgAppResp {
			c.handleAppendResponse(m)
		}
	}
}

// mayVoteFor: votes go to voters of this server's configuration (so removed
// servers and restarted incarnations get none), and to a server outside it
// whose log is strictly newer than this one. That one was added by entries
// this server has not received yet: refusing it could leave a cluster with
// a live majority unable to elect anyone. A removed server's log never
// holds the committed entry that removed it, so it cannot win that way.
func (c *core) mayVoteFor(m message) bool {
	if c.self.counts(m.From, m.FromInc) {
		return true
	}
	last, lastTerm := c.log.lastIndex(), c.log.lastTerm()
	return m.LastTerm > lastTerm || (m.LastTerm == lastTerm && m.LastIndex > last)
}

func voteRespType(t msgType) msgType {
	if t == msgPreVote {
		return msgPreVoteResp
	}
	return msgVoteResp
}

// handleVoteRequest is RequestVote's receiver rule (§5.2, §5.4.1): grant at
// most one vote per term, to a candidate whose log is at least as up to date.
// Pre-votes are granted by the same rule without recording anything.
func (c *core) handleVoteRequest(m message) {
	upToDate := c.log.isUpToDate(m.LastIndex, m.LastTerm)
	member := c.mayVoteFor(m)
	if m.Type == msgPreVote {
		grant := m.Term > c.term && upToDate && member
		term := c.term
		if grant {
			term = m.Term
		}
		c.reply(m, message{Type: msgPreVoteResp, Term: term, Reject: !grant})
		return
	}
	canVote := c.votedFor == "" || (c.votedFor == m.From && c.votedInc == m.FromInc)
	grant := canVote && upToDate && member && c.role != Leader
	if grant {
		c.votedFor, c.votedInc = m.From, m.FromInc
		c.electionEl = 0
	}
	c.reply(m, message{Type: msgVoteResp, Term: c.term, Reject: !grant})
}

func (c *core) handleVoteResponse(m message) {
	if (m.Type == msgPreVoteResp) != c.preVote {
		return // from an earlier phase
	}
	if c.preVote && !m.Reject && m.Term != c.term+1 {
		return
	}
	c.votes[m.From] = voteRecord{granted: !m.Reject, inc: m.FromInc}
	if c.tallyVotes() {
		c.winElection()
	} else if c.lostElection() {
		c.becomeFollower(c.term, "", "")
	}
}

// handleAppend is AppendEntries' receiver rule (§5.3): accept entries that
// continue a matching prefix, drop a conflicting suffix, and advance commit.
func (c *core) handleAppend(m message) {
	if !wellFormedAppend(&m) {
		return // no leader sends this; whatever did must not crash us
	}
	resp := message{Type: msgAppResp, Term: c.term, Seq: m.Seq}
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
// commit index (handleAppend skips what is committed and wellFormedAppend
// checks the indexes), so a truncation never reaches a committed entry.
func (c *core) appendFromLeader(es []entry) {
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
func wellFormedAppend(m *message) bool {
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
func (c *core) handleAppendResponse(m message) {
	pr := c.prs[m.From]
	if pr == nil || m.Match > c.log.lastIndex() {
		return // the latter acknowledges entries this leader never had: forged
	}
	restarted := pr.inc != 0 && m.FromInc != pr.inc
	if m.FromInc != pr.inc {
		if restarted {
			// A new incarnation: its log is whatever it holds now, most
			// likely nothing. Start over from what it reports.
			pr.match = 0
			pr.next = min(m.LastIndex, c.log.lastIndex()) + 1
			pr.state = stateProbe
			pr.inflight = pr.inflight[:0]
			pr.probeSent = false
			pr.ackSeq = 0
			pr.active = false
		}
		pr.inc = m.FromInc
		c.noticeIncarnation(m.From, pr)
	}
	if pr.verify {
		c.resolveVerify(m.From, pr)
	}
	if restarted {
		c.sendAppend(m.From, pr, false)
		return
	}
	pr.active = true
	if m.Seq > pr.ackSeq {
		pr.ackSeq = m.Seq
		c.releaseReads()
	}
	if m.Reject {
		if m.HintIndex == 0 && m.PrevIndex == 0 {
			return // a stale-term reply, handled by the term check
		}
		if pr.state == stateReplicate && m.PrevIndex <= pr.match {
			return // stale
		}
		if pr.state == stateProbe && m.PrevIndex != pr.next-1 {
			return // stale
		}
		pr.next = c.backoffNext(m)
		if pr.next <= pr.match {
			pr.next = pr.match + 1
		}
		pr.state = stateProbe
		pr.inflight = pr.inflight[:0]
		pr.probeSent = false
		c.sendAppend(m.From, pr, false)
		return
	}
	if m.Match > pr.match {
		pr.match = m.Match
	}
	if pr.next <= m.Match {
		pr.next = m.Match + 1
	}
	if pr.state == stateProbe {
		pr.state = stateReplicate
		pr.probeSent = false
		pr.inflight = pr.inflight[:0]
		pr.next = pr.match + 1
	}
	n := 0
	for n < len(pr.inflight) && pr.inflight[n] <= m.Match {
		n++
	}
	pr.inflight = pr.inflight[:copy(pr.inflight, pr.inflight[n:])]
	c.maybeCommit()
	if c.role != Leader {
		return
	}
	if c.transferee == m.From && pr.match == c.log.lastIndex() {
		c.finishTransfer(true)
		return
	}
	c.maybeChangeMembership()
	c.sendAppend(m.From, pr, false)
}

// noticeIncarnation: a voter answering as another incarnation than the
// configured one restarted with an empty log; catch it up and re-admit it.
func (c *core) noticeIncarnation(name string, pr *progress) {
	if v, ok := c.self.find(name); ok && v.Inc != 0 && v.Inc != pr.inc && c.cfg.autoRejoin {
		pr.joining = true
	}
}

// resolveVerify answers an AddServer of a current member once it responds:
// the configured incarnation means there is nothing to do; another one is a
// restarted server to catch up and re-admit.
func (c *core) resolveVerify(name string, pr *progress) {
	pr.verify = false
	c.epoch++
	if v, ok := c.self.find(name); ok && v.Inc != 0 && v.Inc != pr.inc {
		pr.joining = true
		return
	}
	pr.admitIndex = 0
}

// backoffNext is the leader's half of fast back-off: skip a whole
// conflicting term at once instead of one entry per round trip.
func (c *core) backoffNext(m message) uint64 {
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

// maybeCommit is the leader's commit rule (§5.3, §5.4.2): an index is
// committed once a quorum of counting voters holds it and its entry is of the
// current term; earlier entries commit with it.
func (c *core) maybeCommit() {
	matches := c.scratch[:0]
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			if !c.removed {
				matches = append(matches, c.log.lastIndex())
			}
			continue
		}
		pr := c.prs[v.Name]
		if pr != nil && (v.Inc == 0 || v.Inc == pr.inc) {
			matches = append(matches, pr.match)
		} else {
			matches = append(matches, 0)
		}
	}
	q := c.quorum()
	if len(matches) < q {
		return
	}
	slices.Sort(matches)
	c.scratch = matches
	n := matches[len(matches)-q] // the q-th highest
	if n <= c.commit {
		return
	}
	if t, _ := c.log.term(n); t != c.term {
		return
	}
	oldCommit := c.commit
	c.commit = n
	c.committed(oldCommit)
}

// committed runs what follows a commit advance on the leader.
func (c *core) committed(oldCommit uint64) {
	t, _ := c.log.term(oldCommit)
	if t != c.term {
		// The first entry of this term committed: reads may be served now.
		for i := range c.reads {
			if c.reads[i].index == 0 {
				c.reads[i].index = c.commit
				c.reads[i].seq = c.seq + 1
				c.readBcast = true
			}
		}
	}
	if c.pendingConf > oldCommit && c.pendingConf <= c.commit {
		// A configuration committed: forget servers it removed, after one
		// last append so that they learn of it.
		for _, name := range c.prNames {
			pr := c.prs[name]
			if pr.leaving {
				c.sendAppend(name, pr, true)
				delete(c.prs, name)
			}
		}
		c.sortProgress()
		if c.removed && c.transferee == "" {
			c.startTransfer()
			return
		}
	}
	c.releaseReads()
	c.maybeChangeMembership()
}

// ---- leader: replication -----------------------------------------------------

func (c *core) appendEntries(es []entry) {
	last := c.log.lastIndex()
	for i := range es {
		es[i].Index = last + 1 + uint64(i)
		es[i].Term = c.term
	}
	c.log.append(es...)
	c.appendedConfigs(es)
}

func (c *core) bcastAppend() {
	for _, name := range c.prNames {
		c.sendAppend(name, c.prs[name], false)
	}
}

// sendAppend sends the follower what it lacks, within the in-flight bound.
// With empty it sends even when there is nothing new (a heartbeat or probe).
func (c *core) sendAppend(name string, pr *progress, empty bool) {
	if pr.state == stateProbe && pr.probeSent && !empty {
		return
	}
	if pr.state == stateReplicate && len(pr.inflight) >= c.cfg.maxInflight {
		if !empty {
			return
		}
		c.sendHeartbeat(name, pr)
		return
	}
	ents := c.log.slice(pr.next, c.log.lastIndex(), c.cfg.maxBatch)
	if len(ents) == 0 && !empty {
		return
	}
	prev := pr.next - 1
	prevTerm, _ := c.log.term(prev)
	c.send(message{Type: msgApp, To: name, toAddr: pr.addr, Term: c.term,
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
	c.send(message{Type: msgApp, To: name, toAddr: pr.addr, Term: c.term,
		PrevIndex: pr.match, PrevTerm: prevTerm, Commit: c.commit, Seq: c.seq})
}

func (c *core) bcastHeartbeat() {
	for _, name := range c.prNames {
		pr := c.prs[name]
		switch pr.state {
		case stateProbe:
			// A lost probe would stall the follower: probe again.
			pr.probeSent = false
			c.sendAppend(name, pr, true)
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
				pr.state = stateProbe
				pr.next = pr.match + 1
				pr.inflight = pr.inflight[:0]
				pr.probeSent = false
				c.sendAppend(name, pr, true)
			} else {
				c.sendHeartbeat(name, pr)
			}
			pr.hbMatch = pr.match
		}
	}
}

// ---- leader: requests ---------------------------------------------------------

// propose appends commands to the leader's log and returns the index of the
// first and the term they were appended in.
func (c *core) propose(cmds [][]byte) (first, term uint64, err error) {
	if c.role != Leader {
		return 0, 0, errNotLeaderCore
	}
	if c.transferee != "" {
		return 0, 0, errTransferring
	}
	es := make([]entry, len(cmds))
	for i, d := range cmds {
		es[i] = entry{Type: entryNormal, Data: d}
	}
	c.appendEntries(es)
	// Sent once per takeReady, so that everything proposed between two
	// takeReady calls travels in one append per follower.
	c.bcastPending = true
	c.maybeCommit()
	return es[0].Index, c.term, nil
}

// readIndex registers a linearizable read (§6.4 of the dissertation). It is
// released with the commit index it must wait for once a quorum has
// acknowledged this leader in a round that began after the read arrived.
// Reads that arrive together share a round.
func (c *core) readIndex(id uint64) error {
	if c.role != Leader {
		return errNotLeaderCore
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

func (c *core) flushReads() {
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
		c.released = append(c.released, readState{id: r.id, index: r.index})
		n++
	}
	c.reads = c.reads[:copy(c.reads, c.reads[n:])]
}

// ackedSeqs is the highest read round a quorum of counting voters has
// acknowledged, this leader included.
func (c *core) ackedSeqs() uint64 {
	seqs := c.scratch[:0]
	for _, v := range c.self.Voters {
		if v.Name == c.cfg.name {
			if !c.removed {
				seqs = append(seqs, c.seq)
			}
			continue
		}
		if pr := c.prs[v.Name]; pr != nil && (v.Inc == 0 || v.Inc == pr.inc) {
			seqs = append(seqs, pr.ackSeq)
		}
	}
	q := c.quorum()
	if len(seqs) < q {
		return 0
	}
	slices.Sort(seqs)
	c.scratch = seqs
	return seqs[len(seqs)-q]
}

// ---- leader: membership ---------------------------------------------------------

// canChangeMembership: one change at a time, and only after the leader has
// committed an entry of its term (the fix to single-server changes in the
// dissertation's errata).
func (c *core) canChangeMembership() error {
	if c.role != Leader {
		return errNotLeaderCore
	}
	if c.transferee != "" {
		return errTransferring
	}
	if t, _ := c.log.term(c.commit); t != c.term {
		return errNotCommittedYet
	}
	if c.pendingConf > c.commit {
		return errConfBusy
	}
	return nil
}

// addServer starts catching p up as a non-voter; it becomes a voter by a
// configuration entry once it has caught up (maybeChangeMembership). A
// member of the same name and address is already there, unless it came back
// as a new incarnation, in which case it is re-admitted the same way; a
// member of the same name at another address refuses p. A server still
// being caught up is caught up at p's address from now on.
func (c *core) addServer(p Peer) error {
	if c.role != Leader {
		return errNotLeaderCore
	}
	if c.transferee != "" {
		return errTransferring
	}
	if v, ok := c.self.find(p.Name); ok {
		if v.Addr != p.Addr {
			// Taking the name over would cut the member off while it
			// still runs; a move is a removal, then an addition.
			return errNameTaken
		}
		pr := c.prs[p.Name]
		if p.Name == c.cfg.name || pr == nil || v.Inc == 0 {
			return errAlreadyMember
		}
		c.epoch++
		if !pr.joining {
			// It may have restarted since it last answered: ask.
			pr.verify = true
			c.sendAppend(p.Name, pr, true)
		}
		return nil
	}
	if pr := c.prs[p.Name]; pr != nil {
		if pr.addr == p.Addr {
			return nil // already being caught up
		}
		delete(c.prs, p.Name)
	}
	pr := &progress{addr: p.Addr, next: c.log.lastIndex() + 1, learner: true, joining: true}
	c.prs[p.Name] = pr
	c.epoch++
	c.sortProgress()
	c.sendAppend(p.Name, pr, true)
	return nil
}

// cancelJoin stops catching up a server that never became a voter.
func (c *core) cancelJoin(name string) {
	if c.role != Leader {
		return
	}
	if pr := c.prs[name]; pr != nil {
		c.epoch++
		if pr.learner {
			delete(c.prs, name)
			c.sortProgress()
		} else {
			pr.joining = false
			pr.verify = false
		}
	}
}

// removeServer appends a configuration without name and returns its index.
func (c *core) removeServer(name string) (uint64, error) {
	if pr := c.prs[name]; c.role == Leader && pr != nil && pr.learner {
		// Not in any configuration: forgetting it changes no quorum, so it
		// needs none of a configuration change's preconditions.
		c.cancelJoin(name)
		return 0, nil
	}
	if err := c.canChangeMembership(); err != nil {
		return 0, err
	}
	if _, ok := c.self.find(name); !ok {
		return 0, ErrUnknownServer
	}
	if len(c.self.Voters) == 1 {
		return 0, ErrLastServer
	}
	return c.changeMembership(c.self.without(name)), nil
}

func (c *core) changeMembership(m membership) uint64 {
	c.appendEntries([]entry{{Type: entryConfig, Data: encodeMembership(m)}})
	c.pendingConf = c.log.lastIndex()
	c.bcastAppend()
	c.maybeCommit()
	return c.pendingConf
}

// bindings returns the configuration with every unbound voter whose
// incarnation the leader knows bound to it, if there is any such voter.
func (c *core) bindings() (membership, bool) {
	m := c.self
	changed := false
	for _, v := range c.self.Voters {
		if v.Inc != 0 {
			continue
		}
		inc := uint64(0)
		if v.Name == c.cfg.name {
			inc = c.cfg.inc
		} else if pr := c.prs[v.Name]; pr != nil {
			inc = pr.inc
		}
		if inc != 0 {
			v.Inc = inc
			m = m.with(v)
			changed = true
		}
	}
	return m, changed
}

// maybeChangeMembership makes the changes the leader makes by itself, one at
// a time: bind incarnations of bootstrap voters, and admit a server that is
// being caught up once it holds everything committed.
func (c *core) maybeChangeMembership() {
	if c.canChangeMembership() != nil {
		return
	}
	if m, ok := c.bindings(); ok {
		c.changeMembership(m)
		return
	}
	for _, name := range c.prNames {
		pr := c.prs[name]
		if pr.joining && pr.inc != 0 && pr.match >= c.commit {
			pr.joining = false
			c.epoch++
			pr.admitIndex = c.changeMembership(c.self.with(member{Name: name, Addr: pr.addr, Inc: pr.inc}))
			return
		}
	}
}

// startTransfer: a leader whose removal committed hands over to the most
// up-to-date voter (TimeoutNow, §3.10 of the dissertation).
func (c *core) startTransfer() {
	best := ""
	var bestMatch uint64
	for _, v := range c.self.Voters {
		pr := c.prs[v.Name]
		if pr == nil || (v.Inc != 0 && v.Inc != pr.inc) {
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
		c.finishTransfer(true)
		return
	}
	c.sendAppend(best, c.prs[best], false)
}

func (c *core) finishTransfer(send bool) {
	if send {
		if pr := c.prs[c.transferee]; pr != nil {
			// Carry the commit index first so that the new leader knows it.
			c.sendHeartbeat(c.transferee, pr)
			c.send(message{Type: msgTimeoutNow, To: c.transferee, toAddr: pr.addr, Term: c.term})
		}
	}
	c.becomeFollower(c.term, "", "")
}

// triggerElection starts a forced election at once (TriggerElection). It is
// a no-op on the leader.
func (c *core) triggerElection() error {
	if c.role == Leader {
		return nil
	}
	if !c.promotable() {
		return errNotVoter
	}
	c.campaign(false, true)
	return nil
}

// ---- output -----------------------------------------------------------------

func (c *core) send(m message) {
	m.From, m.FromInc, m.FromAddr = c.cfg.name, c.cfg.inc, c.cfg.addr
	c.msgs = append(c.msgs, m)
}

func (c *core) reply(to message, m message) {
	m.To = to.From
	m.ToInc = to.FromInc
	m.toAddr = to.FromAddr
	c.send(m)
}

// takeReady returns and clears what the core produced.
func (c *core) takeReady() ready { return c.takeReadyHolding(false) }

// takeReadyHolding is takeReady that, with hold, does not start a read round
// in the same breath as it releases the reads of the last one; roundHeld
// then reports that a round waits for the next takeReady. The driver
// yields in between, so that the readers just answered can ask again and
// share that round with the reads already waiting: otherwise the readers
// settle into two groups that alternate, and every round carries half of
// them.
func (c *core) takeReadyHolding(hold bool) ready {
	if c.bcastPending {
		c.bcastPending = false
		if c.role == Leader {
			c.bcastAppend()
		}
	}
	held := hold && len(c.released) > 0 && c.readBcast
	if !held {
		c.flushReads()
	}
	rd := ready{roundHeld: held}
	if c.commit > c.handedOut {
		rd.apply = c.log.slice(c.handedOut+1, c.commit, int(^uint(0)>>1))
		c.handedOut = c.commit
	}
	rd.msgs, c.msgs = c.msgs, c.spareMsgs[:0]
	c.spareMsgs = nil
	rd.reads, c.released = c.released, c.spareReads[:0]
	c.spareReads = nil
	rd.failedReads, c.failedReads = c.failedReads, nil
	return rd
}

// learners lists the servers being caught up to become voters.
func (c *core) learners() []Peer {
	var ps []Peer
	for _, name := range c.prNames {
		if pr := c.prs[name]; pr.learner || pr.joining {
			ps = append(ps, Peer{Name: name, Addr: pr.addr})
		}
	}
	return ps
}

// joinState tells AddServer where the admission of name stands: pending
// while it is being verified or caught up; otherwise the index of the entry
// that admitted it (0: it was a voter already). known is false once the
// leader has forgotten it (cancelled, or not the leader).
func (c *core) joinState(name string) (pending bool, admitIndex uint64, known bool) {
	pr := c.prs[name]
	if c.role != Leader || pr == nil {
		return false, 0, false
	}
	if pr.verify || pr.joining || pr.learner {
		return true, 0, true
	}
	return false, pr.admitIndex, true
}

// recycle hands back the message and read slices of a ready the caller is
// done with, so that the next one reuses their arrays.
func (c *core) recycle(rd *ready) {
	clear(rd.msgs)
	c.spareMsgs = rd.msgs[:0]
	rd.msgs = nil
	c.spareReads = rd.reads[:0]
	rd.reads = nil
}
