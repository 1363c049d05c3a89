package exraft

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TransferLeadership hands this server's leadership over to the voter name
// and returns once name leads, as this server sees it (it follows name).
// The leader catches name up, tells it to campaign at once (TimeoutNow,
// Raft thesis §3.10), and leads until name's election deposes it. Meanwhile
// reads go on and writes fail at once with an error that matches
// ErrNoLeader and names the transfer (a Session waits and retries them). If
// name has not taken over within an election timeout (it lags far behind,
// or cannot be reached), the leader takes writes again for an election
// timeout and tries anew, until ctx ends.
//
// Errors: on a follower, a *RedirectError or ErrNoLeader (ErrNotLeader);
// ErrUnknownServer when name is not a voter; nil at once when name is this
// leader's own. When ctx ends first, the error matches ctx.Err() and says
// what the transfer waited on; ErrStopped once the server stops.
func (s *Server) TransferLeadership(ctx context.Context, name string) error {
	if err := s.leaderCall(ctx); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		var err error
		if e := s.onDriver(ctx, func() {
			err = s.nodeErr(s.node.TransferLeadership(name))
			s.publish() // so that the wait below sees the transfer begun
		}); e != nil {
			if ctx.Err() != nil && attempt > 1 {
				// ctx ended between two attempts: say what they waited on.
				return s.transferWaitErr(ctx.Err(), name, attempt-1)
			}
			return e
		}
		if err != nil || name == s.name {
			return err
		}
		err = s.awaitTransfer(ctx, name, attempt)
		if !errors.Is(err, errTransferAbandoned) {
			return err
		}
		if err := s.pauseTransfer(ctx, name, attempt); err != nil {
			return err
		}
	}
}

// errTransferAbandoned: the transferee did not take over within an
// election timeout, and this server leads on.
var errTransferAbandoned = errors.New("exraft: the transfer was abandoned")

// awaitTransfer waits for the outcome of a transfer to name.
func (s *Server) awaitTransfer(ctx context.Context, name string, attempt int) error {
	err := s.await(ctx, func(v *view) (bool, error) {
		switch {
		case v.leader.Name == name:
			return true, nil
		case v.role == Leader && v.transferee == "":
			return true, errTransferAbandoned
		case v.leader.Name != "" && v.leader.Name != s.name:
			return true, fmt.Errorf("exraft: %s took over the leadership instead of %s (an election ran meanwhile); call TransferLeadership on %s to try again", v.leader.Name, name, v.leader.Name)
		}
		return false, nil
	})
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return s.transferWaitErr(ctxErr, name, attempt)
	}
	return err
}

// pauseTransfer lets writes through for an election timeout before the
// next attempt, so that a transferee that cannot take over does not keep
// the cluster from writing until ctx ends.
func (s *Server) pauseTransfer(ctx context.Context, name string, attempt int) error {
	t := time.NewTimer(s.cfg.ElectionTimeoutMin)
	defer t.Stop()
	select {
	case <-t.C:
		err := s.leaderCall(ctx)
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) { // it ended as the pause did
			return s.transferWaitErr(ctxErr, name, attempt)
		}
		return err
	case <-ctx.Done():
		return s.transferWaitErr(ctx.Err(), name, attempt)
	case <-s.stopc:
		return ErrStopped
	}
}

func (s *Server) transferWaitErr(err error, name string, attempt int) error {
	return &waitError{err: err, msg: fmt.Sprintf(
		"exraft: TransferLeadership to %s: %v while waiting for it to catch up and win an election (%d attempts, each given up after an election timeout): is it running and reachable from this server?",
		name, err, attempt)}
}

const methodTransferLeadership = "Exraft.TransferLeadership"

func (svc *rpcService) TransferLeadership(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		return svc.s.TransferLeadership(ctx, req.Name)
	})
}
