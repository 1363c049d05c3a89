package exraft

import (
	"bytes"
	"sync"
)

// What the black-box tests of client_batch.go look at.

// BatchedWrites counts the writes cl sent to addr in shared calls, on its
// current connection.
func BatchedWrites(cl *Client, addr string) uint64 {
	writes, _ := BatchCounts(cl, addr)
	return writes
}

// BatchCounts counts the writes cl sent to addr in shared calls that were
// answered, and those calls, on its current connection.
func BatchCounts(cl *Client, addr string) (writes, calls uint64) {
	cc := cl.lookup(addr)
	if cc == nil {
		return 0, 0
	}
	cc.batch.mu.Lock()
	defer cc.batch.mu.Unlock()
	return cc.batch.batched, cc.batch.calls
}

// TurnTaken reports whether a call of cl's connection to addr holds its
// turn, so that Writes queue.
func TurnTaken(cl *Client, addr string) bool {
	cc := cl.lookup(addr)
	if cc == nil {
		return false
	}
	cc.batch.mu.Lock()
	defer cc.batch.mu.Unlock()
	return cc.batch.busy
}

// QueuedWrites counts the Writes queued on cl's connection to addr.
func QueuedWrites(cl *Client, addr string) int {
	cc := cl.lookup(addr)
	if cc == nil {
		return 0
	}
	cc.batch.mu.Lock()
	defer cc.batch.mu.Unlock()
	return len(cc.batch.queue)
}

// Batches reports whether cl knows that addr serves WriteBatch.
func Batches(cl *Client, addr string) bool {
	return batchSupport(cl.probes.of(addr).Load()) == batchYes
}

// Unbatched reports whether cl sends addr a call per Write.
func Unbatched(cl *Client, addr string) bool {
	return batchSupport(cl.probes.of(addr).Load()) == batchNo
}

// RefuseWriteBatch makes s answer WriteBatch as servers before it did.
func RefuseWriteBatch(s *Server) { s.withoutWriteBatch.Store(true) }

// BlockingKV is a state machine whose Apply of a command starting with
// "block" waits until Release.
type BlockingKV struct {
	StateMachine
	once    sync.Once
	release chan struct{}
}

func NewBlockingKV(sm StateMachine) *BlockingKV {
	return &BlockingKV{StateMachine: sm, release: make(chan struct{})}
}

func (b *BlockingKV) Apply(cmd []byte) []byte {
	if bytes.HasPrefix(cmd, []byte("block")) {
		<-b.release
	}
	return b.StateMachine.Apply(cmd)
}

// Release lets the blocked Applies, and every later one, go on.
func (b *BlockingKV) Release() { b.once.Do(func() { close(b.release) }) }

// WatchedCalls counts the calls the ctx watcher answers for if their
// contexts end (ctxwatch.go).
func WatchedCalls() int { return watchedCalls() }
