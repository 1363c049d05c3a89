package exraft_test

// Hostile input against a live cluster: a three-server cluster on loopback
// commits a steady stream of writes while connections feed its servers
// garbage, broken frames, unknown methods and forged protocol messages. Each
// piece of bad input must close the connection it came on and be logged
// (where the README promises it), leave the terms and the leader alone, and
// leave the cluster committing; at the end every server must have applied
// the same commands. Nothing here sleeps in place of waiting: waits poll a
// condition under a deadline.
//
// Every hostile connection is dialed from a loopback address of its own
// (127.2.0.1 and up), so that the server's log line about it names it
// alone (remote=...) and the per-host warning limit (conn.go, warnLimiter)
// cannot swallow it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/raft"
	"github.com/exraft/exraft/internal/testkit"
	"github.com/exraft/exraft/internal/wire"
)

const (
	hostileIOTimeout = 500 * time.Millisecond
	hugeTerm         = uint64(1) << 62
	intruder         = "intruder"
	// replyAddr is where forged messages ask to be answered: a loopback
	// port where nothing listens (tests stay on this machine). The answers
	// ride back in the Step replies.
	replyAddr  = "127.0.0.1:9"
	attackSeed = 20250101

	// methodStep is the call that carries protocol messages between
	// servers, and messageFields how many fields a message has on the
	// wire (internal/wire); TestHostileInput checks that a batch built
	// with it decodes.
	methodStep    = "Exraft.Step"
	messageFields = 19

	// What the servers log about bad input (conn.go, rpc.go).
	logRefused  = "refused a connection"
	logBadInput = "closed a connection after bad input"
	logBadBatch = "dropping a malformed message batch"
)

// ---------------------------------------------------------------------------
// Bad input

// attack is one piece of bad input aimed at one server. run returns an
// error when the server did not react as it must; it never calls t, so that
// attacks can run in parallel.
type attack struct {
	name string
	// badBatches is how many "dropping a malformed message batch" lines the
	// attack makes its target log; those name no connection.
	badBatches int
	run        func(c *hostileCluster, s *exraft.Server, rng *rand.Rand) error
}

// The malformed message batches: each decodes as msgpack bytes, none as a
// batch.
var malformedBatches = []struct {
	name  string
	batch func(rng *rand.Rand) []byte
}{
	{"random bytes", func(rng *rand.Rand) []byte { return append([]byte{0xc1}, randomBytes(rng, 40)...) }},
	{"empty", func(*rand.Rand) []byte { return []byte{} }},
	{"a term that is a string", func(*rand.Rand) []byte { return batchWith(1, encodeMsgpack("forty-two"), messageFields) }},
	{"a name that is a number", func(*rand.Rand) []byte { return batchWith(2, encodeMsgpack(42), messageFields) }},
	{"a negative index", func(*rand.Rand) []byte {
		return batchWith(11, []byte{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, messageFields)
	}},
	{"a type above 255", func(*rand.Rand) []byte { return batchWith(0, encodeMsgpack(4096), messageFields) }},
	{"a boolean that is a map", func(*rand.Rand) []byte { return batchWith(9, []byte{0x80}, messageFields) }},
	{"18 fields", func(*rand.Rand) []byte { return batchWith(-1, nil, messageFields-1) }},
	{"20 fields", func(*rand.Rand) []byte { return batchWith(-1, nil, messageFields+1) }},
	{"entries announcing 2^32-1 elements", func(*rand.Rand) []byte {
		return batchWith(13, []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, messageFields)
	}},
	{"an entry of three fields", func(*rand.Rand) []byte {
		return batchWith(13, []byte{0x91, 0x93, 0x01, 0x01, 0x00}, messageFields)
	}},
	{"a batch announcing 2^32-1 messages", func(*rand.Rand) []byte { return []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x90} }},
	{"bytes after the batch", func(*rand.Rand) []byte {
		return append(wire.AppendMessages(nil, []raft.Message{forged(raft.MsgApp, 0, intruder)}), 0x00)
	}},
}

// stepEach sends each message in a Step call of its own and checks,
// after each, that no term moved and that no vote went to the intruder.
func stepEach(c *hostileCluster, s *exraft.Server, st settledState, msgs []raft.Message) error {
	conn, err := dialPastHandshake(s.Addr())
	if err != nil {
		return err
	}
	defer conn.Close()
	cc := wire.NewClientCodec(conn, wire.ClientConfig{})
	var errs []error
	terms := append([]uint64(nil), st.terms...)
	for i, m := range msgs {
		reply, err := stepCall(conn, cc, uint64(i), []raft.Message{m})
		if err != nil {
			return fmt.Errorf("%s: %w", describeMsg(m), err)
		}
		// The reply comes once the driver has processed the message and
		// published the view it left. Each message answers for the terms
		// that moved since the one before.
		for j, x := range c.servers {
			if term := x.Status().Term; term != terms[j] {
				errs = append(errs, fmt.Errorf("%s to %s: %s moved from term %d to %d", describeMsg(m), s.Name(), x.Name(), terms[j], term))
				terms[j] = term
			}
		}
		for _, a := range reply {
			if (a.Type == raft.MsgVoteResp || a.Type == raft.MsgPreVoteResp) && !a.Reject && m.Term > st.terms[c.index(s)] {
				errs = append(errs, fmt.Errorf("%s: %s granted the intruder a vote for term %d", describeMsg(m), s.Name(), a.Term))
			}
		}
	}
	return errors.Join(errs...)
}

// nonsense returns protocol messages whose fields make no sense, for s in
// term, whose log ends at last; follower names one of the leader's
// followers, whose incarnation they claim.
func (c *hostileCluster) nonsense(s *exraft.Server, term, last uint64, follower *exraft.Server) []raft.Message {
	to := s.Name()
	app := func(prev, prevTerm, commit uint64, es ...raft.Entry) raft.Message {
		m := forged(raft.MsgApp, term, to)
		m.PrevIndex, m.PrevTerm, m.Commit, m.Entries = prev, prevTerm, commit, es
		return m
	}
	e := func(index, term uint64) raft.Entry {
		return raft.Entry{Index: index, Term: term, Type: raft.EntryNormal, Data: fmt.Appendf(nil, "forged %d", index)}
	}
	var msgs []raft.Message
	// Indexes at the top of the range, and entries that wrap past it to 0.
	msgs = append(msgs,
		app(math.MaxUint64, term, math.MaxUint64),
		app(math.MaxUint64, term, math.MaxUint64, e(0, term)),
		app(math.MaxUint64-1, term, math.MaxUint64, e(math.MaxUint64, term), e(0, term)),
		app(0, 0, math.MaxUint64, e(math.MaxUint64-5, term)),
		app(0, 0, math.MaxUint64),
	)
	// Entries far beyond the log.
	msgs = append(msgs, app(last+1_000_000, term, last+1_000_003,
		e(last+1_000_001, term), e(last+1_000_002, term), e(last+1_000_003, term)))
	// A vote request claiming a log at the end of the range, this term.
	v := forged(raft.MsgVote, term, to)
	v.LastIndex, v.LastTerm = math.MaxUint64, term
	msgs = append(msgs, v)
	// Acknowledgements of entries nobody has: from the intruder, and in the
	// name of a real follower (with its incarnation).
	ack := forged(raft.MsgAppResp, term, to)
	ack.Match, ack.LastIndex = math.MaxUint64, math.MaxUint64
	msgs = append(msgs, ack)
	ack.Match = last + 1_000_000
	msgs = append(msgs, ack)
	if follower != nil {
		ack.From, ack.FromInc, ack.FromAddr = follower.Name(), c.incs[c.index(follower)], follower.Addr()
		ack.Match = math.MaxUint64
		msgs = append(msgs, ack)
		ack.Match = last + 1_000_000
		msgs = append(msgs, ack)
	}
	return msgs
}

// hugeTerms returns messages of a huge term from the intruder, of every
// type; none may move a term or depose the leader.
func hugeTerms(to string) []raft.Message {
	var msgs []raft.Message
	for _, typ := range []raft.MessageType{raft.MsgApp, raft.MsgAppResp, raft.MsgVote, raft.MsgPreVote, raft.MsgVoteResp, raft.MsgPreVoteResp, raft.MsgTimeoutNow, 0, 99} {
		msgs = append(msgs, forged(typ, hugeTerm, to))
	}
	forced := func(typ raft.MessageType) raft.Message {
		m := forged(typ, hugeTerm, to)
		m.Force, m.LastIndex, m.LastTerm = true, math.MaxUint64, hugeTerm
		return m
	}
	msgs = append(msgs, forced(raft.MsgVote), forced(raft.MsgPreVote), forced(raft.MsgTimeoutNow))
	app := forged(raft.MsgApp, math.MaxUint64, to)
	app.Commit = math.MaxUint64
	msgs = append(msgs, app)
	anon := forged(raft.MsgApp, hugeTerm, to)
	anon.From = ""
	msgs = append(msgs, anon)
	return msgs
}

// The attacks the parallel subtest mixes.
func allAttacks() []attack {
	attacks := []attack{
		{name: "garbage instead of a handshake", run: beforeHandshake(func(rng *rand.Rand) []byte {
			return append([]byte{0}, randomBytes(rng, 63)...)
		}, testkit.WaitLong, logRefused)},
		{name: "HTTP instead of a handshake", run: beforeHandshake(func(*rand.Rand) []byte {
			return []byte("GET / HTTP/1.1\r\nHost: exraft\r\n\r\n")
		}, testkit.WaitLong, logRefused)},
		{name: "handshake stalled halfway", run: beforeHandshake(func(*rand.Rand) []byte {
			return []byte("EXRA") // of the hello's "EXRAFT"
		}, hostileIOTimeout+5*time.Second, logRefused)},
		{name: "garbage after the handshake", run: afterHandshake(func(rng *rand.Rand) []byte {
			b := randomBytes(rng, 256)
			b[0] |= 0x80 // a length above MaxFrameSize: garbage is rarely a small number
			return b
		}, false, testkit.WaitLong, logBadInput)},
		{name: "frame header claiming 4 GiB", run: afterHandshake(func(*rand.Rand) []byte {
			return []byte{0xff, 0xff, 0xff, 0xff}
		}, false, testkit.WaitLong, logBadInput, "4294967295 bytes announced")},
		{name: "truncated frame, stalled", run: afterHandshake(func(rng *rand.Rand) []byte {
			return append(binary.BigEndian.AppendUint32(nil, 100), randomBytes(rng, 10)...)
		}, false, hostileIOTimeout+5*time.Second, logBadInput, "timeout")},
		{name: "truncated frame, then closed", run: afterHandshake(func(rng *rand.Rand) []byte {
			return append(binary.BigEndian.AppendUint32(nil, 100), randomBytes(rng, 10)...)
		}, true, testkit.WaitLong, logBadInput)},
		{name: "unknown method Exraft.Nope", run: unknownMethod("Exraft.Nope")},
		{name: "unknown method Other.Method", run: unknownMethod("Other.Method")},
	}
	for _, b := range malformedBatches {
		attacks = append(attacks, attack{name: "malformed batch: " + b.name, badBatches: 1,
			run: func(c *hostileCluster, s *exraft.Server, rng *rand.Rand) error {
				return sendBadBatch(b.batch(rng))(c, s, rng)
			}})
	}
	for _, b := range undecodableBodies {
		attacks = append(attacks, attack{name: "undecodable body: " + b.name, run: afterHandshake(func(*rand.Rand) []byte {
			return frame(requestHeader(methodStep, 1), b.body)
		}, false, testkit.WaitLong, logBadInput, "body")})
	}
	return attacks
}

func unknownMethod(method string) func(*hostileCluster, *exraft.Server, *rand.Rand) error {
	return afterHandshake(func(*rand.Rand) []byte {
		return frame(requestHeader(method, 1), encodeMsgpack([]byte{0x90}))
	}, false, testkit.WaitLong, logBadInput, "unknown method")
}

// runAttack runs a, against the leader and a follower, and checks the
// cluster afterwards.
func (c *hostileCluster) runAttack(t *testing.T, a attack, rng *rand.Rand) {
	t.Helper()
	st := c.settle(t)
	for _, s := range c.targets(st) {
		lg := c.logs[c.index(s)]
		before := lg.Warnings(logBadBatch)
		who := c.role(s)
		if err := a.run(c, s, rng); err != nil {
			t.Errorf("%s, to %s: %v", a.name, who, err)
		}
		if a.badBatches > 0 && !testkit.PollUntil(testkit.WaitLong, func() bool { return lg.Warnings(logBadBatch) >= before+a.badBatches }) {
			t.Errorf("%s, to %s: no warning %q; the log ends:\n%s", a.name, who, logBadBatch, lg.Tail(15))
		}
	}
	c.verify(t, st, a.name)
}

// ---------------------------------------------------------------------------
// The test

func TestHostileInput(t *testing.T) {
	// Each malformed batch differs from a good one in one way: built with
	// nothing replaced, it decodes.
	var d wire.MessageDecoder
	if _, err := d.Decode(batchWith(-1, nil, messageFields)); err != nil {
		t.Fatalf("a batch built as the malformed ones are, with nothing replaced, does not decode: %v", err)
	}
	c := startHostileCluster(t)
	rng := rand.New(rand.NewSource(attackSeed))
	attacks := map[string]attack{}
	for _, a := range allAttacks() {
		attacks[a.name] = a
	}
	run := func(t *testing.T, names ...string) {
		for _, name := range names {
			a, ok := attacks[name]
			if !ok {
				t.Fatalf("no attack %q", name)
			}
			c.runAttack(t, a, rng)
		}
	}

	t.Run("garbage", func(t *testing.T) {
		run(t, "garbage instead of a handshake", "HTTP instead of a handshake", "handshake stalled halfway",
			"garbage after the handshake")
	})

	t.Run("garbage frame after the handshake is logged", func(t *testing.T) {
		c.runAttack(t, attack{name: "a frame of garbage", run: afterHandshake(func(rng *rand.Rand) []byte {
			return frame(append([]byte{0xc1}, randomBytes(rng, 63)...))
		}, false, testkit.WaitLong, logBadInput)}, rng)
	})

	t.Run("truncated frames", func(t *testing.T) {
		run(t, "truncated frame, then closed")
		// Stalled: closed within IOTimeout of the frame's start, give or
		// take the scheduling of a loaded machine.
		st := c.settle(t)
		for _, s := range c.targets(st) {
			start := time.Now()
			if err := attacks["truncated frame, stalled"].run(c, s, rng); err != nil {
				t.Errorf("to %s: %v", c.role(s), err)
			}
			if d := time.Since(start); d < hostileIOTimeout {
				t.Errorf("to %s: the stalled connection was closed after %v, before IOTimeout (%v)", c.role(s), d, hostileIOTimeout)
			} else {
				t.Logf("to %s: the stalled connection was closed and logged after %v (IOTimeout %v)", c.role(s), d.Round(time.Millisecond), hostileIOTimeout)
			}
		}
		c.verify(t, st, "stalled frames")
	})

	t.Run("frame claiming 4 GiB", func(t *testing.T) {
		run(t, "frame header claiming 4 GiB")
	})

	t.Run("unknown methods", func(t *testing.T) {
		run(t, "unknown method Exraft.Nope", "unknown method Other.Method")
	})

	t.Run("nonsense indexes", func(t *testing.T) {
		st := c.settle(t)
		for _, s := range c.targets(st) {
			var follower *exraft.Server
			if s.Name() == st.leader {
				follower = c.targets(st)[1]
			}
			status := s.Status()
			if err := stepEach(c, s, st, c.nonsense(s, status.Term, status.LastIndex, follower)); err != nil {
				t.Errorf("to %s: %v", c.role(s), err)
			}
		}
		c.verify(t, st, "nonsense indexes")
	})

	t.Run("huge terms from a non-member", func(t *testing.T) {
		st := c.settle(t)
		for _, s := range c.targets(st) {
			if err := stepEach(c, s, st, hugeTerms(s.Name())); err != nil {
				t.Errorf("to %s: %v", c.role(s), err)
			}
		}
		c.verify(t, st, "huge terms from a non-member")
	})

	t.Run("malformed message batches", func(t *testing.T) {
		for _, b := range malformedBatches {
			run(t, "malformed batch: "+b.name)
		}
	})

	t.Run("undecodable Step bodies", func(t *testing.T) {
		for _, b := range undecodableBodies {
			run(t, "undecodable body: "+b.name)
		}
	})

	t.Run("parallel", func(t *testing.T) {
		st := c.settle(t)
		const workers, each = 20, 4
		all := allAttacks()
		before := make([]int, len(c.servers))
		for i, lg := range c.logs {
			before[i] = lg.Warnings(logBadBatch)
		}
		var badBatches [3]atomic.Int64
		from := c.written.Load()
		var wg sync.WaitGroup
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewSource(attackSeed + int64(g)))
				for k := 0; k < each; k++ {
					i := g*each + k
					s := c.servers[i%len(c.servers)]
					var err error
					name := "forged messages"
					switch i % (len(all) + 2) {
					case len(all):
						status := s.Status()
						err = stepEach(c, s, st, c.nonsense(s, status.Term, status.LastIndex, nil))
					case len(all) + 1:
						name = "huge terms"
						err = stepEach(c, s, st, hugeTerms(s.Name()))
					default:
						a := all[i%(len(all)+2)]
						name = a.name
						badBatches[i%len(c.servers)].Add(int64(a.badBatches))
						err = a.run(c, s, rng)
					}
					if err != nil {
						t.Errorf("worker %d, %s, to %s: %v", g, name, s.Name(), err)
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("%d writes answered during the attacks", c.written.Load()-from)
		for i, lg := range c.logs {
			want := before[i] + int(badBatches[i].Load())
			if !testkit.PollUntil(testkit.WaitLong, func() bool { return lg.Warnings(logBadBatch) >= want }) {
				t.Errorf("%s logged %d warnings %q, want %d", c.servers[i].Name(), lg.Warnings(logBadBatch)-before[i], logBadBatch, want-before[i])
			}
		}
		c.verify(t, st, "the parallel attacks")
	})

	// Bugs of the protocol: these run last, so that when enabled they
	// cannot disturb the subtests above.
	t.Run("timeout-now from a non-member in the current term", func(t *testing.T) {
		st := c.settle(t)
		s := c.targets(st)[1]
		if err := stepEach(c, s, st, []raft.Message{forged(raft.MsgTimeoutNow, st.terms[c.index(s)], s.Name())}); err != nil {
			t.Error(err)
		}
		c.verify(t, st, "a current-term timeout-now from a non-member")
	})

	t.Run("append from a non-member in the current term", func(t *testing.T) {
		st := c.settle(t)
		s := c.targets(st)[1]
		status := s.Status()
		m := forged(raft.MsgApp, status.Term, s.Name())
		m.PrevIndex, m.PrevTerm, m.Commit = status.CommitIndex, status.Term, math.MaxUint64
		for i := uint64(1); i <= 1000; i++ {
			m.Entries = append(m.Entries, raft.Entry{Index: status.CommitIndex + i, Term: status.Term, Data: fmt.Appendf(nil, "forged %d", i)})
		}
		if err := stepEach(c, s, st, []raft.Message{m}); err != nil {
			t.Error(err)
		}
		c.verify(t, st, "a current-term append from a non-member")
		for _, cmd := range c.history(s) {
			if strings.HasPrefix(cmd, "forged") {
				t.Fatalf("%s applied %q, which nobody wrote", s.Name(), cmd)
			}
		}
	})

	t.Run("reply addresses do not pile up", func(t *testing.T) {
		st := c.settle(t)
		s := c.targets(st)[0]
		before := runtime.NumGoroutine()
		var msgs []raft.Message
		for i := 0; i < 300; i++ {
			m := forged(raft.MsgApp, 0, s.Name())         // stale: every server answers it
			m.FromAddr = fmt.Sprintf("127.0.0.1:%d", 1+i) // closed ports, most likely: dials fail at once
			msgs = append(msgs, m)
		}
		if err := stepEach(c, s, st, msgs); err != nil {
			t.Error(err)
		}
		// At once, not after the streams retire: beyond a few, answers to
		// strangers are dropped rather than given a stream each.
		if extra := runtime.NumGoroutine() - before; extra > 50 {
			t.Errorf("300 reply addresses started %d goroutines", extra)
		}
		if !testkit.PollUntil(testkit.WaitLong, func() bool { return runtime.NumGoroutine() < before+10 }) {
			t.Errorf("300 reply addresses left %d goroutines more than before", runtime.NumGoroutine()-before)
		}
		c.verify(t, st, "many reply addresses")
	})

	// Every server applied the same commands, and none panicked or stopped.
	c.stopWriter()
	c.AwaitConverged(t, "after the attacks")
	t.Logf("%d commands applied on every server; %d writes answered", len(c.history(c.servers[0])), c.written.Load())
	for i, lg := range c.logs {
		for _, line := range strings.Split(lg.String(), "\n") {
			if strings.Contains(strings.ToLower(line), "panic") {
				t.Errorf("%s logged a panic: %s", c.servers[i].Name(), line)
			}
		}
	}
}

// Step bodies that do not decode as msgpack bytes.
var undecodableBodies = []struct {
	name string
	body []byte
}{
	{"a body that is not msgpack", []byte{0xc1, 0xc1, 0xc1}},
	{"a body of truncated msgpack", []byte{0xc4, 0x10, 0x01}},
	{"a body that is a map", []byte{0x81, 0xa1, 'a', 0x01}},
	{"a body that is a number", []byte{0xcd, 0x01, 0x00}},
	{"a body that is an array", []byte{0x93, 0x01, 0x02, 0x03}},
	{"a body that is two values", []byte{0xc4, 0x00, 0xc4, 0x00}},
	{"a body nested too deep", bytes.Repeat([]byte{0x91}, 100)},
}
