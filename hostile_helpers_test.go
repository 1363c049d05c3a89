package exraft_test

// The cluster, the connections and the frames of TestHostileInput
// (hostile_test.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"net/rpc"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/wire"
)

// ---------------------------------------------------------------------------
// The cluster

// hstSM records the commands it applies, in order.
type hstSM struct {
	mu      sync.Mutex
	applied []string
}

func (m *hstSM) Apply(command []byte) []byte {
	m.mu.Lock()
	m.applied = append(m.applied, string(command))
	m.mu.Unlock()
	return nil
}

func (m *hstSM) Query([]byte) []byte { return nil }

func (m *hstSM) history() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.applied...)
}

type hstCluster struct {
	servers []*exraft.Server
	sms     []*hstSM
	logs    []*exraft.TestLog
	incs    []uint64 // the servers' incarnations, as they logged them

	written  atomic.Int64 // writes the background writer got an answer for
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// hstStart starts a three-server cluster, waits for its leader and starts
// the background writer.
func hstStart(t *testing.T) *hstCluster {
	t.Helper()
	probe, err := net.Listen("tcp", "127.2.255.254:0")
	if err != nil {
		t.Skipf("these tests give every hostile connection a loopback address of its own, and this system has only 127.0.0.1: %v", err)
	}
	probe.Close()
	const n = 3
	c := &hstCluster{stop: make(chan struct{}), stopped: make(chan struct{})}
	lns := make([]net.Listener, n)
	peers := make([]exraft.Peer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() }) // the server's, once it runs: closing twice is harmless
		lns[i] = ln
		peers[i] = exraft.Peer{Name: fmt.Sprintf("h%d", i), Addr: ln.Addr().String()}
	}
	for i := range lns {
		sm, lg := &hstSM{}, &exraft.TestLog{}
		s, err := exraft.StartServer(sm, exraft.Config{
			Name:               peers[i].Name,
			Listener:           lns[i],
			InitialConfig:      peers,
			HeartbeatInterval:  25 * time.Millisecond,
			ElectionTimeoutMin: 500 * time.Millisecond,
			ElectionTimeoutMax: time.Second,
			IOTimeout:          hstIOTimeout,
			Logger:             slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		inc, err := hstIncarnation(lg)
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		c.servers = append(c.servers, s)
		c.sms = append(c.sms, sm)
		c.logs = append(c.logs, lg)
		c.incs = append(c.incs, inc)
	}
	if !exraft.PollUntil(hstWait, func() bool { _, ok := c.stable(); return ok }) {
		t.Fatalf("no stable leader within %v: %s", hstWait, c.describe())
	}
	go c.write()
	t.Cleanup(c.stopWriter) // runs before the servers stop
	c.awaitProgress(t)
	return c
}

var hstIncarnationRE = regexp.MustCompile(`msg=started .*incarnation=(\d+)`)

// hstIncarnation returns the incarnation that a server logged when it
// started: forged messages in the name of a member carry it, to be taken
// for that member's.
func hstIncarnation(lg *exraft.TestLog) (uint64, error) {
	m := hstIncarnationRE.FindStringSubmatch(lg.String())
	if m == nil {
		return 0, fmt.Errorf("no incarnation in the log line about the start; the log:\n%s", lg.Tail(5))
	}
	return strconv.ParseUint(m[1], 10, 64)
}

// write is the background writer: it keeps writing to whichever server
// leads, one command at a time, until stopWriter.
func (c *hstCluster) write() {
	defer close(c.stopped)
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		default:
		}
		var l *exraft.Server
		for _, s := range c.servers {
			if s.Status().Role == exraft.Leader {
				l = s
			}
		}
		if l != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := l.Write(ctx, fmt.Appendf(nil, "w%07d", i))
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

func (c *hstCluster) stopWriter() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.stopped
}

// stable returns the leader when every server follows it in one term.
func (c *hstCluster) stable() (*exraft.Server, bool) {
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

func (c *hstCluster) describe() string {
	var b strings.Builder
	for _, s := range c.servers {
		st := s.Status()
		fmt.Fprintf(&b, "\n  %s: %v term %d leader %q commit %d applied %d last %d",
			st.Name, st.Role, st.Term, st.Leader.Name, st.CommitIndex, st.AppliedIndex, st.LastIndex)
	}
	return b.String()
}

func (c *hstCluster) index(s *exraft.Server) int {
	for i, x := range c.servers {
		if x == s {
			return i
		}
	}
	panic("not a server of the cluster")
}

// awaitProgress waits until the background writer has had more writes
// answered than now.
func (c *hstCluster) awaitProgress(t testing.TB) {
	t.Helper()
	from := c.written.Load()
	if !exraft.PollUntil(hstWait, func() bool { return c.written.Load() >= from+5 }) {
		t.Errorf("the cluster stopped committing: %d writes answered in %v, from %d: %s",
			c.written.Load()-from, hstWait, from, c.describe())
	}
}

// hstState is what bad input must leave as it was.
type hstState struct {
	leader string
	terms  []uint64
}

// settle waits for a stable leader and returns the state to keep.
func (c *hstCluster) settle(t testing.TB) hstState {
	t.Helper()
	if !exraft.PollUntil(hstWait, func() bool { _, ok := c.stable(); return ok }) {
		t.Fatalf("no stable leader: %s", c.describe())
	}
	l, _ := c.stable()
	st := hstState{leader: l.Name()}
	for _, s := range c.servers {
		st.terms = append(st.terms, s.Status().Term)
	}
	return st
}

// checkTerms reports a server whose term moved.
func (c *hstCluster) checkTerms(t testing.TB, st hstState, after string) bool {
	t.Helper()
	ok := true
	for i, s := range c.servers {
		if term := s.Status().Term; term != st.terms[i] {
			t.Errorf("after %s: %s moved from term %d to %d: %s", after, s.Name(), st.terms[i], term, c.describe())
			ok = false
		}
	}
	return ok
}

// verify checks what bad input must leave alone: no term moved, the leader
// leads still and every server follows it, the cluster commits and every
// server applies what it commits, and the servers' state machines agree on
// what they applied so far.
func (c *hstCluster) verify(t testing.TB, st hstState, after string) {
	t.Helper()
	c.checkTerms(t, st, after)
	if !exraft.PollUntil(hstWait, func() bool { l, ok := c.stable(); return ok && l.Name() == st.leader }) {
		t.Errorf("after %s: %s no longer leads a settled cluster: %s", after, st.leader, c.describe())
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
	if !exraft.PollUntil(hstWait, func() bool {
		for _, s := range c.servers {
			if s.Status().AppliedIndex < commit {
				return false
			}
		}
		return true
	}) {
		t.Errorf("after %s: not every server applied the leader's commit index %d: %s", after, commit, c.describe())
	}
	c.checkTerms(t, st, after)
	c.checkPrefixes(t)
}

// checkPrefixes compares what the state machines applied, up to the
// shortest history: the servers apply at their own pace, but never
// differently.
func (c *hstCluster) checkPrefixes(t testing.TB) {
	t.Helper()
	hs := make([][]string, len(c.sms))
	n := math.MaxInt
	for i, sm := range c.sms {
		hs[i] = sm.history()
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
func (c *hstCluster) targets(st hstState) []*exraft.Server {
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

func (c *hstCluster) role(s *exraft.Server) string {
	if s.Status().Role == exraft.Leader {
		return "leader " + s.Name()
	}
	return "follower " + s.Name()
}

// awaitWarning waits until s has logged a warning with msg about the
// connection conn.
func (c *hstCluster) awaitWarning(s *exraft.Server, conn net.Conn, msg string, more ...string) error {
	lg := c.logs[c.index(s)]
	subs := append([]string{msg, "remote=" + conn.LocalAddr().String() + " "}, more...)
	if exraft.PollUntil(hstWait, func() bool { return lg.Warnings(subs...) > 0 }) {
		return nil
	}
	return fmt.Errorf("%s logged no warning %q about the connection from %s within %v; its log ends:\n%s",
		s.Name(), msg, conn.LocalAddr(), hstWait, lg.Tail(15))
}

// ---------------------------------------------------------------------------
// Connections and frames

var hstAddrs atomic.Uint32

// hstDial opens a TCP connection to addr from a loopback address that no
// other connection of these tests used.
func hstDial(addr string) (net.Conn, error) {
	n := hstAddrs.Add(1)
	ip := net.IPv4(127, byte(2+n/(254*254)), byte(1+(n/254)%254), byte(1+n%254))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: hstWait}
	return d.Dial("tcp", addr)
}

// hstDialPeer is hstDial past the handshake, ready for frames.
func hstDialPeer(addr string) (net.Conn, error) {
	conn, err := hstDial(addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(hstWait))
	if err := plainHandshake(conn); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// hstClosed reads conn until the server closes it (EOF or a reset), or
// fails once within has passed.
func hstClosed(conn net.Conn, within time.Duration) error {
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

// hstFrame frames content: a 4-byte big-endian length, then the bytes.
func hstFrame(content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// hstMsgpack encodes values one after another in msgpack, integers in their
// shortest form, as exraft's encoders write them.
func hstMsgpack(values ...any) []byte {
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

// hstRequestHeader is a request's msgpack header: [ServiceMethod, Seq].
func hstRequestHeader(method string, seq uint64) []byte {
	return hstMsgpack([]any{method, seq})
}

// hstStepFrame is a Step call carrying batch, the bytes of a message batch.
func hstStepFrame(seq uint64, batch []byte) []byte {
	return hstFrame(hstRequestHeader(hstMethodStep, seq), hstMsgpack(batch))
}

// hstReadResponse reads one response to a Step call: its error text and its
// body.
func hstReadResponse(conn net.Conn, cc *wire.ClientCodec) (errText string, body []byte, err error) {
	conn.SetReadDeadline(time.Now().Add(hstWait))
	defer conn.SetReadDeadline(time.Time{})
	var resp rpc.Response
	if err := cc.ReadResponseHeader(&resp); err != nil {
		return "", nil, fmt.Errorf("no response: %w", err)
	}
	if resp.ServiceMethod != hstMethodStep {
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

// hstStep sends msgs in one Step call, as a peer would, and returns the
// messages of the reply.
func hstStep(conn net.Conn, cc *wire.ClientCodec, seq uint64, msgs []raft.Message) ([]raft.Message, error) {
	conn.SetWriteDeadline(time.Now().Add(hstWait))
	batch := wire.AppendMessages(nil, msgs)
	if err := cc.WriteRequest(&rpc.Request{ServiceMethod: hstMethodStep, Seq: seq}, &batch); err != nil {
		return nil, err
	}
	errText, body, err := hstReadResponse(conn, cc)
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

// hstForged is a message from a server outside the cluster.
func hstForged(typ raft.MessageType, term uint64, to string) raft.Message {
	return raft.Message{Type: typ, Term: term, From: hstIntruder, FromInc: 7, FromAddr: hstReplyAddr, To: to}
}

func hstMsgString(m raft.Message) string {
	return fmt.Sprintf("%v from %q term %d (prev %d/%d, %d entries, commit %d, match %d, last %d/%d, force %v)",
		m.Type, m.From, m.Term, m.PrevIndex, m.PrevTerm, len(m.Entries), m.Commit, m.Match, m.LastIndex, m.LastTerm, m.Force)
}

// ---------------------------------------------------------------------------
// Ways of sending bad input

// hstRaw sends data on a fresh connection, before any handshake, and
// expects the server to close it and log msg about it.
func hstRaw(data func(rng *rand.Rand) []byte, within time.Duration, msg string) func(*hstCluster, *exraft.Server, *rand.Rand) error {
	return func(c *hstCluster, s *exraft.Server, rng *rand.Rand) error {
		conn, err := hstDial(s.Addr())
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write(data(rng)); err != nil {
			return err
		}
		if err := hstClosed(conn, within); err != nil {
			return err
		}
		return c.awaitWarning(s, conn, msg)
	}
}

// hstAfterHandshake sends data on a connection past the handshake; the
// server must close the connection within within, and log msg about it
// unless msg is empty. With halfClose the connection's sending side is
// closed after data.
func hstAfterHandshake(data func(rng *rand.Rand) []byte, halfClose bool, within time.Duration, msg string, more ...string) func(*hstCluster, *exraft.Server, *rand.Rand) error {
	return func(c *hstCluster, s *exraft.Server, rng *rand.Rand) error {
		conn, err := hstDialPeer(s.Addr())
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
		if err := hstClosed(conn, within); err != nil {
			return err
		}
		if msg == "" {
			return nil
		}
		return c.awaitWarning(s, conn, msg, more...)
	}
}

// hstSendBadBatch sends a Step call whose body decodes to bytes that are not a
// message batch; the server must drop it and close the connection.
func hstSendBadBatch(batch []byte) func(*hstCluster, *exraft.Server, *rand.Rand) error {
	return hstAfterHandshake(func(*rand.Rand) []byte { return hstStepFrame(1, batch) }, false, hstWait, "")
}

func hstRandom(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// hstBatchWith is a one-message batch whose field at position field (0-based,
// in wire order) is replaced by the raw msgpack value v, and with fields
// fields in all.
func hstBatchWith(field int, v []byte, fields int) []byte {
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
			enc.EncodeString(hstIntruder)
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
