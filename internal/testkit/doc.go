// Package testkit is the harness of exraft's black-box tests: servers on
// loopback TCP started as a cluster, a network between them that can cut,
// partition and slow down links, a key-value state machine that records what
// it applied, waits that poll a condition under a deadline, and a porcupine
// model with clients that record a history to check.
//
// It is an ordinary package rather than a _test.go file so that every test
// that needs a cluster shares one harness, whatever file or package it is
// in, instead of each file growing its own. Package exraft's white-box tests
// cannot import it (it imports exraft); they keep exraft.PollUntil.
//
// Nothing here sleeps to wait for a condition: waits poll under a deadline
// or block on a context. The sleeps that remain pace a nemesis or inject
// latency, and say so.
package testkit
