package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The machine is shared: a long run can lose processors to other work
// part way through. cpuSample lets a mode tell that apart from a slowdown
// of its own, by the CPU this process used and the CPU the whole machine
// used over an interval.
type cpuSample struct {
	at      time.Time
	self    time.Duration // user+system time of this process
	busy    time.Duration // of the whole machine, every processor, from /proc/stat
	hasBusy bool
}

// clockTick is USER_HZ, the unit of /proc/stat: 100 on Linux.
const clockTick = 10 * time.Millisecond

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return s
	}
	var total, idle uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i == 8 || i == 9 { // guest time is already counted in user
			continue
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	s.busy, s.hasBusy = time.Duration(total-idle)*clockTick, true
	return s
}

// cpuUse is how many processors, on average between a and b, this process
// used and all other processes did (-1 when unknown).
func cpuUse(a, b cpuSample) (self, others float64) {
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return 0, -1
	}
	self = (b.self - a.self).Seconds() / dt
	others = -1
	if a.hasBusy && b.hasBusy {
		others = max((b.busy-a.busy).Seconds()/dt-self, 0)
	}
	return self, others
}
