package exraft

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/raft"
)

// Snapshots bound a long-running server's memory (docs/design.md §9). The
// applier, the only caller of the state machine, takes one every
// SnapshotThreshold entries; its bytes are written in memory off the
// applier, and the driver then tells the Node, which drops the log up to
// the snapshot but TrailingLogs entries. The leader streams its latest
// snapshot to a follower that needs dropped entries (snapshot_send.go); the
// follower's applier restores it between two Applies (snapshot_recv.go).
//
// Taking and restoring a large state costs processor time, which the
// serving goroutines of a busy process need too (docs/design.md §9). So
// the bytes are kept in pieces of snapPiece (no buffer doubling into one
// large block: every large allocation made while the garbage collector
// marks must first pay for itself in marking work, and stalled every
// goroutine for up to 0.2 s in the bench), the WriterTo and the Restore
// pause every snapYield bytes so as to work half the time (pacer), and
// each server's snapshot points are spread over ±SnapshotThreshold/4 by
// its name, so that the servers of a cluster, which apply the same
// entries, do not all encode at once.
//
// Each field says which goroutine owns it.

// snapshots is a server's snapshot state.
type snapshots struct {
	sm                  Snapshotter // nil: no snapshot is ever taken or restored
	threshold, trailing uint64
	seed                uint64 // a hash of the server's name: spreads its snapshot points

	// The applier's.
	// nextAt: the next snapshot is taken once applied reaches it, a
	// nextPoint after the last snapshot taken, tried or restored.
	nextAt uint64
	// skipTo: the state machine holds every entry up to it, restored from
	// a snapshot, and the Node may hand some of them out again.
	skipTo uint64
	// held: entries handed out while the state machine is unfit (failed),
	// applied once a Restore succeeds, after what it covers.
	held    [][]raft.Entry
	writing atomic.Bool // a snapshot's WriterTo is running

	// failed is why the last Restore failed, nil once one succeeds: the
	// state machine may be half restored, so it applies and answers
	// nothing. Set by the applier, read everywhere.
	failed atomic.Pointer[restoreFailure]

	// The driver's.
	latest snapshotData // the snapshot the leader sends; only one is kept
	// installing: a restore is queued on the applier; the next one waits.
	installing bool
	// brokenFloor: with failed set, the applier went through the entries
	// up to here before the failed Restore, so a snapshot must cover them.
	brokenFloor uint64
	sends       map[string]*sendState // by peer name (snapshot_send.go)

	recv receiver // chunks of snapshots arriving (snapshot_recv.go)
}

// snapshotData is a snapshot's metadata and bytes; the bytes are never
// modified, so senders share them.
type snapshotData struct {
	meta raft.SnapshotMeta // Index 0: none
	data *pieces
}

// restoreFailure is the error of a server whose Restore failed.
type restoreFailure struct {
	index uint64
	err   error
}

func (f *restoreFailure) Error() string {
	return fmt.Sprintf("exraft: the state machine failed to restore the snapshot at index %d (%v) and may be half restored: "+
		"this server applies and answers nothing until the leader sends a snapshot again and Restore succeeds (the leader retries on its own)",
		f.index, f.err)
}

func (f *restoreFailure) Unwrap() error { return f.err }

func (s *Server) initSnapshots() {
	s.snaps.sm, _ = s.sm.(Snapshotter)
	s.snaps.threshold = uint64(s.cfg.SnapshotThreshold)
	s.snaps.seed = s.snapSeed()
	s.snaps.nextAt = s.snaps.nextPoint(0)
	s.snaps.trailing = uint64(s.cfg.TrailingLogs)
	s.snaps.sends = map[string]*sendState{}
	s.snaps.recv.init(s)
}

// restoreFailed returns the error of a failed Restore, nil when the state
// machine is fit to serve.
func (s *Server) restoreFailed() error {
	if f := s.snaps.failed.Load(); f != nil {
		return f
	}
	return nil
}

// restoring reports whether the state machine is being restored or failed
// to be. Such a server must not lead, as it could not serve: the driver
// stops ticking its Node, so that it never campaigns. It goes on voting
// and following.
func (s *Server) restoring() bool {
	return s.snaps.installing || s.snaps.failed.Load() != nil
}

// refusedWhileRestoring reports whether the driver keeps m from the Node.
// A forced election would make this server lead. After a failed Restore,
// appends reach the Node without their entries: the state machine cannot
// apply them, so the log must not take them, but the Node still answers,
// and its answer makes the leader send a snapshot once its log no longer
// reaches back to where this log ends: at once for a server restarted
// blank, and from a new leader too, which knows nothing of the failed
// transfer. Dropped instead, the appends would go unanswered, and a new
// leader would probe for ever.
func (s *Server) refusedWhileRestoring(m *raft.Message) bool {
	if !s.restoring() {
		return false
	}
	switch {
	case m.Type == raft.MsgTimeoutNow:
		return true
	case m.Type == raft.MsgApp && len(m.Entries) > 0 && s.snaps.failed.Load() != nil:
		m.Entries = nil
	}
	return false
}

// electionBlocked is TriggerElection's refusal while restoring.
func (s *Server) electionBlocked() error {
	if !s.restoring() {
		return nil
	}
	if err := s.restoreFailed(); err != nil {
		return fmt.Errorf("exraft: this server cannot campaign: %w", err)
	}
	return errors.New("exraft: this server cannot campaign while it restores a snapshot from the leader; try again once it has")
}

// ---- taking (the applier) ---------------------------------------------------

// snapSeed is the hash of the server's name that spreads its snapshot
// points: the same in every run.
func (s *Server) snapSeed() uint64 {
	h := fnv.New64a()
	h.Write([]byte(s.name))
	return h.Sum64()
}

// nextPoint is where the snapshot after one at index last is due: from
// 3/4 to 5/4 of SnapshotThreshold after it, as a hash of the server's
// name and last picks. On average a server snapshots every threshold
// entries; servers with other names, or one that restored the leader's
// snapshot, at other points.
func (sn *snapshots) nextPoint(last uint64) uint64 {
	t := sn.threshold
	if t < 4 {
		return last + t
	}
	return last + t - t/4 + mix64(sn.seed^last)%(t/2+1)
}

// mix64 is splitmix64's finalizer: every bit of x moves every bit out.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// maybeSnapshot captures the state machine once applied reaches the next
// snapshot point (about SnapshotThreshold entries after the last), and
// writes it on a goroutine of its own, one at a time. A failure waits for
// the next point: until then the log just grows, and the server serves as
// before.
func (s *Server) maybeSnapshot() {
	sn := &s.snaps
	if sn.sm == nil || sn.writing.Load() || sn.failed.Load() != nil {
		return
	}
	applied := s.applied.Load()
	if applied < sn.nextAt {
		return
	}
	sn.nextAt = sn.nextPoint(applied)
	s.smMu.Lock()
	w, err := sn.sm.Snapshot()
	head := s.snapshotHead()
	s.smMu.Unlock()
	if err == nil && w == nil {
		err = errors.New("Snapshot returned no WriterTo and no error")
	}
	if err != nil {
		s.snapshotFailed(applied, "Snapshot", err)
		return
	}
	sn.writing.Store(true)
	s.wg.Add(1) // the applier holds one: Stop cannot be waiting at zero
	go s.writeSnapshot(applied, head, w)
}

func (s *Server) snapshotFailed(index uint64, step string, err error) {
	s.log.Warn("the state machine's "+step+" failed: the log keeps its entries until the next try; fix the state machine if this repeats",
		"index", index, "next_try_after", s.snaps.nextPoint(index), "err", err)
}

// writeSnapshot runs w into memory, after the envelope's head, and hands
// the bytes to the driver.
func (s *Server) writeSnapshot(index uint64, head []byte, w io.WriterTo) {
	defer s.wg.Done()
	defer s.snaps.writing.Store(false)
	data := new(pieces)
	data.Write(head)
	if _, err := w.WriteTo(&pacedWriter{w: data, pacer: newPacer()}); err != nil {
		s.snapshotFailed(index, "snapshot's WriteTo", err)
		return
	}
	s.tryOnDriver(func() { s.snapshotTaken(index, data) })
}

// snapshotTaken tells the Node that a snapshot covers index, and keeps it
// as the one to send, in place of the last.
func (s *Server) snapshotTaken(index uint64, data *pieces) {
	if index <= s.node.Status().SnapshotIndex {
		return // a snapshot restored meanwhile covers more
	}
	meta, err := s.node.Compact(index, s.snaps.trailing)
	if err != nil {
		s.log.Debug("a snapshot came too late to compact the log", "index", index, "err", err)
		return
	}
	s.snaps.latest = snapshotData{meta: meta, data: data}
	s.meters.snapsTaken.Add(1)
	s.log.Debug("took a snapshot", "index", meta.Index, "term", meta.Term, "bytes", data.Len())
}

// ---- restoring (the applier) ------------------------------------------------

// runInstall restores the state machine from a snapshot the leader sent,
// between two Applies, after every entry handed out before it.
func (s *Server) runInstall(job *installJob) {
	sn := &s.snaps
	index := job.header.LastIndex
	s.smMu.Lock()
	r := job.data.reader()
	sessions, err := splitSnapshot(r)
	if err == nil {
		err = sn.sm.Restore(r)
	}
	if err != nil {
		sn.failed.Store(&restoreFailure{index: index, err: err})
	} else {
		s.sessions = sessions
		s.meters.snapsRestored.Add(1)
		sn.failed.Store(nil)
		s.applied.Store(index)
		sn.skipTo, sn.nextAt = index, sn.nextPoint(index)
		s.applyHeld()
	}
	s.smMu.Unlock()
	job.done <- err
}

// applyHeld applies what was handed out while the state machine was
// unfit and the snapshot just restored does not cover. The caller holds
// smMu.
func (s *Server) applyHeld() {
	for _, es := range s.snaps.held {
		for i := range es {
			if es[i].Index <= s.snaps.skipTo {
				continue
			}
			s.applyEntry(&es[i])
			s.applied.Store(es[i].Index)
		}
	}
	clear(s.snaps.held)
	s.snaps.held = nil
}

// holdTask keeps a task's entries for after the next successful Restore,
// and answers its callers at once: a write's outcome is unknown, and a
// read cannot be served by this state machine.
func (s *Server) holdTask(t *applyTask) {
	if len(t.entries) > 0 {
		s.snaps.held = append(s.snaps.held, t.entries)
	}
	for _, p := range t.waiters {
		if take1(t, len(t.waiters)) {
			p.done <- result{err: ErrLeadershipLost}
		}
	}
	err := s.restoreFailed()
	for _, r := range t.reads {
		if take1(t, len(t.reads)) {
			r.done <- result{err: err}
		}
	}
}

// ---- the bytes -------------------------------------------------------------

const (
	// snapPiece is the size of the pieces a snapshot is kept in, and so
	// the largest allocation taking or receiving one makes.
	snapPiece = 256 << 10
	// snapYield is how many bytes a WriterTo writes, or a Restore reads,
	// between two yields of the processor (runtime.Gosched): the goroutines
	// that serve writes wait at most about that much encoding or decoding.
	snapYield = 64 << 10
)

// pieces is a snapshot's bytes: an io.Writer while it is written, then
// read only. Every piece but the last is full.
type pieces struct {
	bufs [][]byte
	n    int
}

func (p *pieces) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if len(p.bufs) == 0 || len(p.bufs[len(p.bufs)-1]) == snapPiece {
			p.bufs = append(p.bufs, make([]byte, 0, snapPiece))
		}
		last := &p.bufs[len(p.bufs)-1]
		k := min(len(b), snapPiece-len(*last))
		*last = append(*last, b[:k]...)
		b = b[k:]
	}
	p.n += n
	return n, nil
}

// add appends b as a piece of its own, which p keeps: a chunk received.
func (p *pieces) add(b []byte) {
	if len(b) > 0 {
		p.bufs = append(p.bufs, b)
		p.n += len(b)
	}
}

// Len is the number of bytes, nil's 0.
func (p *pieces) Len() int {
	if p == nil {
		return 0
	}
	return p.n
}

// at returns the bytes from off up to the end of their piece, at most max
// of them.
func (p *pieces) at(off, max int) []byte {
	for _, b := range p.bufs {
		if off < len(b) {
			return b[off:min(len(b), off+max)]
		}
		off -= len(b)
	}
	return nil
}

// bytes returns the bytes in one slice (tests).
func (p *pieces) bytes() []byte {
	out := make([]byte, 0, p.Len())
	if p != nil {
		for _, b := range p.bufs {
			out = append(out, b...)
		}
	}
	return out
}

// reader reads the bytes for a Restore, yielding every snapYield bytes.
func (p *pieces) reader() io.Reader {
	r := &piecesReader{pacer: newPacer()}
	if p != nil {
		r.bufs = p.bufs
	}
	return r
}

type piecesReader struct {
	bufs [][]byte
	off  int // in bufs[0]
	pacer
}

func (r *piecesReader) Read(b []byte) (int, error) {
	for len(r.bufs) > 0 && r.off == len(r.bufs[0]) {
		r.bufs, r.off = r.bufs[1:], 0
	}
	if len(r.bufs) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.bufs[0][r.off:])
	r.off += n
	r.add(n)
	return n, nil
}

// pacedWriter is what a WriterTo writes to, paced.
type pacedWriter struct {
	w io.Writer
	pacer
}

func (w *pacedWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.add(n)
	return n, err
}

// snapDuty is the share of the time an encoder or a Restore works: after
// each snapYield bytes it pauses as long as it took, so that it never
// takes more than half a processor from the goroutines that serve writes,
// and less when they keep it waiting for one. A snapshot takes twice as
// long as it could on an idle machine; nothing waits for it meanwhile.
const snapDuty = 0.5

// pacer pauses a WriterTo or a Restore every snapYield bytes: an encoder
// that never blocks would otherwise keep a processor for whole scheduler
// time slices (10 ms or more) while the goroutines that serve writes wait
// for one, and take as many processors as it finds, up to all of them.
type pacer struct {
	n     int       // bytes since the last pause
	began time.Time // of the work since the last pause
	// pause is called with the time since the last pause ended.
	pause func(worked time.Duration)
}

func newPacer() pacer {
	return pacer{began: time.Now(), pause: pauseFor}
}

// pauseFor rests for a pacer: it yields the processor at least, and
// sleeps so that the work was snapDuty of the time.
func pauseFor(worked time.Duration) {
	if d := time.Duration(float64(worked) * (1 - snapDuty) / snapDuty); d >= 20*time.Microsecond {
		time.Sleep(d)
		return
	}
	runtime.Gosched()
}

func (p *pacer) add(n int) {
	if p.n += n; p.n >= snapYield {
		p.n = 0
		p.pause(time.Since(p.began))
		p.began = time.Now()
	}
}
