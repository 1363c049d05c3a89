package session

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sm counts how often each command was applied.
type sm struct{ applied map[string]int }

func (m *sm) apply(cmd []byte) []byte {
	m.applied[string(cmd)]++
	return fmt.Appendf(nil, "%s#%d", cmd, m.applied[string(cmd)])
}

func newSM() *sm { return &sm{applied: map[string]int{}} }

const minute = 60_000

func reg(at int64) *Record {
	return &Record{Kind: Register, Time: at, Timeout: 10 * minute, MaxSessions: 100}
}

func write(at int64, id, seq, lowest uint64, cmd string) *Record {
	return &Record{Kind: Write, Time: at, ID: id, Seq: seq, Lowest: lowest, Command: []byte(cmd)}
}

func TestDuplicateAnsweredFromTable(t *testing.T) {
	tb, m := NewTable(), newSM()
	out, _ := tb.Apply(7, reg(0), m.apply)
	require.Equal(t, Registered, out)
	out, first := tb.Apply(8, write(1, 7, 1, 1, "x"), m.apply)
	require.Equal(t, Applied, out)
	out, again := tb.Apply(9, write(2, 7, 1, 1, "x"), m.apply)
	assert.Equal(t, Duplicate, out)
	assert.Equal(t, first, again, "a duplicate gets the first result")
	assert.Equal(t, 1, m.applied["x"], "and is not applied again")
}

func TestLowestForgetsResultsAndRefusesLateCopies(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	tb.Apply(2, write(0, 1, 1, 1, "a"), m.apply)
	tb.Apply(3, write(0, 1, 2, 1, "b"), m.apply)
	// The client has a's answer: its next write says so.
	tb.Apply(4, write(0, 1, 3, 2, "c"), m.apply)
	out, _ := tb.Apply(5, write(0, 1, 1, 1, "a"), m.apply)
	assert.Equal(t, Stale, out, "a late copy of an answered write must not apply")
	assert.Equal(t, 1, m.applied["a"])
	out, _ = tb.Apply(6, write(0, 1, 2, 2, "b"), m.apply)
	assert.Equal(t, Duplicate, out, "b is still unanswered: its result is kept")
	assert.Equal(t, 2, tb.byID[1].results.len(), "a's result is gone, b's and c's kept")
}

// Many writes in flight: the lowest moves up by one or by many, past
// results kept and results already gone, and only those below it go.
func TestLowestForgetsInStepsAndJumps(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	idx := uint64(2)
	apply := func(seq, lowest uint64) Outcome {
		idx++
		out, _ := tb.Apply(idx, write(0, 1, seq, lowest, fmt.Sprint(seq)), m.apply)
		return out
	}
	for seq := uint64(1); seq <= 100; seq++ {
		require.Equal(t, Applied, apply(seq, 1))
	}
	require.Equal(t, Applied, apply(101, 2)) // one step
	require.Equal(t, 100, tb.byID[1].results.len())
	require.Equal(t, Applied, apply(102, 40)) // a step of 38, within what is kept
	require.Equal(t, 63, tb.byID[1].results.len())
	require.Equal(t, Stale, apply(39, 40))
	require.Equal(t, Duplicate, apply(40, 40))
	require.Equal(t, Applied, apply(1000, 500)) // past every result kept
	e := tb.byID[1]
	require.Equal(t, 1, e.results.len())
	require.Equal(t, []uint64{1000}, e.results.sorted())
	require.Equal(t, uint64(500), e.results.lowest)
}

func TestExpiryByLogTime(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	tb.Apply(2, reg(5*minute), m.apply)
	// Session 1 idle for exactly its timeout lives; a moment more expires it.
	out, _ := tb.Apply(3, write(10*minute, 2, 1, 1, "keep 2 alive"), m.apply)
	require.Equal(t, Applied, out)
	require.Equal(t, 2, tb.Len())
	tb.Apply(4, write(10*minute+1, 2, 2, 2, "again"), m.apply)
	require.Equal(t, 1, tb.Len(), "session 1 idle for more than 10 minutes of log time")
	out, _ = tb.Apply(5, write(10*minute+1, 1, 1, 1, "late"), m.apply)
	assert.Equal(t, Expired, out)
	assert.Zero(t, m.applied["late"])
}

// A session the log's time expired stays gone when a later record is
// stamped earlier (a leader whose clock is behind): expiry removes it
// when the time passes, not when it is next used. That the log's time
// itself never moves back is TestLogTimeNeverMovesBack's, as session 1 is
// gone here before the earlier stamp comes.
func TestClockGoingBackDoesNotRevive(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	tb.Apply(2, &Record{Kind: Register, Time: 20 * minute, Timeout: 10 * minute, MaxSessions: 100}, m.apply)
	// A leader whose clock is behind does not move the log's time back.
	out, _ := tb.Apply(3, write(1, 1, 1, 1, "x"), m.apply)
	assert.Equal(t, Expired, out)
}

func TestMaxSessionsDropsLeastRecentlyUsed(t *testing.T) {
	tb, m := NewTable(), newSM()
	r := func(at int64) *Record { return &Record{Kind: Register, Time: at, Timeout: 10 * minute, MaxSessions: 2} }
	tb.Apply(1, r(0), m.apply)
	tb.Apply(2, r(0), m.apply)
	tb.Apply(3, write(0, 1, 1, 1, "use 1"), m.apply) // 2 is now the least recently used
	tb.Apply(4, r(0), m.apply)
	out, _ := tb.Apply(5, write(0, 2, 1, 1, "x"), m.apply)
	assert.Equal(t, Expired, out)
	out, _ = tb.Apply(6, write(0, 1, 2, 2, "y"), m.apply)
	assert.Equal(t, Applied, out)
}

func TestCloseForgets(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	out, _ := tb.Apply(2, &Record{Kind: Close, ID: 1}, m.apply)
	require.Equal(t, Closed, out)
	out, _ = tb.Apply(3, write(0, 1, 1, 1, "x"), m.apply)
	assert.Equal(t, Expired, out)
	assert.Zero(t, tb.Len())
}

func TestTableEncodingRoundTripsAndIsCanonical(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(3), m.apply)
	tb.Apply(2, reg(4), m.apply)
	for seq := uint64(1); seq <= 20; seq++ {
		tb.Apply(2+seq, write(int64(seq), 1+seq%2, seq, 1, fmt.Sprint("c", seq)), m.apply)
	}
	enc := tb.Append(nil)
	back, rest, err := DecodeTable(append(enc, "after"...))
	require.NoError(t, err)
	assert.Equal(t, "after", string(rest))
	assert.Equal(t, enc, back.Append(nil))
	// The copy behaves as the original: the same duplicates, the same expiry.
	m2 := newSM()
	out, val := back.Apply(30, write(21, 1, 4, 1, "c4"), m2.apply)
	assert.Equal(t, Duplicate, out)
	assert.Equal(t, "c4#1", string(val))
	assert.Zero(t, m2.applied["c4"])
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{*reg(12), *write(5, 9, 3, 2, "cmd"), {Kind: Close, Time: 1, ID: 4}, *write(0, 1, 1, 1, "")} {
		got, err := Decode(r.Append(nil))
		require.NoError(t, err)
		if len(r.Command) == 0 {
			r.Command, got.Command = nil, nil
		}
		assert.Equal(t, r, got)
	}
	// A time or timeout above the largest int64 would read as negative.
	negativeTime := (&Record{Kind: Close, Time: -1, ID: 1}).Append(nil)
	negativeTimeout := (&Record{Kind: Register, Time: 1, Timeout: -1}).Append(nil)
	for _, bad := range [][]byte{nil, {0}, {9, 1}, {byte(Write), 0x80}, append((&Record{Kind: Close, ID: 1}).Append(nil), 1), negativeTime, negativeTimeout} {
		_, err := Decode(bad)
		assert.ErrorIs(t, err, ErrMalformed, "%x", bad)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add((&Record{Kind: Register, Time: 1, Timeout: 2, MaxSessions: 3}).Append(nil))
	f.Add((&Record{Kind: Write, ID: 1, Seq: 2, Lowest: 1, Command: []byte("x")}).Append(nil))
	tb := NewTable()
	tb.Apply(1, reg(0), newSM().apply)
	tb.Apply(2, write(0, 1, 1, 1, "x"), newSM().apply)
	f.Add(tb.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := Decode(b); err == nil {
			again, err := Decode(r.Append(nil))
			require.NoError(t, err)
			require.Equal(t, r.Kind, again.Kind)
		}
		if tb, _, err := DecodeTable(b); err == nil {
			enc := tb.Append(nil)
			back, _, err := DecodeTable(enc)
			require.NoError(t, err)
			require.Equal(t, enc, back.Append(nil))
		}
	})
}

// A leader whose clock is behind stamps a record with an earlier time than
// the log's; the log's time must not move back with it, or a session used
// by that record would count its idleness from the earlier time and expire
// early. (Kills the mutant t.now = r.Time in Apply.)
func TestLogTimeNeverMovesBack(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(20*minute), m.apply)
	out, _ := tb.Apply(2, write(1, 1, 1, 1, "behind"), m.apply)
	require.Equal(t, Applied, out)
	// 10 minutes and a moment after the earlier stamp, but well within the
	// timeout of the session's last use at the log's time of 20 minutes.
	out, _ = tb.Apply(3, write(10*minute+2, 1, 2, 2, "x"), m.apply)
	assert.Equal(t, Applied, out, "the session expired by a time that went back")
}

// A session's idleness counts from its registration at the log's time, not
// from time zero. (Kills the mutant that registers with lastUsed unset.)
func TestRegisteredSessionIdleFromItsRegistration(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(5*minute), m.apply)
	out, _ := tb.Apply(2, write(15*minute, 1, 1, 1, "x"), m.apply)
	assert.Equal(t, Applied, out, "idle for exactly its timeout since it registered")
}

// MaxSessions 0 bounds nothing: every session registered stays. (Kills the
// mutant that drops the MaxSessions > 0 test in register, which would drop
// every session, the new one too.)
func TestMaxSessionsZeroIsNoBound(t *testing.T) {
	tb, m := NewTable(), newSM()
	r := &Record{Kind: Register, Timeout: 10 * minute}
	for i := uint64(1); i <= 3; i++ {
		tb.Apply(i, r, m.apply)
	}
	require.Equal(t, 3, tb.Len())
	out, _ := tb.Apply(4, write(0, 1, 1, 1, "x"), m.apply)
	assert.Equal(t, Applied, out)
}

// A table's encoding names each session once; one that names a session
// twice is not one Append wrote, and would leave the copy with a session in
// its order of use that its index no longer finds. (Kills the mutant that
// drops DecodeTable's check of duplicate IDs.)
func TestDecodeTableRefusesASessionTwice(t *testing.T) {
	// version, now, 2 sessions, each: id, timeout, lastUsed, lowest, 0 results.
	two := func(id1, id2 byte) []byte { return []byte{tableVersion, 0, 2, id1, 1, 0, 0, 0, id2, 1, 0, 0, 0} }
	tb, rest, err := DecodeTable(two(7, 8))
	require.NoError(t, err, "the same bytes with two IDs are a table")
	require.Empty(t, rest)
	require.Equal(t, 2, tb.Len())
	_, _, err = DecodeTable(two(7, 7))
	assert.ErrorIs(t, err, ErrMalformed)
}

// A table of another version is refused, not misread. (Kills the mutant
// that drops DecodeTable's check of the version byte.)
func TestDecodeTableRefusesAnotherVersion(t *testing.T) {
	tb := NewTable()
	tb.Apply(1, reg(0), newSM().apply)
	enc := tb.Append(nil)
	_, _, err := DecodeTable(enc)
	require.NoError(t, err)
	enc[0] = tableVersion + 1
	_, _, err = DecodeTable(enc)
	assert.ErrorIs(t, err, ErrMalformed)
}

// Bytes that claim many sessions and then end are refused at the first
// that is missing, without building the rest from nothing: a truncated or
// hostile snapshot must not cost memory in proportion to the count it
// claims. (Kills the mutant that drops !d.bad from DecodeTable's loop over
// the sessions, which allocates an entry for each one claimed.)
func TestDecodeTableStopsAtTheEndOfItsBytes(t *testing.T) {
	b := binary.AppendUvarint([]byte{tableVersion, 0}, 1<<16)
	allocs := testing.AllocsPerRun(3, func() {
		_, _, err := DecodeTable(b)
		require.ErrorIs(t, err, ErrMalformed)
	})
	assert.Less(t, allocs, 100.0)
}

// A write whose own sequence number is below the lowest it names is one
// whose answer the client already has: it is stale, and nothing is applied
// or kept, even though lowest moves only with this very record. A result
// kept below lowest would also make the table's encoding one that
// DecodeTable refuses. (Kills the mutant that acks lowest after the stale
// check in Apply.)
func TestWriteBelowItsOwnLowestIsStale(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	tb.Apply(2, write(0, 1, 1, 1, "a"), m.apply)
	out, _ := tb.Apply(3, write(0, 1, 3, 5, "late"), m.apply)
	assert.Equal(t, Stale, out)
	assert.Zero(t, m.applied["late"])
	assert.Empty(t, tb.byID[1].results.sorted())
	_, _, err := DecodeTable(tb.Append(nil))
	assert.NoError(t, err)
}

// Times and timeouts are never negative; a table whose encoding gives one
// as a number above the largest int64 is not one Append wrote, and is
// refused rather than read as a time before 1970 or a negative timeout.
func TestDecodeTableRefusesNegativeTimes(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<63)
	table := func(now, timeout, lastUsed []byte) []byte {
		b := append([]byte{tableVersion}, now...)
		b = append(b, 1, 7) // one session, id 7
		b = append(b, timeout...)
		b = append(b, lastUsed...)
		return append(b, 0, 0) // lowest, no results
	}
	zero := []byte{0}
	_, _, err := DecodeTable(table(zero, zero, zero))
	require.NoError(t, err, "the same bytes with times of 0 are a table")
	for name, b := range map[string][]byte{
		"now":      table(huge, zero, zero),
		"timeout":  table(zero, huge, zero),
		"lastUsed": table(zero, zero, huge),
	} {
		_, _, err := DecodeTable(b)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}
