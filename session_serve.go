package exraft

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/session"
)

// The leader's side of sessions: the calls a Session makes, each a record
// appended to the log (session_apply.go applies them). The leader stamps
// every record with its clock, the only time the table ever sees.

const (
	methodSessionOpen  = "Exraft.SessionOpen"
	methodSessionWrite = "Exraft.SessionWrite"
	methodSessionClose = "Exraft.SessionClose"
)

// sessionRecordMax is the most a Write record adds to its command: a kind
// byte and four uvarints. FrameOverhead leaves room for it.
const sessionRecordMax = 1 + 4*binary.MaxVarintLen64

func logTime() int64 { return time.Now().UnixMilli() }

// openSession registers a session through the log and returns its ID.
func (s *Server) openSession(ctx context.Context) (uint64, error) {
	if err := s.leaderCall(ctx); err != nil {
		return 0, err
	}
	r := session.Record{Kind: session.Register, Time: logTime(),
		Timeout: s.cfg.SessionTimeout.Milliseconds(), MaxSessions: uint64(s.cfg.MaxSessions)}
	val, err := s.commit(ctx, raft.EntrySession, r.Append(nil), nil)
	if err != nil {
		return 0, err
	}
	id, n := binary.Uvarint(val)
	if n <= 0 {
		return 0, errors.New("exraft: a session's registration gave no ID")
	}
	return id, nil
}

// sessionWrite appends a session's write; the applier applies its command
// unless the session already did (and then answers with that result).
func (s *Server) sessionWrite(ctx context.Context, id, seq, lowest uint64, command []byte, ann announcer) ([]byte, error) {
	if err := s.admitCommand(ctx, command); err != nil {
		return nil, err
	}
	r := session.Record{Kind: session.Write, Time: logTime(), ID: id, Seq: seq, Lowest: lowest, Command: command}
	return s.commit(ctx, raft.EntrySession, r.Append(make([]byte, 0, sessionRecordMax+len(command))), ann)
}

// closeSession appends the record that makes every server forget a session.
func (s *Server) closeSession(ctx context.Context, id uint64) error {
	if err := s.leaderCall(ctx); err != nil {
		return err
	}
	r := session.Record{Kind: session.Close, Time: logTime(), ID: id}
	_, err := s.commit(ctx, raft.EntrySession, r.Append(nil), nil)
	return err
}

func (svc *rpcService) SessionOpen(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) (err error) {
		rep.Session, err = svc.s.openSession(ctx)
		return err
	})
}

func (svc *rpcService) SessionWrite(args *[]byte, reply *[]byte) error {
	return svc.handleAppend(args, reply, func(ctx context.Context, req *callRequest, rep *callReply, ann announcer) (err error) {
		rep.Data, err = svc.s.sessionWrite(ctx, req.Session, req.Seq, req.Lowest, req.Data, ann)
		return err
	})
}

func (svc *rpcService) SessionClose(args *[]byte, reply *[]byte) error {
	return svc.handle(args, reply, func(ctx context.Context, req *callRequest, rep *callReply) error {
		return svc.s.closeSession(ctx, req.Session)
	})
}
