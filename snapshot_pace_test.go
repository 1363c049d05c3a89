package exraft

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// How a snapshot spares the goroutines that serve writes: its bytes in
// pieces, yields while it is written and restored, and snapshot points
// spread by the server's name.

func TestSnapshotPointsStayWithinAQuarterOfTheThreshold(t *testing.T) {
	const threshold = 1000
	points := map[string][]uint64{}
	for _, name := range []string{"a", "b", "c", "kv0", "kv1", "kv2"} {
		sn := &snapshots{threshold: threshold}
		sn.seed = (&Server{name: name}).snapSeed()
		var sum uint64
		last := uint64(0)
		for range 1000 {
			next := sn.nextPoint(last)
			require.GreaterOrEqual(t, next, last+threshold*3/4, "%s: a snapshot at %d after one at %d", name, next, last)
			require.LessOrEqual(t, next, last+threshold*5/4, "%s: a snapshot at %d after one at %d", name, next, last)
			assert.Equal(t, next, sn.nextPoint(last), "%s: the same point every time", name)
			sum += next - last
			last = next
			points[name] = append(points[name], next)
		}
		assert.InDelta(t, threshold, float64(sum)/1000, threshold/20, "%s snapshots every threshold entries on average", name)
	}
	assert.NotEqual(t, points["kv0"][:10], points["kv1"][:10], "servers with other names snapshot at other points")
	assert.NotEqual(t, points["kv1"][:10], points["kv2"][:10], "servers with other names snapshot at other points")

	sn := &snapshots{threshold: 3, seed: 12345}
	assert.Equal(t, uint64(13), sn.nextPoint(10), "a threshold too small to spread is kept")
}

func TestSnapshotPiecesKeepTheBytes(t *testing.T) {
	want := make([]byte, 3*snapPiece+12345)
	for i := range want {
		want[i] = byte(rand.Uint32())
	}
	var p pieces
	for b := want; len(b) > 0; {
		n := min(len(b), 1+rand.IntN(100_000))
		k, err := p.Write(b[:n])
		require.NoError(t, err)
		require.Equal(t, n, k)
		b = b[n:]
	}
	require.Equal(t, len(want), p.Len())
	assert.Equal(t, want, p.bytes())
	for i, b := range p.bufs {
		assert.LessOrEqual(t, len(b), snapPiece, "piece %d", i)
		assert.LessOrEqual(t, cap(b), snapPiece, "piece %d: no allocation beyond a piece", i)
	}

	// at, as the sender takes chunks: never across a piece.
	var got []byte
	for off := 0; off < p.Len(); {
		c := p.at(off, 100_000)
		require.NotEmpty(t, c, "at %d", off)
		assert.Equal(t, off/snapPiece, (off+len(c)-1)/snapPiece, "a chunk at %d of %d bytes spans two pieces", off, len(c))
		got = append(got, c...)
		off += len(c)
	}
	assert.Equal(t, want, got)
	assert.Empty(t, p.at(p.Len(), 10))

	r, err := io.ReadAll(p.reader())
	require.NoError(t, err)
	assert.Equal(t, want, r)

	var empty *pieces
	assert.Zero(t, empty.Len())
	r, err = io.ReadAll(empty.reader())
	require.NoError(t, err)
	assert.Empty(t, r)
}

func TestSnapshotPiecesKeepReceivedChunks(t *testing.T) {
	var p pieces
	p.add([]byte("abc"))
	p.add(nil)
	p.add([]byte("defgh"))
	assert.Equal(t, 8, p.Len())
	assert.Len(t, p.bufs, 2, "an empty chunk adds no piece")
	assert.Equal(t, "defgh", string(p.at(3, 10)))
	assert.Equal(t, "bc", string(p.at(1, 10)))
	r, err := io.ReadAll(p.reader())
	require.NoError(t, err)
	assert.Equal(t, "abcdefgh", string(r))
}

func TestSnapshotWriterAndReaderPause(t *testing.T) {
	for _, size := range []int{100, 4 << 10, 64 << 10, 100 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			total := 10*snapYield + size
			yields := 0
			var p pieces
			w := &pacedWriter{w: &p, pacer: pacer{pause: func(time.Duration) { yields++ }}}
			chunk := bytes.Repeat([]byte{7}, size)
			for written := 0; written < total; written += size {
				_, err := w.Write(chunk)
				require.NoError(t, err)
			}
			// Each yield follows snapYield bytes at least, and no more than
			// one Write later.
			n := p.Len()
			assert.LessOrEqual(t, yields, n/snapYield, "the writer yields at most once per %d bytes", snapYield)
			assert.GreaterOrEqual(t, yields, n/(snapYield+size), "the writer yields every %d bytes, give or take a Write", snapYield)

			yields = 0
			r := p.reader().(*piecesReader)
			r.pause = func(time.Duration) { yields++ }
			buf := make([]byte, size)
			read := 0
			for {
				k, err := r.Read(buf)
				read += k
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
			}
			require.Equal(t, n, read)
			assert.LessOrEqual(t, yields, n/snapYield, "the reader yields at most once per %d bytes", snapYield)
			assert.GreaterOrEqual(t, yields, n/(snapYield+size)-1, "the reader yields every %d bytes, give or take a Read", snapYield)
		})
	}
}

// TestSnapshotPacerWorksHalfTheTime: a pause rests as long as the work
// before it took, so that an encoder takes half a processor at most.
func TestSnapshotPacerWorksHalfTheTime(t *testing.T) {
	var worked []time.Duration
	p := pacer{began: time.Now(), pause: func(d time.Duration) { worked = append(worked, d) }}
	time.Sleep(2 * time.Millisecond) // work
	p.add(snapYield)
	require.Len(t, worked, 1)
	assert.GreaterOrEqual(t, worked[0], 2*time.Millisecond, "the pause is told how long the work took")

	begin := time.Now()
	pauseFor(5 * time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(begin), 5*time.Millisecond, "a pause as long as the work")
	begin = time.Now()
	pauseFor(time.Microsecond) // a yield only
	assert.Less(t, time.Since(begin), time.Second)
}
