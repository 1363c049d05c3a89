package exraft

import "sync"

// applyTask is one unit of the applier's work: committed entries, with the
// writes waiting on them, or a read released at an index.
type applyTask struct {
	entries []entry
	waiters []*proposal    // ascending by index, a subset of entries
	reads   []*readRequest // released reads, each at an index already applied
	// answered counts the waiters, or reads, whose answer is taken care
	// of: the applier's, in order, or Stop's (see applyQueue.stop).
	answered int
}

// applyQueue is an unbounded queue from the driver to the applier, so that
// a slow Apply never blocks the protocol.
//
// Answers to the callers waiting on a task go through the queue's lock, so
// that Stop can answer, at once, whatever the applier has not: a caller
// whose ctx cannot end waits for its answer alone (see submit), and Apply
// may be stuck on something such a caller would do next.
type applyQueue struct {
	mu      sync.Mutex
	tasks   []applyTask // queued
	running []applyTask // taken by the applier in its current batch
	stopped bool        // Stop answered the rest; the applier answers nothing more
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

// answerWaiter answers t's next waiter with res, unless Stop has.
func (q *applyQueue) answerWaiter(t *applyTask, res result) {
	q.mu.Lock()
	if !q.stopped {
		t.waiters[t.answered].done <- res
	}
	t.answered++
	q.mu.Unlock()
}

// claimReads reports whether the applier is to answer t's reads, and from
// then on Stop leaves them to it: their queries read the callers' buffers,
// which a caller told ErrStopped may reuse.
func (q *applyQueue) claimReads(t *applyTask) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return false
	}
	t.answered = len(t.reads)
	return true
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
// one of the applier's batch that it has not answered, and drops the
// queued tasks. Stop calls it once the driver has returned, so that nothing
// is queued after it.
func (q *applyQueue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	fail := func(t *applyTask) {
		if len(t.reads) > 0 {
			for _, r := range t.reads[t.answered:] {
				r.done <- result{err: ErrStopped}
			}
			t.answered = len(t.reads)
			return
		}
		for _, p := range t.waiters[t.answered:] {
			p.done <- result{err: ErrStopped}
		}
		t.answered = len(t.waiters)
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
	for {
		select {
		case <-s.apply.signal:
		case <-s.stopc:
			return // Stop answers what is left
		}
		tasks := s.apply.take()
		for i := range tasks {
			s.runTask(&tasks[i])
			s.apply.done(&tasks[i])
		}
	}
}

func (s *Server) runTask(t *applyTask) {
	if len(t.reads) > 0 {
		if !s.apply.claimReads(t) {
			return
		}
		// Reads are queued after the entries they must see, so applied is
		// at or past every read's index here.
		s.smMu.Lock()
		for _, r := range t.reads {
			r.done <- result{val: s.sm.Query(r.query)}
		}
		s.smMu.Unlock()
		return
	}
	// A waiter that Stop answered is never recycled (see Write), so its
	// index and term stay readable here.
	w := 0
	s.smMu.Lock()
	for i := range t.entries {
		e := &t.entries[i]
		var val []byte
		if e.Type == entryNormal {
			val = s.sm.Apply(e.Data)
		}
		s.applied.Store(e.Index)
		if w < len(t.waiters) && t.waiters[w].index == e.Index {
			p := t.waiters[w]
			w++
			if p.term == e.Term {
				s.apply.answerWaiter(t, result{val: val})
			} else {
				// Another leader's entry took the index: ours was lost.
				s.apply.answerWaiter(t, result{err: ErrLeadershipLost})
			}
		}
	}
	s.smMu.Unlock()
	for ; w < len(t.waiters); w++ {
		s.apply.answerWaiter(t, result{err: ErrLeadershipLost})
	}
}
