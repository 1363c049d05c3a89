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
// incarnations, no voters and a nil list.
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
	}
}

// TestConfEntryIsMsgpack: configuration entries are byte for byte what
// msgpack gives the same value, and each side reads the other's.
func TestConfEntryIsMsgpack(t *testing.T) {
	for i, m := range confSamples() {
		mine := encodeMembership(m)
		theirs, err := msgpack.Marshal(&m)
		require.NoError(t, err)
		require.True(t, bytes.Equal(mine, theirs), "sample %d: hand encoding differs from msgpack's:\n mine % x\ntheirs % x", i, head(mine), head(theirs))

		var back membership
		require.NoError(t, msgpack.Unmarshal(mine, &back), "sample %d", i)
		require.Equal(t, m.Voters, back.Voters, "sample %d: msgpack read the hand encoding back differently", i)
		got, err := decodeMembership(theirs)
		require.NoError(t, err, "sample %d", i)
		require.Equal(t, m.Voters, got.Voters, "sample %d", i)
	}
}

// TestConfEntryReadsCompactIntegers: another encoder may write incarnations
// in their shortest form; they still read.
func TestConfEntryReadsCompactIntegers(t *testing.T) {
	for i, m := range confSamples() {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		require.NoError(t, enc.Encode(&m))
		got, err := decodeMembership(buf.Bytes())
		require.NoError(t, err, "sample %d", i)
		require.Equal(t, m.Voters, got.Voters, "sample %d", i)
	}
}

func TestConfEntryRejectsGarbage(t *testing.T) {
	good := encodeMembership(confSamples()[3])
	for n := 0; n < len(good); n++ {
		_, err := decodeMembership(good[:n])
		require.Error(t, err, "a configuration cut to %d of %d bytes was accepted", n, len(good))
	}
	_, err := decodeMembership(append(bytes.Clone(good), 0xc0))
	require.Error(t, err, "trailing bytes were accepted")
	// Four billion voters announced in a handful of bytes: refused before
	// anything is allocated for them.
	_, err = decodeMembership([]byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff})
	require.Error(t, err)
	_, err = decodeMembership([]byte{0xc1, 0x00}) // not msgpack
	require.Error(t, err)
}

// FuzzDecodeMembership feeds configuration entries, which arrive from peers,
// to their decoder: it must fail cleanly or round-trip, and accept nothing
// msgpack itself would refuse or read otherwise.
func FuzzDecodeMembership(f *testing.F) {
	for _, m := range confSamples()[:4] {
		f.Add(encodeMembership(m))
	}
	f.Add([]byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMembership(b)
		if err != nil {
			return
		}
		again, err := decodeMembership(encodeMembership(m))
		if err != nil || len(m.Voters) > 0 && !equalVoters(again.Voters, m.Voters) {
			t.Fatalf("round trip of %+v gave %+v, %v", m, again, err)
		}
		var theirs membership
		if err := msgpack.Unmarshal(b, &theirs); err != nil {
			t.Fatalf("accepted % x, which msgpack refuses: %v", head(b), err)
		}
		if !equalVoters(theirs.Voters, m.Voters) {
			t.Fatalf("read % x as %+v, msgpack as %+v", head(b), m.Voters, theirs.Voters)
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
