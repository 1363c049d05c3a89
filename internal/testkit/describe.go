package testkit

import (
	"fmt"
	"sort"
	"strings"

	"github.com/exraft/exraft"
)

// Statuses prints the Status of each server, one line each, at the time it
// is printed: as an argument of Eventually it shows the servers at the
// moment the wait gave up.
type Statuses []*exraft.Server

func (ss Statuses) String() string {
	var b strings.Builder
	for _, s := range ss {
		writeStatus(&b, s.Status())
	}
	return b.String()
}

func writeStatus(b *strings.Builder, st exraft.Status) {
	fmt.Fprintf(b, "\n    %s@%s role=%v term=%d leader=%v commit=%d applied=%d last=%d members=%v learners=%v",
		st.Name, st.Addr, st.Role, st.Term, st.Leader, st.CommitIndex, st.AppliedIndex, st.LastIndex,
		st.Members, st.Learners)
	if st.SnapshotIndex != 0 || st.FirstIndex > 1 {
		fmt.Fprintf(b, " snapshot=%d first=%d", st.SnapshotIndex, st.FirstIndex)
	}
}

// Describe summarizes every server, down ones included, and the links cut,
// for failure messages.
func (c *Cluster) Describe() string {
	var b strings.Builder
	for _, name := range c.order {
		if c.IsDown(name) {
			fmt.Fprintf(&b, "\n    %s down", name)
			continue
		}
		writeStatus(&b, c.Server(name).Status())
	}
	if c.opts.Net != nil {
		if cut := c.opts.Net.CutLinks(); len(cut) > 0 {
			fmt.Fprintf(&b, "\n    cut: %v", cut)
		}
	}
	return b.String()
}

// MemberNames returns the sorted names of ps, to compare configurations
// whatever their order.
func MemberNames(ps []exraft.Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	sort.Strings(out)
	return out
}

// Names returns the names of servers, in order.
func Names(servers []*exraft.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Name()
	}
	return out
}

// PeersOf returns the Peer of each server, in order.
func PeersOf(servers []*exraft.Server) []exraft.Peer {
	out := make([]exraft.Peer, len(servers))
	for i, s := range servers {
		out[i] = s.Peer()
	}
	return out
}

// HasName reports whether a peer of ps is called name, at whatever address.
func HasName(ps []exraft.Peer, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Others returns servers without s.
func Others(servers []*exraft.Server, s *exraft.Server) []*exraft.Server {
	var out []*exraft.Server
	for _, x := range servers {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
