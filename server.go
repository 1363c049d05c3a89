package exraft

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/rpc"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/gather"
	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/session"
	"github.com/exraft/exraft/internal/wire"
	"golang.org/x/sync/semaphore"
)

// Server is one member of a cluster. Its methods are safe for concurrent
// use. Create it with StartServer; stop it with Stop or StopServer.
type Server struct {
	cfg       Config
	sm        StateMachine
	validator Validator  // sm's, if it has one
	smMu      sync.Mutex // the state machine is called from one goroutine at a time
	name      string
	addr      string
	inc       uint64
	log       *slog.Logger
	tick      time.Duration

	node *raft.Node // owned by the driver goroutine (driver.go)

	propc chan *proposal
	readc chan *readRequest
	recvc chan inbound
	// acks are closed once the driver has processed, and handed on the
	// output of, the messages of a Step call (see rpcService.Step).
	acks      []stepWait
	stepWaits sync.Map // *[]byte (a Step call's args) → stepWait
	ctrlc     chan ctrl

	board   *board
	applied atomic.Uint64
	apply   *applyQueue

	// Driver-owned bookkeeping of calls waiting on the Node.
	pending   []*proposal  // by index, ascending
	propBatch []*proposal  // scratch for propose
	propCmds  []raft.Entry // scratch for propose
	// What the last published view was built from, to publish only changes.
	pub       pubKey
	published bool
	hadPeers  bool // the last publishPeers published some
	// The lists of the published view, rebuilt only when they change; the
	// view shares them, so they are never modified in place.
	members, learners, committedMembers []Peer
	// The reads handed to the Node, by id: reads[i] has id readsFrom+i,
	// nil once answered. The Node releases and fails reads in the order
	// they came, so this is a queue, and the answered ones leave its front.
	reads     []*readRequest
	readsFrom uint64
	// The driver's batches (see gather): the writes a commit answered, and
	// the reads a round released. Each is the batch whose callers come back
	// together to make the next one.
	commits, rounds gather.Point

	membership *semaphore.Weighted // one membership change at a time

	snaps  snapshots // taking, keeping, sending and restoring (snapshot.go)
	meters meters    // what Metrics reports (metrics.go)
	stalls stalls    // what the watchdog reads (stall.go)
	// sessions is the replicated session table (session_apply.go); the
	// applier's, under smMu, like the state machine.
	sessions *session.Table

	ln        net.Listener
	transport *transport
	identity  identity
	connsMu   sync.Mutex
	conns     map[net.Conn]struct{}
	// connsPerHost counts conns by remote IP, for MaxConnsPerHost;
	// handshaking counts those not past the handshake yet.
	connsPerHost map[string]int
	handshaking  int
	pendingCalls *semaphore.Weighted // MaxPendingCalls
	warns        warnLimiter

	stopOnce sync.Once
	// ctx ends when the server stops; remote calls and dials derive from
	// it, and stopc is its Done channel.
	ctx    context.Context
	cancel context.CancelFunc
	stopc  <-chan struct{}
	// deadlines bounds remote calls (rpcService.handle); it stops with ctx.
	deadlines deadlineWheel
	// driverDone is closed when the driver goroutine has returned.
	driverDone chan struct{}
	// withoutWriteBatch makes the server end a connection that calls
	// WriteBatch, as servers that predate it do: tests set it, to see that
	// a Client falls back to a call per Write.
	withoutWriteBatch atomic.Bool
	stopErr           error
	wg                sync.WaitGroup
}

type proposal struct {
	kind  raft.EntryType // EntryNormal, or EntrySession (session_serve.go)
	data  []byte
	index uint64
	term  uint64
	done  chan result
	// ann, a remote call's, is told before the applier answers any of the
	// entries it applies with this one (apply.go), nil otherwise.
	ann   announcer
	watch watched // its caller's, while the watcher may answer it
}

type readRequest struct {
	query []byte
	index uint64
	done  chan result
	watch watched // its caller's, while the watcher may answer it
}

type result struct {
	val []byte
	err error
}

// StartServer starts a server for sm and returns once it is listening. The
// server campaigns, follows and replicates on its own from then on; a
// one-server cluster leads at once.
func StartServer(sm StateMachine, cfg Config) (*Server, error) {
	if sm == nil {
		return nil, &ConfigError{Field: "StateMachine", Reason: "must not be nil"}
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("exraft: listen on %s: %w", cfg.Addr, err)
		}
	}
	addr := ln.Addr().String()
	for _, p := range cfg.InitialConfig {
		if p.Name == cfg.Name && p.Addr != "" {
			addr = p.Addr // what peers were told to dial
		}
	}
	tick, hb, emin, emax := cfg.ticks()
	s := &Server{
		cfg:          cfg,
		sm:           sm,
		name:         cfg.Name,
		addr:         addr,
		inc:          newIncarnation(),
		log:          cfg.Logger.With("server", cfg.Name),
		tick:         tick,
		propc:        make(chan *proposal, 4096),
		readc:        make(chan *readRequest, 4096),
		recvc:        make(chan inbound, 4096),
		ctrlc:        make(chan ctrl),
		board:        newBoard(),
		apply:        newApplyQueue(),
		readsFrom:    1,
		membership:   semaphore.NewWeighted(1),
		ln:           ln,
		conns:        map[net.Conn]struct{}{},
		identity:     identity{clusterID: cfg.ClusterID, secret: cfg.Secret},
		connsPerHost: map[string]int{},
		pendingCalls: semaphore.NewWeighted(int64(cfg.MaxPendingCalls)),
		sessions:     session.NewTable(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stopc = s.ctx.Done()
	context.AfterFunc(s.ctx, s.deadlines.stop)
	s.driverDone = make(chan struct{})
	rng := rand.New(rand.NewPCG(s.inc, uint64(time.Now().UnixNano())))
	s.node = newNode(s, cfg, hb, emin, emax, rng.IntN)
	s.validator, _ = sm.(Validator)
	s.initSnapshots()
	s.transport = newTransport(s)
	// Each connection registers the service anew (serveCalls); this checks
	// once that it can.
	if err := rpc.NewServer().RegisterName("Exraft", &rpcService{s: s}); err != nil {
		ln.Close()
		return nil, err
	}
	s.publish()
	s.wg.Add(4)
	go s.acceptLoop()
	go s.run()
	go s.applyLoop()
	go s.watchStalls()
	s.log.Info("started", "addr", s.addr, "incarnation", s.inc)
	return s, nil
}

func newIncarnation() uint64 {
	var b [8]byte
	for {
		if _, err := crand.Read(b[:]); err != nil {
			panic(err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// StopServer stops s; see Server.Stop.
func StopServer(s *Server) error { return s.Stop() }

// Stop closes the listener and every connection, ends every goroutine of the
// server, fails calls still waiting with ErrStopped, and calls Close on the
// state machine if it has one. It returns Close's error. Calling it again
// does nothing and returns nil.
func (s *Server) Stop() error {
	first := false
	s.stopOnce.Do(func() {
		first = true
		s.cancel()
		s.ln.Close()
		s.connsMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connsMu.Unlock()
		s.transport.close()
		// Callers still waiting are answered once the driver has gone,
		// without waiting for an Apply in progress: the caller it might
		// be waiting for could be one of them.
		<-s.driverDone
		s.failLeftovers()
		s.wg.Wait()
		// A stopped server leads nothing and follows no one.
		v := s.board.get()
		v.role, v.leader = Follower, Peer{}
		s.board.set(v) // also the role Write and Read check
		if c, ok := s.sm.(Closer); ok {
			s.smMu.Lock()
			s.stopErr = c.Close()
			s.smMu.Unlock()
		}
		s.log.Info("stopped")
	})
	if !first {
		return nil
	}
	return s.stopErr
}

func (s *Server) isStopped() bool {
	select {
	case <-s.stopc:
		return true
	default:
		return false
	}
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Addr returns the address peers and clients dial.
func (s *Server) Addr() string { return s.addr }

// Peer returns the server's name and address.
func (s *Server) Peer() Peer { return Peer{Name: s.name, Addr: s.addr} }

// Leader returns the leader this server knows, and false when it knows none
// (always, after Stop).
func (s *Server) Leader() (Peer, bool) {
	if s.isStopped() {
		return Peer{}, false
	}
	v := s.board.get()
	return v.leader, v.leader.Name != ""
}

// Status returns the server's view of the cluster. After Stop, its Role is
// Stopped, it knows no Leader, and the rest is as the server last saw it.
func (s *Server) Status() Status {
	v := s.board.get()
	role, leader := v.role, v.leader
	if s.isStopped() {
		role, leader = Stopped, Peer{}
	}
	return Status{
		Name:          s.name,
		Addr:          s.addr,
		Role:          role,
		Term:          v.term,
		Leader:        leader,
		CommitIndex:   v.commit,
		AppliedIndex:  s.applied.Load(),
		LastIndex:     v.last,
		SnapshotIndex: v.snapshot,
		FirstIndex:    v.first,
		Members:       append([]Peer(nil), v.members...),
		Learners:      append([]Peer(nil), v.learners...),
		Peers:         s.peerStatus(v.last),
		Unreachable:   s.transport.reach.list(),
	}
}

// peerStatus is the leader's view of the other servers, with each one's lag
// behind last; nil on any other server.
func (s *Server) peerStatus(last uint64) []PeerStatus {
	if s.isStopped() {
		return nil
	}
	ps := append([]PeerStatus(nil), s.board.getPeers()...)
	for i := range ps {
		ps[i].Lag = last - min(ps[i].Match, last)
	}
	return ps
}

// notLeader is the error for a call that only the leader can serve.
func notLeader(v *view) error {
	if v.leader.Name != "" {
		return &RedirectError{Leader: v.leader}
	}
	return ErrNoLeader
}

// Write proposes command and returns the state machine's Apply result once
// the command is committed and applied on this server, the leader.
//
// On a follower it returns a *RedirectError naming the leader, or ErrNoLeader
// when none is known (both match ErrNotLeader). A command the state machine's
// Validate refuses fails with an error matching ErrRejected. If ctx ends
// first Write returns ctx.Err(), if the leader loses its leadership first,
// ErrLeadershipLost, and if the server stops first, ErrStopped: in all three
// cases the command may still commit, and even be applied here. A ctx whose
// deadline was 100 ms or more away when Write began is polled rather than
// watched, so Write then returns up to about a millisecond after it ends.
//
// Apply, Query and Validate must not wait for a call to this server: while
// one runs, the state machine is busy. If Apply or Query waits for a Write
// or Read that is waiting on the server, Stop answers that call with
// ErrStopped, so that they can go on; a call held up by the state machine
// itself (Validate, ReadDirty) waits for them.
func (s *Server) Write(ctx context.Context, command []byte) ([]byte, error) {
	return s.write(ctx, command, callerOwns, nil)
}

// commandOwner says whose buffer a command is in.
type commandOwner uint8

const (
	// callerOwns: the caller may reuse the buffer once Write returns, so
	// the command is copied.
	callerOwns commandOwner = iota
	// serverOwns: the command is the server's to keep (a remote call's,
	// freshly decoded), and is not copied.
	serverOwns
)

// write is Write, for a command owned as owner says.
func (s *Server) write(ctx context.Context, command []byte, owner commandOwner, ann announcer) ([]byte, error) {
	if err := s.admitCommand(ctx, command); err != nil {
		return nil, err
	}
	// The log keeps the command for as long as the cluster lives, and new
	// servers are caught up from it; the caller may reuse its buffer as
	// soon as Write returns, or even before, if ctx ends first.
	if owner == callerOwns {
		command = append([]byte(nil), command...)
	}
	return s.commit(ctx, raft.EntryNormal, command, ann)
}

// admitCommand checks, before anything is proposed, that this server leads
// and that command is one the log may take.
func (s *Server) admitCommand(ctx context.Context, command []byte) error {
	if err := s.leaderCall(ctx); err != nil {
		return err
	}
	if len(command) > s.cfg.MaxCommandSize {
		return fmt.Errorf("%w: a command of %d bytes is above the limit of %d (Config.MaxCommandSize)", ErrTooLarge, len(command), s.cfg.MaxCommandSize)
	}
	if s.validator != nil {
		s.smMu.Lock()
		err := s.validator.Validate(command)
		s.smMu.Unlock()
		if err != nil {
			return &rejectedError{msg: err.Error()}
		}
	}
	return nil
}

// commit proposes an entry of kind with data, which the log keeps, and
// returns what applying it gave.
func (s *Server) commit(ctx context.Context, kind raft.EntryType, data []byte, ann announcer) ([]byte, error) {
	start := time.Now()
	p := proposalPool.Get().(*proposal)
	p.kind, p.data, p.ann = kind, data, ann
	if ann != nil {
		ann.lend()
	}
	r, err := submit(ctx, s, s.propc, p, p.done, &p.watch, start)
	return s.settle(p, r, err, start)
}

// settle ends a write proposed at start that waited for p's result r, or
// gave up on it with err: it recycles p if nothing may still use it, counts
// the call, and returns what its caller is answered.
func (s *Server) settle(p *proposal, r result, err error, start time.Time) ([]byte, error) {
	if err != nil {
		err = s.waitedOn("write", err)
	}
	if err == nil && r.err != ErrStopped {
		// Nothing refers to p any more: the driver and the applier let go
		// of it when they sent the result. After Stop's answer, the
		// applier may still look at it.
		*p = proposal{done: p.done, watch: p.watch.recycled()}
		proposalPool.Put(p)
	}
	err = s.answerErr(firstErr(err, r.err))
	countCall(&s.meters.writes, &s.meters.writeErrors, &s.meters.writeTime, start, err)
	return r.val, err
}

// leaderCall checks what every call that only the leader serves checks
// first.
func (s *Server) leaderCall(ctx context.Context) error {
	if s.isStopped() {
		return ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if Role(s.board.role.Load()) != Leader {
		v := s.board.get()
		return s.answerErr(notLeader(&v))
	}
	return nil
}

// submit hands req to the driver on ch and waits for its result on done,
// maybe with the watcher's help (see awaitWatched), for a caller that read
// the clock at start. An error means no result arrived: ctx ended or the
// server stopped.
func submit[T any](ctx context.Context, s *Server, ch chan<- T, req T, done chan result, w *watched, start time.Time) (result, error) {
	if err := enqueue(ctx, s, ch, req); err != nil {
		return result{}, err
	}
	return awaitWatched(ctx, s, done, w, start)
}

// enqueue hands req to the driver on ch, unless ctx ends or the server
// stops first.
func enqueue[T any](ctx context.Context, s *Server, ch chan<- T, req T) error {
	select {
	case ch <- req: // the common case, without a multi-way select
		return nil
	default:
	}
	select {
	case ch <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return ErrStopped
	}
}

// await waits for the result of a request enqueue handed on.
func await(ctx context.Context, s *Server, done <-chan result) (result, error) {
	if !s.isStopped() {
		// The result will come: Stop had not begun once req was in ch,
		// and Stop answers every request that reached ch, except one
		// whose Apply or Query is in progress, without waiting for that
		// (see failLeftovers). So stopc, which every caller shares and a
		// select would lock, need not be watched: a plain receive, or a
		// select with the caller's own ctx alone.
		if ctx.Done() == nil {
			return <-done, nil
		}
		select {
		case r := <-done:
			return r, nil
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
	select {
	case r := <-done:
		return r, nil
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-s.stopc:
		return result{}, ErrStopped
	}
}

// answerErr is a call's error as its caller sees it: a server that stopped
// while the call waited says so, though the call may have been failed first
// as a server that is no longer the leader (Stop steps it down).
func (s *Server) answerErr(err error) error {
	if err != nil && errors.Is(err, ErrNotLeader) && s.isStopped() {
		return ErrStopped
	}
	return err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// readPool recycles read requests that received their result, as
// proposalPool does for writes.
var readPool = sync.Pool{New: func() any {
	done := make(chan result, resultRoom)
	return &readRequest{done: done, watch: watched{wake: wakeWith(done)}}
}}

// proposalPool recycles proposals, with their channels, of writes that
// received their result.
var proposalPool = sync.Pool{New: func() any {
	done := make(chan result, resultRoom)
	return &proposal{done: done, watch: watched{wake: wakeWith(done)}}
}}

// Read answers query from the state machine with linearizable consistency:
// the leader confirms with a quorum that it still leads, waits until it has
// applied everything committed when the read arrived, then calls Query.
// Errors are those of Write; a read has no effect, so it is safe to retry.
func (s *Server) Read(ctx context.Context, query []byte) ([]byte, error) {
	if err := s.leaderCall(ctx); err != nil {
		return nil, err
	}
	if err := s.fitsFrame("query", len(query)); err != nil {
		return nil, err
	}
	start := time.Now()
	r := readPool.Get().(*readRequest)
	r.query = query
	res, err := submit(ctx, s, s.readc, r, r.done, &r.watch, start)
	if err != nil {
		err = s.waitedOn("read", err)
	}
	if err == nil && res.err != ErrStopped {
		*r = readRequest{done: r.done, watch: r.watch.recycled()}
		readPool.Put(r)
	}
	err = s.answerErr(firstErr(err, res.err))
	if err == nil {
		err = s.fitsFrame("answer", len(res.val))
	}
	countCall(&s.meters.reads, &s.meters.readErrors, &s.meters.readTime, start, err)
	if err != nil {
		return nil, err
	}
	return res.val, nil
}

// fitsFrame fails a read's query or answer that could not travel in a
// frame, so that a read behaves alike in process and over the wire.
func (s *Server) fitsFrame(what string, n int) error {
	if limit := s.cfg.MaxFrameSize - wire.FrameOverhead; n > limit {
		return &tooLargeError{msg: fmt.Sprintf("exraft: too large: a read's %s of %d bytes is above the limit of %d (Config.MaxFrameSize less %d bytes of framing)", what, n, limit, wire.FrameOverhead)}
	}
	return nil
}

// ReadDirty answers query from this server's state machine as it is now,
// on any server. The answer may be stale.
func (s *Server) ReadDirty(ctx context.Context, query []byte) ([]byte, error) {
	if s.isStopped() {
		return nil, ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.fitsFrame("query", len(query)); err != nil {
		return nil, err
	}
	s.smMu.Lock()
	// Under the lock: a Restore that fails sets this before it lets go.
	if err := s.restoreFailed(); err != nil {
		s.smMu.Unlock()
		return nil, err
	}
	answer := s.sm.Query(query)
	s.smMu.Unlock()
	if err := s.fitsFrame("answer", len(answer)); err != nil {
		return nil, err
	}
	return answer, nil
}

// TriggerElection makes this server take the leadership soon. A follower
// that hears from a leader asks it to hand over (see TransferLeadership):
// the leader catches this server up first, so that a follower whose log
// lags still wins, and the leader stays in charge meanwhile. Any other
// server campaigns at once, with a forced election that voters grant even
// though they heard from a leader recently. On the leader it does nothing.
// It returns without waiting for the outcome; WaitStatus waits for it:
//
//	s.WaitStatus(ctx, func(st exraft.Status) bool { return st.Role == exraft.Leader })
func (s *Server) TriggerElection(ctx context.Context) error {
	var err error
	if e := s.onDriver(ctx, func() {
		if err = s.electionBlocked(); err == nil {
			err = s.nodeErr(s.node.TriggerElection())
		}
	}); e != nil {
		return e
	}
	return err
}
