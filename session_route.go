package exraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// How a Session finds the leader: it calls the server it believes leads,
// else the next of its addresses in turn; follows a redirect at once, unless
// it names a server that just failed (followers name a dead leader until
// they time out); and skips, for a while, a server that failed. When it
// learns nothing new it pauses, longer each time, so that it waits out an
// election without flooding the cluster.
const (
	// defaultAttemptTimeout bounds a Session's wait for one server's
	// answer before it asks another: longer than an election with the
	// default timeouts, so that a leader is not given up for a slow commit.
	defaultAttemptTimeout = time.Second
	// skipFailedFor is how long a server that failed is not called.
	skipFailedFor = time.Second
	minPause      = 2 * time.Millisecond
	maxPause      = 100 * time.Millisecond
)

// call makes one call on the leader, and retries it as the cluster's
// answers say, until one is definite or ctx ends. For a write (st set),
// each attempt tells the cluster the lowest sequence number st still waits
// on. uncertain reports whether an attempt may have been applied without
// its answer arriving: then the write's outcome was unknown for a while.
func (s *Session) call(ctx context.Context, method string, req *callRequest, st *sessionState) (rep callReply, uncertain bool, err error) {
	var last error
	var pause time.Duration
	redirects := 0
	for {
		if ctx.Err() != nil {
			return callReply{}, uncertain, s.gaveUp(ctx, method, last)
		}
		addr, err := s.target(st, req)
		if err != nil {
			return callReply{}, uncertain, err
		}
		rep, sent, err := s.attempt(ctx, addr, method, req)
		if err == nil {
			s.reached(addr, st, req.Seq)
			return rep, uncertain, nil
		}
		if last == nil || !pastDeadline(ctx) {
			// An attempt that ctx cut short heard nothing: what the one
			// before heard says more.
			last = err
		}
		var redirect *RedirectError
		switch {
		case ctx.Err() != nil:
			return callReply{}, uncertain || sent, s.gaveUp(ctx, method, last)
		case !sent && pastDeadline(ctx):
			// No time was left for the attempt: it asked no server, and
			// blames none. The pause below sees ctx end.
		case errors.As(err, &redirect):
			redirects++
			if s.redirected(redirect.Leader, redirects) {
				pause = 0
				continue
			}
		case errors.Is(err, ErrNoLeader):
			s.noLeader(addr)
		case definite(err):
			return callReply{}, uncertain, err
		default:
			// No answer, a lost connection, or a leader that lost its
			// leadership or stopped: the call may have gone through.
			uncertain = uncertain || sent
			s.failed(addr)
		}
		redirects = 0
		if pause = s.pause(ctx, pause); pause < 0 {
			return callReply{}, uncertain, s.gaveUp(ctx, method, last)
		}
	}
}

// pastDeadline reports whether ctx has ended or its deadline has passed. The
// timer that ends a context fires a moment after its deadline, later on a
// loaded machine, and an attempt begun in that moment ends at once, having
// heard nothing, while ctx.Err is still nil.
func pastDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// definite reports whether err is an answer that retrying cannot change.
func definite(err error) bool {
	var remote *RemoteError
	return errors.Is(err, ErrRejected) || errors.Is(err, ErrTooLarge) || errors.Is(err, errSessionUnknown) ||
		errors.Is(err, ErrSessionClosed) || errors.As(err, &remote)
}

// attempt calls addr once, within the attempt bound. sent reports whether
// the call may have reached the server: false when the connection could not
// be made.
//
// The bound is a slot of clientDeadlines, which many attempts share, rather
// than a context.WithTimeout of its own; none when ctx ends first anyway.
func (s *Session) attempt(ctx context.Context, addr, method string, req *callRequest) (rep callReply, sent bool, err error) {
	bound := s.c.AttemptTimeout
	if bound <= 0 {
		bound = defaultAttemptTimeout
	}
	var within *deadlineSlot
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > bound {
		if within = clientDeadlines.slot(bound); within == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, bound) // too short a bound for a slot
			defer cancel()
		}
	}
	if method == methodSessionWrite {
		w := sharedWrite{cmd: req.Data, session: req.Session, seq: req.Seq, lowest: req.Lowest, within: within}
		val, sent, err, ok, turn := s.c.writeShared(ctx, addr, w)
		if ok {
			return callReply{Data: val}, sent, err
		}
		if turn != nil {
			defer turn.batch.release(s.c, addr, turn)
		}
		// Alone: a write applied whose result did not fit in its batch's
		// reply (sent) stays sent, whatever becomes of this call.
		rep, sentAlone, err := s.c.callWithin(ctx, within, addr, method, req)
		return rep, sent || sentAlone, err
	}
	return s.c.callWithin(ctx, within, addr, method, req)
}

// gaveUp is the error of a call whose ctx ended: it matches ctx's error and
// says what the Session last heard.
func (s *Session) gaveUp(ctx context.Context, method string, last error) error {
	if last == nil {
		return ctx.Err()
	}
	return &waitError{msg: fmt.Sprintf("exraft: session %s: %v; the last attempt: %v", sessionStep(method), ctx.Err(), last), err: ctx.Err()}
}

// sessionStep names a Session's call as its user knows it: no user calls
// SessionOpen; a Session registers before its first write.
func sessionStep(method string) string {
	switch method {
	case methodSessionOpen:
		return "registration (a Session registers with the cluster before its first write)"
	case methodRead:
		return "read"
	case methodSessionWrite:
		return "write"
	case methodSessionClose:
		return "close"
	}
	return opName(method)
}

// target returns the address to call next. For a write (st set), it sets
// the lowest sequence number st waits on in req, in the same turn of mu.
func (s *Session) target(st *sessionState, req *callRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.addrs) == 0 {
		return "", errors.New("exraft: a Session needs the address of at least one server (NewSession(addrs...))")
	}
	if st != nil {
		req.Lowest = st.lowest()
	}
	if s.leader != "" && len(s.dead) == 0 {
		return s.leader, nil // no clock to read
	}
	now := time.Now()
	if s.leader != "" && !s.skipped(s.leader, now) {
		return s.leader, nil
	}
	n := len(s.addrs)
	soonest := ""
	for i := range n {
		a := s.addrs[(s.next+i)%n]
		if !s.skipped(a, now) {
			s.next = (s.next + i + 1) % n
			return a, nil
		}
		if soonest == "" || s.dead[a].Before(s.dead[soonest]) {
			soonest = a
		}
	}
	return soonest, nil // every one failed lately: the one that failed first
}

func (s *Session) skipped(addr string, now time.Time) bool {
	until, ok := s.dead[addr]
	return ok && now.Before(until)
}

// reached records that addr answered as the leader, and for a write (st
// set), that seq was answered.
func (s *Session) reached(addr string, st *sessionState, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dead) > 0 {
		delete(s.dead, addr)
	}
	s.leader = addr
	if st != nil {
		st.finish(seq)
	}
}

// failed records that addr did not answer.
func (s *Session) failed(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[addr] = time.Now().Add(skipFailedFor)
	if s.leader == addr {
		s.leader = ""
	}
}

// noLeader records that addr knows no leader.
func (s *Session) noLeader(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader == addr {
		s.leader = ""
	}
}

// redirected takes the leader a server named, learning its address, and
// reports whether to call it now: not if it failed lately, nor after more
// redirects in a row than there are servers (they disagree, for the
// moment, on who leads).
func (s *Session) redirected(leader Peer, inARow int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if leader.Addr == "" {
		return false
	}
	if !slices.Contains(s.addrs, leader.Addr) {
		s.addrs = append(s.addrs, leader.Addr)
	}
	if s.skipped(leader.Addr, time.Now()) {
		s.leader = ""
		return false
	}
	s.leader = leader.Addr
	return inARow <= len(s.addrs)+1
}

// pause waits before the next attempt, longer than the last time up to a
// bound, with jitter; it returns the pause, or -1 if ctx ended meanwhile.
func (s *Session) pause(ctx context.Context, last time.Duration) time.Duration {
	d := min(max(2*last, minPause), maxPause)
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return d
	case <-ctx.Done():
		return -1
	}
}
