package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one server's OS process, across its restarts. Its output goes to
// a log file of the run (kept when a check fails), and a watcher records an
// exit that the nemesis did not cause.
type proc struct {
	name    string
	argv    func() *exec.Cmd // the same command every start: a blank restart with the same flags
	logFile *os.File
	died    func(string) // told of an exit nobody asked for

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has exited
	killing bool          // the exit under way was asked for
	starts  int
}

// start runs the server and waits until it says it serves.
func (p *proc) start(limit time.Duration) error {
	cmd := p.argv()
	// If this test process dies, even by SIGKILL, its servers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = p.logFile
	p.mu.Lock()
	p.starts++
	fmt.Fprintf(p.logFile, "=== chaos: start %d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.exited, p.killing = cmd, make(chan struct{}), false
	exited := p.exited
	p.mu.Unlock()

	serving := make(chan struct{})
	go p.copyOutput(out, serving)
	go p.watch(cmd, exited)
	select {
	case <-serving:
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before serving (see %s)", p.name, p.logFile.Name())
	case <-time.After(limit):
		return fmt.Errorf("%s did not say it serves within %v", p.name, limit)
	}
}

// copyOutput copies the server's stdout to its log and closes serving at
// the line that says it serves.
func (p *proc) copyOutput(out io.Reader, serving chan struct{}) {
	sc := bufio.NewScanner(out)
	once := sync.Once{}
	for sc.Scan() {
		fmt.Fprintln(p.logFile, sc.Text())
		if strings.HasPrefix(sc.Text(), "serving ") {
			once.Do(func() { close(serving) })
		}
	}
}

// watch waits for the process to exit and reports the exits nobody asked
// for.
func (p *proc) watch(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	p.mu.Lock()
	asked := p.killing
	p.mu.Unlock()
	fmt.Fprintf(p.logFile, "=== chaos: %s exited (%v) at %s\n", p.name, cmd.ProcessState, time.Now().Format(time.RFC3339Nano))
	close(exited)
	if !asked {
		p.died(fmt.Sprintf("%s exited without the nemesis killing it: %v", p.name, err))
	}
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// kill SIGKILLs the process (stopped or not) and waits for it to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.killing = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// dumpGoroutines makes the Go runtime of the process print every
// goroutine's stack into its log and exit (SIGQUIT): what a server that
// stopped answering was doing.
func (p *proc) dumpGoroutines(limit time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.killing = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process cannot dump
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(limit):
	}
}
