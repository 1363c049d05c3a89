package testkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exraft/exraft"
)

// The membership calls here return errors instead of failing the test: a
// nemesis calls them, sometimes from a goroutine of its own, and reports
// what went wrong with what it was doing.

// RemoveMember removes name from the configuration through whichever server
// leads, retrying while leadership moves.
func (c *Cluster) RemoveMember(name string, timeout time.Duration) error {
	return c.changeMember("RemoveServer", name, timeout, 3*time.Second, func(ctx context.Context, l *exraft.Server) (bool, error) {
		err := l.RemoveServer(ctx, name)
		answered := err == nil || errors.Is(err, exraft.ErrUnknownServer)
		return answered && !HasName(l.Status().Members, name), err
	})
}

// AddMember adds name, at its address, through whichever server leads,
// retrying while leadership moves. It returns once the incarnation running
// now is the configured one, re-admitting it if it restarted.
func (c *Cluster) AddMember(name string, timeout time.Duration) error {
	return c.changeMember("AddServer", name, timeout, 5*time.Second, func(ctx context.Context, l *exraft.Server) (bool, error) {
		err := l.AddServer(ctx, c.Peer(name))
		return err == nil && HasName(l.Status().Members, name), err
	})
}

// changeMember runs change on the leader until it reports done, fails with
// an error other than leadership moving or the leader stopping, or timeout
// passes. Only RemoveServer returns ErrUnknownServer: the name is gone
// already, as far as that server knows, which done then confirms.
func (c *Cluster) changeMember(what, name string, timeout, perCall time.Duration,
	change func(context.Context, *exraft.Server) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && !c.isClosed() {
		l := c.LeaderWithin(time.Until(deadline))
		if l == nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), perCall)
		done, err := change(ctx, l)
		cancel()
		switch {
		case done:
			return nil
		case err == nil, errors.Is(err, exraft.ErrUnknownServer):
		case errors.Is(err, exraft.ErrNotLeader), errors.Is(err, exraft.ErrLeadershipLost),
			errors.Is(err, exraft.ErrStopped), errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("%s(%s) on %s: %w", what, name, l.Name(), err)
		}
		last = err
		time.Sleep(20 * time.Millisecond) // backoff before asking the next leader
	}
	return fmt.Errorf("%s(%s) did not commit within %v (last error: %v)", what, name, timeout, last)
}
