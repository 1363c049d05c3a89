package exraft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
)

// Receiving a snapshot: chunks arrive in order on a connection the leader
// dialed for the transfer; the last one's call is answered once the state
// machine is restored and the Node has taken the snapshot's header, so
// that the leader knows where to go on from.

const methodInstallSnapshot = "Exraft.InstallSnapshot"

// snapChunk is one InstallSnapshot call's argument: a piece of a snapshot
// and what it belongs to. Every chunk of a transfer carries the same
// header, so each one names its transfer without any state on the wire.
type snapChunk struct {
	_msgpack struct{} `msgpack:",as_array"`
	Header   []byte   // the MsgSnap, as Step encodes messages (internal/wire)
	Size     uint64   // of the whole snapshot
	Offset   uint64   // of Data in it
	Last     bool     // Data ends the snapshot
	Data     []byte
}

const (
	// maxSnapshotBytes bounds the size a sender may announce. Far above
	// an in-memory state a Go process would hold, it is there to refuse a
	// size that is nonsense before any of it is buffered.
	maxSnapshotBytes = 4 << 30
	// maxReceiving bounds the transfers buffered at once, from all
	// senders: one leader sends one, but a name is only a claim.
	maxReceiving = 4
)

// receiver keeps the transfers in progress, at most one per sender.
type receiver struct {
	s       *Server
	mu      sync.Mutex
	senders map[string]*incoming
	// outcomes hands each chunk's outcome from the connection's reading
	// goroutine, which takes chunks in arrival order, to its call's
	// handler, as stepWaits does for Step.
	outcomes sync.Map // *[]byte (the call's args) → chunkOutcome
}

// incoming is one transfer being received.
type incoming struct {
	id    transferID
	size  uint64
	data  pieces      // each chunk's bytes, kept as they came: nothing reserved or copied
	timer *time.Timer // drops it when no chunk came for IOTimeout
}

// transferID names a transfer: who sends which snapshot.
type transferID struct {
	inc, term, index, lastTerm uint64
}

type chunkOutcome struct {
	err  error
	done *received // on the last chunk: the whole snapshot
}

type received struct {
	header raft.Message
	data   *pieces
}

func (r *receiver) init(s *Server) {
	r.s = s
	r.senders = map[string]*incoming{}
	context.AfterFunc(s.ctx, r.dropAll) // no buffer outlives the server
}

// chunkArrived takes in a chunk on the connection's reading goroutine. A
// chunk that does not decode ends the connection, as a malformed Step
// batch does: no exraft server sends one.
func (s *Server) chunkArrived(body any, conn net.Conn) {
	args, ok := body.(*[]byte)
	if !ok {
		return
	}
	out := s.snaps.recv.take(*args)
	if errors.Is(out.err, errMalformedChunk) {
		conn.Close()
		s.warn("chunk:"+remoteHost(conn)+out.err.Error(), "dropping a malformed snapshot chunk and the connection",
			"remote", conn.RemoteAddr().String(), "err", out.err)
	}
	s.snaps.recv.outcomes.Store(args, out)
}

// errMalformedChunk is wrapped by the error of a chunk that does not decode.
var errMalformedChunk = errors.New("exraft: InstallSnapshot: malformed")

// InstallSnapshot answers a chunk with its outcome; the last chunk's,
// once the snapshot is restored or has failed to be.
func (svc *rpcService) InstallSnapshot(args *[]byte, reply *[]byte) error {
	s := svc.s
	v, ok := s.snaps.recv.outcomes.LoadAndDelete(args)
	if !ok {
		return errors.New("exraft: InstallSnapshot: the chunk was not taken in; send the snapshot again")
	}
	out := v.(chunkOutcome)
	if out.err != nil || out.done == nil {
		return out.err
	}
	return s.install(out.done)
}

// take decodes a chunk and adds it to its transfer.
func (r *receiver) take(raw []byte) chunkOutcome {
	var c snapChunk
	if err := wire.Unmarshal(raw, &c); err != nil {
		return chunkOutcome{err: fmt.Errorf("%w chunk: %v", errMalformedChunk, err)}
	}
	h, err := r.s.snapshotHeader(c.Header)
	if err != nil {
		return chunkOutcome{err: err}
	}
	return r.add(&c, h)
}

// snapshotHeader decodes a chunk's header and checks that it is a MsgSnap
// for this server.
func (s *Server) snapshotHeader(b []byte) (raft.Message, error) {
	var dec wire.MessageDecoder
	msgs, err := dec.Decode(b)
	switch {
	case err != nil:
		return raft.Message{}, fmt.Errorf("%w header: %v", errMalformedChunk, err)
	case len(msgs) != 1 || msgs[0].Type != raft.MsgSnap || msgs[0].LastIndex == 0:
		return raft.Message{}, errors.New("exraft: InstallSnapshot: the header is not one snapshot message")
	case msgs[0].To != s.name:
		return raft.Message{}, fmt.Errorf("exraft: InstallSnapshot: the snapshot is for %q, and this is %q", msgs[0].To, s.name)
	}
	return msgs[0], nil
}

// add appends c to the transfer it belongs to, which it starts at offset
// 0, in place of any other from the same sender. A chunk out of order,
// past the announced size, or of no transfer in progress ends the
// transfer: the sender starts again.
func (r *receiver) add(c *snapChunk, h raft.Message) chunkOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := transferID{inc: h.FromInc, term: h.Term, index: h.LastIndex, lastTerm: h.LastTerm}
	in := r.senders[h.From]
	if c.Offset == 0 {
		var err error
		if in, err = r.start(h.From, id, c.Size); err != nil {
			return chunkOutcome{err: err}
		}
	} else if in == nil || in.id != id {
		return chunkOutcome{err: fmt.Errorf("exraft: InstallSnapshot: no transfer of the snapshot at index %d from %s is in progress here "+
			"(it timed out, was replaced or refused); start again from offset 0", h.LastIndex, h.From)}
	}
	if err := in.fits(c); err != nil {
		r.dropLocked(h.From, in)
		return chunkOutcome{err: fmt.Errorf("exraft: InstallSnapshot from %s: %v; the transfer is dropped, start again from offset 0", h.From, err)}
	}
	in.data.add(c.Data) // c was decoded into bytes of its own
	if !c.Last {
		in.timer.Reset(r.s.cfg.IOTimeout)
		return chunkOutcome{}
	}
	r.dropLocked(h.From, in)
	return chunkOutcome{done: &received{header: h, data: &in.data}}
}

// fits reports why c cannot be the next chunk of in.
func (in *incoming) fits(c *snapChunk) error {
	got, n := uint64(in.data.Len()), uint64(len(c.Data))
	switch {
	case c.Size != in.size:
		return fmt.Errorf("the size changed from %d to %d bytes", in.size, c.Size)
	case c.Offset != got:
		return fmt.Errorf("a chunk at offset %d, after %d bytes", c.Offset, got)
	case n > in.size-got:
		return fmt.Errorf("a chunk of %d bytes at offset %d goes past the announced %d", n, c.Offset, in.size)
	case c.Last && got+n != in.size:
		return fmt.Errorf("the last chunk ends at %d of %d bytes", got+n, in.size)
	}
	return nil
}

// start begins a transfer from the sender from. The caller holds r.mu.
func (r *receiver) start(from string, id transferID, size uint64) (*incoming, error) {
	if old := r.senders[from]; old != nil {
		r.s.log.Info("dropped an unfinished snapshot transfer for a new one from the same leader", "from", from,
			"index", old.id.index, "received", old.data.Len(), "size", old.size)
		r.dropLocked(from, old)
	}
	if size > maxSnapshotBytes {
		return nil, fmt.Errorf("exraft: InstallSnapshot: a snapshot of %d bytes is above the limit of %d", size, uint64(maxSnapshotBytes))
	}
	if len(r.senders) >= maxReceiving {
		return nil, fmt.Errorf("exraft: InstallSnapshot: %d transfers are in progress already; try again later", len(r.senders))
	}
	in := &incoming{id: id, size: size}
	in.timer = time.AfterFunc(r.s.cfg.IOTimeout, func() { r.expire(from, in) })
	r.senders[from] = in
	return in, nil
}

// expire drops a transfer that no chunk came for.
func (r *receiver) expire(from string, in *incoming) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.senders[from] == in {
		r.s.log.Info("dropped a snapshot transfer that stalled", "from", from, "index", in.id.index,
			"received", in.data.Len(), "size", in.size, "waited", r.s.cfg.IOTimeout)
		r.dropLocked(from, in)
	}
}

func (r *receiver) dropLocked(from string, in *incoming) {
	in.timer.Stop()
	if r.senders[from] == in {
		delete(r.senders, from)
	}
}

func (r *receiver) dropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for from, in := range r.senders {
		r.dropLocked(from, in)
	}
}

// ---- restoring --------------------------------------------------------------

// installJob is a snapshot for the applier to restore.
type installJob struct {
	header raft.Message
	data   *pieces
	// floor: the applier has gone through the entries up to here before
	// the job; a snapshot that fails to restore leaves the state machine
	// unfit from there (see snapshots.brokenFloor).
	floor uint64
	done  chan error // the Restore's outcome; buffered
}

// install restores a snapshot received whole, then steps its header into
// the Node, and returns only then: the sender's call ends when the leader
// may go on from the snapshot.
func (s *Server) install(rc *received) error {
	var job *installJob
	var err error
	if e := s.onDriver(s.ctx, func() { job, err = s.admitInstall(rc) }); e != nil {
		return ErrStopped
	}
	if err != nil || job == nil {
		return err
	}
	select {
	case err = <-job.done:
	case <-s.stopc:
		return ErrStopped
	}
	if e := s.onDriver(s.ctx, func() { s.installed(job, err) }); e != nil {
		return ErrStopped
	}
	if err != nil {
		return fmt.Errorf("exraft: %s could not restore the snapshot at index %d: %v", s.name, job.header.LastIndex, err)
	}
	return nil
}

// admitInstall decides, on the driver, what to do with a snapshot received
// whole: refuse it, step its header at once when the Node holds all it
// covers, or queue it for the applier, behind every entry handed out so
// far. Its index must be above those (the Node's commit), or the Restore
// would take back entries applied before it; after a failed Restore, at
// least the entries the applier went through before that one.
func (s *Server) admitInstall(rc *received) (*installJob, error) {
	sn, h := &s.snaps, &rc.header
	if sn.sm == nil {
		return nil, fmt.Errorf("exraft: %s cannot restore a snapshot: its state machine is not a Snapshotter; give every server the same kind of state machine", s.name)
	}
	if sn.installing {
		return nil, fmt.Errorf("exraft: %s is restoring another snapshot; try again once it is done", s.name)
	}
	st := s.node.Status()
	if err := s.fromLeader(h, &st); err != nil {
		return nil, err
	}
	failed := sn.failed.Load() != nil
	if !failed && h.LastIndex <= st.Commit {
		s.node.Step(*h) // nothing to restore: the Node acknowledges what it holds
		return nil, nil
	}
	floor := st.Commit
	if failed {
		floor = sn.brokenFloor
	}
	if h.LastIndex < floor {
		return nil, fmt.Errorf("exraft: %s needs a snapshot covering index %d at least, and this one ends at %d; send a later one", s.name, floor, h.LastIndex)
	}
	job := &installJob{header: *h, data: rc.data, floor: floor, done: make(chan error, 1)}
	sn.installing = true
	s.apply.push(applyTask{install: job})
	return job, nil
}

// fromLeader refuses a snapshot that the Node would not take from its
// sender. It takes one from a leader it has not heard of yet: a follower
// that needs a snapshot gets no appends, and may well have campaigned.
func (s *Server) fromLeader(h *raft.Message, st *raft.Status) error {
	switch {
	case h.Term < st.Term:
		return fmt.Errorf("exraft: %s is in term %d, past the snapshot's term %d: %s no longer leads", s.name, st.Term, h.Term, h.From)
	case st.Role == raft.Leader:
		return fmt.Errorf("exraft: %s leads term %d; send the snapshot again once it has heard of term %d", s.name, st.Term, h.Term)
	case h.Term == st.Term && st.Leader.Name != "" && st.Leader.Name != h.From:
		return fmt.Errorf("exraft: %s follows %s in term %d, not %s", s.name, st.Leader.Name, st.Term, h.From)
	}
	return nil
}

// installed takes in, on the driver, how a Restore ended: on success the
// Node continues its log from the snapshot, which this server keeps as
// its latest, to send should it lead.
func (s *Server) installed(job *installJob, err error) {
	sn, h := &s.snaps, &job.header
	sn.installing = false
	if err != nil {
		sn.brokenFloor = job.floor
		s.log.Error("the state machine's Restore failed: this server applies and answers nothing until the leader sends a snapshot again and it restores",
			"index", h.LastIndex, "from", h.From, "bytes", job.data.Len(), "err", err)
		return
	}
	s.node.Step(*h)
	if s.node.Status().SnapshotIndex == h.LastIndex {
		sn.latest = snapshotData{meta: raft.SnapshotMeta{Index: h.LastIndex, Term: h.LastTerm}, data: job.data}
	}
	s.log.Info("restored a snapshot from the leader", "index", h.LastIndex, "from", h.From, "bytes", job.data.Len())
}
