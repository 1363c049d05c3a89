package raft

// The deterministic simulator behind TestSim and FuzzCoreStep: cores of the protocol (core.go) wired together by a network
// that drops, duplicates, delays and reorders messages and can be cut link by
// link, with crashes that restart a server as a new incarnation, membership
// changes, forced elections, proposals and ReadIndex reads. One seeded PCG
// drives everything, so a seed replays exactly.
//
// checkInvariants runs after every input to a core; see its comment for what
// it checks. Its bookkeeping is incremental (each check only looks at what
// changed), which is what lets CI run a thousand seeds under -race.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

const (
	simMaxNames  = 7   // servers ever created in one run, names n1..n7
	simMaxFlight = 600 // messages in flight before the network sheds one
	simTraceLen  = 60  // events kept for the report of a failing seed
)

// simOptions chooses the schedule of one run.
type simOptions struct {
	steps        int  // random steps
	initial      int  // bootstrap servers (3..7); 0: chosen by the seed
	majorityLoss int  // 1: crashes may take down a majority, -1: never, 0: chosen by the seed
	liveness     bool // end with a fault-free phase that must elect a leader and commit
	verbose      bool // keep every event, not only the last simTraceLen
}

// simID is one incarnation of one server.
type simID struct {
	name string
	inc  uint64
}

func (id simID) String() string { return id.name + "(" + strconv.FormatUint(id.inc, 10) + ")" }

type simNode struct {
	name    string
	c       *core // nil while down
	inc     uint64
	initial []string // bootstrap peers: a restart starts from the same ones
	minMaj  int

	// Checker state of the current incarnation.
	term       uint64
	role       Role
	commit     uint64
	handed     uint64   // highest index handed out for applying
	terms      []uint64 // log terms already checked for log matching
	leaderTerm uint64   // term in which leader completeness was checked at election
	leaderLast uint64   // last index while leader of leaderTerm: a leader only appends
	dirty      bool     // log may have changed since the last check
}

func (n *simNode) id() simID { return simID{n.name, n.inc} }

type simIdxTerm struct{ index, term uint64 }

type simLogRec struct {
	prevTerm uint64
	key      string
}

// simCommit is what the checker learned about one committed index.
type simCommit struct {
	term    uint64
	key     string
	recTerm uint64 // lowest term of a server that saw it committed
	by      simID
}

type simProp struct {
	by       simID
	index    uint64
	term     uint64
	finished bool
}

type simRead struct {
	by   simID
	min  uint64 // index of the newest write or read finished before this read began
	step int
}

type simEvKind uint8

const (
	evDeliver simEvKind = iota
	evDrop
	evDup
	evTick
	evTickAll
	evPropose
	evRead
	evReadDone
	evReadFail
	evApply
	evNet
	evCrash
	evRestart
	evAdd
	evRemove
	evTrigger
	evState
	evForged
	evNote
)

type simEvent struct {
	step int
	kind simEvKind
	node simID
	a, b uint64
	s    string
	m    Message
	err  error
}

func (e simEvent) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5d ", e.step)
	switch e.kind {
	case evDeliver:
		b.WriteString("deliver " + simMsgString(e.m))
	case evDrop:
		b.WriteString("drop    " + simMsgString(e.m) + " " + e.s)
	case evDup:
		b.WriteString("dup     " + simMsgString(e.m))
	case evForged:
		b.WriteString("FORGED  " + simMsgString(e.m))
	case evTick:
		fmt.Fprintf(&b, "tick    %v", e.node)
	case evTickAll:
		b.WriteString("tick    all")
	case evPropose:
		fmt.Fprintf(&b, "propose %v %s -> idx %d term %d err=%v", e.node, e.s, e.a, e.b, e.err)
	case evRead:
		fmt.Fprintf(&b, "read    %v id=%d (must see >= %d) err=%v", e.node, e.a, e.b, e.err)
	case evReadDone:
		fmt.Fprintf(&b, "read ok %v id=%d at index %d", e.node, e.a, e.b)
	case evReadFail:
		fmt.Fprintf(&b, "read x  %v id=%d failed", e.node, e.a)
	case evApply:
		fmt.Fprintf(&b, "apply   %v %d..%d", e.node, e.a, e.b)
	case evNet:
		b.WriteString("net     " + e.s)
	case evCrash:
		fmt.Fprintf(&b, "CRASH   %v", e.node)
	case evRestart:
		fmt.Fprintf(&b, "RESTART %v (empty log)", e.node)
	case evAdd:
		fmt.Fprintf(&b, "add     on %v: %s err=%v", e.node, e.s, e.err)
	case evRemove:
		fmt.Fprintf(&b, "remove  on %v: %s idx=%d err=%v", e.node, e.s, e.a, e.err)
	case evTrigger:
		fmt.Fprintf(&b, "trigger %v err=%v", e.node, e.err)
	case evState:
		fmt.Fprintf(&b, "state   %v %s", e.node, e.s)
	case evNote:
		b.WriteString("note    " + e.s)
	}
	return b.String()
}

func simMsgString(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s(%d)->%s t%d", m.Type, m.From, m.FromInc, m.To, m.Term)
	switch m.Type {
	case MsgPreVote, MsgVote:
		fmt.Fprintf(&b, " last=%d/%d", m.LastIndex, m.LastTerm)
		if m.Force {
			b.WriteString(" force")
		}
	case MsgPreVoteResp, MsgVoteResp:
		if m.Reject {
			b.WriteString(" reject")
		} else {
			b.WriteString(" grant")
		}
	case MsgApp:
		fmt.Fprintf(&b, " prev=%d/%d commit=%d seq=%d", m.PrevIndex, m.PrevTerm, m.Commit, m.Seq)
		if len(m.Entries) > 0 {
			b.WriteString(" [")
			for i, e := range m.Entries {
				if i > 0 {
					b.WriteString(" ")
				}
				if i == 4 && len(m.Entries) > 5 {
					fmt.Fprintf(&b, "…%d more", len(m.Entries)-4)
					break
				}
				fmt.Fprintf(&b, "%d/%d:%s", e.Index, e.Term, simEntryString(e))
			}
			b.WriteString("]")
		}
	case MsgAppResp:
		if m.Reject {
			fmt.Fprintf(&b, " reject prev=%d hint=%d/%d last=%d", m.PrevIndex, m.HintIndex, m.HintTerm, m.LastIndex)
		} else {
			fmt.Fprintf(&b, " match=%d last=%d seq=%d", m.Match, m.LastIndex, m.Seq)
		}
	}
	return b.String()
}

func simEntryString(e Entry) string {
	switch e.Type {
	case EntryNoop:
		return "noop"
	case EntryConfig:
		if m, err := decodeMembership(e.Data); err == nil {
			return "conf" + simMembersString(m)
		}
		return "conf?"
	case EntryNormal:
		return string(e.Data)
	}
	return "type" + strconv.Itoa(int(e.Type))
}

func simMembersString(m membership) string {
	parts := make([]string, len(m.Voters))
	for i, v := range m.Voters {
		parts[i] = v.Name + ":" + strconv.FormatUint(v.Inc, 10)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// simEntryKey identifies an entry's content: its type and data.
func simEntryKey(e *Entry) string {
	return string(rune('0'+e.Type)) + string(e.Data)
}

// simKeyString shows an entry key as simEntryString shows the entry.
func simKeyString(key string) string {
	return simEntryString(Entry{Type: EntryType(key[0] - '0'), Data: []byte(key[1:])})
}

func simSameEntry(e *Entry, key string) bool {
	return len(key) == 1+len(e.Data) && key[0] == byte('0'+e.Type) && key[1:] == string(e.Data)
}

// sim is one simulated cluster.
type sim struct {
	seed         uint64
	rng          *rand.Rand
	opts         simOptions
	majorityLoss bool
	nodes        map[string]*simNode
	names        []string // every name created, in creation order
	net          []Message
	cut          map[[2]string]bool // directed links that drop messages
	step         int
	nextInc      uint64
	nextCmd      uint64
	nextRead     uint64
	maxInflight  int
	maxBatch     int
	global       bool // cluster-wide checks (off once a forged message was injected)
	calm         int  // steps left without faults
	boot         int  // servers at the start

	// Checker state.
	leaders    map[uint64]simID
	logRecs    map[simIdxTerm]simLogRec
	committed  []simCommit // committed[i-1] is index i
	newCommits []uint64
	applied    []string // applied[i-1]: the entry first applied at index i
	props      map[string]*simProp
	reads      map[uint64]*simRead
	readDone   map[uint64]bool
	finMax     uint64 // newest index a finished write or read covers
	err        error  // first violation noticed while collecting output

	events []simEvent // ring of the last simTraceLen, or everything when verbose
	evNext int
	stats  simStats
}

type simStats struct {
	leaders, commits, finishedWrites, readsDone, crashes, restarts, adds, removes int
	maxCommit                                                                     uint64
}

func newSim(seed uint64, o simOptions) *sim {
	s := &sim{
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, 0x65787261667473)),
		opts:     o,
		nodes:    map[string]*simNode{},
		cut:      map[[2]string]bool{},
		global:   true,
		leaders:  map[uint64]simID{},
		logRecs:  map[simIdxTerm]simLogRec{},
		props:    map[string]*simProp{},
		reads:    map[uint64]*simRead{},
		readDone: map[uint64]bool{},
	}
	k := o.initial
	if k == 0 {
		k = 3 + s.rng.IntN(5)
	}
	switch o.majorityLoss {
	case 1:
		s.majorityLoss = true
	case 0:
		s.majorityLoss = s.rng.IntN(6) == 0
	}
	s.maxInflight = 1 + s.rng.IntN(8)
	s.maxBatch = 24 + s.rng.IntN(200)
	var boot []string
	for i := 1; i <= k; i++ {
		boot = append(boot, "n"+strconv.Itoa(i))
	}
	for _, name := range boot {
		s.start(name, boot, 0)
	}
	s.boot = len(boot)
	return s
}

// start creates a server (or restarts one) as a new incarnation with an empty log.
func (s *sim) start(name string, initial []string, minMaj int) *simNode {
	n := s.nodes[name]
	if n == nil {
		n = &simNode{name: name, initial: initial, minMaj: minMaj}
		s.nodes[name] = n
		s.names = append(s.names, name)
	}
	s.nextInc++
	cfg := testCoreConfig(name, n.initial, s.nextInc, s.rng)
	cfg.minMajority = n.minMaj
	cfg.maxInflight = s.maxInflight
	cfg.maxBatch = s.maxBatch
	*n = simNode{name: name, initial: n.initial, minMaj: n.minMaj, inc: s.nextInc}
	n.c = newCore(cfg)
	n.term, n.role = n.c.term, n.c.role
	s.collect(n)
	return n
}

func (s *sim) alive() []*simNode {
	var out []*simNode
	for _, name := range s.names {
		if n := s.nodes[name]; n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) leadersNow() []*simNode {
	var out []*simNode
	for _, n := range s.alive() {
		if n.c.role == Leader {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) pick(ns []*simNode) *simNode {
	if len(ns) == 0 {
		return nil
	}
	return ns[s.rng.IntN(len(ns))]
}

// ---- trace --------------------------------------------------------------------

func (s *sim) ev(e simEvent) {
	e.step = s.step
	if s.opts.verbose {
		s.events = append(s.events, e)
		return
	}
	if len(s.events) < simTraceLen {
		s.events = append(s.events, e)
		return
	}
	s.events[s.evNext] = e
	s.evNext = (s.evNext + 1) % simTraceLen
}

func (s *sim) trace() string {
	var b strings.Builder
	for i := range s.events {
		b.WriteString(s.events[(s.evNext+i)%len(s.events)].String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (s *sim) describe() string {
	var b strings.Builder
	for _, name := range s.names {
		n := s.nodes[name]
		if n.c == nil {
			fmt.Fprintf(&b, "  %s: down\n", name)
			continue
		}
		c := n.c
		lt := c.log.lastTerm()
		fmt.Fprintf(&b, "  %v: %s term=%d lead=%q commit=%d last=%d/%d removed=%v config=%s\n",
			n.id(), c.role, c.term, c.lead, c.commit, c.log.lastIndex(), lt, c.removed, simMembersString(c.self))
	}
	var cuts []string
	for k := range s.cut {
		cuts = append(cuts, k[0]+"->"+k[1])
	}
	sort.Strings(cuts)
	fmt.Fprintf(&b, "  cut links: %v; in flight: %d; committed: %d\n", cuts, len(s.net), len(s.committed))
	return b.String()
}

// ---- output of the cores -------------------------------------------------------

func (s *sim) violate(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

// collect takes what n's core produced: messages go on the network, entries
// are applied, reads are answered.
func (s *sim) collect(n *simNode) {
	rd := n.c.takeReady()
	for _, m := range rd.Messages {
		if len(s.net) >= simMaxFlight {
			i := s.rng.IntN(len(s.net))
			s.ev(simEvent{kind: evDrop, m: s.net[i], s: "(network full)"})
			s.net[i] = s.net[len(s.net)-1]
			s.net = s.net[:len(s.net)-1]
		}
		s.net = append(s.net, m)
	}
	if len(rd.Committed) > 0 {
		s.ev(simEvent{kind: evApply, node: n.id(), a: rd.Committed[0].Index, b: rd.Committed[len(rd.Committed)-1].Index})
	}
	for i := range rd.Committed {
		s.applyEntry(n, &rd.Committed[i])
	}
	for _, r := range rd.Reads {
		s.readReleased(n, r)
	}
	for _, id := range rd.FailedReads {
		s.ev(simEvent{kind: evReadFail, node: n.id(), a: id})
		delete(s.reads, id)
	}
	n.dirty = true
	// Check after every input to a core, even inside a compound step (tick
	// all, deliver everything), so that no state goes unseen.
	if s.err == nil {
		s.err = s.checkInvariants()
	}
}

func (s *sim) applyEntry(n *simNode, e *Entry) {
	if e.Index != n.handed+1 {
		s.violate("applied indexes go back or skip: %v handed out index %d after %d", n.id(), e.Index, n.handed)
	}
	n.handed = e.Index
	if !s.global {
		return
	}
	// State machine safety: the same entry at each index on every server.
	switch {
	case e.Index <= uint64(len(s.applied)):
		if !simSameEntry(e, s.applied[e.Index-1]) {
			s.violate("state machine safety: %v applied %d/%s at index %d, another server applied %s",
				n.id(), e.Term, simEntryString(*e), e.Index, simKeyString(s.applied[e.Index-1]))
		}
	case e.Index == uint64(len(s.applied))+1:
		s.applied = append(s.applied, simEntryKey(e))
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

// readReleased checks a released ReadIndex read: the state at its index must
// include every write and read that finished before the read began.
func (s *sim) readReleased(n *simNode, rs ReadState) {
	s.ev(simEvent{kind: evReadDone, node: n.id(), a: rs.ID, b: rs.Index})
	r := s.reads[rs.ID]
	if r == nil {
		s.violate("read %d released by %v twice or without being asked", rs.ID, n.id())
		return
	}
	delete(s.reads, rs.ID)
	if r.by != n.id() {
		s.violate("read %d asked of %v released by %v", rs.ID, r.by, n.id())
	}
	if rs.Index > n.handed {
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
//  6. linearizable reads (checked when a read is released, see readReleased).
func (s *sim) checkInvariants() error {
	if s.err != nil {
		return s.err
	}
	for _, name := range s.names {
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
			s.ev(simEvent{kind: evState, node: n.id(), s: fmt.Sprintf("%s term %d", c.role, c.term)})
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
func (s *sim) leaderHas(n *simNode, i uint64) error {
	rec := &s.committed[i-1]
	c := n.c
	if rec.recTerm > c.term {
		return nil
	}
	if i <= c.log.lastIndex() {
		if e := c.log.at(i); e.Term == rec.term && simSameEntry(e, rec.key) {
			return nil
		}
	}
	have := "nothing"
	if i <= c.log.lastIndex() {
		e := c.log.at(i)
		have = fmt.Sprintf("%d/%s", e.Term, simEntryString(*e))
	}
	return fmt.Errorf("leader completeness: leader %v of term %d lacks index %d (%d/%s), "+
		"seen committed by %v in term %d; it has %s there (last index %d)",
		n.id(), c.term, i, rec.term, simKeyString(rec.key), rec.by, rec.recTerm, have, c.log.lastIndex())
}

// recordCommits records the entries n's commit index now covers.
func (s *sim) recordCommits(n *simNode) error {
	c := n.c
	for i := n.commit + 1; i <= c.commit; i++ {
		e := c.log.at(i)
		if i <= uint64(len(s.committed)) {
			rec := &s.committed[i-1]
			if rec.term != e.Term || !simSameEntry(e, rec.key) {
				return fmt.Errorf("two entries committed at index %d: %d/%s (seen by %v in term %d) and %d/%s (seen by %v in term %d)",
					i, rec.term, simKeyString(rec.key), rec.by, rec.recTerm, e.Term, simEntryString(*e), n.id(), c.term)
			}
			if c.term < rec.recTerm {
				rec.recTerm, rec.by = c.term, n.id()
				s.newCommits = append(s.newCommits, i)
			}
			continue
		}
		s.committed = append(s.committed, simCommit{term: e.Term, key: simEntryKey(e), recTerm: c.term, by: n.id()})
		s.newCommits = append(s.newCommits, i)
		s.stats.commits++
	}
	n.commit = c.commit
	s.stats.maxCommit = max(s.stats.maxCommit, c.commit)
	return nil
}

// checkLogMatching checks the entries of n's log that changed since its last
// check against every (index, term) seen in any log.
func (s *sim) checkLogMatching(n *simNode) error {
	c := n.c
	last := c.log.lastIndex()
	from := uint64(1)
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
		k := simIdxTerm{i, e.Term}
		rec, ok := s.logRecs[k]
		if !ok {
			s.logRecs[k] = simLogRec{prevTerm: prevTerm, key: simEntryKey(e)}
		} else if rec.prevTerm != prevTerm || !simSameEntry(e, rec.key) {
			return fmt.Errorf("log matching: %v holds %d/%s at index %d after term %d; another log holds %s there after term %d",
				n.id(), e.Term, simEntryString(*e), i, prevTerm, simKeyString(rec.key), rec.prevTerm)
		}
		n.terms = append(n.terms, e.Term)
	}
	return nil
}

// ---- actions ------------------------------------------------------------------

func (s *sim) deliverAt(i int) {
	m := s.net[i]
	copy(s.net[i:], s.net[i+1:])
	s.net = s.net[:len(s.net)-1]
	n := s.nodes[m.To]
	switch {
	case n == nil || n.c == nil:
		s.ev(simEvent{kind: evDrop, m: m, s: "(no such server up)"})
	case s.cut[[2]string{m.From, m.To}]:
		s.ev(simEvent{kind: evDrop, m: m, s: "(link cut)"})
	default:
		s.ev(simEvent{kind: evDeliver, m: m})
		n.c.step(m)
		s.collect(n)
	}
}

func (s *sim) tick(n *simNode) {
	n.c.tick()
	s.collect(n)
}

func (s *sim) tickAll() {
	s.ev(simEvent{kind: evTickAll})
	for _, n := range s.alive() {
		s.tick(n)
	}
}

func (s *sim) propose(n *simNode, k int) {
	cmds := make([][]byte, k)
	names := make([]string, k)
	for i := range cmds {
		s.nextCmd++
		names[i] = "w" + strconv.FormatUint(s.nextCmd, 10)
		cmds[i] = []byte(names[i])
	}
	first, term, err := n.c.propose(cmds)
	s.ev(simEvent{kind: evPropose, node: n.id(), s: strings.Join(names, ","), a: first, b: term, err: err})
	if err == nil {
		for i, name := range names {
			s.props[name] = &simProp{by: n.id(), index: first + uint64(i), term: term}
		}
	}
	s.collect(n)
}

func (s *sim) read(n *simNode) {
	s.nextRead++
	id := s.nextRead
	s.reads[id] = &simRead{by: n.id(), min: s.finMax, step: s.step}
	err := n.c.readIndex(id)
	s.ev(simEvent{kind: evRead, node: n.id(), a: id, b: s.finMax, err: err})
	if err != nil {
		delete(s.reads, id)
	}
	s.collect(n)
}

func (s *sim) crash(n *simNode) {
	s.ev(simEvent{kind: evCrash, node: n.id()})
	n.c = nil
	s.stats.crashes++
}

func (s *sim) restart(n *simNode) {
	s.start(n.name, n.initial, n.minMaj)
	s.ev(simEvent{kind: evRestart, node: n.id()})
	s.stats.restarts++
}

// counting reports how many voters of m are up as the incarnation m counts,
// leaving out skip, and the quorum of m.
func (s *sim) counting(m membership, minMaj int, skip string) (up, quorum int) {
	for _, v := range m.Voters {
		n := s.nodes[v.Name]
		if v.Name == skip || n == nil || n.c == nil {
			continue
		}
		if v.Inc == 0 || v.Inc == n.inc {
			up++
		}
	}
	return up, m.quorum(minMaj)
}

// healthyWithout is the scheduler's guess whether the cluster keeps a quorum
// of voters that count if skip goes down (or is removed): judged by the
// configurations of the server with the most up-to-date log. Seeds that allow
// a majority loss do not ask.
func (s *sim) healthyWithout(skip string) bool {
	return s.healthy(skip, false)
}

// healthy is healthyWithout, but with strict it also wants every voter of a
// bootstrap configuration up (a core may want them all to elect its first
// leader).
func (s *sim) healthy(skip string, strict bool) bool {
	var ref *simNode
	for _, n := range s.alive() {
		lt, li := n.c.log.lastTerm(), n.c.log.lastIndex()
		if ref == nil || lt > ref.c.log.lastTerm() || (lt == ref.c.log.lastTerm() && li > ref.c.log.lastIndex()) {
			ref = n
		}
	}
	if ref == nil {
		return false
	}
	for _, m := range []membership{ref.c.self, ref.c.committedConfig()} {
		up, q := s.counting(m, ref.minMaj, skip)
		if strict && len(ref.c.configs) == 1 {
			q = len(m.Voters)
		}
		if up < q {
			return false
		}
	}
	return true
}

// mayCrash: in most seeds a crash must leave a quorum of counting voters
// up; seeds that allow losing a majority skip that. Once there has been a
// leader, every seed keeps one bootstrap server up that holds a
// configuration entry: when every server of InitialConfig has lost its
// state, restarting them from InitialConfig makes a new cluster (with terms
// from 1 again), which nothing can tell from the first start.
func (s *sim) mayCrash(x *simNode) bool {
	if !s.majorityLoss && !s.healthyWithout(x.name) {
		return false
	}
	if len(s.leaders) == 0 {
		return true
	}
	for _, n := range s.alive() {
		if n != x && n.initial != nil && len(n.c.configs) > 1 {
			return true
		}
	}
	return false
}

func (s *sim) netAction() {
	names := s.names
	switch s.rng.IntN(6) {
	case 0, 1: // one link, one direction or both
		a, b := names[s.rng.IntN(len(names))], names[s.rng.IntN(len(names))]
		if a == b {
			return
		}
		s.cut[[2]string{a, b}] = true
		desc := "cut " + a + "->" + b
		if s.rng.IntN(2) == 0 {
			s.cut[[2]string{b, a}] = true
			desc = "cut " + a + "<->" + b
		}
		s.ev(simEvent{kind: evNet, s: desc})
	case 2: // heal one link
		a, b := names[s.rng.IntN(len(names))], names[s.rng.IntN(len(names))]
		delete(s.cut, [2]string{a, b})
		delete(s.cut, [2]string{b, a})
		s.ev(simEvent{kind: evNet, s: "heal " + a + "<->" + b})
	case 3, 4, 5: // two groups: symmetric, one-way, or bridged by one server
		side := map[string]bool{}
		for _, name := range names {
			side[name] = s.rng.IntN(2) == 0
		}
		bridge := ""
		kind := s.rng.IntN(3)
		if kind == 2 {
			bridge = names[s.rng.IntN(len(names))]
		}
		s.cut = map[[2]string]bool{}
		var left []string
		for _, a := range names {
			if side[a] {
				left = append(left, a)
			}
			for _, b := range names {
				if a == bridge || b == bridge || side[a] == side[b] {
					continue
				}
				if kind == 1 && !side[a] {
					continue // one way only: left can't reach right, right reaches left
				}
				s.cut[[2]string{a, b}] = true
			}
		}
		what := []string{"partition", "one-way partition", "partition bridged by " + bridge}[kind]
		s.ev(simEvent{kind: evNet, s: fmt.Sprintf("%s: %v | rest", what, left)})
	}
}

// randomStep takes one random step of the schedule.
//
// Runs alternate between stormy stretches, with every kind of fault, and calm
// ones in which the network only delays and reorders, so that the cluster
// also gets to make progress between faults.
func (s *sim) randomStep() {
	s.step++
	var r int
	if s.calm > 0 {
		s.calm--
		if r = s.rng.IntN(830); r >= 820 {
			r = 999 // deliver everything
		}
	} else {
		if s.rng.IntN(120) == 0 {
			s.calm = 50 + s.rng.IntN(250)
			s.ev(simEvent{kind: evNote, s: fmt.Sprintf("calm for %d steps", s.calm)})
		}
		r = s.rng.IntN(1000)
	}
	s.doStep(r)
}

// doStep takes the step r in [0, 1000) picks; the details (which server,
// which message) come from the seeded generator.
func (s *sim) doStep(r int) {
	switch {
	case r < 300: // deliver any message in flight: reordering
		if len(s.net) > 0 {
			s.deliverAt(s.rng.IntN(len(s.net)))
		}
	case r < 480: // deliver the oldest
		if len(s.net) > 0 {
			s.deliverAt(0)
		}
	case r < 630:
		if n := s.pick(s.alive()); n != nil {
			s.ev(simEvent{kind: evTick, node: n.id()})
			s.tick(n)
		}
	case r < 690:
		s.tickAll()
	case r < 770:
		if n := s.pick(s.leadersNow()); n != nil {
			s.propose(n, 1+s.rng.IntN(3))
		}
	case r < 820:
		if n := s.pick(s.leadersNow()); n != nil {
			s.read(n)
		}
	case r < 845:
		if len(s.net) > 0 {
			i := s.rng.IntN(len(s.net))
			s.ev(simEvent{kind: evDrop, m: s.net[i]})
			s.net = append(s.net[:i], s.net[i+1:]...)
		}
	case r < 865:
		if len(s.net) > 0 {
			m := s.net[s.rng.IntN(len(s.net))]
			s.ev(simEvent{kind: evDup, m: m})
			s.net = append(s.net, m)
		}
	case r < 895:
		s.netAction()
	case r < 910:
		s.cut = map[[2]string]bool{}
		s.ev(simEvent{kind: evNet, s: "heal all"})
	case r < 930: // crash, and restart at once or later
		n := s.pick(s.alive())
		if n == nil || !s.mayCrash(n) {
			return
		}
		s.crash(n)
		if s.rng.IntN(2) == 0 {
			s.restart(n)
		}
	case r < 945:
		var down []*simNode
		for _, name := range s.names {
			if s.nodes[name].c == nil {
				down = append(down, s.nodes[name])
			}
		}
		if n := s.pick(down); n != nil {
			s.restart(n)
		}
	case r < 960:
		s.addServer()
	case r < 975:
		s.removeServer()
	case r < 990:
		var fs []*simNode
		for _, n := range s.alive() {
			if n.c.role != Leader {
				fs = append(fs, n)
			}
		}
		if n := s.pick(fs); n != nil {
			err := n.c.triggerElection()
			s.ev(simEvent{kind: evTrigger, node: n.id(), err: err})
			s.collect(n)
		}
	default: // deliver everything in flight, oldest first
		for k := len(s.net); k > 0 && len(s.net) > 0; k-- {
			s.deliverAt(0)
		}
	}
}

func (s *sim) addServer() {
	l := s.pick(s.leadersNow())
	if l == nil {
		return
	}
	var name string
	if len(s.names) < simMaxNames && s.rng.IntN(2) == 0 {
		// A new server: it starts alone and passive (MinMajority 2) until a
		// leader adds it.
		name = "n" + strconv.Itoa(len(s.names)+1)
		s.start(name, nil, 2)
		s.ev(simEvent{kind: evNote, s: "new server " + s.nodes[name].id().String()})
	} else {
		// Any known server: a member that came back as a new incarnation, a
		// removed one, or a current member (a no-op).
		name = s.names[s.rng.IntN(len(s.names))]
	}
	if s.rng.IntN(5) == 0 {
		// The caller's ctx ended: the server abandons the catch-up.
		l.c.cancelJoin(name)
		s.ev(simEvent{kind: evAdd, node: l.id(), s: "cancel " + name})
		s.collect(l)
		return
	}
	err := l.c.addServer(Peer{Name: name, Addr: name})
	s.ev(simEvent{kind: evAdd, node: l.id(), s: name, err: err})
	s.stats.adds++
	s.collect(l)
}

func (s *sim) removeServer() {
	l := s.pick(s.leadersNow())
	if l == nil {
		return
	}
	voters := l.c.self.Voters
	if len(voters) <= 2 {
		return
	}
	v := voters[s.rng.IntN(len(voters))]
	if !s.majorityLoss {
		m := l.c.self.without(v.Name)
		if up, q := s.counting(m, l.minMaj, ""); up < q {
			return
		}
	}
	idx, err := l.c.removeServer(v.Name)
	s.ev(simEvent{kind: evRemove, node: l.id(), s: v.Name, a: idx, err: err})
	s.stats.removes++
	s.collect(l)
}

// ---- running --------------------------------------------------------------------

// simFailure is a violation found by a run.
type simFailure struct {
	seed  uint64
	step  int
	steps int // the run's EXRAFT_SIM_STEPS
	err   error
	mode  string
	state string
	trace string
}

func (f *simFailure) Error() string {
	env := ""
	if f.steps != simDefaultSteps {
		env = fmt.Sprintf("EXRAFT_SIM_STEPS=%d ", f.steps)
	}
	return fmt.Sprintf("seed %d, step %d (%s): %v\nrerun alone, with the whole trace: %sEXRAFT_SIM_SEED=%d go test -run 'TestSim$' -v ./\nstate:\n%slast events:\n%s",
		f.seed, f.step, f.mode, f.err, env, f.seed, f.state, f.trace)
}

func (s *sim) fail(err error) *simFailure {
	mode := "crashes keep a quorum of voters up"
	if s.majorityLoss {
		mode = "crashes may take down a majority"
	}
	return &simFailure{seed: s.seed, step: s.step, steps: s.opts.steps, err: err, mode: mode, state: s.describe(), trace: s.trace()}
}

// runSim runs one seed and returns the first violation, if any.
func runSim(seed uint64, o simOptions) (s *sim, f *simFailure) {
	s = newSim(seed, o)
	defer func() {
		if r := recover(); r != nil {
			f = s.fail(fmt.Errorf("panic: %v", r))
		}
	}()
	if err := s.checkInvariants(); err != nil {
		return s, s.fail(err)
	}
	for s.step < o.steps {
		s.randomStep()
		if err := s.checkInvariants(); err != nil {
			return s, s.fail(err)
		}
	}
	if o.liveness && !s.majorityLoss {
		if err := s.settle(); err != nil {
			return s, s.fail(err)
		}
	}
	return s, nil
}

// settle is the liveness check of a benign schedule: heal the network, crash
// and restart nothing, deliver everything in order and tick every server. A
// leader must be elected, and a write and then a ReadIndex read on it must
// finish, within a bounded number of ticks. Only asked when the cluster kept
// a quorum of counting voters up.
func (s *sim) settle() error {
	if !s.healthy("", true) {
		s.ev(simEvent{kind: evNote, s: "no quorum of counting voters is up: liveness not checked"})
		return nil
	}
	s.cut = map[[2]string]bool{}
	s.ev(simEvent{kind: evNote, s: "settle: network healed, no more faults"})
	const maxTicks = 200
	var write *simProp
	var readID uint64
	for tick := 0; tick < maxTicks; tick++ {
		s.step++
		s.tickAll()
		for k := 0; len(s.net) > 0 && k < 10000; k++ {
			s.deliverAt(0)
		}
		if err := s.checkInvariants(); err != nil {
			return err
		}
		// The leader of the highest term; ask again if leadership moved.
		var l *simNode
		for _, n := range s.leadersNow() {
			if l == nil || n.c.term > l.c.term {
				l = n
			}
		}
		switch {
		case l == nil:
		case write == nil || (!write.finished && (write.by != l.id() || write.term != l.c.term)):
			s.propose(l, 1)
			if p := s.props["w"+strconv.FormatUint(s.nextCmd, 10)]; p != nil {
				write = p
			}
		case !write.finished:
		case readID == 0 || (s.reads[readID] == nil && !s.readDone[readID]) || (s.reads[readID] != nil && s.reads[readID].by != l.id()):
			s.read(l)
			readID = s.nextRead
		case s.readDone[readID]:
			return nil
		}
		if s.err != nil {
			return s.err
		}
	}
	switch {
	case write == nil:
		return errors.New("liveness: no leader elected within 200 ticks of a fault-free network")
	case !write.finished:
		return fmt.Errorf("liveness: write at index %d (term %d, on %v) did not finish within 200 ticks of a fault-free network",
			write.index, write.term, write.by)
	}
	return fmt.Errorf("liveness: a write finished but no ReadIndex read did within 200 ticks of a fault-free network")
}
