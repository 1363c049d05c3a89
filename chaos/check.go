package chaos

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
)

// checkTimeout bounds porcupine's search; past it the answer is Unknown,
// reported as such: a check too slow to finish has found nothing.
const checkTimeout = 60 * time.Second

// verdict is what the checks found in one round's history.
type verdict struct {
	problems       []string // lost or doubled writes, wrong previous values
	linearizable   porcupine.CheckResult
	visualization  string // written when not linearizable
	ops            int
	pendingApplied int // writes of unknown outcome found applied
	pendingDropped int // and found not applied
}

// checkHistory compares the history with the final state (each key's
// values in the order applied), then checks it with porcupine; dir
// receives the visualization of a violation.
func checkHistory(ops []operation, final map[string][]string, end int64, dir string) verdict {
	var v verdict
	replaced := map[string]string{} // value -> the value it replaced
	for key, vals := range final {
		prev := ""
		for _, val := range vals {
			if _, dup := replaced[val]; dup {
				v.problems = append(v.problems, fmt.Sprintf("write %s=%s was applied twice", key, val))
			}
			replaced[val], prev = prev, val
		}
	}
	history := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.in.put {
			prev, applied := replaced[op.in.val]
			switch {
			case op.out.unknown && !applied:
				v.pendingDropped++
				continue // never took effect: as if never sent
			case op.out.unknown:
				v.pendingApplied++
				if op.ret < 0 {
					op.ret = end
				}
			case !applied:
				v.problems = append(v.problems, fmt.Sprintf("acknowledged write %s=%s (returned at %v) is lost", op.in.key, op.in.val, time.Duration(op.ret)))
			case prev != op.out.val:
				v.problems = append(v.problems, fmt.Sprintf("write %s=%s returned previous value %q, but was applied over %q", op.in.key, op.in.val, op.out.val, prev))
			}
		}
		history = append(history, porcupine.Operation{ClientId: op.client, Input: op.in, Output: op.out, Call: op.call, Return: op.ret})
	}
	v.ops = len(history)
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, checkTimeout)
	v.linearizable = res
	if res == porcupine.Illegal {
		v.visualization = filepath.Join(dir, "history.html")
		if err := porcupine.VisualizePath(kvModel, info, v.visualization); err != nil {
			v.problems = append(v.problems, fmt.Sprintf("writing the visualization: %v", err))
		}
	}
	return v
}
