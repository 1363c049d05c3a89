package exraft

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/rpc"
	"runtime"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
)

// Inbound: the net/rpc service that peers and clients call, once conn.go has
// admitted their connection. Every method takes and returns msgpack bytes,
// so that the wire types stay unexported; errors travel as a code and the
// leader's Peer inside the reply (errors.go), so that errors.Is and
// errors.As answer the same remotely as in-process.
const (
	methodStep            = "Exraft.Step"
	methodWrite           = "Exraft.Write"
	methodRead            = "Exraft.Read"
	methodReadDirty       = "Exraft.ReadDirty"
	methodAwaitLeader     = "Exraft.AwaitLeader"
	methodAddServer       = "Exraft.AddServer"
	methodRemoveServer    = "Exraft.RemoveServer"
	methodTriggerElection = "Exraft.TriggerElection"
	methodStatus          = "Exraft.Status"
)

// callRequest is the argument of every call but Step.
type callRequest struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Peer     Peer
	Name     string
	Timeout  int64 // the caller's remaining time in nanoseconds; 0: none
	// Session calls (session_serve.go): the session, the write's sequence
	// number, and the lowest one its client still waits on.
	Session uint64
	Seq     uint64
	Lowest  uint64
}

// callReply is the reply of every call but Step.
type callReply struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Code     errCode
	Msg      string
	Leader   Peer
	// Status is Status's answer, nil in every other reply, where a Status
	// of zero took 197 bytes, three quarters of a Write's reply.
	Status  *Status
	Session uint64 // SessionOpen's: the new session
}

// The bodies are encoded and decoded by hand (wire.Reader), in the bytes
// that reflection gives them, which the two still read when the hand-made
// path does not (a Status, a body from another encoder).

// appendTo appends r's encoding to b.
func (r *callRequest) appendTo(b []byte) []byte {
	b = wire.AppendArrayLen(b, 7)
	b = wire.AppendBin(b, r.Data)
	b = appendPeer(b, r.Peer)
	b = wire.AppendStr(b, r.Name)
	b = wire.AppendInt64(b, r.Timeout)
	b = wire.AppendUint64(b, r.Session)
	b = wire.AppendUint64(b, r.Seq)
	return wire.AppendUint64(b, r.Lowest)
}

// decode decodes b into r, which must be zero. Data is a copy of its own.
func (r *callRequest) decode(b []byte) error {
	br := wire.NewReader(b)
	if br.ArrayLen() == 7 {
		r.Data = bytes.Clone(br.Bin())
		r.Peer = readPeer(&br)
		r.Name = br.Str()
		r.Timeout = br.Int64()
		r.Session, r.Seq, r.Lowest = br.Uint64(), br.Uint64(), br.Uint64()
		if br.Done() {
			return nil
		}
	}
	return unmarshalInto(b, r)
}

// appendTo appends r's encoding to b.
func (r *callReply) appendTo(b []byte) ([]byte, error) {
	b = wire.AppendArrayLen(b, 6)
	b = wire.AppendBin(b, r.Data)
	b = wire.AppendUint8(b, uint8(r.Code))
	b = wire.AppendStr(b, r.Msg)
	b = appendPeer(b, r.Leader)
	if r.Status == nil {
		b = append(b, msgpackNil)
	} else {
		st, err := wire.Marshal(r.Status)
		if err != nil {
			return nil, err
		}
		b = append(b, st...)
	}
	return wire.AppendUint64(b, r.Session), nil
}

// decode decodes b into r, which must be zero. Data may alias b.
func (r *callReply) decode(b []byte) error {
	br := wire.NewReader(b)
	if br.ArrayLen() == 6 {
		r.Data = br.Bin()
		r.Code = errCode(br.Uint8())
		r.Msg = br.Str()
		r.Leader = readPeer(&br)
		// A Status, even of zero, as servers before Status was a pointer
		// sent in every reply, is left to reflection.
		if rest := br.Rest(); br.OK() && len(rest) > 0 && rest[0] == msgpackNil {
			tail := wire.NewReader(rest[1:])
			r.Session = tail.Uint64()
			if tail.Done() {
				return nil
			}
		}
	}
	*r = callReply{}
	return unmarshalInto(b, r)
}

// unmarshalInto decodes b into *r by reflection, by way of a copy on the
// heap, so that r itself, which the fast paths fill, can stay on its
// caller's stack.
func unmarshalInto[T callRequest | callReply | batchRequest | batchReply](b []byte, r *T) error {
	v := new(T)
	err := wire.Unmarshal(b, v)
	*r = *v
	return err
}

func appendPeer(b []byte, p Peer) []byte {
	b = wire.AppendMapLen(b, 2)
	b = wire.AppendStr(b, "Name")
	b = wire.AppendStr(b, p.Name)
	b = wire.AppendStr(b, "Addr")
	return wire.AppendStr(b, p.Addr)
}

func readPeer(br *wire.Reader) Peer {
	var p Peer
	if br.MapLen() == 2 && br.Key("Name") {
		p.Name = br.Str()
		if br.Key("Addr") {
			p.Addr = br.Str()
		}
	}
	return p
}

// msgpackNil is msgpack's nil, a callReply's Status when it has none.
const msgpackNil = 0xc0

// serveCalls serves the Exraft service on an admitted connection until it
// ends, and returns why the codec stopped reading (wire.ServerCodec.ReadErr).
func (s *Server) serveCalls(conn net.Conn) error {
	var dec wire.MessageDecoder // the connection's reading goroutine's
	codec := wire.NewServerCodec(conn, wire.ServerConfig{
		MaxFrame:  s.cfg.MaxFrameSize,
		IOTimeout: s.cfg.IOTimeout,
		OnBody: func(method string, body any) {
			if method == methodInstallSnapshot {
				s.chunkArrived(body, conn) // in arrival order, as Step's batches
				return
			}
			if method != methodStep {
				return
			}
			if b, ok := body.(*[]byte); ok {
				if w, ok := s.deliver(*b, &dec, conn, true); ok {
					s.stepWaits.Store(b, w)
				}
			}
		},
		Admit:  s.admitCall,
		Done:   s.callDone,
		Strict: true,
	})
	wire.Serve(newRPCServer(&rpcService{s: s, out: codec}), codec)
	return codec.ReadErr()
}

// rpcService is registered as "Exraft", once per connection: its handlers
// tell their connection's codec that a reply is coming (replying), so that
// the replies of calls that end together go out in one write.
type rpcService struct {
	s   *Server
	out *wire.ServerCodec // nil in StartServer's check
}

// newRPCServer serves svc. StartServer's check that the service registers
// is what makes the error here impossible.
func newRPCServer(svc *rpcService) *rpc.Server {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Exraft", svc); err != nil {
		panic(err)
	}
	return srv
}

// replying announces the reply of a handler about to return, then yields:
// the handlers readied with it (the applier answers a batch of writes at
// once) are runnable rather than running on few processors, and this lets
// them announce theirs before it is written, to go in the same write.
func (svc *rpcService) replying(reply *[]byte) {
	if svc.out != nil {
		svc.out.Queue(reply)
		runtime.Gosched()
	}
}

// replyMargin is the most a remote call's deadline is shortened by on the
// server, to leave its answer time to reach the caller.
const replyMargin = 100 * time.Millisecond

func (svc *rpcService) handle(args *[]byte, reply *[]byte, f func(ctx context.Context, req *callRequest, rep *callReply) error) error {
	return svc.handleAppend(args, reply, func(ctx context.Context, req *callRequest, rep *callReply, _ announcer) error {
		return f(ctx, req, rep)
	})
}

// handleAppend is handle for the calls that append an entry to the log: f
// passes ann on to commit, and the applier announces the reply with it.
func (svc *rpcService) handleAppend(args *[]byte, reply *[]byte, f func(ctx context.Context, req *callRequest, rep *callReply, ann announcer) error) error {
	cs := callStates.Get().(*callState)
	req, rep := &cs.req, &cs.rep
	if err := req.decode(*args); err != nil {
		// Not announced: the reply to a call that fails is net/rpc's error,
		// not reply, which would never be written.
		cs.release()
		return errors.New("exraft: bad request: " + err.Error())
	}
	cs.ann.init(svc.out, reply)
	defer cs.finish(svc, reply)
	// A call must not outlive the server: its ctx derives from the server's.
	// It ends a little before the caller's, so that the caller receives
	// the server's account of what it waited on rather than its own bare
	// deadline. Its deadline is a shared slot (deadline.go), which the
	// server's Stop ends too, unless it is short.
	var ctx context.Context = svc.s.ctx
	if req.Timeout > 0 {
		timeout := time.Duration(req.Timeout)
		timeout -= min(timeout/10, replyMargin)
		if sl := svc.s.deadlines.slot(timeout); sl != nil {
			ctx = sl
		} else {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(svc.s.ctx, timeout)
			defer cancel()
		}
	}
	if err := f(ctx, req, rep, &cs.ann); err != nil {
		if svc.s.isStopped() && errors.Is(err, context.Canceled) {
			err = ErrStopped
		}
		encodeErr(err, rep)
	}
	// appendTo fails only on a Status, which no call that the applier
	// announces has: a reply the applier announced is always written.
	b, err := rep.appendTo(callReplyBuf())
	if err != nil {
		return err
	}
	*reply = b
	return nil
}

// callReplyBufs holds the buffers of written call replies (recycleCallReply),
// apart from replyBufs: Step's are sized for batches of messages, which a
// call's reply seldom is.
var callReplyBufs sync.Pool

// callReplyBuf is an empty buffer for a call's reply: appended to from nil,
// the reply grew by steps, an allocation each, at every call.
func callReplyBuf() []byte {
	if bp, ok := callReplyBufs.Get().(*[]byte); ok {
		return (*bp)[:0]
	}
	return make([]byte, 0, 256)
}

// recycleCallReply returns a written call reply's buffer to callReplyBufs.
// A large one (a big Read's answer) goes to the garbage collector instead.
func recycleCallReply(body any) {
	// net/rpc is done with the reply once written, pointer and all.
	if p, ok := body.(*[]byte); ok && *p != nil && cap(*p) <= 4<<10 {
		*p = (*p)[:0]
		callReplyBufs.Put(p)
	}
}

// callState is a call's request and reply, recycled: passed to a handler's
// function, they would be allocated anew for every call.
type callState struct {
	req callRequest
	rep callReply
	ann replyAnnouncement
}

var callStates = sync.Pool{New: func() any { return new(callState) }}

// finish ends a call once its reply is set: it announces the reply, unless
// the applier did, and recycles cs, unless the applier may yet look at it.
func (cs *callState) finish(svc *rpcService, reply *[]byte) {
	announced, lent := cs.ann.settle()
	// A reply left empty is not written: the call failed, and its error
	// goes instead, which Queue would wait for in vain.
	if !announced && len(*reply) > 0 {
		svc.replying(reply)
	}
	if lent && !announced {
		// Its entry may still be applied, and the applier then looks at
		// cs.ann: it is left to the garbage collector.
		return
	}
	cs.release()
}

// release recycles cs once its call is answered; it lets go of what the
// call referred to.
func (cs *callState) release() {
	*cs = callState{}
	callStates.Put(cs)
}

func (svc *rpcService) Write(args *[]byte, reply *[]byte) error {
	return svc.handleAppend(args, reply, func(ctx context.Context, req *callRequest, rep *callReply, ann announcer) (err error) {
		// req.Data was decoded into a slice of its own: the log may keep it.
		rep.Data, err = svc.s.write(ctx, req.Data, serverOwns, ann)
		return err
	})
}

func (svc *rpcService) Read(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) (err error) {
		rep.Data, err = svc.s.Read(ctx, req.Data)
		return err
	})
}

func (svc *rpcService) ReadDirty(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) (err error) {
		rep.Data, err = svc.s.ReadDirty(ctx, req.Data)
		return err
	})
}

func (svc *rpcService) AwaitLeader(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) (err error) {
		rep.Leader, err = svc.s.AwaitLeader(ctx)
		return err
	})
}

func (svc *rpcService) AddServer(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		return svc.s.AddServer(ctx, req.Peer)
	})
}

func (svc *rpcService) RemoveServer(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		return svc.s.RemoveServer(ctx, req.Name)
	})
}

func (svc *rpcService) TriggerElection(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		return svc.s.TriggerElection(ctx)
	})
}

func (svc *rpcService) Status(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		if svc.s.isStopped() {
			return ErrStopped
		}
		st := svc.s.Status()
		rep.Status = &st
		return nil
	})
}

// ---- Step ---------------------------------------------------------------------
//
// Step carries protocol messages between servers, and its reply carries the
// answers back, which saves each round trip a second call in the other
// direction. The path of one call through this server:
//
//  1. The codec hands the call's body to the OnBody hook of serveCalls, on
//     the connection's reading goroutine and so in arrival order. deliver
//     decodes the batch and passes the messages to the driver; the last one
//     carries a stepWait, which the hook files under the call's args.
//  2. A worker of wire.Serve runs rpcService.Step, side by side with other
//     calls. It finds the stepWait and waits on it.
//  3. The driver steps the messages and, once it has handed on their output,
//     closes the stepWait (driver.go: step, sendMessages). Messages for the
//     caller were queued on the caller's peer stream without waking it.
//  4. Step takes them off that queue (transport.takeQueued) and encodes them
//     as its reply (encodeReply), in a buffer from replyBufs.
//  5. Once the codec has written the reply, callDone (conn.go) hands the
//     buffer back (recycleReply).
//
// The replies to this server's own Step calls come in through deliver too,
// without a stepWait (transport.go, peerStream.connect).

// inbound is a message from a peer, for the driver; ack, on the last message
// of a Step call, is closed once its answers are ready to go back in the
// reply.
type inbound struct {
	m   raft.Message
	ack stepWait
}

// stepWait is what a Step call waits on: done closes once the driver has
// processed its messages, and addr is the caller's, where its answers queue.
type stepWait struct {
	done chan struct{}
	addr string
}

// deliver decodes a batch of protocol messages and hands them to the driver
// in arrival order. Handlers run side by side, which would reorder the
// messages of a pipelined stream; the codec calls this in order instead.
//
// With ack, the last message delivered carries a channel that the driver
// closes once it has processed the batch; deliver returns it with the
// sender's address, for the Step method to wait on.
func (s *Server) deliver(raw []byte, dec *wire.MessageDecoder, conn net.Conn, ack bool) (stepWait, bool) {
	msgs, err := dec.Decode(raw)
	if err != nil {
		conn.Close()
		s.warn("batch:"+remoteHost(conn)+err.Error(), "dropping a malformed message batch and the connection", "remote", conn.RemoteAddr().String(), "err", err)
		return stepWait{}, false
	}
	last := -1
	for i := range msgs {
		if msgs[i].To == s.name {
			last = i
		}
	}
	var w stepWait
	for i := 0; i <= last; i++ {
		if msgs[i].To != s.name {
			continue // meant for a server that used to live at this address
		}
		in := inbound{m: msgs[i]}
		if ack && i == last {
			w = stepWait{done: make(chan struct{}), addr: msgs[i].FromAddr}
			in.ack = w
		}
		select {
		case s.recvc <- in:
		case <-s.stopc:
			return stepWait{}, false
		}
	}
	return w, w.done != nil
}

// Step waits until the driver has processed the messages of this call (see
// deliver), and replies with whatever this server has queued for the caller
// by then, typically the answers to those very messages.
func (svc *rpcService) Step(args *[]byte, reply *[]byte) error {
	defer svc.replying(reply)
	v, ok := svc.s.stepWaits.LoadAndDelete(args)
	if !ok {
		return nil
	}
	w := v.(stepWait)
	select {
	case <-w.done:
	case <-svc.s.stopc:
		return nil
	}
	*reply = svc.s.transport.takeQueued(w.addr, svc.s.cfg.MaxFrameSize/2, encodeReply)
	return nil
}

// replyBufs holds the buffers of Step replies once the codec has written
// them, for encodeReply to reuse.
var replyBufs sync.Pool

// encodeReply encodes msgs, of about size bytes on the wire (wireSize: an
// estimate from above), into a buffer that size leaves room for.
func encodeReply(msgs []raft.Message, size int) []byte {
	var b []byte
	if bp, ok := replyBufs.Get().(*[]byte); ok && cap(*bp) >= size {
		b = (*bp)[:0]
	} else {
		b = make([]byte, 0, max(size, 4<<10))
	}
	return wire.AppendMessages(b, msgs)
}

// recycleReply returns a written Step reply's buffer to replyBufs. Large
// ones go to the garbage collector: a catch-up must not pin its size.
func recycleReply(body any) {
	// net/rpc is done with the reply once written, pointer and all.
	if p, ok := body.(*[]byte); ok && *p != nil && cap(*p) <= 64<<10 {
		*p = (*p)[:0]
		replyBufs.Put(p)
	}
}
