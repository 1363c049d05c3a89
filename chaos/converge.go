package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// converge waits, once the clients have stopped and every fault is healed,
// until every server has applied the whole log and holds the same state,
// and returns that state (each key's history of values). It compares the
// servers' dumps by hash, read with ReadDirty at each one's own address.
func (c *cluster) converge(ctx context.Context) (map[string][]string, error) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := "no status yet"
	for {
		state, why := c.sameState(ctx)
		if why == "" {
			return state, nil
		}
		last = why
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("servers did not converge: %s", last)
		case <-tick.C:
		}
	}
}

// sameState returns the state when every server has applied everything
// the leader has and every dump hashes the same; otherwise why not.
func (c *cluster) sameState(ctx context.Context) (map[string][]string, string) {
	sts := c.statuses(ctx)
	leader, why := c.agreedLeader(sts)
	if why != "" {
		return nil, why
	}
	ls := sts[leader]
	for _, st := range sts {
		if st.AppliedIndex != ls.LastIndex || ls.CommitIndex != ls.LastIndex {
			return nil, fmt.Sprintf("%s applied %d, the leader's log ends at %d (committed %d)", st.Name, st.AppliedIndex, ls.LastIndex, ls.CommitIndex)
		}
	}
	var hashes []string
	var dump []byte
	for i := range c.names {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		b, err := c.ctl.ReadDirty(cctx, c.listen[i], []byte("dump"))
		cancel()
		if err != nil {
			return nil, fmt.Sprintf("dump of %s: %v", c.names[i], err)
		}
		sum := sha256.Sum256(b)
		hashes = append(hashes, c.names[i]+"="+hex.EncodeToString(sum[:6]))
		if dump == nil {
			dump = b
		} else if string(b) != string(dump) {
			return nil, "states differ: " + strings.Join(hashes, " ")
		}
	}
	state := map[string][]string{}
	if err := json.Unmarshal(dump, &state); err != nil {
		return nil, fmt.Sprintf("dump does not decode: %v", err)
	}
	c.logf("converged: every server holds state %s", strings.Join(hashes, " "))
	return state, ""
}
