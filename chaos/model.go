package chaos

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// kvInput is an operation: a put of val at key, or a get of key.
type kvInput struct {
	put      bool
	key, val string
}

// kvOutput is what it returned: a put, the value it replaced; a get, the
// value. unknown marks a put whose outcome the client never learned.
type kvOutput struct {
	val     string
	unknown bool
}

// kvModel is a register per key, checked one key at a time. A put returns
// the value it replaced, which pins down where it took effect; a put of
// unknown outcome is accepted either way, because it is recorded as
// returning as late as it could have taken effect.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
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
		st, in, out := state.(string), input.(kvInput), output.(kvOutput)
		if in.put {
			if out.unknown || out.val == st {
				return true, in.val
			}
			return false, st
		}
		return out.val == st, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case !in.put:
			return fmt.Sprintf("get(%s) -> %q", in.key, out.val)
		case out.unknown:
			return fmt.Sprintf("put(%s, %s) -> unknown", in.key, in.val)
		}
		return fmt.Sprintf("put(%s, %s) -> was %q", in.key, in.val, out.val)
	},
	DescribeState: func(state any) string { return strconv.Quote(state.(string)) },
}
