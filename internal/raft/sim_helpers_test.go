package raft

// The deterministic simulator behind TestSim and FuzzCoreStep: cores wired
// together by a network (network_test.go) that drops, duplicates, delays and
// reorders messages and can be cut link by link, with crashes that restart a
// server as a new incarnation, membership changes, forced elections,
// proposals and ReadIndex reads, and in three seeds of four clients with
// sessions (sim_sessions_test.go). One seeded PCG drives everything: the
// schedule picks every fault and every message to deliver with it, and the
// network carries the choice out, so a seed replays exactly.
//
// checkInvariants runs after every input to a core; see its comment for what
// it checks. Its bookkeeping is incremental (each check only looks at what
// changed), which is what lets CI run a thousand seeds under -race. The
// checks live in sim_invariants_test.go, the actions and their schedule in
// sim_schedule_test.go.

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/exraft/exraft/internal/session"
)

const (
	maxServers  = 7   // servers ever created in one run, names n1..n7
	netCapacity = 600 // messages in flight before the network sheds one
	traceLen    = 60  // events kept for the report of a failing seed
)

// simOptions chooses the schedule of one run.
type simOptions struct {
	steps        int  // random steps
	initial      int  // bootstrap servers (3..7); 0: chosen by the seed
	majorityLoss int  // 1: crashes may take down a majority, -1: never, 0: chosen by the seed
	liveness     bool // end with a fault-free phase that must elect a leader and commit
	verbose      bool // keep every event, not only the last traceLen

	// A session rule broken on purpose (sim_sessions_test.go).
	bug simBug
}

// serverID is one incarnation of one server.
type serverID struct {
	name string
	inc  uint64
}

func (id serverID) String() string { return id.name + "(" + strconv.FormatUint(id.inc, 10) + ")" }

type server struct {
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

	// The state machine, as a hash of what it applied (stateHash), and
	// the latest snapshot of it the server took or restored. applied runs
	// ahead of handed after a restore that the core then refused (a stale
	// leader's snapshot): the driver skips what it applied already.
	applied   uint64
	hash      uint64
	snapIndex uint64
	snapHash  uint64

	// The session table, applied beside the state machine, and the index
	// at which the state machine applied each session write; both travel
	// in snapshots with the state (sim_sessions_test.go).
	table     *session.Table
	tableEnc  []byte // the table's encoding as of applied
	seqs      map[idSeq]uint64
	snapTable []byte
	snapSeqs  map[idSeq]uint64

	// kept is the snapshot held before a restore whose header the core
	// has yet to take in: if the core refuses it, this one is still the
	// snapshot the server sends, as its driver keeps only a snapshot the
	// core took (snapshotTaken).
	kept *heldSnapshot
}

// heldSnapshot is the snapshot a server holds, to send should it lead.
type heldSnapshot struct {
	index, hash uint64
	table       []byte
	seqs        map[idSeq]uint64
}

func (n *server) id() serverID { return serverID{n.name, n.inc} }

type indexTerm struct{ index, term uint64 }

type logRecord struct {
	prevTerm uint64
	key      string
}

// commitRecord is what the checker learned about one committed index.
type commitRecord struct {
	term    uint64
	key     string
	recTerm uint64 // lowest term of a server that saw it committed
	by      serverID
}

type proposal struct {
	by       serverID
	index    uint64
	term     uint64
	finished bool
}

type readRecord struct {
	by   serverID
	min  uint64 // index of the newest write or read finished before this read began
	step int
}

type eventKind uint8

const (
	evDeliver eventKind = iota
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
	evSnapshot
	evInstall
	evClient
)

type event struct {
	step int
	kind eventKind
	node serverID
	a, b uint64
	s    string
	m    Message
	err  error
}

func (e event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5d ", e.step)
	switch e.kind {
	case evDeliver:
		b.WriteString("deliver " + msgString(e.m))
	case evDrop:
		b.WriteString("drop    " + msgString(e.m) + " " + e.s)
	case evDup:
		b.WriteString("dup     " + msgString(e.m))
	case evForged:
		b.WriteString("FORGED  " + msgString(e.m))
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
	case evSnapshot:
		fmt.Fprintf(&b, "snap    %v at %d, log from %d", e.node, e.a, e.b)
	case evInstall:
		fmt.Fprintf(&b, "install %v restored at %d", e.node, e.a)
	case evClient:
		fmt.Fprintf(&b, "client  %v applied %d: %s", e.node, e.a, e.s)
	}
	return b.String()
}

func msgString(m Message) string {
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
				fmt.Fprintf(&b, "%d/%d:%s", e.Index, e.Term, entryString(e))
			}
			b.WriteString("]")
		}
	case MsgSnap:
		fmt.Fprintf(&b, " last=%d/%d commit=%d", m.LastIndex, m.LastTerm, m.Commit)
	case MsgAppResp:
		if m.Reject {
			fmt.Fprintf(&b, " reject prev=%d hint=%d/%d last=%d", m.PrevIndex, m.HintIndex, m.HintTerm, m.LastIndex)
		} else {
			fmt.Fprintf(&b, " match=%d last=%d seq=%d", m.Match, m.LastIndex, m.Seq)
		}
	}
	return b.String()
}

func entryString(e Entry) string {
	switch e.Type {
	case EntryNoop:
		return "noop"
	case EntryConfig:
		if m, err := decodeMembership(e.Data); err == nil {
			return "conf" + membersString(m)
		}
		return "conf?"
	case EntryNormal:
		return string(e.Data)
	case EntrySession:
		return sessionString(e.Data)
	}
	return "type" + strconv.Itoa(int(e.Type))
}

func membersString(m membership) string {
	parts := make([]string, len(m.Voters))
	for i, v := range m.Voters {
		parts[i] = v.Name + ":" + strconv.FormatUint(v.Inc, 10)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// entryKey identifies an entry's content: its type and data.
func entryKey(e *Entry) string {
	return string(rune('0'+e.Type)) + string(e.Data)
}

// keyString shows an entry key as entryString shows the entry.
func keyString(key string) string {
	return entryString(Entry{Type: EntryType(key[0] - '0'), Data: []byte(key[1:])})
}

func sameEntry(e *Entry, key string) bool {
	return len(key) == 1+len(e.Data) && key[0] == byte('0'+e.Type) && key[1:] == string(e.Data)
}

// sim is one simulated cluster.
type sim struct {
	seed         uint64
	rng          *rand.Rand
	opts         simOptions
	majorityLoss bool
	nodes        map[string]*server
	net          *network // the cores, by name in creation order, and the messages between them
	step         int
	nextInc      uint64
	nextCmd      uint64
	nextRead     uint64
	maxInflight  int
	maxBatch     int
	global       bool   // cluster-wide checks (off once a forged message was injected)
	snapEvery    uint64 // a server snapshots after applying this many entries; 0: never
	trailing     uint64 // entries kept behind a snapshot
	calm         int    // steps left without faults
	boot         int    // servers at the start

	// The clients of sessions, and what the checker knows of them.
	ses *simSessions

	// Checker state.
	leaders    map[uint64]serverID
	logRecs    map[indexTerm]logRecord
	committed  []commitRecord // committed[i-1] is index i
	newCommits []uint64
	applied    []string // applied[i-1]: the entry first applied at index i
	stateHash  []uint64 // stateHash[i-1]: the state after applying 1..i
	props      map[string]*proposal
	reads      map[uint64]*readRecord
	readDone   map[uint64]bool
	finMax     uint64 // newest index a finished write or read covers
	// members are the servers the cluster means to keep: every name a
	// committed configuration made a voter or a learner, unless a
	// RemoveServer since (at the index in removedAt, until a later
	// committed configuration names it again) asked it out. Once the
	// network heals, each that is up must be a voter as the incarnation
	// running (settle).
	members   map[string]bool
	removedAt map[string]uint64
	err       error // first violation noticed while collecting output

	events []event // ring of the last traceLen, or everything when verbose
	evNext int
	stats  simStats
}

type simStats struct {
	leaders, commits, finishedWrites, readsDone, crashes, restarts, adds, removes int
	snapshots, installs                                                           int
	maxCommit                                                                     uint64

	// Session records at their first apply anywhere, by outcome, and the
	// sessions that went meanwhile (expired or least recently used).
	sessions        [session.Stale + 1]int
	sessionsDropped int
}

func newSim(seed uint64, o simOptions) *sim {
	rng := rand.New(rand.NewPCG(seed, 0x65787261667473))
	s := &sim{
		seed:      seed,
		rng:       rng,
		opts:      o,
		nodes:     map[string]*server{},
		net:       newNetwork(nil, rng),
		global:    true,
		leaders:   map[uint64]serverID{},
		logRecs:   map[indexTerm]logRecord{},
		props:     map[string]*proposal{},
		reads:     map[uint64]*readRecord{},
		readDone:  map[uint64]bool{},
		members:   map[string]bool{},
		removedAt: map[string]uint64{},
	}
	// A message sent over a cut link stays in flight: it is lost only if
	// the link is still cut when the schedule delivers it.
	s.net.lateCut = true
	s.net.capacity = netCapacity
	s.net.output = func(name string, rd Ready) { s.output(s.nodes[name], rd) }
	s.net.onDeliver = func(m Message) {
		s.ev(event{kind: evDeliver, m: m})
		if m.Type == MsgSnap {
			s.restore(s.nodes[m.To], m)
			s.snapshotSent(m)
		}
	}
	s.net.onStepped = func(m Message) {
		if m.Type == MsgSnap {
			s.snapshotTaken(s.nodes[m.To], m)
		}
	}
	s.net.onLose = func(m Message, why string) {
		s.ev(event{kind: evDrop, m: m, s: why})
		if m.Type == MsgSnap {
			s.snapshotLost(m)
		}
	}
	s.net.admit = s.snapshotHeld
	s.ses = newSimSessions(seed)
	// Snapshots are drawn from a generator of their own, so that a seed
	// without them replays as it did before they existed.
	snaps := rand.New(rand.NewPCG(seed, 0x736e617073686f74))
	if snaps.IntN(3) > 0 {
		s.snapEvery = 1 + snaps.Uint64N(40)
		s.trailing = snaps.Uint64N(8)
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
		s.members[name] = true
	}
	s.boot = len(boot)
	return s
}

// start creates a server (or restarts one) as a new incarnation with an empty log.
func (s *sim) start(name string, initial []string, minMaj int) *server {
	n := s.nodes[name]
	if n == nil {
		n = &server{name: name, initial: initial, minMaj: minMaj}
		s.nodes[name] = n
	}
	s.nextInc++
	cfg := testCoreConfig(name, n.initial, s.nextInc, s.rng)
	cfg.minMajority = n.minMaj
	cfg.maxInflight = s.maxInflight
	cfg.maxBatch = s.maxBatch
	*n = server{name: name, initial: n.initial, minMaj: n.minMaj, inc: s.nextInc}
	n.startSessions()
	n.c = newCore(cfg)
	n.term, n.role = n.c.term, n.c.role
	s.net.put(name, n.c)
	s.net.collect(name)
	return n
}

func (s *sim) alive() []*server {
	var out []*server
	for _, name := range s.net.names {
		if n := s.nodes[name]; n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) leadersNow() []*server {
	var out []*server
	for _, n := range s.alive() {
		if n.c.role == Leader {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) pick(ns []*server) *server {
	if len(ns) == 0 {
		return nil
	}
	return ns[s.rng.IntN(len(ns))]
}

// ---- trace --------------------------------------------------------------------

func (s *sim) ev(e event) {
	e.step = s.step
	if s.opts.verbose {
		s.events = append(s.events, e)
		return
	}
	if len(s.events) < traceLen {
		s.events = append(s.events, e)
		return
	}
	s.events[s.evNext] = e
	s.evNext = (s.evNext + 1) % traceLen
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
	for _, name := range s.net.names {
		n := s.nodes[name]
		if n.c == nil {
			fmt.Fprintf(&b, "  %s: down\n", name)
			continue
		}
		c := n.c
		lt := c.log.lastTerm()
		fmt.Fprintf(&b, "  %v: %s term=%d lead=%q commit=%d last=%d/%d removed=%v config=%s\n",
			n.id(), c.role, c.term, c.lead, c.commit, c.log.lastIndex(), lt, c.removed, membersString(c.self))
	}
	fmt.Fprintf(&b, "  cut links: %v; in flight: %d; committed: %d\n", s.net.cutLinks(), len(s.net.inFlight), len(s.committed))
	return b.String()
}
