package exraft

import "sync"

// applyTask is one unit of the applier's work: committed entries, with the
// writes waiting on them, or a read released at an index.
type applyTask struct {
	entries []entry
	waiters []*proposal    // ascending by index, a subset of entries
	reads   []*readRequest // released reads, each at an index already applied
}

// applyQueue is an unbounded queue from the driver to the applier, so that
// a slow Apply never blocks the protocol.
type applyQueue struct {
	mu     sync.Mutex
	tasks  []applyTask
	signal chan struct{}
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

// done hands back the arrays of a task the applier has finished.
func (q *applyQueue) done(t *applyTask) {
	clear(t.waiters)
	clear(t.reads)
	q.mu.Lock()
	if t.waiters != nil {
		q.waitersSpare = t.waiters[:0]
	}
	if t.reads != nil {
		q.readsSpare = t.reads[:0]
	}
	q.mu.Unlock()
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

func (q *applyQueue) take(buf []applyTask) []applyTask {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf[:0], q.tasks...)
	clear(q.tasks)
	q.tasks = q.tasks[:0]
	return buf
}

// applyLoop is the applier goroutine: it runs the state machine on committed
// entries in log order and answers the writes and reads waiting on them.
func (s *Server) applyLoop() {
	defer s.wg.Done()
	var tasks []applyTask
	for {
		select {
		case <-s.apply.signal:
		case <-s.stopc:
			s.failApplyQueue()
			return
		}
		tasks = s.apply.take(tasks)
		for i := range tasks {
			s.runTask(&tasks[i])
			s.apply.done(&tasks[i])
			tasks[i] = applyTask{}
		}
	}
}

func (s *Server) runTask(t *applyTask) {
	if len(t.reads) > 0 {
		// Reads are queued after the entries they must see, so applied is
		// at or past every read's index here.
		s.smMu.Lock()
		for _, r := range t.reads {
			r.done <- result{val: s.sm.Query(r.query)}
		}
		s.smMu.Unlock()
		return
	}
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
				p.done <- result{val: val}
			} else {
				// Another leader's entry took the index: ours was lost.
				p.done <- result{err: ErrLeadershipLost}
			}
		}
	}
	s.smMu.Unlock()
	for ; w < len(t.waiters); w++ {
		t.waiters[w].done <- result{err: ErrLeadershipLost}
	}
}

func (s *Server) failApplyQueue() {
	for _, t := range s.apply.take(nil) {
		for _, p := range t.waiters {
			p.done <- result{err: ErrStopped}
		}
		for _, r := range t.reads {
			r.done <- result{err: ErrStopped}
		}
	}
}
