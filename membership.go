package exraft

import (
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// member is a voter of a configuration. Inc is the incarnation the voter's
// votes and acknowledgements must come from; 0 means not yet bound (a
// bootstrap configuration names servers only, see DESIGN.md §3).
type member struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Addr     string
	Inc      uint64
}

// membership is the set of voters of one configuration, sorted by name.
type membership struct {
	_msgpack struct{} `msgpack:",as_array"`
	Voters   []member
}

func (m membership) find(name string) (member, bool) {
	for _, v := range m.Voters {
		if v.Name == name {
			return v, true
		}
	}
	return member{}, false
}

// counts reports whether a server speaking as (name, inc) is a voter whose
// votes and acknowledgements count.
func (m membership) counts(name string, inc uint64) bool {
	v, ok := m.find(name)
	return ok && (v.Inc == 0 || v.Inc == inc)
}

// quorum is the number of voters needed to decide: a majority, raised to
// minMajority.
//
// A configuration with an unbound voter needs every voter. It is a
// bootstrap configuration, which names servers only, so a server that
// restarted blank and still holds it cannot be told from a new one: with a
// plain majority, a majority restarted blank would elect a leader with an
// empty log, and a voter restarted inside the first term could vote twice.
// Unanimity means every server of InitialConfig must be up for the first
// election; that leader binds the incarnations (DESIGN.md §3), and plain
// majorities apply from then on.
func (m membership) quorum(minMajority int) int {
	q := len(m.Voters)/2 + 1
	for _, v := range m.Voters {
		if v.Inc == 0 {
			q = len(m.Voters)
			break
		}
	}
	if minMajority > q {
		q = minMajority
	}
	return q
}

// with returns a copy of m in which v replaces the voter of the same name, or
// is added.
func (m membership) with(v member) membership {
	out := membership{Voters: make([]member, 0, len(m.Voters)+1)}
	for _, x := range m.Voters {
		if x.Name != v.Name {
			out.Voters = append(out.Voters, x)
		}
	}
	out.Voters = append(out.Voters, v)
	sort.Slice(out.Voters, func(i, j int) bool { return out.Voters[i].Name < out.Voters[j].Name })
	return out
}

// without returns a copy of m without the voter name.
func (m membership) without(name string) membership {
	out := membership{Voters: make([]member, 0, len(m.Voters))}
	for _, x := range m.Voters {
		if x.Name != name {
			out.Voters = append(out.Voters, x)
		}
	}
	return out
}

func (m membership) peers() []Peer {
	ps := make([]Peer, len(m.Voters))
	for i, v := range m.Voters {
		ps[i] = Peer{Name: v.Name, Addr: v.Addr}
	}
	return ps
}

func encodeMembership(m membership) []byte {
	b, err := msgpack.Marshal(&m)
	if err != nil {
		panic(err) // only strings and integers: cannot fail
	}
	return b
}

func decodeMembership(b []byte) (membership, error) {
	var m membership
	// The entry came from a peer: check its shape before msgpack allocates
	// what it claims.
	err := checkMsgpackValue(b)
	if err == nil {
		err = msgpack.Unmarshal(b, &m)
	}
	if err != nil {
		return membership{}, fmt.Errorf("exraft: bad configuration entry: %w", err)
	}
	return m, nil
}

// newMembership builds the bootstrap configuration: the given peers plus
// self, all unbound.
func newMembership(self Peer, peers []Peer) membership {
	m := membership{}
	m = m.with(member{Name: self.Name, Addr: self.Addr})
	for _, p := range peers {
		if p.Name != self.Name {
			m = m.with(member{Name: p.Name, Addr: p.Addr})
		}
	}
	return m
}
