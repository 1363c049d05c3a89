package exraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/session"
)

// The applier's side of sessions (docs/design.md §10): session entries
// update the replicated table of internal/session, which applies a write's
// command through the state machine the first time only. The table is the
// applier's, like the state machine, and travels in snapshots beside it.

var (
	// errSessionUnknown: the table has no such session, so the write was
	// not applied. The Session decides what that means for its caller
	// (session.go): ErrSessionExpired, or a transparent new registration.
	errSessionUnknown = errors.New("exraft: the cluster has no such session (expired, closed, or never registered)")
	// errSessionStale: a late copy of a write whose answer the client
	// already had. No caller waits for it any more.
	errSessionStale = errors.New("exraft: a late copy of a session write already answered; not applied")
)

// applyEntry applies a committed entry to the state machine and the session
// table, and returns what its writer is answered. The caller holds smMu.
func (s *Server) applyEntry(e *raft.Entry) ([]byte, error) {
	switch e.Type {
	case raft.EntryNormal:
		return s.sm.Apply(e.Data), nil
	case raft.EntrySession:
		return s.applySession(e)
	}
	return nil, nil
}

func (s *Server) applySession(e *raft.Entry) ([]byte, error) {
	r, err := session.Decode(e.Data)
	if err != nil {
		// Only a leader with a bug could have appended it; every server
		// skips it alike, so their tables stay equal.
		s.log.Error("skipped a malformed session entry", "index", e.Index, "err", err)
		return nil, fmt.Errorf("exraft: a malformed session entry at index %d: %w", e.Index, err)
	}
	out, val := s.sessions.Apply(e.Index, &r, s.sm.Apply)
	switch out {
	case session.Registered:
		return binary.AppendUvarint(nil, e.Index), nil
	case session.Expired:
		return nil, errSessionUnknown
	case session.Stale:
		return nil, errSessionStale
	}
	return val, nil
}

// ---- the snapshot envelope ---------------------------------------------------

// A snapshot's bytes are the session table, then the state machine's own:
// the table is captured with the state, between the same two Applies, and
// restored with it.

// snapshotHead returns the envelope's head: the table as it is now, after
// its length. The caller holds smMu.
func (s *Server) snapshotHead() []byte {
	t := s.sessions.Append(nil)
	return append(binary.AppendUvarint(make([]byte, 0, len(t)+binary.MaxVarintLen64), uint64(len(t))), t...)
}

// splitSnapshot reads the table off the front of a snapshot, and leaves r
// at the state machine's part.
func splitSnapshot(r io.Reader) (*session.Table, error) {
	n, err := binary.ReadUvarint(byteReader{r})
	if err != nil || n > maxSnapshotBytes {
		return nil, fmt.Errorf("the snapshot does not begin with a session table (length %d): %v", n, err)
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("the snapshot's session table is cut short: %w", err)
	}
	t, rest, err := session.DecodeTable(head)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%d bytes after it", len(rest))
	}
	if err != nil {
		return nil, fmt.Errorf("the snapshot's session table does not decode: %w", err)
	}
	return t, nil
}

// byteReader reads one byte at a time from r, for binary.ReadUvarint.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var x [1]byte
	_, err := io.ReadFull(b.r, x[:])
	return x[0], err
}
