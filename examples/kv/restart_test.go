//go:build unix

package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitLimit bounds each wait for a condition. Elections and catch-ups take
// well under a second; the rest is slack for a busy machine.
const waitLimit = 30 * time.Second

// pollEvery paces the questions the test repeats until the answer changes.
const pollEvery = 100 * time.Millisecond

// bootstrapped is what a -join server prints when it starts a new cluster.
const bootstrapped = "starts a new cluster of one"

// TestJoinRestartRejoins runs three-terminal -join clusters as a newcomer
// does, one OS process per server, and kills servers with SIGKILL and
// restarts them with the same flags: each must come back into the same
// cluster (the data is the same on both sides, and the cluster needs its
// vote again), and never lead a cluster of its own.
func TestJoinRestartRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kv and runs it as OS processes; not in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("building kv needs the go command on PATH: %v", err)
	}
	bin := buildKV(t, goTool)
	t.Run("seed list", func(t *testing.T) {
		t.Parallel()
		testSeedListRestart(t, bin)
	})
	t.Run("single join address", func(t *testing.T) {
		t.Parallel()
		testSingleJoinRestart(t, bin)
	})
}

// testSeedListRestart runs the layout that -h shows: every server has the
// same -join list, its own address included. They start in the order b, a,
// c; then a, the first in the list, restarts, and then b.
func testSeedListRestart(t *testing.T, bin string) {
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	seeds := strings.Join([]string{addrA, addrB, addrC}, ",")
	flagsA := []string{"-name", "a", "-listen", addrA, "-join", seeds}
	flagsB := []string{"-name", "b", "-listen", addrB, "-join", seeds}
	flagsC := []string{"-name", "c", "-listen", addrC, "-join", seeds}

	// b first, with nothing at the other addresses yet: it waits.
	b := startKV(t, bin, "b", flagsB)
	b.awaitOutput(t, "waiting to be added by the cluster")
	requireOutsider(t, b.status(t))
	// a, first in the list, finds b waiting and c not running, so no
	// cluster: it starts one.
	a := startKV(t, bin, "a", flagsA)
	a.mayLeadAlone = true
	a.awaitOutput(t, "a "+bootstrapped)
	a.awaitOutput(t, replHelp)
	c := startKV(t, bin, "c", flagsC)
	for _, p := range []*kvProc{b, c} {
		p.awaitJoined(t)
	}
	assert.NotContains(t, c.out.String(), bootstrapped, "c is not first in -join")
	a.pollStatus(t, "a leading a, b and c", func(st status) bool {
		return st.role == "leader" && slices.Equal(st.members, []string{"a", "b", "c"}) && len(st.learners) == 0
	})
	require.Equal(t, "OK", b.ask(t, "set before 1"))
	require.Equal(t, "1", a.ask(t, "get before"))

	// a, the leader and the first in the list, restarts with the same
	// flags: it finds b and c in a cluster and asks to be added back, where
	// without the check it would start a second cluster of its own.
	a.kill(t)
	a = startKV(t, bin, "a (restarted)", flagsA)
	a.awaitJoined(t)
	procs := map[string]*kvProc{"a": a, "b": b, "c": c}
	requireRejoined(t, procs, "a")
	b.pollAnswer(t, "set after 2", "OK")
	require.Equal(t, "1", a.ask(t, "get before"))
	require.Equal(t, "2", a.ask(t, "get after"))
	requireCopy(t, procs, "a")

	// b restarts with the same flags: it is not first in the list, so it
	// never starts a cluster, and asks a or c to add it back.
	b.kill(t)
	b = startKV(t, bin, "b (restarted)", flagsB)
	b.awaitJoined(t)
	procs["b"] = b
	requireRejoined(t, procs, "b")
	require.Equal(t, "1", b.ask(t, "get before"))
	require.Equal(t, "2", b.ask(t, "get after"))
	b.pollAnswer(t, "set from-b 3", "OK")
	require.Equal(t, "3", a.ask(t, "get from-b"))
	requireCopy(t, procs, "b")

	// Both restarted servers are voters again, not just readers of the log:
	// with c gone, a and b are the majority of three, and only their
	// acknowledgements can commit a write.
	c.kill(t)
	a.pollAnswer(t, "set quorum 4", "OK")
	require.Equal(t, "4", b.ask(t, "get quorum"))
	st := a.pollStatus(t, "a following or leading a cluster of a, b and c without c", func(st status) bool {
		return st.leader == "a" || st.leader == "b"
	})
	require.Equal(t, []string{"a", "b", "c"}, st.members, "a's view of the cluster")
}

// testSingleJoinRestart runs the layout of earlier versions, still
// supported: a with neither -join nor -peers, b and c each with -join and
// a's address alone. b starts first, and restarts.
func testSingleJoinRestart(t *testing.T, bin string) {
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	flagsA := []string{"-name", "a", "-listen", addrA}
	flagsB := []string{"-name", "b", "-listen", addrB, "-join", addrA}
	flagsC := []string{"-name", "c", "-listen", addrC, "-join", addrA}

	b := startKV(t, bin, "b", flagsB)
	b.awaitOutput(t, "waiting to be added by the cluster")
	requireOutsider(t, b.status(t))
	a := startKV(t, bin, "a", flagsA)
	a.mayLeadAlone = true
	a.awaitOutput(t, replHelp)
	c := startKV(t, bin, "c", flagsC)
	for _, p := range []*kvProc{b, c} {
		p.awaitJoined(t)
	}
	a.pollStatus(t, "a leading a, b and c", func(st status) bool {
		return st.role == "leader" && slices.Equal(st.members, []string{"a", "b", "c"}) && len(st.learners) == 0
	})
	require.Equal(t, "OK", a.ask(t, "set before 1"))

	b.kill(t)
	b = startKV(t, bin, "b (restarted)", flagsB)
	b.awaitJoined(t)
	procs := map[string]*kvProc{"a": a, "b": b, "c": c}
	requireRejoined(t, procs, "b")
	require.Equal(t, "1", b.ask(t, "get before"))
	require.Equal(t, "OK", b.ask(t, "set from-b 2"))
	require.Equal(t, "2", a.ask(t, "get from-b"))
	requireCopy(t, procs, "b")

	// b votes again: with c gone, only b's acknowledgements let a commit.
	c.kill(t)
	a.pollAnswer(t, "set quorum 3", "OK")
	require.Equal(t, "3", b.ask(t, "get quorum"))
}

// requireOutsider checks the status of a server that waits to be added: it
// must not lead, least of all a cluster of its own.
func requireOutsider(t *testing.T, st status) {
	t.Helper()
	require.NotEqual(t, "leader", st.role, "a server waiting to be added must not lead: %+v", st)
	require.Equal(t, "(none)", st.leader, "a server waiting to be added knows no leader: %+v", st)
}

// requireRejoined checks that the server name, restarted, is a voter of the
// cluster of the servers in procs again: the leader counts it among its
// members and no longer catches it up, and every server names the same
// leader and the same members.
func requireRejoined(t *testing.T, procs map[string]*kvProc, name string) {
	t.Helper()
	all := slices.Sorted(maps.Keys(procs))
	var leader string
	procs[name].pollStatus(t, name+" knowing a leader of "+strings.Join(all, ", "), func(st status) bool {
		leader = st.leader
		return procs[leader] != nil && slices.Equal(st.members, all)
	})
	procs[leader].pollStatus(t, fmt.Sprintf("%s leading %s, with %s caught up", leader, strings.Join(all, ", "), name), func(st status) bool {
		return st.role == "leader" && slices.Equal(st.members, all) && len(st.learners) == 0
	})
	for _, n := range all {
		procs[n].pollStatus(t, fmt.Sprintf("%s following %s in a cluster of %s", n, leader, strings.Join(all, ", ")), func(st status) bool {
			return st.leader == leader && slices.Equal(st.members, all)
		})
	}
}

// requireCopy waits until the server name has applied everything the leader
// has committed: reads go through the leader, so they do not show that the
// server's own copy holds the writes.
func requireCopy(t *testing.T, procs map[string]*kvProc, name string) {
	t.Helper()
	var leader *kvProc
	procs[name].pollStatus(t, name+" knowing a leader", func(st status) bool {
		leader = procs[st.leader]
		return leader != nil
	})
	commit := leader.status(t).commit
	procs[name].pollStatus(t, fmt.Sprintf("%s applying up to %s's commit index %d", name, leader.label, commit), func(st status) bool {
		return st.applied >= commit
	})
}

// buildKV builds this package into a temporary directory, with the race
// detector when the test has it, so that the processes are checked too.
func buildKV(t *testing.T, goTool string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kv")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	require.NoError(t, err, "go build of kv failed:\n%s", out)
	return bin
}

// freeAddr returns a loopback address that nothing listens on, for a server
// that must keep its address across a restart (port 0 would not).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// kvProc is one kv process, driven through its stdin.
type kvProc struct {
	label   string // in the test's messages: the server's name, and which run
	name    string // the server's -name
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *output
	exited  chan struct{} // closed once the process has exited
	waitErr error         // how it exited; read only after exited is closed
	// mayLeadAlone is set for a server that starts a cluster of one: only
	// it may report leading a cluster of which it is the only member.
	mayLeadAlone bool
}

// startKV starts kv with flags; label names this run in the test's messages.
func startKV(t *testing.T, bin, label string, flags []string) *kvProc {
	t.Helper()
	i := slices.Index(flags, "-name")
	require.True(t, i >= 0 && i+1 < len(flags), "startKV %s: no -name in %q", label, flags)
	p := &kvProc{label: label, name: flags[i+1], cmd: exec.Command(bin, flags...), out: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	var err error
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start(), "start %s", label)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // fails for a process that has exited: nothing to do
		<-p.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.label, p.out.String())
		}
	})
	return p
}

// kill ends the process with SIGKILL: no chance to say goodbye to its peers.
func (p *kvProc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
}

func (p *kvProc) send(t *testing.T, line string) {
	t.Helper()
	_, err := fmt.Fprintln(p.stdin, line)
	require.NoError(t, err, "%s: send %q", p.label, line)
}

// awaitJoined waits until the -join server is a member of a cluster and
// serves its command line. It fails at once if the server serves its
// command line without having joined: it started a new cluster instead.
func (p *kvProc) awaitJoined(t *testing.T) {
	t.Helper()
	joined := p.name + " is a member of the cluster"
	p.await(t, fmt.Sprintf("%q in its output", joined), func(out string) bool {
		return strings.Contains(out, joined) || strings.Contains(out, bootstrapped) || strings.Contains(out, replHelp)
	})
	out := p.out.String()
	require.NotContains(t, out, bootstrapped, "%s started a new cluster instead of joining one", p.label)
	require.Contains(t, out, joined, "%s serves without having joined a cluster", p.label)
	p.awaitOutput(t, replHelp)
}

// awaitOutput waits until the process has printed want.
func (p *kvProc) awaitOutput(t *testing.T, want string) {
	t.Helper()
	p.await(t, fmt.Sprintf("%q in its output", want), func(out string) bool {
		return strings.Contains(out, want)
	})
}

// await waits until match accepts the output so far. It fails at once if
// the process exits first. On failure, the cleanup shows every process's
// output.
func (p *kvProc) await(t *testing.T, what string, match func(out string) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		out, grew := p.out.snapshot()
		if match(out) {
			return
		}
		select {
		case <-grew:
		case <-p.exited:
			if !match(p.out.String()) {
				t.Fatalf("%s exited (%v) while the test waited for %s", p.label, p.waitErr, what)
			}
			return
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v", p.label, what, waitLimit)
		}
	}
}

// ask sends a command and returns its answer: the first complete line
// printed after it that answer accepts, without the prompt. Lines the server
// prints on its own (while it waits to join) are passed over that way.
func (p *kvProc) ask(t *testing.T, command string) string {
	t.Helper()
	return p.askFor(t, command, anyLine)
}

var anyLine = regexp.MustCompile(`\S`)

func (p *kvProc) askFor(t *testing.T, command string, answer *regexp.Regexp) string {
	t.Helper()
	from := p.out.len()
	p.send(t, command)
	var line string
	p.await(t, fmt.Sprintf("answer to %q", command), func(out string) bool {
		lines := strings.Split(out[from:], "\n")
		for _, l := range lines[:len(lines)-1] { // the last one is not complete
			for strings.HasPrefix(l, "> ") {
				l = l[len("> "):]
			}
			if l = strings.TrimSpace(l); answer.MatchString(l) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// pollAnswer repeats command until it answers want: for a write that fails
// until an election is over.
func (p *kvProc) pollAnswer(t *testing.T, command, want string) {
	t.Helper()
	var got string
	p.poll(t, fmt.Sprintf("%q answering %q", command, want), func() bool {
		got = p.ask(t, command)
		return got == want
	}, func() string { return "the last answer: " + got })
}

func (p *kvProc) pollStatus(t *testing.T, what string, ok func(status) bool) status {
	t.Helper()
	var st status
	p.poll(t, what, func() bool {
		st = p.status(t)
		return ok(st)
	}, func() string { return fmt.Sprintf("the last status: %+v", st) })
	return st
}

func (p *kvProc) poll(t *testing.T, what string, done func() bool, last func() string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v; %s", p.label, what, waitLimit, last())
		}
		select {
		case <-time.After(pollEvery):
		case <-p.exited:
			t.Fatalf("%s exited (%v) while the test waited for %s", p.label, p.waitErr, what)
		}
	}
}

// status is one line of the "status" command, as printStatus prints it.
type status struct {
	name, role, leader string
	commit, applied    uint64
	members, learners  []string
}

var statusLine = regexp.MustCompile(`^(\S+)\s+(\S+)\s+term \d+\s+commit (\d+)\s+applied (\d+)\s+leader (\S+)\s+members \[([^\]]*)\](?:\s+catching up \[([^\]]*)\])?$`)

// status asks the process for its status. Unless mayLeadAlone, the server
// must not lead alone: that would be a cluster of its own, whatever else the
// test checks.
func (p *kvProc) status(t *testing.T) status {
	t.Helper()
	m := statusLine.FindStringSubmatch(p.askFor(t, "status", statusLine))
	st := status{name: m[1], role: m[2], leader: m[5], members: strings.Fields(m[6]), learners: strings.Fields(m[7])}
	st.commit, _ = strconv.ParseUint(m[3], 10, 64)
	st.applied, _ = strconv.ParseUint(m[4], 10, 64)
	if !p.mayLeadAlone && st.role == "leader" {
		require.NotEqual(t, []string{st.name}, st.members, "%s leads a cluster of its own: %+v", p.label, st)
	}
	return st
}

// output collects what a process prints, and tells waiters when it grows.
type output struct {
	mu   sync.Mutex
	buf  []byte
	grew chan struct{} // closed, and replaced, by each Write
}

func newOutput() *output { return &output{grew: make(chan struct{})} }

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	close(o.grew)
	o.grew = make(chan struct{})
	return len(b), nil
}

func (o *output) snapshot() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf), o.grew
}

func (o *output) String() string { s, _ := o.snapshot(); return s }

func (o *output) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.buf)
}
