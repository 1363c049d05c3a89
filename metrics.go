package exraft

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics: what a Server counts and times, for an operator to watch. The
// library depends on no metrics system: Metrics returns the figures, and
// Sample lists them with the names, help and kinds of the Prometheus data
// model, which a collector (the exraft/prometheus module) or a plain text
// endpoint (examples/kv) turns into its own form without naming any of
// them again.

// Metrics are a server's counters and timings since it started.
type Metrics struct {
	Status Status // the indexes, term and role they go with

	LeaderChanges uint64 // times this server learned of a new leader
	PreVotes      uint64 // pre-vote rounds it started (a cut-off server's attempts)
	Elections     uint64 // elections it started, each in a new term

	Writes, WriteErrors uint64    // Write calls served here, local or remote, session writes included
	WriteTime           Histogram // seconds from the call to its answer, successful ones only
	Reads, ReadErrors   uint64    // linearizable Reads served here
	ReadTime            Histogram
	ApplyTime           Histogram // seconds the state machine took per batch of committed entries

	SnapshotsTaken, SnapshotsSent, SnapshotsRestored uint64
	Sessions                                         int // client sessions the cluster keeps, as this server has applied

	// Stalls the watchdog logged: the protocol loop not coming round, the
	// applier held on one batch, for 2 s or more each (see the README's
	// "Watching a cluster").
	LoopStalls, ApplierStalls uint64

	// Peers counts what this server sent to each peer address.
	Peers []PeerTraffic
}

// PeerTraffic is what a server sent to one peer: protocol messages in Step
// calls, and their encoded bytes (snapshot chunks not included).
type PeerTraffic struct {
	Addr             string
	Messages, Bytes  uint64
	Snapshots        uint64 // snapshot transfers that completed
	SnapshotBytesOut uint64 // bytes of snapshots sent, retries included
}

// Histogram counts observations in buckets: Counts[i] those at most
// Bounds[i] (and above Bounds[i-1]); the last count, those above every
// bound.
type Histogram struct {
	Bounds []float64 // upper bounds, in seconds
	Counts []uint64  // len(Bounds)+1
	Count  uint64
	Sum    float64 // seconds
}

// timeBounds are the buckets of every timing: 25µs doubling to 6.6s.
var timeBounds = func() []float64 {
	b := make([]float64, 19)
	for i := range b {
		b[i] = 25e-6 * math.Pow(2, float64(i))
	}
	return b
}()

// timing is a histogram filled from many goroutines at once.
type timing struct {
	counts [20]atomic.Uint64 // len(timeBounds)+1
	sumNs  atomic.Uint64
}

func (t *timing) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(timeBounds) && s > timeBounds[i] {
		i++
	}
	t.counts[i].Add(1)
	t.sumNs.Add(uint64(max(d, 0)))
}

func (t *timing) read() Histogram {
	h := Histogram{Bounds: timeBounds, Counts: make([]uint64, len(t.counts))}
	for i := range t.counts {
		h.Counts[i] = t.counts[i].Load()
		h.Count += h.Counts[i]
	}
	h.Sum = time.Duration(t.sumNs.Load()).Seconds()
	return h
}

// meters is a server's counters; each field says who counts it.
type meters struct {
	leaderChanges          atomic.Uint64 // the driver, on publish
	writes, writeErrors    atomic.Uint64 // the callers
	reads, readErrors      atomic.Uint64
	writeTime, readTime    timing
	applyTime              timing        // the applier
	sessions               atomic.Int64  // the applier
	snapsTaken, snapsSent  atomic.Uint64 // the driver
	snapsRestored          atomic.Uint64 // the applier
	loopStalls             atomic.Uint64 // the watchdog
	applierStalls          atomic.Uint64 // the watchdog
	peersMu                sync.Mutex
	peers                  map[string]*peerMeter // by address, for the server's life
	preVotes, elections    atomic.Uint64         // copied from the Node on publish
	lastLeader             string                // the driver's
	leaderKnown, published bool
}

// peerMeter is what was sent to one address; its stream counts.
type peerMeter struct {
	messages, bytes        atomic.Uint64
	snapshots, snapshotOut atomic.Uint64
}

// peer returns the meter of addr, made on first use.
func (m *meters) peer(addr string) *peerMeter {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	if m.peers == nil {
		m.peers = map[string]*peerMeter{}
	}
	p := m.peers[addr]
	if p == nil {
		p = &peerMeter{}
		m.peers[addr] = p
	}
	return p
}

// call counts a Write or Read that took since start and ended with err.
func countCall(n, errs *atomic.Uint64, t *timing, start time.Time, err error) {
	n.Add(1)
	if err != nil {
		errs.Add(1)
		return
	}
	t.observe(time.Since(start))
}

// Metrics returns the server's counters and timings since it started. It
// does not block on the protocol or the state machine.
func (s *Server) Metrics() Metrics {
	m := &s.meters
	out := Metrics{
		Status:            s.Status(),
		LeaderChanges:     m.leaderChanges.Load(),
		PreVotes:          m.preVotes.Load(),
		Elections:         m.elections.Load(),
		Writes:            m.writes.Load(),
		WriteErrors:       m.writeErrors.Load(),
		WriteTime:         m.writeTime.read(),
		Reads:             m.reads.Load(),
		ReadErrors:        m.readErrors.Load(),
		ReadTime:          m.readTime.read(),
		ApplyTime:         m.applyTime.read(),
		SnapshotsTaken:    m.snapsTaken.Load(),
		SnapshotsSent:     m.snapsSent.Load(),
		SnapshotsRestored: m.snapsRestored.Load(),
		LoopStalls:        m.loopStalls.Load(),
		ApplierStalls:     m.applierStalls.Load(),
		Sessions:          int(m.sessions.Load()),
	}
	m.peersMu.Lock()
	for addr, p := range m.peers {
		out.Peers = append(out.Peers, PeerTraffic{Addr: addr, Messages: p.messages.Load(), Bytes: p.bytes.Load(),
			Snapshots: p.snapshots.Load(), SnapshotBytesOut: p.snapshotOut.Load()})
	}
	m.peersMu.Unlock()
	sortPeerTraffic(out.Peers)
	return out
}

func sortPeerTraffic(ps []PeerTraffic) {
	slices.SortFunc(ps, func(a, b PeerTraffic) int { return strings.Compare(a.Addr, b.Addr) })
}

// noteView counts, on the driver, what a newly published view shows.
func (m *meters) noteView(leader string, counts [2]uint64) {
	if leader != "" && (!m.leaderKnown || leader != m.lastLeader) && m.published {
		m.leaderChanges.Add(1)
	}
	if leader != "" {
		m.lastLeader, m.leaderKnown = leader, true
	}
	m.published = true
	m.preVotes.Store(counts[0])
	m.elections.Store(counts[1])
}
