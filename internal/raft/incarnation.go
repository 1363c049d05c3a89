package raft

// A server that restarts comes back empty, as a new incarnation, with a fresh
// random number that it sends with every message (docs/design.md §2). A
// configuration binds each voter to one incarnation, and only that one's
// votes and acknowledgements count: an empty log must not make up a quorum.

// sameIncarnation is the one incarnation test: a server speaking as inc is
// the one bound, where a bound of 0 means none is known yet, and any
// matches.
func sameIncarnation(bound, inc uint64) bool { return bound == 0 || bound == inc }

// bound reports whether a configuration names v's incarnation: only a
// bootstrap configuration has voters that are not bound (docs/design.md §3).
func (v member) bound() bool { return v.Inc != 0 }

// learnIncarnation records the incarnation an append response came from, and
// reports whether it is a restart of the one the leader was replicating to.
// A new incarnation's log is whatever it holds now, most likely nothing:
// replication starts over from what it reports.
func (c *core) learnIncarnation(m Message, pr *progress) (restarted bool) {
	restarted = !sameIncarnation(pr.inc, m.FromInc)
	if m.FromInc != pr.inc {
		if restarted {
			pr.match = 0
			pr.becomeProbe(min(m.LastIndex, c.log.lastIndex()) + 1)
			pr.ackSeq = 0
			pr.active = false
		}
		pr.inc = m.FromInc
		c.noticeIncarnation(m.From, pr)
	}
	if pr.verify {
		c.resolveVerify(m.From, pr)
	}
	return restarted
}

// noticeIncarnation: a voter answering as another incarnation than the
// configured one restarted with an empty log; catch it up and re-admit it.
func (c *core) noticeIncarnation(name string, pr *progress) {
	if v, ok := c.self.find(name); ok && !sameIncarnation(v.Inc, pr.inc) && c.cfg.autoRejoin && !pr.joining {
		pr.joining = true
		c.epoch++ // a server to catch up: the driver lists the learners anew
	}
}

// resolveVerify answers an AddServer of a current member once it responds:
// the configured incarnation means there is nothing to do; another one is a
// restarted server to catch up and re-admit.
func (c *core) resolveVerify(name string, pr *progress) {
	pr.verify = false
	c.epoch++
	if v, ok := c.self.find(name); ok && !sameIncarnation(v.Inc, pr.inc) {
		pr.joining = true
		return
	}
	pr.admitIndex = 0
}

// bindings (docs/design.md §3) returns the configuration with every unbound voter whose
// incarnation the leader knows bound to it, if there is any such voter.
func (c *core) bindings() (membership, bool) {
	m := c.self
	changed := false
	for _, v := range c.self.Voters {
		if v.bound() {
			continue
		}
		inc := uint64(0)
		if v.Name == c.cfg.name {
			inc = c.cfg.inc
		} else if pr := c.prs[v.Name]; pr != nil {
			inc = pr.inc
		}
		if inc != 0 {
			v.Inc = inc
			m = m.with(v)
			changed = true
		}
	}
	return m, changed
}
