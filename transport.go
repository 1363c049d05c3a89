package exraft

import (
	"errors"
	"net"
	"net/rpc"
	"runtime"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
)

// Outbound: the protocol messages the driver hands on leave through one
// stream per peer address, each a goroutine that sends what is queued as
// pipelined Step calls on one connection (docs/design.md §8). The answers
// come back in the calls' replies and go in through deliver (rpc.go), as a
// peer's calls do.

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

// streamIdle is how long a peer stream may go unused before it retires.
// Answers go to whatever address a message came from, so without this every
// address ever seen, a removed server's or a forger's, would keep a
// goroutine for the life of the server. The stream also checks then that
// its peer still answers.
const streamIdle = 5 * time.Second

// maxInflightCalls bounds the Step calls in flight on one connection. A
// call beyond the first goes out only once pipelineBytes are queued: small
// messages do better waiting one round trip and leaving together (fewer
// calls, fewer system calls, bigger batches), while a stream of large
// appends, such as catching up a new server, is pipelined.
const (
	maxInflightCalls = 4
	pipelineBytes    = 64 << 10
)

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
		p = &peerStream{t: t, addr: m.ToAddr, stranger: stranger, signal: make(chan struct{}, 1), meter: t.s.meters.peer(m.ToAddr)}
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

// takeQueued removes from the queue of the stream to addr what fits in
// limit bytes on the wire (at least one message, if any is queued), and
// returns what encode makes of it; nil when nothing is queued. encode gets
// the messages and their wireSize, and must be done with them when it
// returns: they are still in the queue's array, which is reused. A Step
// reply carries what it returns (rpcService.Step).
func (t *transport) takeQueued(addr string, limit int, encode func(msgs []raft.Message, size int) []byte) []byte {
	t.mu.Lock()
	p := t.peers[addr]
	t.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	chunk, rest := splitBatch(p.queue, limit)
	var b []byte
	if len(chunk) > 0 {
		size := 0
		for i := range chunk {
			size += wireSize(&chunk[i])
		}
		b = encode(chunk, size)
		p.bytes = max(p.bytes-size, 0)
	}
	n := copy(p.queue, rest)
	clear(p.queue[n:])
	p.queue = p.queue[:n]
	p.mu.Unlock()
	if n > 0 {
		// What did not fit in the reply goes the usual way.
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
	return b
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

// peerStream sends what is queued for one peer address.
type peerStream struct {
	t     *transport
	addr  string
	meter *peerMeter // what was sent to addr, for Metrics
	// stranger: addr was outside the configuration when the stream began
	// (see maxStrangerStreams).
	stranger bool

	// Shared with the driver and the Step handlers, under mu.
	mu     sync.Mutex
	queue  []raft.Message
	bytes  int            // roughly what queue takes on the wire
	spare  []raft.Message // the array of the last batch taken, for reuse
	used   bool           // something was queued since the last idle check
	conn   net.Conn       // the open connection, for Stop to close
	signal chan struct{}  // something was queued that should not wait

	// The stream goroutine's own: run and what it calls.
	client   *rpc.Client    // nil while not connected
	done     chan *rpc.Call // where the calls in flight finish
	inflight int
	buf      []byte    // the encoding of the last call's messages
	retryAt  time.Time // no dial before this, after a failed one
	// waitingSince is when the oldest call in flight, or the last reply,
	// began the current wait for an answer.
	waitingSince time.Time
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

// take removes and returns everything queued.
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

// retire removes p from the transport if nothing was queued for it since the
// last check and nothing is in flight, and reports whether it did.
func (p *peerStream) retire() bool {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used || len(p.queue) > 0 || p.inflight > 0 {
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

// run sends what is queued for the peer as batches of pipelined Step calls,
// until the server stops or the stream retires. Messages that cannot be
// sent are dropped: Raft retransmits what matters.
func (p *peerStream) run() {
	defer p.t.wg.Done()
	p.done = make(chan *rpc.Call, maxInflightCalls)
	defer p.shutdown()
	idle := time.NewTicker(streamIdle)
	defer idle.Stop()
	silence := time.NewTicker(max(p.silenceBound()/4, time.Millisecond))
	defer silence.Stop()
	for {
		select {
		case <-p.t.s.stopc:
			return
		case call := <-p.done:
			p.finish(call)
		case <-silence.C:
			p.checkSilence()
			continue
		case <-idle.C:
			if p.retire() {
				return
			}
			continue
		case <-p.signal:
		}
		if !p.sendQueued() {
			return
		}
	}
}

// sendQueued sends what is queued, if now is the time (see
// maxInflightCalls), connecting first if need be. It reports false once the
// server has stopped.
func (p *peerStream) sendQueued() bool {
	// While a call is out, what is queued waits for its reply and rides in
	// the next batch, unless there is enough to pipeline.
	if p.inflight >= maxInflightCalls || (p.inflight > 0 && p.queued() < pipelineBytes) {
		return true
	}
	if p.inflight == 0 {
		// The driver may be queueing more for this peer (one Ready often
		// holds several messages for it): let it, so that they leave in
		// this batch.
		runtime.Gosched()
	}
	batch := p.take()
	if len(batch) == 0 {
		return true
	}
	if p.client == nil && time.Now().After(p.retryAt) {
		p.connect()
	}
	if !p.send(batch) {
		return false
	}
	p.giveBack(batch)
	return true
}

// connect dials the peer, records whether it was reached, and sets up the
// client whose Step calls carry the stream. After a failure it leaves the
// client nil and sets when to try again.
func (p *peerStream) connect() {
	s := p.t.s
	conn, err := p.dial()
	if err != nil {
		p.t.reach.failed(p.addr, err)
		s.log.Debug("dial failed", "peer", p.addr, "err", err)
		p.retryAt = time.Now().Add(s.cfg.HeartbeatInterval)
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotExraft) {
			// Refused: this will not mend itself soon.
			p.retryAt = time.Now().Add(time.Second)
		}
		return
	}
	p.t.reach.reached(p.addr)
	var dec wire.MessageDecoder // the connection's reading goroutine's
	codec := wire.NewClientCodec(conn, wire.ClientConfig{
		MaxFrame:  s.cfg.MaxFrameSize,
		IOTimeout: s.cfg.IOTimeout,
		OnBody: func(method string, body any) {
			// The peer's answers, in the order it sent them.
			if b, ok := body.(*[]byte); ok && method == methodStep && len(*b) > 0 {
				s.deliver(*b, &dec, conn, false)
			}
		},
	})
	p.client = rpc.NewClientWithCodec(codec)
	p.setConn(conn)
}

func (p *peerStream) dial() (net.Conn, error) {
	s := p.t.s
	// Bounded more tightly than IOTimeout by default: while it dials, the
	// stream sends nothing, and an unreachable peer must not hold messages
	// for long.
	timeout := min(s.cfg.IOTimeout, max(2*s.cfg.ElectionTimeoutMax, 500*time.Millisecond))
	return dialConn(s.ctx, s.cfg.Dial, p.addr, s.cfg.TLS, s.identity, timeout)
}

// send sends batch as Step calls that each fit in half a frame, waiting
// for room in the pipeline as need be. Without a connection, or once it
// fails, the rest of the batch is dropped. It reports false once the server
// has stopped.
func (p *peerStream) send(batch []raft.Message) bool {
	s := p.t.s
	for msgs := batch; len(msgs) > 0 && p.client != nil; {
		var chunk []raft.Message
		chunk, msgs = splitBatch(msgs, s.cfg.MaxFrameSize/2)
		// net/rpc encodes the arguments before Go returns, so one buffer
		// serves every call.
		p.buf = wire.AppendMessages(p.buf[:0], chunk)
		for p.inflight >= maxInflightCalls {
			select {
			case call := <-p.done:
				p.finish(call)
			case <-s.stopc:
				return false
			}
		}
		if p.client == nil {
			break
		}
		p.inflight++
		p.client.Go(methodStep, &p.buf, new([]byte), p.done)
		p.meter.messages.Add(uint64(len(chunk)))
		p.meter.bytes.Add(uint64(len(p.buf)))
		if p.inflight == 1 {
			// From when the call is written: over a slow link, writing a
			// large one takes a while, and its answer cannot come sooner.
			p.waitingSince = time.Now()
		}
	}
	return true
}

// finish accounts for a call that ended; one that failed takes the
// connection with it.
func (p *peerStream) finish(call *rpc.Call) {
	p.inflight--
	p.waitingSince = time.Now()
	if call.Error != nil {
		p.t.s.log.Debug("send failed", "peer", p.addr, "err", call.Error)
		p.closeClient()
	}
}

// checkSilence gives up on a connection whose peer has answered nothing for
// silenceBound while calls were in flight. A peer answers every Step call
// at once; one that has gone silent this long is gone, stopped reading, or
// sits behind a network that drops packets, where the connection would stay
// dead long after the network heals (TCP retransmits ever more rarely).
// The next batch dials afresh, and a new connection works as soon as the
// network does.
func (p *peerStream) checkSilence() {
	if p.inflight > 0 && time.Since(p.waitingSince) > p.silenceBound() {
		p.t.s.log.Warn("a peer stopped answering; reconnecting", "peer", p.addr, "waited", time.Since(p.waitingSince).Round(time.Millisecond))
		p.closeClient() // which fails the calls in flight
	}
}

// silenceBound is how long a peer may leave the calls in flight unanswered
// before the connection is given up: several election timeouts, as every
// heartbeat round in between went unanswered (a leader sends one each
// HeartbeatInterval, which is shorter), but at least a second, so that a
// peer that is merely slow (a long pause of its garbage collector, a large
// append on a slow link) keeps its connection; IOTimeout at most.
func (p *peerStream) silenceBound() time.Duration {
	cfg := &p.t.s.cfg
	return min(cfg.IOTimeout, max(4*cfg.ElectionTimeoutMax, time.Second))
}

func (p *peerStream) closeClient() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
		p.setConn(nil)
	}
}

// shutdown closes the connection and waits out the calls in flight, which
// then fail at once: net/rpc reports each on done.
func (p *peerStream) shutdown() {
	p.closeClient()
	for ; p.inflight > 0; p.inflight-- {
		<-p.done
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
