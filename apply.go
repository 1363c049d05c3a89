package exraft

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exraft/exraft/internal/raft"
)

// applyTask is one unit of the applier's work: committed entries, with the
// writes waiting on them, or a read released at an index.
type applyTask struct {
	entries []raft.Entry
	waiters []*proposal    // ascending by index, a subset of entries
	reads   []*readRequest // released reads, each at an index already applied
	install *installJob    // or a snapshot to restore (snapshot_recv.go)
	// taken counts the waiters, or reads, the applier has taken on, in
	// order; Stop takes on all the rest at once (see applyQueue.stop).
	// The applier takes a read on before its query runs, a waiter once
	// its entry is applied. Atomic: the applier adds without the lock.
	taken int64
}

// applyQueue is an unbounded queue from the driver to the applier, so that
// a slow Apply never blocks the protocol.
//
// Stop answers, at once, every caller of a task that the applier has not
// taken on (see applyTask.taken): a caller whose ctx cannot end waits for
// its answer alone (see await), and an Apply or Query in progress may be
// stuck on something such a caller would do next.
type applyQueue struct {
	mu      sync.Mutex
	tasks   []applyTask // queued
	running []applyTask // taken by the applier in its current batch
	signal  chan struct{}
	// The arrays of the last finished task's waiters and reads, for the
	// driver to fill again: one each is enough, as tasks are taken in
	// turn.
	waitersSpare []*proposal
	readsSpare   []*readRequest
}

// spareWaiters returns an empty slice to build a task's waiters in.
func (q *applyQueue) spareWaiters() []*proposal {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.waitersSpare
	q.waitersSpare = nil
	return w
}

// spareReads returns an empty slice to build a task's reads in.
func (q *applyQueue) spareReads() []*readRequest {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.readsSpare
	q.readsSpare = nil
	return r
}

func newApplyQueue() *applyQueue { return &applyQueue{signal: make(chan struct{}, 1)} }

func (q *applyQueue) push(t applyTask) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take hands the queued tasks to the applier as its next batch. The batch
// it finished gives its array to the queue.
func (q *applyQueue) take() []applyTask {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.running, q.tasks = q.tasks, q.running[:0]
	return q.running
}

// take1 takes on t's next waiter or read for the applier, and reports
// false once Stop has taken on the rest.
func take1(t *applyTask, n int) bool {
	return atomic.AddInt64(&t.taken, 1) <= int64(n)
}

// takeRest takes on for Stop everything in t the applier has not, and
// returns how many the applier had taken on.
func takeRest(t *applyTask) int {
	return int(min(atomic.SwapInt64(&t.taken, math.MaxInt32), math.MaxInt32))
}

// done hands back the arrays of a task the applier has finished.
func (q *applyQueue) done(t *applyTask) {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(t.waiters)
	clear(t.reads)
	if t.waiters != nil {
		q.waitersSpare = t.waiters[:0]
	}
	if t.reads != nil {
		q.readsSpare = t.reads[:0]
	}
	*t = applyTask{}
}

// stop answers ErrStopped to every caller waiting on a queued task, or on
// one of the applier's batch that it has not taken on, and drops the
// queued tasks. Stop calls it once the driver has returned, so that nothing
// is queued after it.
func (q *applyQueue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	fail := func(t *applyTask) {
		n := takeRest(t)
		for _, r := range t.reads[min(n, len(t.reads)):] {
			r.done <- result{err: ErrStopped}
		}
		for _, p := range t.waiters[min(n, len(t.waiters)):] {
			p.done <- result{err: ErrStopped}
		}
	}
	for i := range q.running {
		fail(&q.running[i])
	}
	for i := range q.tasks {
		fail(&q.tasks[i])
	}
	clear(q.tasks)
	q.tasks = q.tasks[:0]
}

// applyLoop is the applier goroutine: it runs the state machine on committed
// entries in log order and answers the writes and reads waiting on them.
func (s *Server) applyLoop() {
	defer s.wg.Done()
	s.stalls.applier.Store(goroutineID())
	for {
		select {
		case <-s.apply.signal:
		case <-s.stopc:
			return // Stop answers what is left
		}
		s.stalls.batchBegan()
		tasks := s.apply.take()
		for i := range tasks {
			start := time.Now()
			s.runTask(&tasks[i])
			if len(tasks[i].entries) > 0 {
				s.meters.applyTime.observe(time.Since(start))
			}
			s.apply.done(&tasks[i])
		}
		s.meters.sessions.Store(int64(s.sessions.Len()))
		s.board.poke() // AppliedIndex moved: WaitStatus looks
		s.maybeSnapshot()
		s.stalls.batchEnded()
	}
}

func (s *Server) runTask(t *applyTask) {
	if t.install != nil {
		s.runInstall(t.install)
		return
	}
	if s.restoreFailed() != nil {
		s.holdTask(t) // the state machine is not fit to apply or answer
		return
	}
	if len(t.reads) > 0 {
		// Reads are queued after the entries they must see, so applied is
		// at or past every read's index here.
		s.smMu.Lock()
		for _, r := range t.reads {
			if !take1(t, len(t.reads)) {
				break // Stop answered the rest
			}
			r.done <- result{val: s.sm.Query(r.query)}
		}
		s.smMu.Unlock()
		return
	}
	// A waiter that Stop answered is never recycled (see Write), so its
	// index and term stay readable here.
	answer := func(p *proposal, res result) {
		if take1(t, len(t.waiters)) {
			p.done <- res
		}
	}
	announce(t.waiters)
	w := 0
	s.smMu.Lock()
	for i := range t.entries {
		e := &t.entries[i]
		// A restored snapshot holds the entries up to skipTo: the Node may
		// hand some of them out again.
		covered := e.Index <= s.snaps.skipTo
		var res result
		if !covered {
			res.val, res.err = s.applyEntry(e)
			s.applied.Store(e.Index)
		}
		if w < len(t.waiters) && t.waiters[w].index == e.Index {
			p := t.waiters[w]
			w++
			if p.term == e.Term && !covered {
				answer(p, res)
			} else {
				// Another leader's entry took the index, and ours was
				// lost; or a restored snapshot covers it, and what it
				// returned is not known here.
				answer(p, result{err: ErrLeadershipLost})
			}
		}
	}
	s.smMu.Unlock()
	for ; w < len(t.waiters); w++ {
		answer(t.waiters[w], result{err: ErrLeadershipLost})
	}
}
