package chaos

import (
	"sync"
	"sync/atomic"
	"time"
)

// operation is one recorded call; ret < 0 until known (a put of unknown
// outcome gets the end of the history, or the return of its session's next
// acknowledged write).
type operation struct {
	client    int // porcupine's ClientId: a fresh one after each unknown outcome
	in        kvInput
	out       kvOutput
	call, ret int64
	session   bool
}

// history is what every client did, on one clock.
type history struct {
	start  time.Time
	nextID atomic.Int64

	mu  sync.Mutex
	ops []operation

	counts struct {
		writesOK, writesUnknown, writesFailed, readsOK, readsFailed atomic.Int64
	}
}

func newHistory(clients int) *history {
	h := &history{start: time.Now()}
	h.nextID.Store(int64(clients))
	return h
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// freshID is a new porcupine client: after an unknown outcome, the old
// one's operation may still be open.
func (h *history) freshID() int { return int(h.nextID.Add(1)) }

// record adds op and returns its index.
func (h *history) record(op operation) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	return len(h.ops) - 1
}

// bound sets the return of the operations at idx: if they took effect, it
// was before ret.
func (h *history) bound(idx []int, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, i := range idx {
		h.ops[i].ret = ret
	}
}

func (h *history) snapshot() []operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]operation(nil), h.ops...)
}
