package exraft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

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
// Each field says which goroutine owns it.

// snapshots is a server's snapshot state.
type snapshots struct {
	sm                  Snapshotter // nil: no snapshot is ever taken or restored
	threshold, trailing uint64

	// The applier's.
	lastTaken uint64 // the index of the last snapshot taken, tried or restored
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
	data []byte
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
// appends carrying entries are dropped too: the leader then cannot catch
// this server up from its log, and so sends it a snapshot once its log no
// longer reaches back (a new leader, say, whose log still did).
func (s *Server) refusedWhileRestoring(m *raft.Message) bool {
	if !s.restoring() {
		return false
	}
	switch {
	case m.Type == raft.MsgTimeoutNow:
		return true
	case m.Type == raft.MsgApp && len(m.Entries) > 0:
		return s.snaps.failed.Load() != nil
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

// maybeSnapshot captures the state machine once SnapshotThreshold entries
// were applied since the last snapshot, and writes it on a goroutine of its
// own, one at a time. A failure waits for the next threshold: until then
// the log just grows, and the server serves as before.
func (s *Server) maybeSnapshot() {
	sn := &s.snaps
	if sn.sm == nil || sn.writing.Load() || sn.failed.Load() != nil {
		return
	}
	applied := s.applied.Load()
	if applied < sn.lastTaken+sn.threshold {
		return
	}
	sn.lastTaken = applied
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
		"index", index, "next_try_after", index+s.snaps.threshold, "err", err)
}

// writeSnapshot runs w into memory, after the envelope's head, and hands
// the bytes to the driver.
func (s *Server) writeSnapshot(index uint64, head []byte, w io.WriterTo) {
	defer s.wg.Done()
	defer s.snaps.writing.Store(false)
	buf := bytes.NewBuffer(head)
	if _, err := w.WriteTo(buf); err != nil {
		s.snapshotFailed(index, "snapshot's WriteTo", err)
		return
	}
	data := buf.Bytes()
	if cap(data)-len(data) > len(data)/4 {
		data = bytes.Clone(data) // kept until the next one: not at twice its size
	}
	s.tryOnDriver(func() { s.snapshotTaken(index, data) })
}

// snapshotTaken tells the Node that a snapshot covers index, and keeps it
// as the one to send, in place of the last.
func (s *Server) snapshotTaken(index uint64, data []byte) {
	if index <= s.node.Status().SnapshotIndex {
		return // a snapshot restored meanwhile covers more
	}
	meta, err := s.node.Compact(index, s.snaps.trailing)
	if err != nil {
		s.log.Debug("a snapshot came too late to compact the log", "index", index, "err", err)
		return
	}
	s.snaps.latest = snapshotData{meta: meta, data: data}
	s.log.Debug("took a snapshot", "index", meta.Index, "term", meta.Term, "bytes", len(data))
}

// ---- restoring (the applier) ------------------------------------------------

// runInstall restores the state machine from a snapshot the leader sent,
// between two Applies, after every entry handed out before it.
func (s *Server) runInstall(job *installJob) {
	sn := &s.snaps
	index := job.header.LastIndex
	s.smMu.Lock()
	sessions, state, err := splitSnapshot(job.data)
	if err == nil {
		err = sn.sm.Restore(bytes.NewReader(state))
	}
	if err != nil {
		sn.failed.Store(&restoreFailure{index: index, err: err})
	} else {
		s.sessions = sessions
		sn.failed.Store(nil)
		s.applied.Store(index)
		sn.skipTo, sn.lastTaken = index, index
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
