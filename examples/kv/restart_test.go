//go:build unix

package main

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitLimit bounds each wait for a condition. Elections and catch-ups take
// well under a second; the rest is slack for a busy machine, and for the
// one wait that outlasts a handshake timeout (10s) on purpose.
const waitLimit = 30 * time.Second

// pollEvery paces the questions the test repeats until the answer changes.
const pollEvery = 100 * time.Millisecond

// TestJoinServerRestartRejoins runs the three-terminal -join cluster as a
// newcomer does, one OS process per server, and restarts b with SIGKILL and
// the same flags. b must come back into the same cluster (the data is the
// same on both sides, and the cluster needs b's vote again), and never lead
// a cluster of its own, including while it cannot reach the server at -join:
// once when b starts before a, and once when a does not answer while b
// restarts (stopped, as a Ctrl-Z would).
func TestJoinServerRestartRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kv and runs it as three processes; not in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("building kv needs the go command on PATH: %v", err)
	}
	bin := buildKV(t, goTool)
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	flagsA := []string{"-name", "a", "-listen", addrA}
	flagsB := []string{"-name", "b", "-listen", addrB, "-join", addrA}
	flagsC := []string{"-name", "c", "-listen", addrC, "-join", addrA}
	waiting := "waiting to be added by the cluster at " + addrA

	// b first, with nothing at its -join address yet.
	b := startKV(t, bin, "b", flagsB)
	b.awaitOutput(t, waiting)
	requireOutsider(t, b.status(t))
	a := startKV(t, bin, "a", flagsA)
	a.awaitOutput(t, replHelp)
	c := startKV(t, bin, "c", flagsC)
	for _, p := range []*kvProc{b, c} {
		p.awaitOutput(t, p.name+" is a member of the cluster")
		p.awaitOutput(t, replHelp)
	}
	a.pollStatus(t, "a leading a, b and c", func(st status) bool {
		return st.role == "leader" && slices.Equal(st.members, []string{"a", "b", "c"}) && len(st.learners) == 0
	})
	require.Equal(t, "OK", a.ask(t, "set before 1"))
	require.Equal(t, "1", b.ask(t, "get before"))

	// b restarts while the server at its -join address does not answer (a is
	// stopped, as a Ctrl-Z in its terminal would): b must wait, not give up,
	// and not lead. Without a, c and the new b cannot elect anyone, so the
	// cluster is as a left it when a resumes.
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	b.kill(t)
	b = startKV(t, bin, "b (restarted)", flagsB)
	b.awaitOutput(t, waiting)
	requireOutsider(t, b.status(t))
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	b.awaitOutput(t, "b is a member of the cluster")
	b.awaitOutput(t, replHelp)

	// One cluster: a write on either side is read on the other. The first
	// write is retried: a, back from its stop, may have lost its leadership
	// to a new election.
	a.pollAnswer(t, "set after 2", "OK")
	require.Equal(t, "1", b.ask(t, "get before"))
	require.Equal(t, "2", b.ask(t, "get after"))
	require.Equal(t, "OK", b.ask(t, "set from-b 3"))
	require.Equal(t, "3", a.ask(t, "get from-b"))
	st := b.status(t)
	require.Equal(t, []string{"a", "b", "c"}, st.members, "b's view of the cluster")
	require.Contains(t, []string{"a", "c"}, st.leader, "b's leader")
	// The reads above went through the leader; b's own copy holds the
	// writes as well once it has applied what a has committed.
	commit := a.status(t).commit
	b.pollStatus(t, fmt.Sprintf("b applying up to a's commit index %d", commit), func(st status) bool {
		return st.applied >= commit
	})

	// The restarted b is a voter again, not just a reader of the log: with
	// c gone, a and b are the majority of three, and only b's
	// acknowledgements can commit a write.
	c.kill(t)
	a.pollAnswer(t, "set quorum 4", "OK")
	require.Equal(t, "4", b.ask(t, "get quorum"))
	commit = a.status(t).commit
	st = b.pollStatus(t, fmt.Sprintf("b applying what a and b committed without c, up to %d", commit), func(st status) bool {
		return st.applied >= commit && (st.leader == "a" || st.leader == "b")
	})
	require.Equal(t, []string{"a", "b", "c"}, st.members, "b's view of the cluster")
}

// requireOutsider checks the status of a server that waits to be added: it
// must not lead, least of all a cluster of its own.
func requireOutsider(t *testing.T, st status) {
	t.Helper()
	require.NotEqual(t, "leader", st.role, "a server waiting to be added must not lead: %+v", st)
	require.Equal(t, "(none)", st.leader, "a server waiting to be added knows no leader: %+v", st)
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
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *output
	exited  chan struct{} // closed once the process has exited
	waitErr error         // how it exited; read only after exited is closed
}

func startKV(t *testing.T, bin, name string, flags []string) *kvProc {
	t.Helper()
	p := &kvProc{name: name, cmd: exec.Command(bin, flags...), out: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	var err error
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // fails for a process that has exited: nothing to do
		<-p.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, p.out.String())
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
	require.NoError(t, err, "%s: send %q", p.name, line)
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
				t.Fatalf("%s exited (%v) while the test waited for %s", p.name, p.waitErr, what)
			}
			return
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v", p.name, what, waitLimit)
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
			t.Fatalf("%s: no %s within %v; %s", p.name, what, waitLimit, last())
		}
		select {
		case <-time.After(pollEvery):
		case <-p.exited:
			t.Fatalf("%s exited (%v) while the test waited for %s", p.name, p.waitErr, what)
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

// status asks the process for its status. The server must not lead alone:
// that would be a cluster of its own, whatever else the test checks.
func (p *kvProc) status(t *testing.T) status {
	t.Helper()
	m := statusLine.FindStringSubmatch(p.askFor(t, "status", statusLine))
	st := status{name: m[1], role: m[2], leader: m[5], members: strings.Fields(m[6]), learners: strings.Fields(m[7])}
	st.commit, _ = strconv.ParseUint(m[3], 10, 64)
	st.applied, _ = strconv.ParseUint(m[4], 10, 64)
	if p.name != "a" && st.role == "leader" {
		require.NotEqual(t, []string{st.name}, st.members, "%s leads a cluster of its own: %+v", p.name, st)
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
