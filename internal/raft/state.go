package raft

// core is the Raft protocol as a deterministic state machine, after
// etcd-io/raft: no goroutines, clocks, locks or I/O (docs/design.md §1). The
// driver feeds it ticks, messages and requests, one at a time, through
// api.go, and after each batch takes what they produced with takeReady:
// messages to send, entries to apply, reads to release. Randomness
// (election timeouts) comes from coreConfig.rand.
//
// Its fields are the paper's Figure 2 state, and what this implementation
// adds to it. Behaviour is switched by role; each rule lives in one method
// named after it, in the file doc.go names.
type core struct {
	cfg coreConfig

	// Persistent state in the paper's sense, kept in memory only; a restart
	// is a new incarnation (docs/design.md §2).
	term     uint64
	votedFor string
	votedInc uint64
	log      raftLog
	snap     snapshotMeta // the latest snapshot of the state machine

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
	prs         map[string]*progress
	prNames     []string // sorted keys of prs, for a deterministic order
	pendingConf uint64   // index of the latest configuration entry appended
	ticks       uint64   // ticks since the start, the clock of progress.heardAt
	counts      Counts   // events, for the driver's metrics
	// askedEl counts the ticks since this follower asked askedOf, its
	// leader, to hand over (askToLead); 0 when it has not, or gave up
	// waiting.
	askedEl      int
	askedOf      string
	transferee   string // who takes over: on request, or once this leader is removed
	transferEl   int    // ticks since the transfer began
	handedOver   bool   // TimeoutNow went to the transferee
	epoch        uint64 // counts membership events, so waiters can tell
	seq          uint64 // read round, see readIndex
	readBcast    bool
	bcastPending bool // proposals appended since the last takeReady
	reads        []pendingRead

	scratch []uint64 // for quorumAgreed's sorting

	// Output, emptied by takeReady.
	msgs        []Message
	spareMsgs   []Message // see recycle
	released    []ReadState
	spareReads  []ReadState // see recycle
	failedReads []uint64
}

// coreConfig is Config, as the rules read it.
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
	c.configs = []configRecord{newConfigRecord(0, boot)}
	c.applyConfig()
	c.becomeFollower(0, "", "")
	if c.promotable() && c.self.quorum(c.cfg.minMajority) == 1 {
		// A one-server cluster leads at once.
		c.campaign(campaignElection)
	}
	return c
}
