package raft

import "sort"

// member is a voter of a configuration. Inc is the incarnation the voter's
// votes and acknowledgements must come from; 0 means not yet bound (a
// bootstrap configuration names servers only, see docs/design.md §3).
type member struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Addr     string
	Inc      uint64
}

// membership is one configuration: its voters, and the servers it is
// re-admitting, each sorted by name.
//
// A learner is a voter that restarted as a new incarnation and was taken
// out of the voters to be re-admitted (maybeChangeMembership). It is in the
// configuration, not in its leader's memory alone, so that whoever leads
// next carries the re-admission on: a learner is caught up by every leader
// of a configuration naming it and admitted once it holds everything
// committed. It neither votes nor counts for any quorum. Its Inc is the
// incarnation that was being caught up when it was listed.
type membership struct {
	_msgpack struct{} `msgpack:",as_array"`
	Voters   []member
	Learners []member
}

func (m membership) find(name string) (member, bool) { return findMember(m.Voters, name) }

// findLearner looks name up among the servers being re-admitted.
func (m membership) findLearner(name string) (member, bool) { return findMember(m.Learners, name) }

func findMember(ms []member, name string) (member, bool) {
	for _, v := range ms {
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
	return ok && sameIncarnation(v.Inc, inc)
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
// election; that leader binds the incarnations (docs/design.md §3), and plain
// majorities apply from then on.
func (m membership) quorum(minMajority int) int {
	q := len(m.Voters)/2 + 1
	if m.unanimous() {
		q = len(m.Voters)
	}
	if minMajority > q {
		q = minMajority
	}
	return q
}

// unanimous reports whether m has an unbound voter, and so needs every
// voter to decide (see quorum).
func (m membership) unanimous() bool {
	for _, v := range m.Voters {
		if !v.bound() {
			return true
		}
	}
	return false
}

// with returns a copy of m in which v is a voter: it replaces the voter of
// the same name, or is added, and a learner of that name is admitted.
func (m membership) with(v member) membership {
	return membership{Voters: withMember(m.Voters, v), Learners: noneIfEmpty(withoutMember(m.Learners, v.Name))}
}

// withLearner returns a copy of m in which v is no voter but a server being
// re-admitted.
func (m membership) withLearner(v member) membership {
	return membership{Voters: withoutMember(m.Voters, v.Name), Learners: withMember(m.Learners, v)}
}

// without returns a copy of m without name, as a voter or a learner.
func (m membership) without(name string) membership {
	return membership{Voters: withoutMember(m.Voters, name), Learners: noneIfEmpty(withoutMember(m.Learners, name))}
}

// withMember returns ms, sorted by name, with v in place of the member of
// the same name or added.
func withMember(ms []member, v member) []member {
	out := append(make([]member, 0, len(ms)+1), withoutMember(ms, v.Name)...)
	out = append(out, v)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// noneIfEmpty keeps one form for "no learners": a configuration without
// any is written as before learners existed (confentry.go).
func noneIfEmpty(ms []member) []member {
	if len(ms) == 0 {
		return nil
	}
	return ms
}

// withoutMember returns a copy of ms without name.
func withoutMember(ms []member, name string) []member {
	out := make([]member, 0, len(ms))
	for _, x := range ms {
		if x.Name != name {
			out = append(out, x)
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

// configRecord is a configuration entry of the log, decoded.
type configRecord struct {
	index uint64
	m     membership
	peers []Peer // m's voters, for Status; never modified
}

func newConfigRecord(index uint64, m membership) configRecord {
	return configRecord{index: index, m: m, peers: m.peers()}
}

// applyConfig makes the latest configuration in the log the one in use: in
// Raft a server uses a configuration as soon as it is in its log (thesis
// §4.1), committed or not.
func (c *core) applyConfig() {
	c.self = c.configs[len(c.configs)-1].m
	c.removed = !c.self.counts(c.cfg.name, c.cfg.inc)
	if c.role == Leader {
		c.syncProgress()
	}
}

// promotable reports whether this server may campaign: it is a voter of its
// configuration and the configuration has enough voters to reach a quorum.
//
// A server whose removal is in its log but not committed still campaigns:
// its log may be the only one holding entries a quorum acknowledged, and
// without it the rest could not elect anyone. It does not vote for itself
// (tallyVotes counts the configuration in use), and once it leads it
// commits its removal and hands over.
func (c *core) promotable() bool {
	if c.removed && !c.committedConfig().counts(c.cfg.name, c.cfg.inc) {
		return false
	}
	return len(c.self.Voters) >= c.self.quorum(c.cfg.minMajority)
}

// quorum is how many counting voters decide, in the configuration in use.
func (c *core) quorum() int { return c.self.quorum(c.cfg.minMajority) }

// appendedConfigs records configuration entries as they enter the log.
func (c *core) appendedConfigs(es []Entry) {
	changed := false
	for i := range es {
		if es[i].Type != EntryConfig {
			continue
		}
		m, err := decodeMembership(es[i].Data)
		if err != nil {
			continue // cannot happen for entries a leader made; never trust it to
		}
		c.configs = append(c.configs, newConfigRecord(es[i].Index, m))
		changed = true
	}
	if changed {
		c.applyConfig()
	}
}

// truncatedConfigs forgets configurations above index i after a truncation.
func (c *core) truncatedConfigs(i uint64) {
	n := len(c.configs)
	for n > 1 && c.configs[n-1].index > i {
		n--
	}
	if n != len(c.configs) {
		c.configs = c.configs[:n]
		c.applyConfig()
	}
}

// committedConfig is the latest configuration whose entry is committed.
func (c *core) committedConfig() membership { return c.committedRecord().m }

// committedRecord is the latest configuration record whose entry is
// committed (the bootstrap one, at index 0, at the least).
func (c *core) committedRecord() configRecord {
	for i := len(c.configs) - 1; i > 0; i-- {
		if c.configs[i].index <= c.commit {
			return c.configs[i]
		}
	}
	return c.configs[0]
}

// canChangeMembership: one change at a time (thesis §4.1: any two
// configurations one server apart share a majority, no more), and only after
// the leader has committed an entry of its term (the fix to single-server
// changes in the thesis's errata).
func (c *core) canChangeMembership() error {
	if c.role != Leader {
		return ErrNotLeader
	}
	if c.transferee != "" {
		return ErrTransferring
	}
	if t, _ := c.log.term(c.commit); t != c.term {
		return ErrNotCommittedYet
	}
	if c.pendingConf > c.commit {
		return ErrConfBusy
	}
	return nil
}

// addServer starts catching p up as a non-voter; it becomes a voter by a
// configuration entry once it has caught up (maybeChangeMembership). A
// member of the same name and address is already there, unless it came back
// as a new incarnation, in which case it is re-admitted the same way; a
// member of the same name at another address refuses p. A server still
// being caught up is caught up at p's address from now on.
func (c *core) addServer(p Peer) error {
	if c.role != Leader {
		return ErrNotLeader
	}
	if c.transferee != "" {
		return ErrTransferring
	}
	if v, ok := c.self.find(p.Name); ok {
		return c.addVoterAgain(v, p)
	}
	if l, ok := c.self.findLearner(p.Name); ok {
		if l.Addr != p.Addr {
			return ErrNameTaken
		}
		return nil // being re-admitted already
	}
	if pr := c.prs[p.Name]; pr != nil {
		if pr.addr == p.Addr {
			return nil // already being caught up
		}
		delete(c.prs, p.Name)
	}
	pr := &progress{addr: p.Addr, next: c.log.lastIndex() + 1, learner: true, joining: true}
	c.prs[p.Name] = pr
	c.epoch++
	c.sortProgress()
	c.sendAppend(p.Name, pr, evenIfEmpty)
	return nil
}

// addVoterAgain is AddServer of the voter v. At the same address it is a
// no-op, unless v restarted since it last answered: then it is re-admitted
// as the new incarnation, caught up first like any new server. At another
// address it is refused: taking the name over would cut the member off
// while it still runs; a server moves by a removal, then an addition.
func (c *core) addVoterAgain(v member, p Peer) error {
	if v.Addr != p.Addr {
		return ErrNameTaken
	}
	pr := c.prs[p.Name]
	if p.Name == c.cfg.name || pr == nil || !v.bound() {
		return ErrAlreadyMember
	}
	c.epoch++
	if !pr.joining {
		// It may have restarted since it last answered: ask.
		pr.verify = true
		c.sendAppend(p.Name, pr, evenIfEmpty)
	}
	return nil
}

// cancelJoin stops catching up a server that never became a voter. A
// learner of the configuration is no AddServer's to cancel: RemoveServer
// ends its re-admission.
func (c *core) cancelJoin(name string) {
	if c.role != Leader {
		return
	}
	if pr := c.prs[name]; pr != nil && !pr.listed {
		c.epoch++
		if pr.learner {
			delete(c.prs, name)
			c.sortProgress()
		} else {
			pr.joining = false
			pr.verify = false
			// A restarted voter is re-admitted whether anyone asked or
			// not: the caller giving up calls off only what it started.
			c.noticeIncarnation(name, pr)
		}
	}
}

// removeServer appends a configuration without name and returns its index.
// Removing a learner of the configuration ends its re-admission.
func (c *core) removeServer(name string) (uint64, error) {
	if pr := c.prs[name]; c.role == Leader && pr != nil && pr.learner && !pr.listed {
		// Not in any configuration: forgetting it changes no quorum, so it
		// needs none of a configuration change's preconditions.
		c.cancelJoin(name)
		return 0, nil
	}
	if err := c.canChangeMembership(); err != nil {
		return 0, err
	}
	if _, ok := c.self.findLearner(name); ok {
		return c.changeMembership(c.self.without(name)), nil
	}
	if _, ok := c.self.find(name); !ok {
		return 0, ErrUnknownServer
	}
	if len(c.self.Voters) == 1 {
		return 0, ErrLastServer
	}
	return c.changeMembership(c.self.without(name)), nil
}

// changeMembership appends the configuration m, which differs from the one in
// use by one server at most, and returns its index.
func (c *core) changeMembership(m membership) uint64 {
	c.appendToOwnLog([]Entry{{Type: EntryConfig, Data: encodeMembership(m)}})
	c.pendingConf = c.log.lastIndex()
	c.bcastAppend()
	c.maybeCommit()
	return c.pendingConf
}

// maybeChangeMembership makes the changes the leader makes by itself, one at
// a time: bind incarnations of bootstrap voters, and admit a server that is
// being caught up once it holds everything committed.
func (c *core) maybeChangeMembership() {
	if c.canChangeMembership() != nil {
		return
	}
	if m, ok := c.bindings(); ok {
		c.changeMembership(m)
		return
	}
	for _, name := range c.prNames {
		pr := c.prs[name]
		if pr.joining && pr.inc != 0 && pr.match >= c.commit {
			c.epoch++
			next := c.self.with(member{Name: name, Addr: pr.addr, Inc: pr.inc})
			if !quorumsOverlap(c.self, next, c.cfg.minMajority) {
				// Swapping the incarnation in one entry is a removal and an
				// addition at once; unless every quorum of the two
				// configurations shares a server, a deposed leader could
				// commit with the new incarnation alone what the old one
				// voted against (docs/design.md §2). So, one server at a
				// time: without the old incarnation first, caught up as a
				// learner meanwhile, then admitted. The learner is in the
				// configuration, so that a leader change in between does
				// not strand it.
				c.changeMembership(c.self.withLearner(member{Name: name, Addr: pr.addr, Inc: pr.inc}))
				return
			}
			pr.joining = false
			pr.admitIndex = c.changeMembership(next)
			return
		}
	}
}

// quorumsOverlap reports whether every quorum of a and every quorum of b
// have a server in common, counting two incarnations of one name as two
// servers: that is what lets b replace a in one step (thesis §4.1).
func quorumsOverlap(a, b membership, minMajority int) bool {
	servers := len(a.Voters)
	for _, v := range b.Voters {
		if w, ok := a.find(v.Name); !ok || w.Inc != v.Inc {
			servers++
		}
	}
	return a.quorum(minMajority)+b.quorum(minMajority) > servers
}

// learners lists the servers being caught up to become voters.
func (c *core) learners() []Peer {
	var ps []Peer
	for _, name := range c.prNames {
		if pr := c.prs[name]; pr.learner || pr.joining {
			ps = append(ps, Peer{Name: name, Addr: pr.addr})
		}
	}
	return ps
}

// joinState tells AddServer where the admission of name stands (see Join).
func (c *core) joinState(name string) Join {
	pr := c.prs[name]
	if c.role != Leader || pr == nil {
		return Join{}
	}
	if pr.verify || pr.joining || pr.learner {
		return Join{Pending: true, Known: true}
	}
	return Join{AdmitIndex: pr.admitIndex, Known: true}
}

// configCommitted runs on the leader when its latest configuration entry
// commits: the servers it removed are forgotten, after one last append so
// that they learn of it, and a leader it removed hands over (thesis §4.2.2).
func (c *core) configCommitted() (handedOver bool) {
	for _, name := range c.prNames {
		pr := c.prs[name]
		if pr.leaving {
			c.sendAppend(name, pr, evenIfEmpty)
			delete(c.prs, name)
		}
	}
	c.sortProgress()
	if c.removed && c.transferee == "" {
		c.startTransfer()
		return true
	}
	return false
}
