package exraft

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/session"
	"github.com/exraft/exraft/internal/wire"
)

// WriteBatch carries the commands of Writes (and of Session writes) that a
// Client's callers made at once to one address (client_batch.go): one call, one request, one reply
// and one pass through net/rpc on each side for all of them, whose costs
// dominated a small remote write. The server admits and proposes the
// commands one after another, so that they become consecutive entries, and
// answers each as its own Write would have.
const methodWriteBatch = "Exraft.WriteBatch"

// batchRequest is WriteBatch's argument.
type batchRequest struct {
	_msgpack struct{} `msgpack:",as_array"`
	Items    []batchCommand
}

// batchCommand is one Write of a batch, with its caller's remaining time
// in nanoseconds (0: none), as callRequest's Timeout. A Session's write
// (SessionWrite) has its session, its sequence number and the lowest one
// its client still waits on; a plain Write has a Session of 0.
type batchCommand struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Timeout  int64
	Session  uint64
	Seq      uint64
	Lowest   uint64
}

// batchReply is WriteBatch's reply: a result for each command, in order.
type batchReply struct {
	_msgpack struct{} `msgpack:",as_array"`
	Items    []batchResult
}

// batchResult is a Write's answer, as callReply carries it.
type batchResult struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Code     errCode
	Msg      string
	Leader   Peer
}

// appendTo appends r's encoding to b.
func (r *batchRequest) appendTo(b []byte) []byte {
	b = wire.AppendArrayLen(b, 1)
	b = wire.AppendArrayLen(b, len(r.Items))
	for i := range r.Items {
		b = r.Items[i].appendTo(b)
	}
	return b
}

func (c *batchCommand) appendTo(b []byte) []byte {
	b = wire.AppendArrayLen(b, 5)
	b = wire.AppendBin(b, c.Data)
	b = wire.AppendInt64(b, c.Timeout)
	b = wire.AppendUint64(b, c.Session)
	b = wire.AppendUint64(b, c.Seq)
	return wire.AppendUint64(b, c.Lowest)
}

// decode decodes b into r, which must be zero. Data may alias b:
// writeBatch copies the commands into the entries it proposes.
func (r *batchRequest) decode(b []byte) error {
	br := wire.NewReader(b)
	if br.ArrayLen() == 1 {
		n := br.ArrayLen()
		// Each command takes 6 bytes at least: the count cannot make
		// this allocate more than the body holds.
		r.Items = make([]batchCommand, 0, min(n, len(br.Rest())/6))
		for i := 0; i < n && br.OK(); i++ {
			if br.ArrayLen() != 5 {
				break
			}
			c := batchCommand{Data: br.Bin()}
			c.Timeout = br.Int64()
			c.Session, c.Seq, c.Lowest = br.Uint64(), br.Uint64(), br.Uint64()
			r.Items = append(r.Items, c)
		}
		if br.Done() && len(r.Items) == n {
			return nil
		}
	}
	*r = batchRequest{}
	return unmarshalInto(b, r)
}

// appendTo appends r's encoding to b.
func (r *batchReply) appendTo(b []byte) []byte {
	b = wire.AppendArrayLen(b, 1)
	b = wire.AppendArrayLen(b, len(r.Items))
	for i := range r.Items {
		b = r.Items[i].appendTo(b)
	}
	return b
}

func (r *batchResult) appendTo(b []byte) []byte {
	b = wire.AppendArrayLen(b, 4)
	b = wire.AppendBin(b, r.Data)
	b = wire.AppendUint8(b, uint8(r.Code))
	b = wire.AppendStr(b, r.Msg)
	return appendPeer(b, r.Leader)
}

// decode decodes b into r, which must be zero. Data may alias b.
func (r *batchReply) decode(b []byte) error {
	br := wire.NewReader(b)
	if br.ArrayLen() == 1 {
		n := br.ArrayLen()
		// Each result takes 9 bytes at least (its Leader's map alone).
		r.Items = make([]batchResult, 0, min(n, len(br.Rest())/9))
		for i := 0; i < n && br.OK(); i++ {
			if br.ArrayLen() != 4 {
				break
			}
			var it batchResult
			it.Data = br.Bin()
			it.Code = errCode(br.Uint8())
			it.Msg = br.Str()
			it.Leader = readPeer(&br)
			r.Items = append(r.Items, it)
		}
		if br.Done() && len(r.Items) == n {
			return nil
		}
	}
	*r = batchReply{}
	return unmarshalInto(b, r)
}

// err is the result's error, as decodeErr makes it of a callReply's.
func (r *batchResult) err() error {
	rep := callReply{Code: r.Code, Msg: r.Msg, Leader: r.Leader}
	return decodeErr(&rep)
}

// setErr sets the result's error, as encodeErr sets a callReply's.
func (r *batchResult) setErr(err error) {
	var rep callReply
	encodeErr(err, &rep)
	r.Code, r.Msg, r.Leader = rep.Code, rep.Msg, rep.Leader
}

// WriteBatch answers each command of the batch as Write would.
func (svc *rpcService) WriteBatch(args *[]byte, reply *[]byte) error {
	var req batchRequest
	if err := req.decode(*args); err != nil {
		return errors.New("exraft: bad request: " + err.Error())
	}
	ann := &batchAnnouncement{}
	ann.reply.init(svc.out, reply)
	results := svc.s.writeBatch(req.Items, ann)
	*reply = svc.s.encodeBatchReply(req.Items, results)
	if announced, _ := ann.reply.settle(); !announced {
		svc.replying(reply)
	}
	return nil
}

// encodeBatchReply encodes the results of items into a recycled buffer. A
// batch's results can add up to more than a frame holds though each fits
// one. A Session's write whose result would overflow it is answered with
// codeAskAlone: the Session asks again in a call of its own, and the
// session table answers with the result it kept. A plain Write cannot
// ask again without applying twice: its result is replaced with
// ErrTooLarge, which says that the write was applied.
func (s *Server) encodeBatchReply(items []batchCommand, results []batchResult) []byte {
	room := s.cfg.MaxFrameSize - wire.FrameOverhead
	for i := range results {
		room -= len(results[i].Data) + len(results[i].Msg) + 64
		if room >= 0 || results[i].Code != codeOK {
			continue
		}
		results[i] = batchResult{}
		if items[i].Session != 0 {
			results[i].Code, results[i].Msg = codeAskAlone, "exraft: the session's write was applied, but its result did not fit in the reply of the batch it went in: ask for it alone"
			continue
		}
		results[i].setErr(&tooLargeError{msg: "exraft: too large: the write was applied, but its result did not fit in the reply of the batch it went in (MaxFrameSize)"})
	}
	rep := batchReply{Items: results}
	return rep.appendTo(callReplyBuf())
}

// batchAnnouncement announces a batch's reply once the applier is about to
// answer the last of its proposed commands: the reply is written once, when
// all its results are in.
type batchAnnouncement struct {
	left  atomic.Int64 // proposed commands the applier has yet to announce
	reply replyAnnouncement
}

// lend does nothing: a batch's announcement is not recycled, so the
// applier may look at it whenever it likes.
func (a *batchAnnouncement) lend() {}

func (a *batchAnnouncement) announce() {
	if a.left.Add(-1) == 0 {
		a.reply.announce()
	}
}

// writeBatch admits every command, proposes those admitted one after
// another, and waits for each one's result within its own time.
func (s *Server) writeBatch(items []batchCommand, ann *batchAnnouncement) []batchResult {
	results := make([]batchResult, len(items))
	ctxs := make([]context.Context, len(items))
	props := make([]*proposal, len(items))
	// The commands arrived together: one clock reading times them all and
	// stamps their session records.
	start := time.Now()
	admitted := 0
	for i := range items {
		ctx, cancel := s.batchItemCtx(items[i].Timeout)
		defer cancel()
		ctxs[i] = ctx
		if err := s.admitCommand(ctx, items[i].Data); err != nil {
			s.failBatchItem(&results[i], err)
			continue
		}
		admitted++
	}
	ann.left.Store(int64(admitted))
	entries := batchEntries(items, results, start.UnixMilli())
	for i := range items {
		if results[i].Code != codeOK {
			continue
		}
		p := proposalPool.Get().(*proposal)
		p.kind, p.data = entries[i].kind, entries[i].data
		p.ann = ann
		if err := enqueue(ctxs[i], s, s.propc, p); err != nil {
			err = s.answerErr(err)
			countCall(&s.meters.writes, &s.meters.writeErrors, &s.meters.writeTime, start, err)
			s.failBatchItem(&results[i], err)
			continue
		}
		props[i] = p
	}
	for i, p := range props {
		if p == nil {
			continue
		}
		r, err := await(ctxs[i], s, p.done)
		val, err := s.settle(p, r, err, start)
		if err != nil {
			s.failBatchItem(&results[i], err)
			continue
		}
		results[i].Data = val
	}
	return results
}

// batchEntry is an entry a command proposes.
type batchEntry struct {
	kind raft.EntryType
	data []byte
}

// batchEntries makes the entries the admitted commands propose: the
// command, or, for a Session's write, its record stamped with now (as
// sessionWrite makes it). Their bytes are copies, all in one allocation:
// a command aliases the request, which a proposal may outlive (its caller
// gives up while it waits for the driver), and the log copies each entry.
func batchEntries(items []batchCommand, results []batchResult, now int64) []batchEntry {
	size := 0
	for i := range items {
		if results[i].Code == codeOK {
			size += len(items[i].Data) + sessionRecordMax
		}
	}
	buf := make([]byte, 0, size)
	entries := make([]batchEntry, len(items))
	for i := range items {
		c := &items[i]
		if results[i].Code != codeOK {
			continue
		}
		from := len(buf)
		kind := raft.EntryNormal
		if c.Session == 0 {
			buf = append(buf, c.Data...)
		} else {
			r := session.Record{Kind: session.Write, Time: now, ID: c.Session, Seq: c.Seq, Lowest: c.Lowest, Command: c.Data}
			buf, kind = r.Append(buf), raft.EntrySession
		}
		entries[i] = batchEntry{kind: kind, data: buf[from:len(buf):len(buf)]}
	}
	return entries
}

// failBatchItem sets a command's error, as Write's handler would.
func (s *Server) failBatchItem(r *batchResult, err error) {
	if s.isStopped() && errors.Is(err, context.Canceled) {
		err = ErrStopped
	}
	r.setErr(err) // never codeOK: writeBatch tells failures by it
}

// batchItemCtx is a command's ctx, as handleAppend makes a call's: it ends
// a little before its caller's does. A command whose caller's time has run
// out starts ended, and is not proposed.
func (s *Server) batchItemCtx(timeout int64) (context.Context, context.CancelFunc) {
	if timeout == 0 {
		return s.ctx, func() {}
	}
	d := time.Duration(timeout)
	d -= min(d/10, replyMargin)
	if sl := s.deadlines.slot(d); sl != nil {
		return sl, func() {}
	}
	return context.WithTimeout(s.ctx, d) // ended already if d <= 0
}
