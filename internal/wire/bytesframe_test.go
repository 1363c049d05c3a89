package wire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A frame of bytes, which writeFrame encodes by hand, has the bytes the
// encoder writes, whatever the sizes of its values, and the same limit.
func TestCodecBytesFramesAsEncoded(t *testing.T) {
	write := func(method string, seq uint64, response bool, msg string, body any, maxFrame int) ([]byte, error) {
		var out bytes.Buffer
		var w frameWriter
		w.init(&out, maxFrame)
		w.mu.Lock()
		defer w.mu.Unlock()
		err := w.writeFrame(method, seq, response, msg, body)
		if ferr := w.flush(); err == nil {
			err = ferr
		}
		return out.Bytes(), err
	}
	// As a []byte, the encoder's way; as a *[]byte, by hand.
	encoded := func(method string, seq uint64, response bool, msg string, body []byte, maxFrame int) ([]byte, error) {
		return write(method, seq, response, msg, body, maxFrame)
	}
	byHand := func(method string, seq uint64, response bool, msg string, body []byte, maxFrame int) ([]byte, error) {
		return write(method, seq, response, msg, &body, maxFrame)
	}
	lengths := []int{0, 1, 31, 32, 255, 256, 65535, 65536}
	seqs := []uint64{0, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	for _, ml := range lengths {
		for _, bl := range lengths {
			for _, seq := range seqs {
				for _, response := range []bool{false, true} {
					method, msg := strings.Repeat("m", ml%300), strings.Repeat("e", ml)
					var body []byte
					if bl > 0 {
						body = make([]byte, bl)
					}
					want, werr := encoded(method, seq, response, msg, body, DefaultMaxFrame)
					got, gerr := byHand(method, seq, response, msg, body, DefaultMaxFrame)
					require.NoError(t, werr)
					require.NoError(t, gerr)
					require.Equal(t, want, got, "method %d bytes, seq %d, response %v, body %d bytes", len(method), seq, response, bl)
				}
			}
		}
	}
	// The limit, at the byte: a frame of exactly max passes, one more fails.
	for _, body := range [][]byte{nil, {}, make([]byte, 1000)} {
		frame, err := encoded("M.m", 1, false, "", body, 1<<20)
		require.NoError(t, err)
		size := len(frame) - 4
		for _, limit := range []int{size - 1, size, size + 1} {
			_, werr := encoded("M.m", 1, false, "", body, limit)
			_, gerr := byHand("M.m", 1, false, "", body, limit)
			assert.Equal(t, werr != nil, gerr != nil, "limit %d for a frame of %d", limit, size)
			if gerr != nil {
				assert.ErrorIs(t, gerr, ErrFrameTooLarge)
			}
		}
	}
}
