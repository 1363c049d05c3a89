package exraft

import (
	"bytes"
	"context"
	"fmt"
	"net/rpc"
	"time"

	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// Sending a snapshot: when the Node asks for one (a MsgSnap), the leader
// streams its latest snapshot to the follower on a connection of its own,
// so that the follower's appends and heartbeats keep flowing beside it,
// and reports the outcome to the Node. A transfer either finishes or fails
// within bounded time: a follower that stops answering costs the leader
// IOTimeout (6×IOTimeout for the Restore at the end), never a wedged
// replication (hashicorp/raft#212 is what that looks like).

const (
	// snapWindow is the number of chunk calls in flight: enough to keep
	// the link busy while an answer travels back, and what the sender
	// holds beyond the snapshot itself. A slow link fills it and waits.
	snapWindow = 2
	// snapChunkMax bounds a chunk; MaxFrameSize/2 bounds it more when
	// frames are smaller. A chunk is never more than a piece of the
	// snapshot (snapPiece): the receiver keeps each one as a piece.
	snapChunkMax = snapPiece
	// A failed transfer waits before the next to the same peer: the
	// Node asks again at every heartbeat, and a peer that cannot take a
	// snapshot now will not a heartbeat later.
	snapBackoffMin = time.Second
	snapBackoffMax = 10 * time.Second
	// restorePatience multiplies IOTimeout for the last chunk's answer,
	// which waits for the follower's Restore.
	restorePatience = 6
)

// sendState is what the driver remembers of sending to one peer.
type sendState struct {
	active  bool          // a transfer is under way
	retryAt time.Time     // no transfer starts before, after a failure
	backoff time.Duration // the last wait after a failure
}

// snapSend is one transfer.
type snapSend struct {
	s      *Server
	to     string
	addr   string
	index  uint64
	header []byte  // the MsgSnap, encoded
	data   *pieces // shared with the server's latest snapshot: read only
	meter  *peerMeter
}

// sendSnapshot starts a transfer for a MsgSnap, on the driver. One at a
// time per peer, none while backing off, and only of the snapshot in hand:
// otherwise the Node hears at once that it failed, and asks again later.
func (s *Server) sendSnapshot(m *raft.Message) {
	sn := &s.snaps
	st := sn.sends[m.To]
	busy := st != nil && (st.active || time.Now().Before(st.retryAt))
	if busy || sn.latest.meta.Index == 0 || m.LastIndex != sn.latest.meta.Index {
		s.node.ReportSnapshot(m.To, m.LastIndex, raft.SnapshotFailed)
		return
	}
	if st == nil {
		st = &sendState{}
		sn.sends[m.To] = st
	}
	st.active = true
	x := &snapSend{s: s, to: m.To, addr: m.ToAddr, index: m.LastIndex,
		header: wire.AppendMessages(nil, []raft.Message{*m}), data: sn.latest.data, meter: s.meters.peer(m.ToAddr)}
	s.log.Info("sending a snapshot", "peer", m.To, "addr", m.ToAddr, "index", m.LastIndex, "bytes", x.data.Len())
	s.wg.Add(1) // the driver holds one: Stop cannot be waiting at zero
	go x.run()
}

func (x *snapSend) run() {
	defer x.s.wg.Done()
	began := time.Now()
	err := x.transfer()
	x.s.tryOnDriver(func() { x.s.snapshotSent(x, err, time.Since(began)) })
}

// snapshotSent reports a transfer's outcome to the Node, on the driver.
func (s *Server) snapshotSent(x *snapSend, err error, took time.Duration) {
	st := s.snaps.sends[x.to]
	if err == nil {
		delete(s.snaps.sends, x.to)
		s.meters.snapsSent.Add(1)
		x.meter.snapshots.Add(1)
		s.log.Info("sent a snapshot", "peer", x.to, "index", x.index, "bytes", x.data.Len(), "took", took.Round(time.Millisecond))
		s.node.ReportSnapshot(x.to, x.index, raft.SnapshotFinished)
		return
	}
	if st == nil {
		st = &sendState{}
		s.snaps.sends[x.to] = st
	}
	st.active = false
	st.backoff = min(max(2*st.backoff, snapBackoffMin), snapBackoffMax)
	st.retryAt = time.Now().Add(st.backoff)
	s.log.Warn("sending a snapshot failed; the leader sends it again after a pause", "peer", x.to, "index", x.index,
		"pause", st.backoff, "err", err)
	s.node.ReportSnapshot(x.to, x.index, raft.SnapshotFailed)
}

// transfer dials the peer and streams the snapshot.
func (x *snapSend) transfer() error {
	s := x.s
	conn, err := dialConn(s.ctx, s.cfg.Dial, x.addr, s.cfg.TLS, s.identity, snapDialTimeout(&s.cfg))
	if err != nil {
		return err
	}
	// Stop closes it: a write blocked on a peer that stopped reading
	// fails at once.
	unhook := context.AfterFunc(s.ctx, func() { conn.Close() })
	defer unhook()
	codec := wire.NewClientCodec(conn, wire.ClientConfig{MaxFrame: s.cfg.MaxFrameSize, IOTimeout: s.cfg.IOTimeout})
	client := rpc.NewClientWithCodec(codec)
	defer client.Close()
	return x.stream(client)
}

// snapDialTimeout bounds a dial as the peer streams do.
func snapDialTimeout(cfg *Config) time.Duration {
	return min(cfg.IOTimeout, max(2*cfg.ElectionTimeoutMax, 500*time.Millisecond))
}

// stream sends the chunks, snapWindow calls in flight, each chunk once.
// It fails on the first error, or when no answer comes in time.
func (x *snapSend) stream(client *rpc.Client) error {
	s := x.s
	w := chunkWindow{x: x, client: client, done: make(chan *rpc.Call, snapWindow)}
	wait := time.NewTimer(s.cfg.IOTimeout)
	defer wait.Stop()
	for {
		if err := w.fill(); err != nil {
			return err
		}
		if w.inflight == 0 {
			return nil
		}
		patience := s.cfg.IOTimeout
		if w.sentLast && w.inflight == 1 {
			patience *= restorePatience
		}
		wait.Reset(patience)
		select {
		case call := <-w.done:
			w.inflight--
			if call.Error != nil {
				return fmt.Errorf("exraft: a chunk to %s failed: %w", x.to, call.Error)
			}
		case <-wait.C:
			return fmt.Errorf("exraft: no answer from %s within %v after %d of %d bytes sent", x.addr, patience, w.off, x.data.Len())
		case <-s.stopc:
			return ErrStopped
		}
	}
}

// chunkWindow is a transfer's chunks in flight.
type chunkWindow struct {
	x        *snapSend
	client   *rpc.Client
	done     chan *rpc.Call
	enc      chunkEncoder
	off      int // of the next chunk
	inflight int
	sentLast bool
}

// fill sends chunks until snapWindow are in flight or the last has gone.
func (w *chunkWindow) fill() error {
	x := w.x
	size := min(snapChunkMax, x.s.cfg.MaxFrameSize/2)
	total := x.data.Len()
	for w.inflight < snapWindow && !w.sentLast {
		data := x.data.at(w.off, size)
		w.sentLast = w.off+len(data) == total
		args, err := w.enc.encode(&snapChunk{Header: x.header, Size: uint64(total), Offset: uint64(w.off),
			Last: w.sentLast, Data: data})
		if err != nil {
			return err
		}
		// net/rpc encodes args before Go returns: one buffer serves.
		w.client.Go(methodInstallSnapshot, &args, new([]byte), w.done)
		x.meter.snapshotOut.Add(uint64(len(args)))
		w.off += len(data)
		w.inflight++
	}
	return nil
}

// chunkEncoder encodes chunks into one reused buffer.
type chunkEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func (e *chunkEncoder) encode(c *snapChunk) ([]byte, error) {
	if e.enc == nil {
		e.enc = msgpack.NewEncoder(&e.buf)
	}
	e.buf.Reset()
	if err := e.enc.Encode(c); err != nil {
		return nil, fmt.Errorf("exraft: encoding a snapshot chunk: %w", err)
	}
	return e.buf.Bytes(), nil
}
