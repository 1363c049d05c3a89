package exraft_test

// The cluster, the connections and the frames of TestHostileInput
// (hostile_test.go); TestInstallSnapshotOverTheWire speaks to a server
// through the same connections and frames.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"net/rpc"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/testkit"
	"github.com/exraft/exraft/internal/wire"
)

// ---------------------------------------------------------------------------
// The cluster

// hostileCluster is a testkit.Cluster of three servers under a steady
// stream of writes, with what the attacks need to aim at a server and to
// judge its reaction: its log and its incarnation. Nothing restarts, so
// the servers, logs and incarnations are fixed at the start.
type hostileCluster struct {
	*testkit.Cluster
	servers []*exraft.Server
	logs    []*exraft.TestLog
	incs    []uint64 // the servers' incarnations, as they logged them

	written  atomic.Int64 // writes the background writer got an answer for
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// startHostileCluster starts a three-server cluster, waits for its leader
// and starts the background writer.
func startHostileCluster(t *testing.T) *hostileCluster {
	t.Helper()
	probe, err := net.Listen("tcp", "127.2.255.254:0")
	if err != nil {
		t.Skipf("these tests give every hostile connection a loopback address of its own, and this system has only 127.0.0.1: %v", err)
	}
	probe.Close()
	const n = 3
	c := &hostileCluster{stop: make(chan struct{}), stopped: make(chan struct{})}
	for range n {
		c.logs = append(c.logs, &exraft.TestLog{})
	}
	// Elections slow enough that a loaded machine never holds one by
	// accident: a term that moves must be the bad input's doing. A short
	// IOTimeout makes the stalled attacks quick to judge.
	c.Cluster = testkit.StartCluster(t, n, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.HeartbeatInterval = 25 * time.Millisecond
		cfg.ElectionTimeoutMin = 500 * time.Millisecond
		cfg.ElectionTimeoutMax = time.Second
		cfg.IOTimeout = hostileIOTimeout
		cfg.Logger = c.logs[i].Logger()
	}})
	c.servers = c.Servers()
	for i, s := range c.servers {
		inc, err := startedIncarnation(c.logs[i])
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		c.incs = append(c.incs, inc)
	}
	if !testkit.PollUntil(testkit.WaitLong, func() bool { _, ok := c.stable(); return ok }) {
		t.Fatalf("no stable leader within %v:%s", testkit.WaitLong, c.Describe())
	}
	go c.write()
	t.Cleanup(c.stopWriter) // registered after the cluster's: runs before the servers stop
	c.awaitProgress(t)
	return c
}

var incarnationRE = regexp.MustCompile(`msg=started .*incarnation=(\d+)`)

// startedIncarnation returns the incarnation that a server logged when it
// started: forged messages in the name of a member carry it, to be taken
// for that member's.
func startedIncarnation(lg *exraft.TestLog) (uint64, error) {
	m := incarnationRE.FindStringSubmatch(lg.String())
	if m == nil {
		return 0, fmt.Errorf("no incarnation in the log line about the start; the log:\n%s", lg.Tail(5))
	}
	return strconv.ParseUint(m[1], 10, 64)
}

// write is the background writer: it keeps writing to whichever server
// leads, one command at a time, until stopWriter. Every command is new, so
// that the histories compared at the end tell every write apart.
func (c *hostileCluster) write() {
	defer close(c.stopped)
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		default:
		}
		if l := c.Leader(); l != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := l.Write(ctx, fmt.Appendf(nil, "set w %07d", i))
			cancel()
			if err == nil {
				c.written.Add(1)
				continue
			}
		}
		// No leader, or it just lost its leadership: back off a little.
		select {
		case <-c.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *hostileCluster) stopWriter() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.stopped
}

// stable returns the leader when every server follows it in one term.
// Unlike testkit.AwaitSettled it does not ask the logs to be level: the
// writer never lets them be.
func (c *hostileCluster) stable() (*exraft.Server, bool) {
	var leader *exraft.Server
	var first exraft.Status
	for i, s := range c.servers {
		st := s.Status()
		if i == 0 {
			first = st
		}
		if st.Leader.Name == "" || st.Leader.Name != first.Leader.Name || st.Term != first.Term {
			return nil, false
		}
		if st.Role == exraft.Leader {
			leader = s
		}
	}
	return leader, leader != nil && leader.Name() == first.Leader.Name
}

func (c *hostileCluster) index(s *exraft.Server) int {
	for i, x := range c.servers {
		if x == s {
			return i
		}
	}
	panic("not a server of the cluster")
}

// awaitProgress waits until the background writer has had more writes
// answered than now.
func (c *hostileCluster) awaitProgress(t testing.TB) {
	t.Helper()
	from := c.written.Load()
	if !testkit.PollUntil(testkit.WaitLong, func() bool { return c.written.Load() >= from+5 }) {
		t.Errorf("the cluster stopped committing: %d writes answered in %v, from %d:%s",
			c.written.Load()-from, testkit.WaitLong, from, c.Describe())
	}
}

// settledState is what bad input must leave as it was.
type settledState struct {
	leader string
	terms  []uint64
}

// settle waits for a stable leader and returns the state to keep.
func (c *hostileCluster) settle(t testing.TB) settledState {
	t.Helper()
	if !testkit.PollUntil(testkit.WaitLong, func() bool { _, ok := c.stable(); return ok }) {
		t.Fatalf("no stable leader:%s", c.Describe())
	}
	l, _ := c.stable()
	st := settledState{leader: l.Name()}
	for _, s := range c.servers {
		st.terms = append(st.terms, s.Status().Term)
	}
	return st
}

// checkTerms reports a server whose term moved.
func (c *hostileCluster) checkTerms(t testing.TB, st settledState, after string) bool {
	t.Helper()
	ok := true
	for i, s := range c.servers {
		if term := s.Status().Term; term != st.terms[i] {
			t.Errorf("after %s: %s moved from term %d to %d:%s", after, s.Name(), st.terms[i], term, c.Describe())
			ok = false
		}
	}
	return ok
}

// verify checks what bad input must leave alone: no term moved, the leader
// leads still and every server follows it, the cluster commits and every
// server applies what it commits, and the servers' state machines agree on
// what they applied so far.
func (c *hostileCluster) verify(t testing.TB, st settledState, after string) {
	t.Helper()
	c.checkTerms(t, st, after)
	if !testkit.PollUntil(testkit.WaitLong, func() bool { l, ok := c.stable(); return ok && l.Name() == st.leader }) {
		t.Errorf("after %s: %s no longer leads a settled cluster:%s", after, st.leader, c.Describe())
	}
	c.awaitProgress(t)
	// Every server, not only a quorum, keeps up: bad input must not wedge
	// the replication to one follower either.
	var commit uint64
	for _, s := range c.servers {
		if s.Name() == st.leader {
			commit = s.Status().CommitIndex
		}
	}
	if !testkit.PollUntil(testkit.WaitLong, func() bool {
		for _, s := range c.servers {
			if s.Status().AppliedIndex < commit {
				return false
			}
		}
		return true
	}) {
		t.Errorf("after %s: not every server applied the leader's commit index %d:%s", after, commit, c.Describe())
	}
	c.checkTerms(t, st, after)
	c.checkPrefixes(t)
}

// history returns what s's state machine applied, in order.
func (c *hostileCluster) history(s *exraft.Server) []string { return c.KV(s.Name()).History() }

// checkPrefixes compares what the state machines applied, up to the
// shortest history: the servers apply at their own pace, but never
// differently.
func (c *hostileCluster) checkPrefixes(t testing.TB) {
	t.Helper()
	hs := make([][]string, len(c.servers))
	n := math.MaxInt
	for i, s := range c.servers {
		hs[i] = c.history(s)
		n = min(n, len(hs[i]))
	}
	for i := 1; i < len(hs); i++ {
		for k := 0; k < n; k++ {
			if hs[i][k] != hs[0][k] {
				t.Errorf("%s applied %q as its command #%d, %s applied %q",
					c.servers[i].Name(), hs[i][k], k+1, c.servers[0].Name(), hs[0][k])
				break
			}
		}
	}
}

// targets returns the leader and a follower.
func (c *hostileCluster) targets(st settledState) []*exraft.Server {
	var leader, follower *exraft.Server
	for _, s := range c.servers {
		if s.Name() == st.leader {
			leader = s
		} else if follower == nil {
			follower = s
		}
	}
	return []*exraft.Server{leader, follower}
}

func (c *hostileCluster) role(s *exraft.Server) string {
	if s.Status().Role == exraft.Leader {
		return "leader " + s.Name()
	}
	return "follower " + s.Name()
}

// awaitWarning waits until s has logged a warning with msg about the
// connection conn.
func (c *hostileCluster) awaitWarning(s *exraft.Server, conn net.Conn, msg string, more ...string) error {
	lg := c.logs[c.index(s)]
	subs := append([]string{msg, "remote=" + conn.LocalAddr().String() + " "}, more...)
	if testkit.PollUntil(testkit.WaitLong, func() bool { return lg.Warnings(subs...) > 0 }) {
		return nil
	}
	return fmt.Errorf("%s logged no warning %q about the connection from %s within %v; its log ends:\n%s",
		s.Name(), msg, conn.LocalAddr(), testkit.WaitLong, lg.Tail(15))
}

// ---------------------------------------------------------------------------
// Connections and frames

var localAddrs atomic.Uint32

// dialFromOwnAddr opens a TCP connection to addr from a loopback address
// that no other connection of these tests used.
func dialFromOwnAddr(addr string) (net.Conn, error) {
	n := localAddrs.Add(1)
	ip := net.IPv4(127, byte(2+n/(254*254)), byte(1+(n/254)%254), byte(1+n%254))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: testkit.WaitLong}
	return d.Dial("tcp", addr)
}

// dialPastHandshake is dialFromOwnAddr past the handshake, ready for frames.
func dialPastHandshake(addr string) (net.Conn, error) {
	conn, err := dialFromOwnAddr(addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(testkit.WaitLong))
	if err := plainHandshake(conn); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// awaitClosed reads conn until the server closes it (EOF or a reset), or
// fails once within has passed.
func awaitClosed(conn net.Conn, within time.Duration) error {
	conn.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("the server still holds the connection from %s open after %v", conn.LocalAddr(), within)
		}
		return nil
	}
}

// frame frames content: a 4-byte big-endian length, then the bytes.
func frame(content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// encodeMsgpack encodes values one after another in msgpack, integers in their
// shortest form, as exraft's encoders write them.
func encodeMsgpack(values ...any) []byte {
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.UseCompactInts(true)
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

// requestHeader is a request's msgpack header: [ServiceMethod, Seq].
func requestHeader(method string, seq uint64) []byte {
	return encodeMsgpack([]any{method, seq})
}

// stepFrame is a Step call carrying batch, the bytes of a message batch.
func stepFrame(seq uint64, batch []byte) []byte {
	return frame(requestHeader(methodStep, seq), encodeMsgpack(batch))
}

// readStepResponse reads one response to a Step call: its error text and its
// body.
func readStepResponse(conn net.Conn, cc *wire.ClientCodec) (errText string, body []byte, err error) {
	conn.SetReadDeadline(time.Now().Add(testkit.WaitLong))
	defer conn.SetReadDeadline(time.Time{})
	var resp rpc.Response
	if err := cc.ReadResponseHeader(&resp); err != nil {
		return "", nil, fmt.Errorf("no response: %w", err)
	}
	if resp.ServiceMethod != methodStep {
		return "", nil, fmt.Errorf("a response for %q", resp.ServiceMethod)
	}
	if resp.Error != "" {
		return resp.Error, nil, cc.ReadResponseBody(nil)
	}
	if err := cc.ReadResponseBody(&body); err != nil {
		return "", nil, fmt.Errorf("response body: %w", err)
	}
	return "", body, nil
}

// stepCall sends msgs in one Step call, as a peer would, and returns the
// messages of the reply.
func stepCall(conn net.Conn, cc *wire.ClientCodec, seq uint64, msgs []raft.Message) ([]raft.Message, error) {
	conn.SetWriteDeadline(time.Now().Add(testkit.WaitLong))
	batch := wire.AppendMessages(nil, msgs)
	if err := cc.WriteRequest(&rpc.Request{ServiceMethod: methodStep, Seq: seq}, &batch); err != nil {
		return nil, err
	}
	errText, body, err := readStepResponse(conn, cc)
	if err != nil {
		return nil, err
	}
	if errText != "" {
		return nil, fmt.Errorf("the Step call failed: %s", errText)
	}
	if len(body) == 0 {
		return nil, nil
	}
	var d wire.MessageDecoder
	return d.Decode(body)
}

// forged is a message from a server outside the cluster.
func forged(typ raft.MessageType, term uint64, to string) raft.Message {
	return raft.Message{Type: typ, Term: term, From: intruder, FromInc: 7, FromAddr: replyAddr, To: to}
}

func describeMsg(m raft.Message) string {
	return fmt.Sprintf("%v from %q term %d (prev %d/%d, %d entries, commit %d, match %d, last %d/%d, force %v)",
		m.Type, m.From, m.Term, m.PrevIndex, m.PrevTerm, len(m.Entries), m.Commit, m.Match, m.LastIndex, m.LastTerm, m.Force)
}

// ---------------------------------------------------------------------------
// Ways of sending bad input

// beforeHandshake sends data on a fresh connection, before any handshake, and
// expects the server to close it and log msg about it.
func beforeHandshake(data func(rng *rand.Rand) []byte, within time.Duration, msg string) func(*hostileCluster, *exraft.Server, *rand.Rand) error {
	return func(c *hostileCluster, s *exraft.Server, rng *rand.Rand) error {
		conn, err := dialFromOwnAddr(s.Addr())
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write(data(rng)); err != nil {
			return err
		}
		if err := awaitClosed(conn, within); err != nil {
			return err
		}
		return c.awaitWarning(s, conn, msg)
	}
}

// afterHandshake sends data on a connection past the handshake; the
// server must close the connection within within, and log msg about it
// unless msg is empty. With halfClose the connection's sending side is
// closed after data.
func afterHandshake(data func(rng *rand.Rand) []byte, halfClose bool, within time.Duration, msg string, more ...string) func(*hostileCluster, *exraft.Server, *rand.Rand) error {
	return func(c *hostileCluster, s *exraft.Server, rng *rand.Rand) error {
		conn, err := dialPastHandshake(s.Addr())
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write(data(rng)); err != nil {
			return err
		}
		if halfClose {
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
		}
		if err := awaitClosed(conn, within); err != nil {
			return err
		}
		if msg == "" {
			return nil
		}
		return c.awaitWarning(s, conn, msg, more...)
	}
}

// sendBadBatch sends a Step call whose body decodes to bytes that are not a
// message batch; the server must drop it and close the connection.
func sendBadBatch(batch []byte) func(*hostileCluster, *exraft.Server, *rand.Rand) error {
	return afterHandshake(func(*rand.Rand) []byte { return stepFrame(1, batch) }, false, testkit.WaitLong, "")
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// batchWith is a one-message batch whose field at position field (0-based,
// in wire order) is replaced by the raw msgpack value v, and with fields
// fields in all.
func batchWith(field int, v []byte, fields int) []byte {
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b) // writes straight to b, between the raw values
	enc.UseCompactInts(true)
	enc.EncodeArrayLen(1)
	enc.EncodeArrayLen(fields)
	for i := 0; i < fields; i++ {
		switch {
		case i == field:
			b.Write(v)
		case i == 2 || i == 4 || i == 5: // From, FromAddr, To
			enc.EncodeString(intruder)
		case i == 9 || i == 10: // Force, Reject
			enc.EncodeBool(false)
		case i == 13: // Entries
			enc.EncodeNil()
		default:
			enc.EncodeUint(1)
		}
	}
	return b.Bytes()
}
