// Package chaos is exraft's Jepsen-style suite: real server processes
// (./node), real faults (SIGKILL, SIGSTOP, silent network partitions between
// network namespaces, toxiproxy's latency, resets and sliced writes, and
// membership and leadership churn), concurrent clients, and checks of what
// they saw: linearizability with porcupine, no acknowledged write lost, no
// write applied twice, every server converging to the same state.
//
// It is a module of its own, so that its dependencies stay out of the
// library's go.mod. chaos_test.go holds the entry points and says how to
// run them.
package chaos
