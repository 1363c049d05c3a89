package testkit

import (
	"time"

	"github.com/exraft/exraft"
)

// Timing of the test servers: fast enough that a test of many elections
// takes seconds, with deadlines long enough for a loaded 2-core machine
// running under -race.
const (
	Heartbeat      = 20 * time.Millisecond
	ElectMin       = 100 * time.Millisecond
	ElectMax       = 200 * time.Millisecond
	WaitLong       = 20 * time.Second // conditions that need elections or catch-up
	WaitShort      = 10 * time.Second // conditions that should be quick
	PollInterval   = 5 * time.Millisecond
	NoLeaderWindow = 1 * time.Second // several maximum election timeouts
)

// FastConfig is the Config of a test server: the fast timing above, and
// everything else left to the caller.
func FastConfig(name string) exraft.Config {
	return exraft.Config{
		Name:               name,
		HeartbeatInterval:  Heartbeat,
		ElectionTimeoutMin: ElectMin,
		ElectionTimeoutMax: ElectMax,
	}
}
