package exraft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/exraft/exraft/internal/window"
)

// Session calls a cluster, not one server, and applies each of its writes
// exactly once. It knows the cluster by addresses: it finds the leader,
// follows redirects (and learns the addresses they name), moves on from a
// server that does not answer, waits out elections, and retries a Write
// until it learns the outcome or its ctx ends. A retry never applies the
// command twice: the cluster keeps, per session, the results its client has
// not yet seen, and answers a retry from them (Raft thesis §6.3).
//
// A Session is safe for concurrent use by many goroutines, each with
// writes in flight. It registers with the cluster on its first Write,
// through the log, and registers again, transparently, if the cluster has
// forgotten it (Config.SessionTimeout, Config.MaxSessions) while none of
// its writes had an unknown outcome.
//
// The guarantee has limits. A Write that returns an error other than
// ErrSessionExpired, ErrRejected or ErrTooLarge (its ctx ended, say) may
// still have been applied, once; it will never be applied after the
// Session has moved on. A Write whose session the cluster forgot while its
// outcome was unknown returns ErrSessionExpired: it was applied at most
// once. Two Sessions are two clients: the same command written through
// both is applied twice.
type Session struct {
	c *Client

	mu      sync.Mutex
	addrs   []string             // given, then learned from redirects
	leader  string               // the address believed to lead; "" if none
	next    int                  // the address to try next when no leader is known
	dead    map[string]time.Time // addresses that failed lately, until when to skip them
	cur     *sessionState        // nil until registered
	opening chan struct{}        // closed once a registration under way ends
	closed  bool
}

// sessionState is one registration: a Session that the cluster forgot
// registers again, and writes under the old one finish on their own.
type sessionState struct {
	id  uint64
	seq uint64 // the last sequence number handed out
	// low is the lowest sequence number not yet answered, seq+1 if none
	// is in flight; answered says, of each number from low to seq,
	// whether it was answered.
	low      uint64
	answered window.Window[bool]
}

// lowest is the lowest sequence number still waited on: the cluster may
// forget every result below it.
func (st *sessionState) lowest() uint64 { return max(st.low, 1) }

// begin hands out the next sequence number.
func (st *sessionState) begin() uint64 {
	st.low = max(st.low, 1) // none handed out yet
	st.seq++
	st.answered.Extend(int(st.seq-st.low) + 1)
	return st.seq
}

// finish marks seq answered. The lowest moves up past every number
// answered: O(1) a write, amortized. Finishing seq twice does nothing.
func (st *sessionState) finish(seq uint64) {
	if seq < st.low || seq > st.seq {
		return
	}
	*st.answered.At(int(seq - st.low)) = true
	k := 0
	for k < st.answered.Len() && *st.answered.At(k) {
		k++
	}
	st.answered.Drop(k)
	st.low += uint64(k)
}

// NewSession returns a Session on the cluster that the servers at addrs
// belong to (any of them; more are learned). It does no I/O: it registers
// with the cluster on first use.
func (c *Client) NewSession(addrs ...string) *Session {
	return &Session{c: c, addrs: append([]string(nil), addrs...), dead: map[string]time.Time{}}
}

// NewSession returns a Session on DefaultClient.
func NewSession(addrs ...string) *Session { return DefaultClient.NewSession(addrs...) }

// Write applies command exactly once on the cluster's state machine and
// returns Apply's result. It blocks until the command is applied, or known
// applied before, or ctx ends; meanwhile it retries on the leader it finds.
//
// Errors: ErrRejected, and ErrTooLarge for a command above the limit, as
// Server.Write's (not applied); ErrTooLarge also for a result too large
// for any reply (above the server's MaxFrameSize), which its text says
// (applied once: the result is lost, not the write). A result that only
// overflowed the reply of a call shared with other writes is asked for
// again alone, and arrives;
// ErrSessionExpired (applied at most once); ErrSessionClosed after Close;
// ctx's error, wrapped with what the Session was waiting on (the outcome
// is unknown: applied once or never).
func (s *Session) Write(ctx context.Context, command []byte) ([]byte, error) {
	if err := s.c.fitsFrame(methodWrite, len(command)); err != nil {
		return nil, err
	}
	for renewed := 0; ; renewed++ {
		st, seq, err := s.beginWrite(ctx)
		if err != nil {
			return nil, err
		}
		req := &callRequest{Data: command, Session: st.id, Seq: seq}
		rep, uncertain, err := s.call(ctx, methodSessionWrite, req, st) // finishes seq if answered
		if err != nil {
			s.finish(st, seq)
		}
		if errors.Is(err, errSessionUnknown) {
			switch {
			case uncertain:
				return nil, ErrSessionExpired
			case renewed == 2:
				return nil, errSessionChurn
			}
			s.forget(st) // not applied: register anew and write again
			continue
		}
		if err != nil {
			return nil, err
		}
		return rep.Data, nil
	}
}

// errSessionChurn: sessions registered anew are forgotten before their
// first write, again and again. Nothing was applied.
var errSessionChurn = errors.New("exraft: the cluster forgot this session again before its first write, after registering it anew twice: " +
	"the servers' Config.SessionTimeout is shorter than a write takes, or Config.MaxSessions is too low for the sessions registering; nothing was applied")

// Read answers query from the cluster's state machine with linearizable
// consistency, on the leader it finds. Its errors are Write's; a read has
// no effect, so its retries are free.
func (s *Session) Read(ctx context.Context, query []byte) ([]byte, error) {
	if err := s.c.fitsFrame(methodRead, len(query)); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrSessionClosed
	}
	rep, _, err := s.call(ctx, methodRead, &callRequest{Data: query}, nil)
	if err != nil {
		return nil, err
	}
	return rep.Data, nil
}

// Close makes the cluster forget the Session, and its unacknowledged
// results with it; calls made after Close fail with ErrSessionClosed.
// Close returns once the cluster has applied it, or ctx ends (the cluster
// then forgets the Session when it expires). A Session never used needs no
// I/O to close.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	st := s.cur
	already := s.closed
	s.closed, s.cur = true, nil
	s.mu.Unlock()
	if already || st == nil {
		return nil
	}
	_, _, err := s.call(ctx, methodSessionClose, &callRequest{Session: st.id}, nil)
	return err
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// registration returns the Session's current registration, registering
// it first if there is none, one goroutine at a time.
func (s *Session) registration(ctx context.Context) (*sessionState, error) {
	s.mu.Lock()
	for {
		switch {
		case s.closed:
			s.mu.Unlock()
			return nil, ErrSessionClosed
		case s.cur != nil:
			st := s.cur
			s.mu.Unlock()
			return st, nil
		case s.opening != nil:
			wait := s.opening
			s.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, fmt.Errorf("exraft: session: %w while waiting for its registration", ctx.Err())
			}
			s.mu.Lock()
			continue
		}
		done := make(chan struct{})
		s.opening = done
		s.mu.Unlock()
		rep, _, err := s.call(ctx, methodSessionOpen, &callRequest{}, nil)
		s.mu.Lock()
		s.opening = nil
		close(done)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if !s.closed {
			s.cur = &sessionState{id: rep.Session}
		}
	}
}

// beginWrite hands out the next sequence number of the current
// registration, registering first if there is none. A busy Session's
// goroutines queue on mu: the common case takes one turn.
func (s *Session) beginWrite(ctx context.Context) (*sessionState, uint64, error) {
	s.mu.Lock()
	if st := s.cur; st != nil && !s.closed {
		seq := st.begin()
		s.mu.Unlock()
		return st, seq, nil
	}
	s.mu.Unlock()
	st, err := s.registration(ctx)
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st, st.begin(), nil
}

// finish marks seq answered, or given up: from the next write on, the
// cluster may forget its result, and refuses any late copy of it.
func (s *Session) finish(st *sessionState, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.finish(seq)
}

// forget drops a registration the cluster no longer knows.
func (s *Session) forget(st *sessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == st {
		s.cur = nil
	}
}
