package raft

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The simulator's actions and how a seed schedules them
// (sim_helpers_test.go).

// ---- actions ------------------------------------------------------------------

func (s *sim) tickAll() {
	s.ev(event{kind: evTickAll})
	s.net.tickEach()
}

// simProposal is one entry to propose: a plain command, or a client's
// session record (sp).
type simProposal struct {
	e    Entry
	name string
	sp   *sessProp
}

// propose proposes k entries on the leader n: plain commands, and in seeds
// with sessions some clients' session records.
func (s *sim) propose(n *server, k int) {
	ps := make([]simProposal, k)
	for i := range ps {
		if len(s.ses.clients) > 0 && s.ses.rng.IntN(4) < s.ses.share {
			var ok bool
			if ps[i], ok = s.clientProposal(n); ok {
				continue
			}
		}
		ps[i] = s.plain()
	}
	s.proposeAll(n, ps)
}

func (s *sim) plain() simProposal {
	s.nextCmd++
	name := "w" + strconv.FormatUint(s.nextCmd, 10)
	return simProposal{e: Entry{Data: []byte(name)}, name: name}
}

func (s *sim) proposeAll(n *server, ps []simProposal) {
	es := make([]Entry, len(ps))
	names := make([]string, len(ps))
	for i, p := range ps {
		es[i], names[i] = p.e, p.name
	}
	first, term, err := n.c.propose(es)
	s.ev(event{kind: evPropose, node: n.id(), s: strings.Join(names, ","), a: first, b: term, err: err})
	for i, p := range ps {
		switch idx := first + uint64(i); {
		case err != nil && p.sp != nil:
			p.sp.term = 0 // lost: its client sends again
		case err != nil:
		case p.sp == nil:
			s.props[p.name] = &proposal{by: n.id(), index: idx, term: term}
		default:
			s.ses.props[indexTerm{idx, term}] = p.sp
		}
	}
	s.net.collect(n.name)
}

func (s *sim) read(n *server) {
	s.nextRead++
	id := s.nextRead
	s.reads[id] = &readRecord{by: n.id(), min: s.finMax, step: s.step}
	err := n.c.readIndex(id)
	s.ev(event{kind: evRead, node: n.id(), a: id, b: s.finMax, err: err})
	if err != nil {
		delete(s.reads, id)
	}
	s.net.collect(n.name)
}

func (s *sim) crash(n *server) {
	s.ev(event{kind: evCrash, node: n.id()})
	n.c = nil
	s.net.stop(n.name)
	s.stats.crashes++
}

func (s *sim) restart(n *server) {
	s.start(n.name, n.initial, n.minMaj)
	s.ev(event{kind: evRestart, node: n.id()})
	s.stats.restarts++
}

// counting reports how many voters of m are up as the incarnation m counts,
// leaving out skip, and the quorum of m.
func (s *sim) counting(m membership, minMaj int, skip string) (up, quorum int) {
	for _, v := range m.Voters {
		n := s.nodes[v.Name]
		if v.Name == skip || n == nil || n.c == nil {
			continue
		}
		if v.Inc == 0 || v.Inc == n.inc {
			up++
		}
	}
	return up, m.quorum(minMaj)
}

// healthyWithout is the scheduler's guess whether the cluster keeps a quorum
// of voters that count if skip goes down (or is removed): judged by the
// configurations of the server with the most up-to-date log. Seeds that allow
// a majority loss do not ask.
func (s *sim) healthyWithout(skip string) bool {
	return s.healthy(skip, false)
}

// healthy is healthyWithout, but with strict it also wants every voter of a
// bootstrap configuration up (a core may want them all to elect its first
// leader).
func (s *sim) healthy(skip string, strict bool) bool {
	var ref *server
	for _, n := range s.alive() {
		lt, li := n.c.log.lastTerm(), n.c.log.lastIndex()
		if ref == nil || lt > ref.c.log.lastTerm() || (lt == ref.c.log.lastTerm() && li > ref.c.log.lastIndex()) {
			ref = n
		}
	}
	if ref == nil {
		return false
	}
	// Servers being caught up may be admitted at any time, dead or not, so
	// the configuration with them as voters must keep its quorum too.
	confs := []membership{ref.c.self, ref.c.committedConfig(), admitted(ref.c.self)}
	for _, l := range s.leadersNow() {
		confs = append(confs, admittedBy(l.c))
	}
	for _, m := range confs {
		up, q := s.counting(m, ref.minMaj, skip)
		if strict && len(ref.c.configs) == 1 {
			q = len(m.Voters)
		}
		if up < q {
			return false
		}
	}
	return true
}

// admitted is m with every learner made a voter, as the incarnation listed.
func admitted(m membership) membership {
	for _, l := range m.Learners {
		m = m.with(l)
	}
	return m
}

// admittedBy is the configuration of the leader c with every server it is
// catching up to admit made a voter, as the incarnation it last heard.
func admittedBy(c *core) membership {
	m := c.self
	for _, name := range c.prNames {
		if pr := c.prs[name]; pr.joining && pr.inc != 0 {
			m = m.with(member{Name: name, Addr: pr.addr, Inc: pr.inc})
		}
	}
	return m
}

// mayCrash: in most seeds a crash must leave a quorum of counting voters
// up; seeds that allow losing a majority skip that. Once there has been a
// leader, every seed keeps one bootstrap server up that holds a
// configuration entry: when every server of InitialConfig has lost its
// state, restarting them from InitialConfig makes a new cluster (with terms
// from 1 again), which nothing can tell from the first start.
func (s *sim) mayCrash(x *server) bool {
	if !s.majorityLoss && !s.healthyWithout(x.name) {
		return false
	}
	if len(s.leaders) == 0 {
		return true
	}
	for _, n := range s.alive() {
		if n != x && n.initial != nil && len(n.c.configs) > 1 {
			return true
		}
	}
	return false
}

func (s *sim) netAction() {
	names := s.net.names
	switch s.rng.IntN(6) {
	case 0, 1: // one link, one direction or both
		a, b := names[s.rng.IntN(len(names))], names[s.rng.IntN(len(names))]
		if a == b {
			return
		}
		s.net.cutOneWay(a, b)
		desc := "cut " + a + "->" + b
		if s.rng.IntN(2) == 0 {
			s.net.cutOneWay(b, a)
			desc = "cut " + a + "<->" + b
		}
		s.ev(event{kind: evNet, s: desc})
	case 2: // heal one link
		a, b := names[s.rng.IntN(len(names))], names[s.rng.IntN(len(names))]
		s.net.heal(a, b)
		s.ev(event{kind: evNet, s: "heal " + a + "<->" + b})
	case 3, 4, 5: // two groups: symmetric, one-way, or bridged by one server
		side := map[string]bool{}
		for _, name := range names {
			side[name] = s.rng.IntN(2) == 0
		}
		bridge := ""
		kind := s.rng.IntN(3)
		if kind == 2 {
			bridge = names[s.rng.IntN(len(names))]
		}
		s.net.healAll()
		var left []string
		for _, a := range names {
			if side[a] {
				left = append(left, a)
			}
			for _, b := range names {
				if a == bridge || b == bridge || side[a] == side[b] {
					continue
				}
				if kind == 1 && !side[a] {
					continue // one way only: left can't reach right, right reaches left
				}
				s.net.cutOneWay(a, b)
			}
		}
		what := []string{"partition", "one-way partition", "partition bridged by " + bridge}[kind]
		s.ev(event{kind: evNet, s: fmt.Sprintf("%s: %v | rest", what, left)})
	}
}

// randomStep takes one random step of the schedule.
//
// Runs alternate between stormy stretches, with every kind of fault, and calm
// ones in which the network only delays and reorders, so that the cluster
// also gets to make progress between faults.
func (s *sim) randomStep() {
	s.step++
	var r int
	if s.calm > 0 {
		s.calm--
		if r = s.rng.IntN(830); r >= 820 {
			r = 999 // deliver everything
		}
	} else {
		if s.rng.IntN(120) == 0 {
			s.calm = 50 + s.rng.IntN(250)
			s.ev(event{kind: evNote, s: fmt.Sprintf("calm for %d steps", s.calm)})
		}
		r = s.rng.IntN(1000)
	}
	s.doStep(r)
}

// doStep takes the step r in [0, 1000) picks; the details (which server,
// which message) come from the seeded generator.
func (s *sim) doStep(r int) {
	switch {
	case r < 300: // deliver any message in flight: reordering
		if len(s.net.inFlight) > 0 {
			s.net.deliverAt(s.rng.IntN(len(s.net.inFlight)))
		}
	case r < 480: // deliver the oldest
		if len(s.net.inFlight) > 0 {
			s.net.deliverAt(0)
		}
	case r < 630:
		if n := s.pick(s.alive()); n != nil {
			s.ev(event{kind: evTick, node: n.id()})
			s.net.tick(n.name, 1)
		}
	case r < 690:
		s.tickAll()
	case r < 770:
		if n := s.pick(s.leadersNow()); n != nil {
			s.propose(n, 1+s.rng.IntN(3))
		}
	case r < 820:
		if n := s.pick(s.leadersNow()); n != nil {
			s.read(n)
		}
	case r < 845:
		if len(s.net.inFlight) > 0 {
			s.net.drop(s.rng.IntN(len(s.net.inFlight)))
		}
	case r < 865:
		if len(s.net.inFlight) > 0 {
			i := s.rng.IntN(len(s.net.inFlight))
			s.ev(event{kind: evDup, m: s.net.inFlight[i]})
			s.net.duplicate(i)
		}
	case r < 895:
		s.netAction()
	case r < 910:
		s.net.healAll()
		s.ev(event{kind: evNet, s: "heal all"})
	case r < 930: // crash, and restart at once or later
		n := s.pick(s.alive())
		if n == nil || !s.mayCrash(n) {
			return
		}
		s.crash(n)
		if s.rng.IntN(2) == 0 {
			s.restart(n)
		}
	case r < 945:
		var down []*server
		for _, name := range s.net.names {
			if s.nodes[name].c == nil {
				down = append(down, s.nodes[name])
			}
		}
		if n := s.pick(down); n != nil {
			s.restart(n)
		}
	case r < 960:
		s.addServer()
	case r < 975:
		s.removeServer()
	case r < 990:
		var fs []*server
		for _, n := range s.alive() {
			if n.c.role != Leader {
				fs = append(fs, n)
			}
		}
		if n := s.pick(fs); n != nil {
			err := n.c.triggerElection()
			s.ev(event{kind: evTrigger, node: n.id(), err: err})
			s.net.collect(n.name)
		}
	default: // deliver everything in flight, oldest first
		for k := len(s.net.inFlight); k > 0 && len(s.net.inFlight) > 0; k-- {
			s.net.deliverAt(0)
		}
	}
}

func (s *sim) addServer() {
	l := s.pick(s.leadersNow())
	if l == nil {
		return
	}
	var name string
	if len(s.net.names) < maxServers && s.rng.IntN(2) == 0 {
		// A new server: it starts alone and passive (MinMajority 2) until a
		// leader adds it.
		name = "n" + strconv.Itoa(len(s.net.names)+1)
		s.start(name, nil, 2)
		s.ev(event{kind: evNote, s: "new server " + s.nodes[name].id().String()})
	} else {
		// Any known server: a member that came back as a new incarnation, a
		// removed one, or a current member (a no-op).
		name = s.net.names[s.rng.IntN(len(s.net.names))]
	}
	if s.rng.IntN(5) == 0 {
		// The caller's ctx ended: the server abandons the catch-up.
		l.c.cancelJoin(name)
		s.ev(event{kind: evAdd, node: l.id(), s: "cancel " + name})
		s.net.collect(l.name)
		return
	}
	err := l.c.addServer(Peer{Name: name, Addr: name})
	s.ev(event{kind: evAdd, node: l.id(), s: name, err: err})
	s.stats.adds++
	s.net.collect(l.name)
}

func (s *sim) removeServer() {
	l := s.pick(s.leadersNow())
	if l == nil {
		return
	}
	voters := l.c.self.Voters
	if len(voters) <= 2 {
		return
	}
	// Servers being re-admitted are drawn as well: RemoveServer ends that.
	candidates := append(voters[:len(voters):len(voters)], l.c.self.Learners...)
	v := candidates[s.rng.IntN(len(candidates))]
	if !s.majorityLoss {
		m := l.c.self.without(v.Name)
		if up, q := s.counting(m, l.minMaj, ""); up < q {
			return
		}
	}
	idx, err := l.c.removeServer(v.Name)
	s.ev(event{kind: evRemove, node: l.id(), s: v.Name, a: idx, err: err})
	if err == nil && idx > 0 {
		s.removedAt[v.Name] = idx
	}
	s.stats.removes++
	s.net.collect(l.name)
}

// ---- running --------------------------------------------------------------------

// failure is a violation found by a run.
type failure struct {
	seed  uint64
	step  int
	steps int // the run's EXRAFT_SIM_STEPS
	err   error
	mode  string
	state string
	trace string
}

func (f *failure) Error() string {
	env := ""
	if f.steps != defaultSteps {
		env = fmt.Sprintf("EXRAFT_SIM_STEPS=%d ", f.steps)
	}
	return fmt.Sprintf("seed %d, step %d (%s): %v\nrerun alone, with the whole trace: %sEXRAFT_SIM_SEED=%d go test -run 'TestSim$' -v ./\nstate:\n%slast events:\n%s",
		f.seed, f.step, f.mode, f.err, env, f.seed, f.state, f.trace)
}

func (s *sim) fail(err error) *failure {
	mode := "crashes keep a quorum of voters up"
	if s.majorityLoss {
		mode = "crashes may take down a majority"
	}
	return &failure{seed: s.seed, step: s.step, steps: s.opts.steps, err: err, mode: mode, state: s.describe(), trace: s.trace()}
}

// runSim runs one seed and returns the first violation, if any.
func runSim(seed uint64, o simOptions) (s *sim, f *failure) {
	s = newSim(seed, o)
	defer func() {
		if r := recover(); r != nil {
			f = s.fail(fmt.Errorf("panic: %v", r))
		}
	}()
	if err := s.checkInvariants(); err != nil {
		return s, s.fail(err)
	}
	for s.step < o.steps {
		s.randomStep()
		if err := s.checkInvariants(); err != nil {
			return s, s.fail(err)
		}
	}
	if o.liveness && !s.majorityLoss {
		if err := s.settle(); err != nil {
			return s, s.fail(err)
		}
	}
	return s, nil
}

// settle is the liveness check of a benign schedule: heal the network, crash
// and restart nothing, deliver everything in order and tick every server. A
// leader must be elected, and a write and then a ReadIndex read on it must
// finish, and every voter that restarted must be a voter again
// (notRejoined), within a bounded number of ticks. Only asked when the
// cluster kept a quorum of counting voters up.
func (s *sim) settle() error {
	if !s.healthy("", true) {
		s.ev(event{kind: evNote, s: "no quorum of counting voters is up: liveness not checked"})
		return nil
	}
	s.net.healAll()
	s.ev(event{kind: evNote, s: "settle: network healed, no more faults"})
	const maxTicks = 400
	var write *proposal
	var last *server // the leader at the last tick
	var readID uint64
	for tick := 0; tick < maxTicks; tick++ {
		s.step++
		s.tickAll()
		for k := 0; len(s.net.inFlight) > 0 && k < 10000; k++ {
			s.net.deliverAt(0)
		}
		if err := s.checkInvariants(); err != nil {
			return err
		}
		// The leader of the highest term; ask again if leadership moved.
		var l *server
		for _, n := range s.leadersNow() {
			if l == nil || n.c.term > l.c.term {
				l = n
			}
		}
		last = l
		switch {
		case l == nil:
		case write == nil || (!write.finished && (write.by != l.id() || write.term != l.c.term)):
			s.proposeAll(l, []simProposal{s.plain()})
			if p := s.props["w"+strconv.FormatUint(s.nextCmd, 10)]; p != nil {
				write = p
			}
		case !write.finished:
		case readID == 0 || (s.reads[readID] == nil && !s.readDone[readID]) || (s.reads[readID] != nil && s.reads[readID].by != l.id()):
			s.read(l)
			readID = s.nextRead
		case s.readDone[readID]:
			if s.notRejoined(l) == nil {
				return nil
			}
		}
		if s.err != nil {
			return s.err
		}
	}
	switch {
	case write == nil:
		return fmt.Errorf("liveness: no leader elected within %d ticks of a fault-free network", maxTicks)
	case !write.finished:
		return fmt.Errorf("liveness: write at index %d (term %d, on %v) did not finish within %d ticks of a fault-free network",
			write.index, write.term, write.by, maxTicks)
	}
	if !s.readDone[readID] {
		return fmt.Errorf("liveness: a write finished but no ReadIndex read did within %d ticks of a fault-free network", maxTicks)
	}
	if err := s.notRejoined(last); err != nil {
		return fmt.Errorf("%w, %d ticks after the network healed", err, maxTicks)
	}
	return nil
}

// notRejoined is settle's check that every server the cluster means to keep
// (sim.members) and that is up is a voter as the incarnation running, in
// the committed configuration of the leader l and in its own: a voter that
// restarted is re-admitted, whoever leads meanwhile.
func (s *sim) notRejoined(l *server) error {
	if !s.global {
		return nil // forged messages: no committed configuration is known
	}
	if l == nil {
		return errors.New("liveness: no leader at the end")
	}
	for _, name := range s.net.names {
		n := s.nodes[name]
		if n.c == nil || !s.members[name] || s.removedAt[name] != 0 {
			continue
		}
		if v, ok := l.c.committedConfig().find(name); !ok || v.Inc != n.inc || n.c.removed {
			return fmt.Errorf("liveness: %v, up and never removed, is not a voter of leader %v's committed configuration %+v (or of its own)",
				n.id(), l.id(), l.c.committedConfig())
		}
	}
	return nil
}
