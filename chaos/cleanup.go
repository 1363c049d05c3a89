package chaos

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// undo is what must run however the suite ends: processes killed,
// namespaces and links deleted. Tests defer it; an interrupt runs it too,
// since go test's own handling of SIGINT would leave them behind.
var undo struct {
	sync.Mutex
	next  int
	steps map[int]func()
	once  sync.Once
}

// onExit registers fn to run at an interrupt, and returns the function
// that runs it now and unregisters it (for a defer).
func onExit(fn func()) (runNow func()) {
	undo.Lock()
	defer undo.Unlock()
	undo.once.Do(watchSignals)
	if undo.steps == nil {
		undo.steps = map[int]func(){}
	}
	id := undo.next
	undo.next++
	undo.steps[id] = fn
	var once sync.Once
	return func() {
		once.Do(func() {
			undo.Lock()
			delete(undo.steps, id)
			undo.Unlock()
			fn()
		})
	}
}

// watchSignals runs every registered step at SIGINT, SIGTERM or SIGHUP,
// then exits.
func watchSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "chaos: %v: cleaning up\n", sig)
		undo.Lock()
		steps := undo.steps
		undo.steps = nil
		undo.Unlock()
		for _, fn := range steps {
			fn()
		}
		os.Exit(2)
	}()
}
