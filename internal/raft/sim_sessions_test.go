package raft

// Client sessions in the simulator (Raft thesis §6.3, internal/session):
// simulated clients propose session records beside the plain commands, and
// every server applies them through a session table of its own, which its
// snapshots carry, as the root package's applier does (session_apply.go).
// The invariants they add are checked while collecting output, like state
// machine safety (see checkInvariants).

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/exraft/exraft/internal/session"
	"github.com/stretchr/testify/require"
)

// simBug breaks a rule of the session applier on purpose, for the tests
// that show the invariant guarding it fires.
type simBug uint8

const (
	bugNone            simBug = iota
	bugApplyDuplicates        // a Duplicate's command is applied again
	bugKeepTable              // an installed snapshot's table is ignored
	bugApplyRejected          // an Expired or Stale write's command is applied
)

// idSeq names one write of one session.
type idSeq struct{ id, seq uint64 }

// simSessions is the session side of one run: the clients and their
// proposals, and what the checker learned from the log.
type simSessions struct {
	// Drawn from a generator of their own, so that a seed without
	// sessions replays as it did before they existed.
	rng         *rand.Rand
	share       int // of every 4 entries proposed, how many a client's
	timeout     int64
	maxSessions uint64
	skew        [maxServers + 1]int64 // each server's clock ahead of the step clock, in ms
	clients     []*simClient
	props       map[indexTerm]*sessProp // awaiting their proposer's apply

	// Checker state, from the first apply of each index anywhere.
	tables   [][]byte          // tables[i-1]: the table's encoding after index i
	closedAt map[uint64]uint64 // session ID -> index of its first Close
	lowests  map[uint64][]indexLowest
}

type indexLowest struct{ index, lowest uint64 }

// simClient is one client: at most one session at a time, up to three
// writes waiting for an answer, and the last records it sent, to send late
// copies of.
type simClient struct {
	name    string
	id      uint64    // its session; 0: none
	reg     *sessProp // the registration awaiting its answer
	nextSeq uint64
	pending []*sessProp // unanswered writes in order of Seq: the latest proposal of each
	sent    []session.Record
}

// sessProp is one proposal of a session record, answered to its client
// when the server that proposed it applies it in the term it proposed it.
type sessProp struct {
	client *simClient
	rec    session.Record
	by     serverID
	term   uint64
	step   int
}

// clientTimeout: a client that waited this many steps for its
// registration registers again.
const clientTimeout = 200

func newSimSessions(seed uint64) *simSessions {
	rng := rand.New(rand.NewPCG(seed, 0x73657373696f6e73))
	ss := &simSessions{
		rng:      rng,
		props:    map[indexTerm]*sessProp{},
		closedAt: map[uint64]uint64{},
		lowests:  map[uint64][]indexLowest{},
	}
	if rng.IntN(4) == 0 {
		return ss // plain commands only
	}
	ss.share = 1 + rng.IntN(3)
	// Small limits, so that sessions expire and are dropped for newer
	// ones often in a run of a few thousand steps (of 10 ms each).
	ss.timeout = 1000 + rng.Int64N(9000)
	for i := range ss.skew {
		ss.skew[i] = rng.Int64N(300)
	}
	for i := 1 + rng.IntN(4); i > 0; i-- {
		ss.clients = append(ss.clients, &simClient{name: "c" + strconv.Itoa(len(ss.clients)+1)})
	}
	// Room for one session fewer than the clients, as many, or one more:
	// the clients, and the orphans of lost replies, drop each other's.
	ss.maxSessions = max(1, uint64(len(ss.clients))+rng.Uint64N(3)-1)
	return ss
}

// startSessions gives a new incarnation an empty table and state machine.
func (n *server) startSessions() {
	n.table = session.NewTable()
	n.tableEnc = n.table.Append(nil)
	n.seqs = map[idSeq]uint64{}
}

// ---- the clients ----------------------------------------------------------------

// clock is the leader n's clock in ms: the step clock, with a skew of its own,
// so that a new leader may stamp an earlier time than the last.
func (s *sim) clock(n *server) int64 {
	k, _ := strconv.Atoi(n.name[1:])
	return int64(s.step)*10 + s.ses.skew[k]
}

// leading reports whether p's proposer still leads in p's term: until it
// does not, its client waits for the answer.
func (s *sim) leading(p *sessProp) bool {
	n := s.nodes[p.by.name]
	return n != nil && n.c != nil && n.inc == p.by.inc && n.c.role == Leader && n.c.term == p.term
}

// clientProposal is what a client picked by the seed sends to the leader n
// next, if anything: a registration, a new write, a retry of an unanswered
// one, a late copy of an earlier record, or a close.
func (s *sim) clientProposal(n *server) (simProposal, bool) {
	ss := s.ses
	c := ss.clients[ss.rng.IntN(len(ss.clients))]
	if c.id == 0 {
		if c.reg != nil && s.leading(c.reg) && s.step-c.reg.step < clientTimeout {
			return simProposal{}, false
		}
		c.reg = &sessProp{client: c, rec: session.Record{Kind: session.Register, Timeout: ss.timeout, MaxSessions: ss.maxSessions}}
		return s.clientSends(n, c.reg, c.name+":reg"), true
	}
	r := ss.rng.IntN(16)
	switch {
	case r == 0: // the client is done: it closes, and registers anew later
		p := &sessProp{client: c, rec: session.Record{Kind: session.Close, ID: c.id}}
		name := fmt.Sprintf("%s:close s%d", c.name, c.id)
		c.id, c.reg, c.pending = 0, nil, nil
		return s.clientSends(n, p, name), true
	case r == 1 && len(c.sent) > 0: // the network duplicated a request of the past
		p := &sessProp{client: c, rec: c.sent[ss.rng.IntN(len(c.sent))]}
		return s.clientSends(n, p, fmt.Sprintf("%s:s%d#%d late", c.name, p.rec.ID, p.rec.Seq)), true
	case r < 7 && len(c.pending) > 0, len(c.pending) >= 3:
		// A retry after a lost reply or a timeout, on whichever server
		// leads now: the same (ID, Seq) and command.
		i := ss.rng.IntN(len(c.pending))
		p := &sessProp{client: c, rec: c.pending[i].rec}
		p.rec.Lowest = c.pending[0].rec.Seq
		c.pending[i] = p
		return s.clientSends(n, p, fmt.Sprintf("%s:s%d#%d again", c.name, c.id, p.rec.Seq)), true
	}
	c.nextSeq++
	p := &sessProp{client: c, rec: session.Record{Kind: session.Write, ID: c.id, Seq: c.nextSeq,
		Command: fmt.Appendf(nil, "%s.%d.%d", c.name, c.id, c.nextSeq)}}
	c.pending = append(c.pending, p)
	p.rec.Lowest = c.pending[0].rec.Seq
	return s.clientSends(n, p, fmt.Sprintf("%s:s%d#%d", c.name, c.id, c.nextSeq)), true
}

// clientSends stamps p's record with the leader's clock and makes it an
// entry for the leader n to propose in its term.
func (s *sim) clientSends(n *server, p *sessProp, name string) simProposal {
	p.rec.Time = s.clock(n)
	p.by, p.term, p.step = n.id(), n.c.term, s.step
	if p.rec.Kind == session.Write {
		c := p.client
		if c.sent = append(c.sent, p.rec); len(c.sent) > 4 {
			c.sent = c.sent[1:]
		}
	}
	return simProposal{e: Entry{Type: EntrySession, Data: p.rec.Append(nil)}, name: name, sp: p}
}

// answer gives the client of the proposal at e the outcome, when n is the
// server that proposed it. A reply may be lost on its way: the client
// retries, and the retry must not be applied again.
func (s *sim) answer(n *server, e *Entry, out session.Outcome) {
	k := indexTerm{e.Index, e.Term}
	p := s.ses.props[k]
	if p == nil || p.by != n.id() {
		return
	}
	delete(s.ses.props, k)
	c := p.client
	lost := s.ses.rng.IntN(4) == 0
	s.ev(event{kind: evClient, node: n.id(), a: e.Index, s: fmt.Sprintf("%s %s (reply lost: %v)", c.name, outcomeString(out), lost)})
	if lost {
		if out == session.Registered && c.reg == p {
			c.reg = nil // an orphan session, left to expire
		}
		return
	}
	switch {
	case out == session.Registered && c.reg == p:
		c.id, c.reg, c.nextSeq, c.pending = e.Index, nil, 0, nil
	case p.rec.Kind != session.Write || c.id != p.rec.ID:
	case out == session.Expired: // the session is gone: register anew
		c.id, c.pending = 0, nil
	default: // Applied, Duplicate or Stale: answered
		c.pending = slices.DeleteFunc(c.pending, func(q *sessProp) bool { return q.rec.Seq == p.rec.Seq })
	}
}

// ---- the applier --------------------------------------------------------------

// applySession applies a session entry through n's table, which applies a
// write's command to the state machine the first time only.
func (s *sim) applySession(n *server, e *Entry) {
	r, err := session.Decode(e.Data)
	if err != nil {
		// Only a forged message carries one; every server skips it alike.
		if s.global {
			s.violate("%v applied a malformed session entry at index %d: %v", n.id(), e.Index, err)
		}
		return
	}
	var sm smApplies
	smApply := func([]byte) []byte { return s.smApply(n, e.Index, &r, &sm) }
	before := n.table.Len()
	out, _ := n.table.Apply(e.Index, &r, smApply)
	if s.opts.bug == bugApplyDuplicates && out == session.Duplicate ||
		s.opts.bug == bugApplyRejected && (out == session.Expired || out == session.Stale) {
		smApply(r.Command)
	}
	n.tableEnc = n.table.Append(nil)
	// Admission first: a rejected write applied is that rule broken, even
	// when it was also applied before.
	s.checkAdmission(n, e.Index, &r, out, sm.times > 0)
	s.checkExactlyOnce(n, e.Index, &r, out, sm)
	if s.global && e.Index == uint64(len(s.applied))+1 {
		s.stats.sessions[out]++
		if r.Kind != session.Close {
			s.stats.sessionsDropped += before + btoi(out == session.Registered) - n.table.Len()
		}
	}
	s.answer(n, e, out)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// smApplies is what the state machine did with one session entry.
type smApplies struct {
	times  int    // how often it applied the command
	before uint64 // the index at which it had applied the same (session, seq), if it had
}

// smApply is the state machine applying a session write's command: its
// state changes as for a plain command, and it remembers at which index it
// first applied each (session, seq).
func (s *sim) smApply(n *server, index uint64, r *session.Record, sm *smApplies) []byte {
	sm.times++
	k := idSeq{r.ID, r.Seq}
	if at, ok := n.seqs[k]; ok {
		sm.before = at
	} else {
		n.seqs[k] = index
	}
	n.hash = stateAfter(n.hash, string(r.Command))
	return strconv.AppendUint(nil, index, 10)
}

// ---- the invariants -------------------------------------------------------------

// checkExactlyOnce is invariant 7: a server's state machine applies the
// command of a (session, seq) once, when the table answers Applied the first
// time, and never again (for a Duplicate, say, or a retry the table let
// through).
func (s *sim) checkExactlyOnce(n *server, index uint64, r *session.Record, out session.Outcome, sm smApplies) {
	switch {
	case sm.times > 1 || sm.before != 0:
		at := index
		if sm.before != 0 {
			at = sm.before
		}
		s.violate("session exactly-once: %v applied the command of session %d seq %d twice, at index %d and at %d",
			n.id(), r.ID, r.Seq, at, index)
	case out == session.Applied && sm.times == 0:
		s.violate("session exactly-once: %v's table answered applied for session %d seq %d at index %d, but never applied it",
			n.id(), r.ID, r.Seq, index)
	}
}

// checkAdmission is invariant 9: a write's command reaches the state machine
// only if the table answers Applied, never when its session is gone
// (Expired) or the write is a late copy (Stale); and by what the log says,
// a write applied had its session registered and not closed, and its Seq
// not below a Lowest its client had sent. (Expiry and dropping the least
// recently used are the table's to judge: its own tests check them.)
func (s *sim) checkAdmission(n *server, index uint64, r *session.Record, out session.Outcome, ran bool) {
	if ran && out != session.Applied && out != session.Duplicate {
		s.violate("session admission: %v applied the command of session %d seq %d at index %d, which the table answered %s",
			n.id(), r.ID, r.Seq, index, outcomeString(out))
	}
	if out != session.Applied || !s.global {
		return
	}
	why := ""
	switch low := s.lowestBefore(r.ID, index, r.Lowest); {
	case !s.registers(r.ID):
		why = "no session was registered at that index"
	case s.ses.closedAt[r.ID] != 0 && s.ses.closedAt[r.ID] < index:
		why = fmt.Sprintf("it was closed at index %d", s.ses.closedAt[r.ID])
	case r.Seq < low:
		why = fmt.Sprintf("its client had acknowledged every seq below %d", low)
	}
	if why != "" {
		s.violate("session admission: %v applied the command of session %d seq %d at index %d, but %s",
			n.id(), r.ID, r.Seq, index, why)
	}
}

// registers reports whether the entry at index id registered a session.
func (s *sim) registers(id uint64) bool {
	if id == 0 || id > uint64(len(s.applied)) {
		return false
	}
	key := s.applied[id-1]
	if key[0] != byte('0'+EntrySession) {
		return false
	}
	r, err := session.Decode([]byte(key[1:]))
	return err == nil && r.Kind == session.Register
}

// lowestBefore is the highest Lowest sent for session id before index, or
// with the record at index.
func (s *sim) lowestBefore(id, index, lowest uint64) uint64 {
	for _, l := range s.ses.lowests[id] {
		if l.index < index {
			lowest = max(lowest, l.lowest)
		}
	}
	return lowest
}

// learnSessions records what the entry e, applied for the first time
// anywhere, tells checkAdmission, and the table after it.
func (s *sim) learnSessions(n *server, e *Entry) {
	s.ses.tables = append(s.ses.tables, n.tableEnc)
	if e.Type != EntrySession {
		return
	}
	r, err := session.Decode(e.Data)
	switch {
	case err != nil:
	case r.Kind == session.Close && s.ses.closedAt[r.ID] == 0:
		s.ses.closedAt[r.ID] = e.Index
	case r.Kind == session.Write:
		s.ses.lowests[r.ID] = append(s.ses.lowests[r.ID], indexLowest{e.Index, r.Lowest})
	}
}

// checkTable is invariant 8: a server that has applied up to index holds
// the table, byte for byte, that every other server held there.
func (s *sim) checkTable(n *server, index uint64) {
	if index == 0 || index > uint64(len(s.ses.tables)) {
		return
	}
	if want := s.ses.tables[index-1]; !bytes.Equal(n.tableEnc, want) {
		s.violate("session table agreement: %v's session table after index %d differs from the others': %x, not %x",
			n.id(), index, n.tableEnc, want)
	}
}

// ---- snapshots ----------------------------------------------------------------

// snapshotSessions keeps the table and the applied writes with n's
// snapshot, as the root package puts the table at its head.
func (n *server) snapshotSessions() {
	n.snapTable = n.tableEnc
	n.snapSeqs = maps.Clone(n.seqs)
}

// restoreSessions restores n's table and applied writes from the snapshot
// of from: the table through its encoding, as a server receiving the
// snapshot's bytes would.
func (s *sim) restoreSessions(n, from *server, index uint64) {
	t, rest, err := session.DecodeTable(from.snapTable)
	if err != nil || len(rest) > 0 {
		s.violate("%v: the session table of %v's snapshot at %d does not decode: %v (%d bytes left)", n.id(), from.id(), index, err, len(rest))
		return
	}
	if s.opts.bug != bugKeepTable {
		n.table, n.tableEnc = t, t.Append(nil)
	}
	n.seqs = maps.Clone(from.snapSeqs)
	n.snapTable, n.snapSeqs = from.snapTable, from.snapSeqs // neither is ever changed
	if s.global {
		s.checkTable(n, index)
	}
}

// ---- showing them ----------------------------------------------------------------

func outcomeString(o session.Outcome) string {
	names := [...]string{"?", "applied", "duplicate", "registered", "closed", "expired", "stale"}
	if int(o) < len(names) {
		return names[o]
	}
	return "outcome" + strconv.Itoa(int(o))
}

// sessionString shows a session entry's record.
func sessionString(data []byte) string {
	r, err := session.Decode(data)
	if err != nil {
		return "session?"
	}
	switch r.Kind {
	case session.Register:
		return fmt.Sprintf("reg@%d", r.Time)
	case session.Close:
		return fmt.Sprintf("close(s%d)@%d", r.ID, r.Time)
	}
	return fmt.Sprintf("s%d#%d(low %d)@%d", r.ID, r.Seq, r.Lowest, r.Time)
}

// ---- the invariants fire ------------------------------------------------------

// TestSimSessionInvariantsFire breaks each rule the session invariants
// guard in the applier, and checks that the simulator reports it by name
// within the first seeds: its clients do retry, see sessions expire, and
// install snapshots that carry tables.
func TestSimSessionInvariantsFire(t *testing.T) {
	for _, tc := range []struct {
		bug  simBug
		name string
	}{
		{bugApplyDuplicates, "session exactly-once:"},
		{bugKeepTable, "session table agreement:"},
		{bugApplyRejected, "session admission:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 100; seed++ {
				_, f := runSim(seed, simOptions{steps: defaultSteps, bug: tc.bug})
				if f != nil {
					require.Contains(t, f.err.Error(), tc.name, "seed %d", seed)
					t.Logf("seed %d, step %d: %v", seed, f.step, f.err)
					return
				}
			}
			t.Fatalf("no seed of 100 noticed %q", tc.name)
		})
	}
}

// TestSessionAdmissionFromTheLog: invariant 9 judges by the log too, not
// only by what the table answered.
func TestSessionAdmissionFromTheLog(t *testing.T) {
	reg := session.Record{Kind: session.Register, Timeout: 1000, MaxSessions: 4}
	write := func(seq, lowest uint64) Entry {
		r := session.Record{Kind: session.Write, ID: 1, Seq: seq, Lowest: lowest, Command: []byte("x")}
		return Entry{Type: EntrySession, Data: r.Append(nil)}
	}
	closed := session.Record{Kind: session.Close, ID: 1}
	for _, tc := range []struct {
		name string
		log  []Entry // indexes 1.., then a write of session 1 applied
		seq  uint64
		want string
	}{
		{"registered", []Entry{{Type: EntrySession, Data: reg.Append(nil)}}, 1, ""},
		{"not a registration", []Entry{{Data: []byte("w1")}}, 1, "no session was registered"},
		{"closed", []Entry{{Type: EntrySession, Data: reg.Append(nil)}, {Type: EntrySession, Data: closed.Append(nil)}}, 1, "closed at index 2"},
		{"acknowledged", []Entry{{Type: EntrySession, Data: reg.Append(nil)}, write(3, 3)}, 2, "acknowledged every seq below 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(1, simOptions{initial: 3})
			n := s.nodes["n1"]
			for i := range tc.log {
				tc.log[i].Index = uint64(i + 1)
				s.learnSessions(n, &tc.log[i])
				s.applied = append(s.applied, entryKey(&tc.log[i]))
			}
			r := session.Record{Kind: session.Write, ID: 1, Seq: tc.seq, Lowest: 1}
			s.checkAdmission(n, uint64(len(tc.log)+1), &r, session.Applied, true)
			if tc.want == "" {
				require.NoError(t, s.err)
				return
			}
			require.ErrorContains(t, s.err, "session admission:")
			require.ErrorContains(t, s.err, tc.want)
		})
	}
}
