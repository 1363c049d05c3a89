package wire

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestCheckMsgpackValue(t *testing.T) {
	type item struct {
		A int
		B string
	}
	values := []any{
		nil, true, false, 0, 1, -1, -32, -33, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32,
		int8(-100), int16(-1000), int32(-1 << 20), int64(-1 << 40), uint64(1<<64 - 1),
		float32(1.5), 2.25, "", "a", strings.Repeat("s", 31), strings.Repeat("s", 32),
		strings.Repeat("s", 255), strings.Repeat("s", 256), strings.Repeat("s", 65536),
		[]byte{}, []byte{1}, make([]byte, 256), make([]byte, 65536),
		[]int{}, []int{1, 2, 3}, make([]int, 15), make([]int, 16), make([]int, 70000),
		map[string]int{}, map[string]int{"a": 1}, map[int]bool{1: true, 2: false},
		make(map[int]int), item{A: 1, B: "x"}, []item{{1, "a"}, {2, "b"}},
		time.Unix(1, 2), time.Unix(1<<40, 5), map[string]any{"x": []any{nil, map[string]any{"y": 1.5}}},
		codecTestArgs(9),
	}
	big := make(map[int]int)
	for i := 0; i < 70000; i++ {
		big[i] = i
	}
	values = append(values, big)
	for _, v := range values {
		b := codecMarshal(t, v)
		if err := checkMsgpackValue(b); err != nil {
			t.Fatalf("%T %.40v (% x...): %v", v, v, b[:min(len(b), 8)], err)
		}
		if err := checkMsgpackValue(append(bytes.Clone(b), 0xc0)); err == nil {
			t.Fatalf("%T %.40v with a trailing byte: no error", v, v)
		}
		cuts := []int{0, 1, len(b) / 2, len(b) - 1}
		if len(b) < 200 {
			cuts = cuts[:0]
			for i := 0; i < len(b); i++ {
				cuts = append(cuts, i)
			}
		}
		for _, n := range cuts {
			if n >= 0 && n < len(b) && checkMsgpackValue(b[:n]) == nil {
				t.Fatalf("%T %.40v cut to %d of %d bytes: no error", v, v, n, len(b))
			}
		}
	}
}
