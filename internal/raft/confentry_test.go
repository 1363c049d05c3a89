package raft

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// confSamples covers every header size the encoding has: strings of 31, 32,
// 255, 256 and 65536 bytes, arrays of 15 and 16 voters, small and full-width
// incarnations, no voters and a nil list; and both layouts, with learners
// and without.
func confSamples() []membership {
	voters := func(n int) []member {
		vs := make([]member, n)
		for i := range vs {
			vs[i] = member{Name: string(rune('a' + i)), Addr: "127.0.0.1:7000", Inc: uint64(i) << 40}
		}
		return vs
	}
	return []membership{
		{},
		{Voters: []member{}},
		{Voters: []member{{Name: "a", Addr: "127.0.0.1:1"}}},
		newMembership(Peer{Name: "a", Addr: "127.0.0.1:1"}, []Peer{{Name: "b", Addr: "127.0.0.1:2"}, {Name: "c", Addr: "[::1]:3"}}),
		{Voters: []member{
			{Name: strings.Repeat("n", 31), Addr: strings.Repeat("a", 32), Inc: 127},
			{Name: strings.Repeat("n", 255), Addr: strings.Repeat("a", 256), Inc: 128},
			{Name: strings.Repeat("n", 65535), Addr: strings.Repeat("a", 65536), Inc: 1<<64 - 1},
		}},
		{Voters: voters(15)},
		{Voters: voters(16)},
		{Voters: []member{{Name: "a", Addr: "127.0.0.1:1", Inc: 1}}, Learners: []member{{Name: "c", Addr: "127.0.0.1:3", Inc: 777}}},
		{Voters: voters(2), Learners: voters(16)},
	}
}

// votersOnly is a configuration as builds that knew no learners had msgpack
// encode it.
type votersOnly struct {
	_msgpack struct{} `msgpack:",as_array"`
	Voters   []member
}

// msgpackValue is what msgpack must encode to give m's layout: the earlier
// one when m has no learners.
func msgpackValue(m membership) any {
	if len(m.Learners) == 0 {
		return &votersOnly{Voters: m.Voters}
	}
	return &m
}

// msgpackRead reads b with msgpack, in whichever layout it is.
func msgpackRead(b []byte) (membership, error) {
	var old votersOnly
	err := msgpack.Unmarshal(b, &old)
	if err == nil {
		return membership{Voters: old.Voters}, nil
	}
	var m membership
	if msgpack.Unmarshal(b, &m) != nil {
		return membership{}, err
	}
	return m, nil
}

// TestConfEntryWithoutLearnersUnchanged: a configuration without learners is
// written exactly as builds that knew no learners wrote it, whose servers
// share logs with these during a rolling upgrade.
func TestConfEntryWithoutLearnersUnchanged(t *testing.T) {
	m := membership{Voters: []member{{Name: "a", Addr: "x", Inc: 1}}}
	want := []byte{0x91, 0x91, 0x93, 0xa1, 'a', 0xa1, 'x', 0xcf, 0, 0, 0, 0, 0, 0, 0, 1}
	require.Equal(t, want, encodeMembership(m))
	require.Equal(t, want, encodeMembership(m.withLearner(member{Name: "b", Addr: "y", Inc: 2}).with(member{Name: "b", Addr: "y", Inc: 2}).without("b")),
		"learners listed, then admitted: the configuration has none and must be written as before")
}

// TestConfEntryIsMsgpack: configuration entries are byte for byte what
// msgpack gives the same value, and each side reads the other's.
func TestConfEntryIsMsgpack(t *testing.T) {
	for i, m := range confSamples() {
		mine := encodeMembership(m)
		theirs, err := msgpack.Marshal(msgpackValue(m))
		require.NoError(t, err)
		require.True(t, bytes.Equal(mine, theirs), "sample %d: hand encoding differs from msgpack's:\n mine % x\ntheirs % x", i, head(mine), head(theirs))

		back, err := msgpackRead(mine)
		require.NoError(t, err, "sample %d", i)
		require.Equal(t, m, back, "sample %d: msgpack read the hand encoding back differently", i)
		got, err := decodeMembership(theirs)
		require.NoError(t, err, "sample %d", i)
		require.Equal(t, m, got, "sample %d", i)
	}
}

// TestConfEntryReadsCompactIntegers: another encoder may write incarnations
// in their shortest form; they still read.
func TestConfEntryReadsCompactIntegers(t *testing.T) {
	for i, m := range confSamples() {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		require.NoError(t, enc.Encode(msgpackValue(m)))
		got, err := decodeMembership(buf.Bytes())
		require.NoError(t, err, "sample %d", i)
		require.Equal(t, m, got, "sample %d", i)
	}
}

func TestConfEntryRejectsGarbage(t *testing.T) {
	for _, sample := range []int{3, 7} {
		good := encodeMembership(confSamples()[sample])
		for n := 0; n < len(good); n++ {
			_, err := decodeMembership(good[:n])
			require.Error(t, err, "sample %d cut to %d of %d bytes was accepted", sample, n, len(good))
		}
	}
	good := encodeMembership(confSamples()[3])
	_, err := decodeMembership(append(bytes.Clone(good), 0xc0))
	require.Error(t, err, "trailing bytes were accepted")
	// Four billion voters announced in a handful of bytes: refused before
	// anything is allocated for them.
	_, err = decodeMembership([]byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff})
	require.Error(t, err)
	_, err = decodeMembership([]byte{0xc1, 0x00}) // not msgpack
	require.Error(t, err)
	_, err = decodeMembership([]byte{0x93, 0xc0, 0xc0, 0xc0}) // a layout yet to come
	require.Error(t, err)
}

// FuzzDecodeMembership feeds configuration entries, which arrive from peers,
// to their decoder: it must fail cleanly or round-trip, and accept nothing
// msgpack itself would refuse or read otherwise.
func FuzzDecodeMembership(f *testing.F) {
	for _, m := range confSamples()[:4] {
		f.Add(encodeMembership(m))
	}
	f.Add(encodeMembership(confSamples()[7]))
	f.Add([]byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMembership(b)
		if err != nil {
			return
		}
		again, err := decodeMembership(encodeMembership(m))
		if err != nil || len(m.Voters) > 0 && !equalVoters(again.Voters, m.Voters) || !equalVoters(again.Learners, m.Learners) {
			t.Fatalf("round trip of %+v gave %+v, %v", m, again, err)
		}
		theirs, err := msgpackRead(b)
		if err != nil {
			t.Fatalf("accepted % x, which msgpack refuses: %v", head(b), err)
		}
		if !equalVoters(theirs.Voters, m.Voters) || !equalVoters(theirs.Learners, m.Learners) {
			t.Fatalf("read % x as %+v, msgpack as %+v", head(b), m, theirs)
		}
	})
}

func equalVoters(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// head shortens what a failure prints.
func head(b []byte) []byte { return b[:min(len(b), 64)] }
