package exraft

// Helpers shared by the white-box tests (package exraft) and the black-box
// ones (package exraft_test): both are built into one test binary, so what
// a _test.go file of the package exports, the black-box tests can use.

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// PollUntil polls cond until it holds, and reports false if timeout passes
// first. The black-box tests wait through internal/testkit instead, which
// has its own: a package cannot import what a _test.go file exports.
func PollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// TestLog collects a server's log lines; it is safe for concurrent use.
type TestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *TestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *TestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger returns a logger that writes to l from level Info up.
func (l *TestLog) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Count counts the lines that contain every one of subs.
func (l *TestLog) Count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// Has reports whether one line contains every one of subs.
func (l *TestLog) Has(subs ...string) bool { return l.Count(subs...) > 0 }

// Warnings counts the warnings and errors that contain every one of subs.
func (l *TestLog) Warnings(subs ...string) int {
	return l.Count(append([]string{"level=WARN"}, subs...)...) + l.Count(append([]string{"level=ERROR"}, subs...)...)
}

// Tail returns the last n lines, for failure messages.
func (l *TestLog) Tail(n int) string {
	ls := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}
