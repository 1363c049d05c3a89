package exraft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/exraft/exraft/internal/raft"
)

// Membership changes: AddServer and RemoveServer, one at a time, each a
// configuration entry that the leader commits (docs/design.md §6).

// AddServer makes p a voter. On the leader it catches p up as a non-voter,
// then commits a configuration in which p votes, and returns once that
// commits. Adding a current member (same name, same address) is a no-op
// that returns nil; a member that came back as a new incarnation is
// re-admitted. A name that a member has at another address fails with
// ErrNameTaken and changes nothing: a server moves by RemoveServer of its
// name, then AddServer at the new address. On a follower it returns a
// redirect. Membership changes happen one at a time: concurrent calls
// queue, each bounded by its ctx. If ctx ends before p is a voter, the
// catch-up is abandoned, the configuration is as it was, and the error,
// which matches ctx.Err(), says what AddServer was waiting on (for
// instance why the leader cannot connect to p).
func (s *Server) AddServer(ctx context.Context, p Peer) error {
	if p.Name == "" || p.Addr == "" {
		return fmt.Errorf("exraft: AddServer needs a Name and an Addr (got %q at %q)", p.Name, p.Addr)
	}
	if _, _, err := net.SplitHostPort(p.Addr); err != nil {
		return fmt.Errorf("exraft: AddServer: Addr %q is not host:port: %v", p.Addr, err)
	}
	release, err := s.acquireMembership(ctx)
	if err != nil {
		return err
	}
	defer release()
	var startErr error
	var term uint64
	if err := s.onDriver(ctx, func() {
		startErr = s.nodeErr(s.node.AddServer(raft.Peer(p)))
		term = s.node.Status().Term
	}); err != nil {
		return err
	}
	switch {
	case errors.Is(startErr, raft.ErrAlreadyMember):
		return nil
	case errors.Is(startErr, raft.ErrNameTaken):
		return s.nameTaken(p)
	case startErr != nil:
		return startErr
	}
	var admit uint64
	err = s.await(ctx, func(v *view) (bool, error) {
		if v.role != Leader || v.term != term {
			return true, ErrLeadershipLost
		}
		var pending, known bool
		s.tryOnDriver(func() {
			j := s.node.JoinState(p.Name)
			pending, admit, known = j.Pending, j.AdmitIndex, j.Known
		})
		if !known {
			return true, ErrLeadershipLost
		}
		return !pending, nil
	})
	if err != nil {
		if !errors.Is(err, ErrStopped) {
			s.tryOnDriver(func() { s.node.CancelJoin(p.Name) })
		}
		return s.addStalled(ctx, p, err, "catching it up")
	}
	if admit == 0 {
		return nil // a voter already, as the configured incarnation
	}
	err = s.awaitCommitted(ctx, admit, term)
	return s.addStalled(ctx, p, err, "waiting for the configuration that makes it a voter to commit")
}

// nameTaken is AddServer's error for p whose name a member at another
// address has.
func (s *Server) nameTaken(p Peer) error {
	var at string
	for _, m := range s.board.get().members {
		if m.Name == p.Name {
			at = m.Addr
		}
	}
	return &nameTakenError{msg: fmt.Sprintf("exraft: AddServer %v: the name %q belongs to the member at %s; to move that server, RemoveServer(%q) first, then AddServer", p, p.Name, at, p.Name)}
}

// addStalled gives an AddServer that ctx ended the reason it did not finish:
// what it was doing and, if the leader could not connect to p, why. The
// error still matches ctx's.
func (s *Server) addStalled(ctx context.Context, p Peer, err error, doing string) error {
	if err == nil || ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	msg := fmt.Sprintf("exraft: AddServer %v: %v while %s", p, err, doing)
	if cause := s.transport.reach.lastError(p.Addr); cause != nil {
		msg += "; the leader cannot connect to it: " + strings.TrimPrefix(cause.Error(), "exraft: ")
	}
	return &waitError{msg: msg, err: err}
}

// RemoveServer commits a configuration without the server name and returns
// once it commits. Removing the leader itself commits, then the leader steps
// down and hands over to the most up-to-date voter. It fails with
// ErrUnknownServer for a name that is not a member, ErrLastServer for the
// only voter, and a redirect on a follower.
func (s *Server) RemoveServer(ctx context.Context, name string) error {
	release, err := s.acquireMembership(ctx)
	if err != nil {
		return err
	}
	defer release()
	for {
		var idx, term uint64
		var rmErr error
		if err := s.onDriver(ctx, func() {
			idx, rmErr = s.node.RemoveServer(name)
			rmErr = s.nodeErr(rmErr)
			term = s.node.Status().Term
		}); err != nil {
			return err
		}
		switch {
		case rmErr == nil && idx == 0:
			return nil
		case errors.Is(rmErr, raft.ErrConfBusy), errors.Is(rmErr, raft.ErrNotCommittedYet):
			// Wait for the change under way (or the first commit of the term)
			// to commit, then try again.
			v := s.board.get()
			commit := v.commit
			if err := s.await(ctx, func(v *view) (bool, error) {
				return v.commit > commit || v.role != Leader, nil
			}); err != nil {
				return err
			}
			continue
		case rmErr != nil:
			return rmErr
		}
		return s.awaitCommitted(ctx, idx, term)
	}
}

// awaitCommitted waits until the entry appended at idx in term commits.
func (s *Server) awaitCommitted(ctx context.Context, idx, term uint64) error {
	return s.await(ctx, func(v *view) (bool, error) {
		if v.commit >= idx {
			var ok bool
			s.tryOnDriver(func() {
				t, _ := s.node.EntryTerm(idx)
				ok = t == term
			})
			if ok {
				return true, nil
			}
			return true, ErrLeadershipLost
		}
		if v.term != term {
			return true, ErrLeadershipLost
		}
		return false, nil
	})
}

func (s *Server) acquireMembership(ctx context.Context) (func(), error) {
	if s.isStopped() {
		return nil, ErrStopped
	}
	if v := s.board.get(); v.role != Leader {
		return nil, notLeader(&v)
	}
	if err := s.membership.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { s.membership.Release(1) }, nil
}
