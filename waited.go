package exraft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A Write or Read whose ctx ends before its result says what it was
// waiting on, from this server's view at that moment: a timeout then tells
// a leader that cannot reach a quorum from a slow state machine, or from a
// caller whose deadline was simply too short for the work.

// waitedOn wraps err, ctx's error, for a call of kind op ("write" or
// "read") that was handed to the driver and had no result when ctx ended.
// Any other error is returned as it is.
func (s *Server) waitedOn(op string, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	st := s.Status()
	var why string
	switch {
	case st.Role != Leader:
		why = fmt.Sprintf("this server stopped leading meanwhile (now %s in term %d, leader %q)", st.Role, st.Term, st.Leader.Name)
	case st.CommitIndex < st.LastIndex:
		why = fmt.Sprintf("the leader had appended up to index %d, but only %d was committed, which needs enough of %s to hold it; %s",
			st.LastIndex, st.CommitIndex, peerNames(st.Members), describePeers(st.Peers))
	case st.AppliedIndex < st.CommitIndex:
		why = fmt.Sprintf("everything appended (index %d) was committed, and the state machine had applied up to %d: Apply or Query is slow, or runs behind a long queue", st.CommitIndex, st.AppliedIndex)
	case op == "read":
		why = fmt.Sprintf("the read waits for enough of %s to confirm that this server still leads; %s", peerNames(st.Members), describePeers(st.Peers))
	default:
		why = fmt.Sprintf("everything appended was committed and applied (index %d): the write's result came as ctx ended", st.AppliedIndex)
	}
	return &waitError{msg: fmt.Sprintf("exraft: %s: %v while waiting for its result: %s", op, err, why), err: err}
}

// describePeers says how far each server the leader replicates to is, and
// when it last answered.
func describePeers(ps []PeerStatus) string {
	if len(ps) == 0 {
		return "no other server has answered this leader yet"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		contact := "never answered"
		if !p.LastContact.IsZero() {
			contact = fmt.Sprintf("answered %v ago", time.Since(p.LastContact).Round(time.Millisecond))
		}
		parts[i] = fmt.Sprintf("%s holds up to %d (%s)", p.Name, p.Match, contact)
	}
	return strings.Join(parts, ", ")
}
