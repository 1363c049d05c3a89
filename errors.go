package exraft

import (
	"context"
	"errors"
	"strings"

	"github.com/exraft/exraft/internal/wire"
)

// The public errors, and how they cross the wire. A call that fails remotely
// is answered with a reply that carries a code and the error's text
// (encodeErr); the caller rebuilds from them an error that errors.Is and
// errors.As match as they would the server's own (decodeErr). The errors of
// internal/wire are its own, and become public ones here (serverError,
// Client.call).

// ErrNotLeader is matched (errors.Is) by every error that means "ask another
// server": *RedirectError and ErrNoLeader.
var ErrNotLeader = errors.New("exraft: not the leader")

// RedirectError is returned by calls that only the leader can serve when they
// are made on a follower that knows the leader. It matches ErrNotLeader.
type RedirectError struct {
	Leader Peer
}

func (e *RedirectError) Error() string {
	return "exraft: not the leader; the leader is " + e.Leader.Name + " at " + e.Leader.Addr
}

// Is reports that a redirect means "not the leader".
func (e *RedirectError) Is(target error) bool { return target == ErrNotLeader }

// notLeaderError is a sentinel that also matches ErrNotLeader.
type notLeaderError struct{ msg string }

func (e *notLeaderError) Error() string        { return e.msg }
func (e *notLeaderError) Is(target error) bool { return target == ErrNotLeader }

// noLeaderError is ErrNoLeader with the reason there is none for a moment.
type noLeaderError struct{ msg string }

func (e *noLeaderError) Error() string { return e.msg }
func (e *noLeaderError) Is(target error) bool {
	return target == ErrNoLeader || target == ErrNotLeader
}

// The errors of exraft's calls. Each one survives the trip over the wire: a
// remote call returns an error that errors.Is matches against the same value.
var (
	// ErrNoLeader: no leader is known right now (an election is under way, or
	// the cluster has no quorum). It matches ErrNotLeader.
	ErrNoLeader error = &notLeaderError{"exraft: no leader known"}
	// ErrStopped: the server was stopped.
	ErrStopped = errors.New("exraft: server stopped")
	// ErrRejected: the state machine's Validate refused the command.
	ErrRejected = errors.New("exraft: command rejected")
	// ErrLeadershipLost: the leader lost its leadership before the entry
	// committed. The outcome is unknown: the entry may still commit.
	ErrLeadershipLost = errors.New("exraft: leadership lost; outcome unknown")
	// ErrLastServer: RemoveServer of the only voter.
	ErrLastServer = errors.New("exraft: cannot remove the last voter")
	// ErrUnknownServer: RemoveServer of a name that is not a member.
	ErrUnknownServer = errors.New("exraft: no such member")
	// ErrNameTaken: AddServer of a name that a member has at another
	// address. Nothing changed; to move a server, RemoveServer it first.
	ErrNameTaken = errors.New("exraft: name taken by another member")
	// ErrTooLarge: a Write's command above Config.MaxCommandSize (nothing
	// was appended), or a call or reply that would not fit in a frame
	// (MaxFrameSize).
	ErrTooLarge = errors.New("exraft: too large")
	// ErrUnauthorized: the other end of a connection refused it, or could
	// not prove it belongs: a different ClusterID, a different Secret, or a
	// server with too many connections from this host. The error's text says
	// which; both ends log it.
	ErrUnauthorized = errors.New("exraft: unauthorized")
	// ErrNotExraft: the address answered, but not as an exraft server does
	// (an HTTP server, say): the address or the port is wrong. The error's
	// text shows the first bytes that came back.
	ErrNotExraft = errors.New("exraft: not an exraft server")
	// ErrSessionExpired: the cluster forgot the Session (it stayed idle
	// longer than Config.SessionTimeout, or more than Config.MaxSessions
	// newer ones were registered) while a Write's outcome was unknown: that
	// write may have been applied once, and will never be applied again.
	// The Session's next Write registers it anew.
	ErrSessionExpired = errors.New("exraft: session expired while a write's outcome was unknown; it was applied at most once")
	// ErrSessionClosed: a call on a Session after its Close.
	ErrSessionClosed = errors.New("exraft: session closed; start a new one with NewSession")
)

// rejectedError carries a validator's message and matches ErrRejected.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string        { return "exraft: command rejected: " + e.msg }
func (e *rejectedError) Is(target error) bool { return target == ErrRejected }
func (e *rejectedError) Unwrap() error        { return ErrRejected }

// nameTakenError says which member has the name, and matches ErrNameTaken.
type nameTakenError struct{ msg string }

func (e *nameTakenError) Error() string { return e.msg }
func (e *nameTakenError) Unwrap() error { return ErrNameTaken }

// tooLargeError carries the server's account of what was too large, and
// matches ErrTooLarge.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }
func (e *tooLargeError) Unwrap() error { return ErrTooLarge }

// waitError is a call that its ctx ended: the text says what the call was
// waiting on, and the error matches ctx's (errors.Is).
type waitError struct {
	msg string
	err error
}

func (e *waitError) Error() string { return e.msg }
func (e *waitError) Unwrap() error { return e.err }

// errNotVoter is TriggerElection's on a server that may not campaign.
var errNotVoter = errors.New("exraft: this server cannot campaign: it is not a voter of its configuration, or the configuration has fewer voters than MinMajority")

// errCode is how a reply names the error of a failed call. The numbers are
// part of the protocol, shared by servers and clients of different builds:
// a new code goes at the end, and none is ever renumbered.
type errCode uint8

const (
	codeOK errCode = iota
	codeRedirect
	codeNoLeader
	codeStopped
	codeRejected
	codeLeadershipLost
	codeLastServer
	codeUnknownServer
	codeDeadline
	codeCanceled
	codeOther
	codeTooLarge
	codeNameTaken
	codeSessionUnknown
	// codeAskAlone: a Session's write was applied, but its result did not
	// fit in the reply of the batch it went in. The Session asks for it in
	// a call of its own, which the session table answers (rpc_batch.go).
	codeAskAlone
)

// encodeErr gives err its wire form.
func encodeErr(err error, r *callReply) {
	var redirect *RedirectError
	var rejected *rejectedError
	r.Msg = err.Error()
	switch {
	case errors.As(err, &redirect):
		r.Code, r.Leader = codeRedirect, redirect.Leader
	case errors.Is(err, ErrNoLeader):
		r.Code = codeNoLeader
	case errors.Is(err, ErrStopped):
		r.Code = codeStopped
	case errors.As(err, &rejected):
		r.Code, r.Msg = codeRejected, rejected.msg
	case errors.Is(err, ErrLeadershipLost):
		r.Code = codeLeadershipLost
	case errors.Is(err, ErrLastServer):
		r.Code = codeLastServer
	case errors.Is(err, ErrUnknownServer):
		r.Code = codeUnknownServer
	case errors.Is(err, ErrTooLarge):
		r.Code = codeTooLarge
	case errors.Is(err, ErrNameTaken):
		r.Code = codeNameTaken
	case errors.Is(err, errSessionUnknown):
		r.Code = codeSessionUnknown
	case errors.Is(err, context.DeadlineExceeded):
		r.Code = codeDeadline
	case errors.Is(err, context.Canceled):
		r.Code = codeCanceled
	default:
		r.Code = codeOther
	}
}

// decodeErr is encodeErr's inverse.
func decodeErr(r *callReply) error {
	switch r.Code {
	case codeOK:
		return nil
	case codeRedirect:
		return &RedirectError{Leader: r.Leader}
	case codeNoLeader:
		if r.Msg != "" && r.Msg != ErrNoLeader.Error() {
			return &noLeaderError{msg: r.Msg}
		}
		return ErrNoLeader
	case codeStopped:
		return ErrStopped
	case codeRejected:
		return &rejectedError{msg: r.Msg}
	case codeLeadershipLost:
		return ErrLeadershipLost
	case codeLastServer:
		return ErrLastServer
	case codeUnknownServer:
		return ErrUnknownServer
	case codeDeadline:
		return remoteCtxErr(r.Msg, context.DeadlineExceeded)
	case codeCanceled:
		return remoteCtxErr(r.Msg, context.Canceled)
	case codeTooLarge:
		return &tooLargeError{msg: r.Msg}
	case codeNameTaken:
		return &nameTakenError{msg: r.Msg}
	case codeSessionUnknown:
		return errSessionUnknown
	}
	return &RemoteError{Msg: r.Msg}
}

// remoteCtxErr keeps what a remote call said it waited on when its ctx
// ended, and still matches err.
func remoteCtxErr(msg string, err error) error {
	if msg == "" || msg == err.Error() {
		return err
	}
	return &waitError{msg: msg, err: err}
}

// RemoteError is an error a remote server returned that has no sentinel.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// serverError is the error of a call that the server answered with an error
// response instead of a reply: net/rpc's own (a method it does not serve),
// or the codec's for a reply too large for a frame, which matches
// ErrTooLarge and keeps the server's account of the sizes.
func serverError(text string) error {
	if strings.HasPrefix(text, wire.ErrFrameTooLarge.Error()) {
		return &tooLargeError{msg: text}
	}
	return &RemoteError{Msg: text}
}
