package exraft

import (
	"sync"
	"testing"
	"time"

	"github.com/exraft/exraft/internal/raft"
)

// gatedSM's Apply and Query of "block" wait until open is closed.
type gatedSM struct {
	counterSM
	entered, open chan struct{}
}

func (m *gatedSM) Query(query []byte) []byte {
	if string(query) == "block" {
		close(m.entered)
		<-m.open
	}
	return nil
}

func (m *gatedSM) Apply(command []byte) []byte {
	if string(command) == "block" {
		close(m.entered)
		<-m.open
	}
	return m.counterSM.Apply(command)
}

// TestStopAnswersWaitersOfTheBatchBeingApplied: Stop answers a write whose
// entry is in the batch the applier is working on, behind an Apply that
// will not return until that write's caller has its answer.
func TestStopAnswersWaitersOfTheBatchBeingApplied(t *testing.T) {
	sm := &gatedSM{entered: make(chan struct{}), open: make(chan struct{})}
	s := startAloneWith(t, sm, Config{})
	if !PollUntil(10*time.Second, func() bool { return s.Status().Role == Leader }) {
		t.Fatal("a one-server cluster did not lead")
	}
	ok := PollUntil(10*time.Second, func() bool { st := s.Status(); return st.AppliedIndex == st.CommitIndex })
	if !ok {
		t.Fatal("the server did not apply its own entries")
	}

	// One task of two entries, each with its writer, as a commit that
	// covers both would make it.
	st := s.Status()
	next, term := st.AppliedIndex+1, st.Term
	first := &proposal{index: next, term: term, done: make(chan result, 1)}
	second := &proposal{index: next + 1, term: term, done: make(chan result, 1)}
	s.apply.push(applyTask{
		entries: []raft.Entry{
			{Index: next, Term: term, Type: raft.EntryNormal, Data: []byte("block")},
			{Index: next + 1, Term: term, Type: raft.EntryNormal, Data: []byte("after")},
		},
		waiters: []*proposal{first, second},
	})
	behind := stopWhileGated(t, s, sm, second.done, "Apply")
	for name, r := range map[string]result{"the write being applied": <-first.done, "the write behind it": behind} {
		if r.err != ErrStopped {
			t.Errorf("%s: got %+v, want ErrStopped", name, r)
		}
	}
	if extra := len(first.done) + len(second.done); extra != 0 {
		t.Errorf("%d writes were answered twice", extra)
	}
}

// TestStopAnswersReadsOfTheBatchBeingQueried: the same for a read whose
// caller a query of the same batch waits for.
func TestStopAnswersReadsOfTheBatchBeingQueried(t *testing.T) {
	sm := &gatedSM{entered: make(chan struct{}), open: make(chan struct{})}
	s := startAloneWith(t, sm, Config{})
	if !PollUntil(10*time.Second, func() bool { return s.Status().Role == Leader }) {
		t.Fatal("a one-server cluster did not lead")
	}
	first := &readRequest{query: []byte("block"), done: make(chan result, 1)}
	second := &readRequest{query: []byte("k"), done: make(chan result, 1)}
	s.apply.push(applyTask{reads: []*readRequest{first, second}})
	if r := stopWhileGated(t, s, sm, second.done, "Query"); r.err != ErrStopped {
		t.Errorf("the read behind the query: got %+v, want ErrStopped", r)
	}
	// The read whose query was running is the applier's to answer.
	if r := <-first.done; r.err != nil {
		t.Errorf("the read being queried: got %+v, want its answer", r)
	}
	if extra := len(first.done) + len(second.done); extra != 0 {
		t.Errorf("%d reads were answered twice", extra)
	}
}

// stopWhileGated stops s once sm's gate holds the applier, and opens the
// gate only when the caller waiting on behind has its answer, as a caller
// that the Apply or Query in progress waits for would let it go on. It
// fails the test if Stop does not return, and returns that answer.
func stopWhileGated(t *testing.T, s *Server, sm *gatedSM, behind chan result, what string) result {
	t.Helper()
	select {
	case <-sm.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the applier did not start the batch")
	}
	var openOnce sync.Once
	open := func() { openOnce.Do(func() { close(sm.open) }) }
	t.Cleanup(open) // so that a failure leaves nothing stuck
	got := make(chan result, 1)
	go func() {
		r := <-behind
		got <- r
		open()
	}()
	stopped := make(chan struct{})
	go func() {
		s.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		open()
		t.Fatalf("Stop still running after 10s, with %s waiting on the caller of a later request in its batch", what)
	}
	return <-got
}
