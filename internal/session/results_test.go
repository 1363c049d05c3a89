package session

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The ring against a map, the structure it stands in for: writes in
// flight finish out of order, lowest moves in steps and jumps, and a
// client that skips numbers sends some far ahead. Every lookup must agree.
func TestResultsAgreeWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r results
	want := map[uint64][]byte{}
	lowest, next := uint64(1), uint64(1)
	r.ack(lowest)
	for step := 0; step < 200_000; step++ {
		switch x := rng.IntN(100); {
		case x < 60: // a write within the usual distance
			seq := lowest + uint64(rng.IntN(100))
			next = max(next, seq+1)
			if _, ok := want[seq]; !ok {
				val := fmt.Append(nil, seq)
				want[seq] = val
				r.put(seq, val)
			}
		case x < 62: // far ahead: kept in far
			seq := lowest + maxRing + uint64(rng.IntN(3*maxRing))
			if _, ok := want[seq]; !ok {
				want[seq] = []byte("far")
				r.put(seq, want[seq])
			}
		case x < 95: // lowest moves up a little
			lowest += uint64(rng.IntN(3))
		default: // or jumps
			lowest += uint64(rng.IntN(2 * maxRing))
		}
		r.ack(lowest)
		for seq := range want {
			if seq < lowest {
				delete(want, seq)
			}
		}
		require.Equal(t, len(want), r.len(), "step %d", step)
		if step%1000 == 0 {
			for seq, val := range want {
				got, ok := r.get(seq)
				require.True(t, ok, "step %d: %d kept", step, seq)
				require.Equal(t, val, got)
			}
			for i := range uint64(200) {
				_, ok := r.get(lowest + i)
				_, kept := want[lowest+i]
				require.Equal(t, kept, ok, "step %d: %d", step, lowest+i)
			}
			seqs := r.sorted()
			require.Len(t, seqs, len(want))
			for i := 1; i < len(seqs); i++ {
				require.Less(t, seqs[i-1], seqs[i])
			}
		}
	}
}

// A record may name any sequence number; one far ahead of what the session
// waits on must not make the table hold room for every number between.
func TestFarSequenceNumberTakesNoRoom(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	out, _ := tb.Apply(2, write(0, 1, 1<<60, 1, "far"), m.apply)
	require.Equal(t, Applied, out)
	e := tb.byID[1]
	require.LessOrEqual(t, e.results.near.Len(), 1)
	out, val := tb.Apply(3, write(0, 1, 1<<60, 1, "far"), m.apply)
	require.Equal(t, Duplicate, out)
	require.Equal(t, "far#1", string(val))

	enc := tb.Append(nil)
	back, _, err := DecodeTable(enc)
	require.NoError(t, err)
	require.Equal(t, enc, back.Append(nil))
}

// Results kept in the ring and in the map encode alike: two tables with
// the same results, one holding a result in its map and the other in its
// ring, encode to the same bytes.
func TestTableEncodingIgnoresWhereResultsLive(t *testing.T) {
	const far = 10 + maxRing // from 10, far; from 11, within the ring
	type w struct {
		seq, lowest uint64
		cmd         string
	}
	build := func(writes ...w) []byte {
		tb, m := NewTable(), newSM()
		tb.Apply(1, reg(0), m.apply)
		for i, x := range writes {
			out, _ := tb.Apply(uint64(i+2), write(0, 1, x.seq, x.lowest, x.cmd), m.apply)
			require.Equal(t, Applied, out)
		}
		return tb.Append(nil)
	}
	inMap := build(w{10, 10, "a"}, w{far, 10, "x"}, w{11, 11, "b"})
	inRing := build(w{10, 10, "a"}, w{11, 11, "b"}, w{far, 11, "x"})
	require.Equal(t, inMap, inRing)
}

func TestDecodeTableRefusesResultsBelowLowestOrTwice(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	tb.Apply(2, write(0, 1, 5, 5, "a"), m.apply)
	tb.Apply(3, write(0, 1, 6, 5, "b"), m.apply)
	enc := tb.Append(nil)
	_, _, err := DecodeTable(enc)
	require.NoError(t, err)
	// The encoding ends: ... lowest 5, 2 results, seq 5 "a#1", seq 6 "b#1".
	below := append([]byte(nil), enc...)
	i := len(below) - len("b#1") - 2
	require.Equal(t, byte(6), below[i])
	below[i] = 4
	_, _, err = DecodeTable(below)
	require.ErrorIs(t, err, ErrMalformed, "a result below lowest")
	twice := append([]byte(nil), enc...)
	twice[i] = 5
	_, _, err = DecodeTable(twice)
	require.ErrorIs(t, err, ErrMalformed, "a sequence number twice")
}

// The applier's cost per session write, with 64 writes in flight that
// finish out of order, as a busy Session's do.
func BenchmarkTableApplyWrite(b *testing.B) {
	tb := NewTable()
	val := []byte("result")
	apply := func([]byte) []byte { return val }
	tb.Apply(1, reg(0), apply)
	rng := rand.New(rand.NewPCG(3, 4))
	const inFlight = 64
	var r Record
	b.ReportAllocs()
	for i := range b.N {
		seq := uint64(i + inFlight)
		r = Record{Kind: Write, ID: 1, Seq: seq, Lowest: seq - inFlight + 1 - uint64(rng.IntN(2)), Command: val}
		tb.Apply(uint64(i+2), &r, apply)
	}
}

// Lowest may jump by more than an int holds: the results kept must all go,
// not be misread as a negative drop that leaves old results where new
// sequence numbers look. (Kills the mutant that drops the min in ack, which
// answers a new write with an old write's result.)
func TestLowestJumpsBeyondAnInt(t *testing.T) {
	tb, m := NewTable(), newSM()
	tb.Apply(1, reg(0), m.apply)
	for seq := uint64(1); seq <= 3; seq++ {
		tb.Apply(1+seq, write(0, 1, seq, 1, fmt.Sprint(seq)), m.apply)
	}
	// From lowest 1, a jump of 1<<63+1: as an int, negative, and the
	// ring's head would land on seq 2's slot.
	seq := uint64(1)<<63 + 2
	out, val := tb.Apply(5, write(0, 1, seq, seq, "new"), m.apply)
	require.Equal(t, Applied, out)
	require.Equal(t, "new#1", string(val))
	out, val = tb.Apply(6, write(0, 1, seq, seq, "new"), m.apply)
	require.Equal(t, Duplicate, out)
	require.Equal(t, "new#1", string(val))
	require.Equal(t, []uint64{seq}, tb.byID[1].results.sorted())
}

// The applier's cost per session write while the session keeps thousands
// of results far ahead of its lowest number (a client with more writes in
// flight than the ring holds), each write moving lowest by one.
func BenchmarkResultsAckWithFarResults(b *testing.B) {
	const farOnes = 4096
	var r results
	r.ack(1)
	for i := range uint64(farOnes) {
		r.put(1+maxRing+i, nil)
	}
	b.ResetTimer()
	for i := range uint64(b.N) {
		r.ack(2 + i)
		r.put(1+maxRing+farOnes+i, nil)
	}
}
