package testkit

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// KVInput is an operation of a KV history: a put of Val at Key, or a get of
// Key.
type KVInput struct {
	Put      bool
	Key, Val string
}

// KVOutput is what an operation returned: for a put, the previous value (""
// for none); for a get, the value. Unknown marks a put whose outcome the
// client could not learn.
type KVOutput struct {
	Val     string
	Unknown bool
}

// KVModel is a register per key, which porcupine checks one key at a time.
// A put returns the value it replaced, which pins down where it happened. A
// put with an unknown outcome is accepted whether or not it took effect,
// because it is recorded as returning at the end of the history, where it
// can be linearized after everything that observed its absence.
var KVModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(KVInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(KVInput), output.(KVOutput)
		if in.Put {
			if out.Unknown || out.Val == st {
				return true, in.Val
			}
			return false, st
		}
		return out.Val == st, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(KVInput), output.(KVOutput)
		switch {
		case !in.Put:
			return fmt.Sprintf("get(%s) -> %q", in.Key, out.Val)
		case out.Unknown:
			return fmt.Sprintf("put(%s, %s) -> unknown", in.Key, in.Val)
		}
		return fmt.Sprintf("put(%s, %s) -> was %q", in.Key, in.Val, out.Val)
	},
	DescribeState: func(state any) string { return strconv.Quote(state.(string)) },
}
