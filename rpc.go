package exraft

import (
	"context"
	"errors"
	"net"
	"net/rpc"
	"runtime"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// The net/rpc service. Every method takes and returns msgpack bytes, so
// that the wire types stay unexported; errors travel as a code and the
// leader's Peer inside the reply, so that errors.Is and errors.As answer the
// same remotely as in-process.
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

type callRequest struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Peer     Peer
	Name     string
	Timeout  int64 // the caller's remaining time in nanoseconds; 0: none
}

type callReply struct {
	_msgpack struct{} `msgpack:",as_array"`
	Data     []byte
	Code     errCode
	Msg      string
	Leader   Peer
	Status   Status
}

type errCode uint8

const (
	codeOK errCode = iota
	codeRedirect
	codeNoLeader
	codeStopped
	codeRejected
	codeLeadershipLost
	codeLastServer
	codeUnknownServer
	codeDeadline
	codeCanceled
	codeOther
	codeTooLarge
	codeNameTaken
)

// encodeErr gives err its wire form.
func encodeErr(err error, r *callReply) {
	var redirect *RedirectError
	var rejected *rejectedError
	r.Msg = err.Error()
	switch {
	case errors.As(err, &redirect):
		r.Code, r.Leader = codeRedirect, redirect.Leader
	case errors.Is(err, ErrNoLeader):
		r.Code = codeNoLeader
	case errors.Is(err, ErrStopped):
		r.Code = codeStopped
	case errors.As(err, &rejected):
		r.Code, r.Msg = codeRejected, rejected.msg
	case errors.Is(err, ErrLeadershipLost):
		r.Code = codeLeadershipLost
	case errors.Is(err, ErrLastServer):
		r.Code = codeLastServer
	case errors.Is(err, ErrUnknownServer):
		r.Code = codeUnknownServer
	case errors.Is(err, ErrTooLarge):
		r.Code = codeTooLarge
	case errors.Is(err, ErrNameTaken):
		r.Code = codeNameTaken
	case errors.Is(err, context.DeadlineExceeded):
		r.Code = codeDeadline
	case errors.Is(err, context.Canceled):
		r.Code = codeCanceled
	default:
		r.Code = codeOther
	}
}

// decodeErr is encodeErr's inverse.
func decodeErr(r *callReply) error {
	switch r.Code {
	case codeOK:
		return nil
	case codeRedirect:
		return &RedirectError{Leader: r.Leader}
	case codeNoLeader:
		return ErrNoLeader
	case codeStopped:
		return ErrStopped
	case codeRejected:
		return &rejectedError{msg: r.Msg}
	case codeLeadershipLost:
		return ErrLeadershipLost
	case codeLastServer:
		return ErrLastServer
	case codeUnknownServer:
		return ErrUnknownServer
	case codeDeadline:
		return remoteCtxErr(r.Msg, context.DeadlineExceeded)
	case codeCanceled:
		return remoteCtxErr(r.Msg, context.Canceled)
	case codeTooLarge:
		return &tooLargeError{msg: r.Msg}
	case codeNameTaken:
		return &nameTakenError{msg: r.Msg}
	}
	return &RemoteError{Msg: r.Msg}
}

// remoteCtxErr keeps what a remote call said it waited on when its ctx
// ended, and still matches err.
func remoteCtxErr(msg string, err error) error {
	if msg == "" || msg == err.Error() {
		return err
	}
	return &waitError{msg: msg, err: err}
}

// RemoteError is an error a remote server returned that has no sentinel.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// rpcService is registered as "Exraft".
type rpcService struct{ s *Server }

// Step carries protocol messages between servers. The codec has already
// handed them to the driver in arrival order (see deliver); the method waits
// until the driver has processed them and replies with whatever this server
// has queued for the caller by then, typically the answers to those very
// messages. Carrying answers in the reply saves each round trip a second
// call in the other direction.
func (svc *rpcService) Step(args *[]byte, reply *[]byte) error {
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
	*reply = svc.s.transport.takeEncoded(w.addr)
	return nil
}

// replyMargin is the most a remote call's deadline is shortened by on the
// server, to leave its answer time to reach the caller.
const replyMargin = 100 * time.Millisecond

type stepWait struct {
	done chan struct{}
	addr string
}

func (svc *rpcService) handle(args *[]byte, reply *[]byte, f func(ctx context.Context, req *callRequest, rep *callReply) error) error {
	var req callRequest
	err := checkMsgpackValue(*args)
	if err == nil {
		err = msgpack.Unmarshal(*args, &req)
	}
	if err != nil {
		return errors.New("exraft: bad request: " + err.Error())
	}
	// A call must not outlive the server: its ctx derives from the server's.
	// It ends a little before the caller's, so that the caller receives
	// the server's account of what it waited on rather than its own bare
	// deadline.
	ctx, cancel := svc.s.ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		timeout := time.Duration(req.Timeout)
		ctx, cancel = context.WithTimeout(svc.s.ctx, timeout-min(timeout/10, replyMargin))
	}
	defer cancel()
	var rep callReply
	if err := f(ctx, &req, &rep); err != nil {
		if svc.s.isStopped() && errors.Is(err, context.Canceled) {
			err = ErrStopped
		}
		encodeErr(err, &rep)
	}
	b, err := msgpack.Marshal(&rep)
	if err != nil {
		return err
	}
	*reply = b
	return nil
}

func (svc *rpcService) Write(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) (err error) {
		// req.Data was decoded into a slice of its own: the log may keep it.
		rep.Data, err = svc.s.write(ctx, req.Data, serverOwns)
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
		rep.Status = svc.s.Status()
		return nil
	})
}

// deliver decodes a batch of protocol messages and hands them to the driver
// in arrival order. net/rpc runs handlers in goroutines of their own, which
// would reorder the messages of a pipelined stream; the codec calls this in
// order instead.
//
// With ack, the last message delivered carries a channel that the driver
// closes once it has processed the batch; deliver returns it with the
// sender's address, for the Step method to wait on.
func (s *Server) deliver(raw []byte, dec *msgDecoder, conn net.Conn, ack bool) (stepWait, bool) {
	msgs, err := dec.decode(raw)
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

// ---- sending --------------------------------------------------------------------

// transport sends protocol messages, one pipelined stream per peer address.
type transport struct {
	s         *Server
	mu        sync.Mutex
	peers     map[string]*peerStream
	strangers int // streams with stranger set, in peers
	wg        sync.WaitGroup
	reach     *reach
}

func newTransport(s *Server) *transport {
	return &transport{s: s, peers: map[string]*peerStream{}, reach: newReach(s.log)}
}

// maxStrangerStreams bounds the streams to addresses outside the
// configuration. Answers go to whatever address a message names, so
// without it one frame of messages naming many addresses would make a
// server start as many goroutines and dial them all. A few are needed: a
// server added by entries this one lacks asks for its vote, or leads it.
const maxStrangerStreams = 16

// send queues m for its peer; quiet leaves the peer's sender asleep, for a
// message that a Step reply will carry. It runs on the driver goroutine.
func (t *transport) send(m raft.Message, quiet bool) {
	if m.ToAddr == "" {
		return
	}
	t.mu.Lock()
	p := t.peers[m.ToAddr]
	if p == nil {
		select {
		case <-t.s.stopc:
			t.mu.Unlock()
			return
		default:
		}
		stranger := m.ToStranger
		if stranger && t.strangers >= maxStrangerStreams {
			t.mu.Unlock()
			return // dropped: Raft resends what matters
		}
		p = &peerStream{t: t, addr: m.ToAddr, stranger: stranger, signal: make(chan struct{}, 1)}
		if stranger {
			t.strangers++
		}
		t.peers[m.ToAddr] = p
		t.wg.Add(1)
		go p.run()
	}
	// Under t.mu, so that an idle stream cannot retire between the lookup
	// and the enqueue.
	p.enqueue(m, quiet)
	t.mu.Unlock()
}

// streamIdle is how long a peer stream may go unused before it retires.
// Answers go to whatever address a message came from, so without this every
// address ever seen, a removed server's or a forger's, would keep a
// goroutine for the life of the server.
const streamIdle = 5 * time.Second

// retire removes p from the transport if nothing was queued for it since the
// last check and nothing is in flight, and reports whether it did.
func (p *peerStream) retire(inflight int) bool {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used || len(p.queue) > 0 || inflight > 0 {
		p.used = false
		return false
	}
	if p.t.peers[p.addr] == p {
		delete(p.t.peers, p.addr)
		p.t.reach.forget(p.addr)
		if p.stranger {
			p.t.strangers--
		}
	}
	return true
}

func (t *transport) close() {
	// The server's stop channel is closed already; taking the lock waits
	// out a send that started a stream before it saw that. Closing the
	// connections ends a write to a peer that stopped reading at once,
	// rather than at its deadline.
	t.mu.Lock()
	for _, p := range t.peers {
		p.setConn(nil)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// setConn records the stream's connection, closing the one it replaces:
// Stop closes it from another goroutine.
func (p *peerStream) setConn(c net.Conn) {
	p.mu.Lock()
	old := p.conn
	p.conn = c
	p.mu.Unlock()
	if old != nil && old != c {
		old.Close()
	}
}

// maxInflightCalls bounds the Step calls in flight on one connection. A
// call beyond the first goes out only once pipelineBytes are queued: small
// messages do better waiting one round trip and leaving together (fewer
// calls, fewer system calls, bigger batches), while a stream of large
// appends, such as catching up a new server, is pipelined.
const (
	maxInflightCalls = 4
	pipelineBytes    = 64 << 10
)

type peerStream struct {
	t      *transport
	addr   string
	mu     sync.Mutex
	queue  []raft.Message
	bytes  int            // roughly what queue takes on the wire
	spare  []raft.Message // the array of the last batch taken, for reuse
	used   bool           // something was queued since the last idle check
	signal chan struct{}
	// stranger: addr was outside the configuration when the stream began
	// (see maxStrangerStreams).
	stranger bool
	conn     net.Conn // the open connection, for Stop to close
}

func (p *peerStream) enqueue(m raft.Message, quiet bool) {
	p.mu.Lock()
	p.used = true
	p.queue = append(p.queue, m)
	p.bytes += wireSize(&m)
	p.mu.Unlock()
	if quiet {
		return
	}
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// replyBufs holds the buffers of Step replies once the codec has written
// them (Server.callDone), for takeEncoded to reuse.
var replyBufs sync.Pool

// recycleReply returns a written Step reply's buffer to replyBufs. Large
// ones go to the garbage collector: a catch-up must not pin its size.
func recycleReply(body any) {
	// net/rpc is done with the reply once written, pointer and all.
	if p, ok := body.(*[]byte); ok && *p != nil && cap(*p) <= 64<<10 {
		*p = (*p)[:0]
		replyBufs.Put(p)
	}
}

// takeEncoded removes what is queued for the peer at addr, up to what fits
// in a reply, and returns it encoded; nil when nothing is queued.
func (t *transport) takeEncoded(addr string) []byte {
	t.mu.Lock()
	p := t.peers[addr]
	t.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	chunk, rest := splitBatch(p.queue, p.t.s.cfg.MaxFrameSize/2)
	var b []byte
	if len(chunk) > 0 {
		size := 0
		for i := range chunk {
			size += wireSize(&chunk[i])
		}
		// Sized from above, so that encoding does not grow the buffer.
		if bp, ok := replyBufs.Get().(*[]byte); ok && cap(*bp) >= size {
			b = (*bp)[:0]
		} else {
			b = make([]byte, 0, max(size, 4<<10))
		}
		b = appendMessages(b, chunk) // before the queue's array is reused
		p.bytes = max(p.bytes-size, 0)
	}
	n := copy(p.queue, rest)
	clear(p.queue[n:])
	p.queue = p.queue[:n]
	p.mu.Unlock()
	if n > 0 {
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
	return b
}

func (p *peerStream) take() []raft.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue, p.spare = p.spare[:0], nil
	p.bytes = 0
	return q
}

// queued reports roughly how many bytes wait to be sent.
func (p *peerStream) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// giveBack returns a batch's array once it has been encoded.
func (p *peerStream) giveBack(q []raft.Message) {
	clear(q)
	p.mu.Lock()
	if p.spare == nil {
		p.spare = q[:0]
	}
	p.mu.Unlock()
}

// run sends what is queued for the peer as batches of pipelined Step calls.
// Messages that cannot be sent are dropped: Raft retransmits what matters.
func (p *peerStream) run() {
	defer p.t.wg.Done()
	s := p.t.s
	var client *rpc.Client
	done := make(chan *rpc.Call, maxInflightCalls)
	inflight := 0
	var buf []byte
	var retryAt time.Time
	// waitingSince is when the oldest call in flight, or the last reply,
	// began the current wait for an answer.
	var waitingSince time.Time
	closeClient := func() {
		if client != nil {
			client.Close()
			client = nil
			p.setConn(nil)
		}
	}
	finish := func(call *rpc.Call) {
		inflight--
		waitingSince = time.Now()
		if call.Error != nil {
			s.log.Debug("send failed", "peer", p.addr, "err", call.Error)
			closeClient()
		}
	}
	defer func() {
		closeClient()
		for ; inflight > 0; inflight-- {
			<-done
		}
	}()
	idle := time.NewTicker(streamIdle)
	defer idle.Stop()
	for {
		select {
		case <-p.t.s.stopc:
			return
		case call := <-done:
			finish(call)
		case <-idle.C:
			if inflight > 0 && time.Since(waitingSince) > s.cfg.IOTimeout {
				// A peer answers every Step call at once; one that has
				// gone silent this long is gone. Closing fails the calls.
				s.log.Warn("a peer stopped answering; reconnecting", "peer", p.addr, "waited", time.Since(waitingSince).Round(time.Millisecond))
				closeClient()
			}
			if p.retire(inflight) {
				return
			}
			continue
		case <-p.signal:
		}
		// While a call is out, what is queued waits for its reply and
		// rides in the next batch, unless there is enough to pipeline.
		if inflight >= maxInflightCalls || (inflight > 0 && p.queued() < pipelineBytes) {
			continue
		}
		if inflight == 0 {
			runtime.Gosched()
		}
		batch := p.take()
		if len(batch) == 0 {
			continue
		}
		if client == nil && time.Now().After(retryAt) {
			conn, err := p.dial()
			if err != nil {
				p.t.reach.failed(p.addr, err)
				s.log.Debug("dial failed", "peer", p.addr, "err", err)
				retryAt = time.Now().Add(s.cfg.HeartbeatInterval)
				if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotExraft) {
					// Refused: this will not mend itself soon.
					retryAt = time.Now().Add(time.Second)
				}
			} else {
				p.t.reach.reached(p.addr)
				var dec msgDecoder
				codec := newPeerClientCodec(conn, s.cfg.MaxFrameSize, func(method string, body any) {
					// The peer's answers, in the order it sent them.
					if b, ok := body.(*[]byte); ok && method == methodStep && len(*b) > 0 {
						s.deliver(*b, &dec, conn, false)
					}
				})
				codec.setIOTimeout(s.cfg.IOTimeout)
				client = rpc.NewClientWithCodec(codec)
				p.setConn(conn)
			}
		}
		// Without a connection the batch is dropped: Raft retransmits what
		// matters.
		for msgs := batch; len(msgs) > 0 && client != nil; {
			var chunk []raft.Message
			chunk, msgs = splitBatch(msgs, s.cfg.MaxFrameSize/2)
			// net/rpc encodes the arguments before Go returns, so one
			// buffer serves every call.
			buf = appendMessages(buf[:0], chunk)
			for inflight >= maxInflightCalls {
				select {
				case call := <-done:
					finish(call)
				case <-p.t.s.stopc:
					return
				}
			}
			if client == nil {
				break
			}
			if inflight == 0 {
				waitingSince = time.Now()
			}
			inflight++
			client.Go(methodStep, &buf, new([]byte), done)
		}
		p.giveBack(batch)
	}
}

// wireSize estimates the encoded size of m: from above while indexes and
// terms fit in 32 bits.
func wireSize(m *raft.Message) int {
	n := 64 + len(m.From) + len(m.FromAddr) + len(m.To)
	for j := range m.Entries {
		n += 16 + len(m.Entries[j].Data)
	}
	return n
}

// splitBatch cuts from msgs a prefix whose encoding stays near limit bytes
// (at least one message), so that one Step call fits in a frame.
func splitBatch(msgs []raft.Message, limit int) (chunk, rest []raft.Message) {
	size := 0
	for i := range msgs {
		n := wireSize(&msgs[i])
		if i > 0 && size+n > limit {
			return msgs[:i], msgs[i:]
		}
		size += n
	}
	return msgs, nil
}

func (p *peerStream) dial() (net.Conn, error) {
	s := p.t.s
	// Bounded more tightly than IOTimeout by default: while it dials, the
	// stream sends nothing, and an unreachable peer must not hold messages
	// for long.
	timeout := min(s.cfg.IOTimeout, max(2*s.cfg.ElectionTimeoutMax, 500*time.Millisecond))
	return dialConn(s.ctx, s.cfg.Dial, p.addr, s.cfg.TLS, s.identity, timeout)
}
