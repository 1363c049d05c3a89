// Package session is the replicated session table behind exraft's
// exactly-once writes (Raft thesis §6.3): the records a session puts in the
// log, and the table every server builds by applying them in log order.
//
// A client registers a session through the log and numbers its writes;
// each write's record carries the session, its sequence number and the
// lowest sequence number the client still waits on. Applying a write the
// table has seen returns the result it gave the first time instead of
// applying it again, and results below the lowest are forgotten.
//
// The package is pure, like internal/raft: no clocks, goroutines or I/O.
// Time comes from the records (the proposing leader's clock), so expiry is
// decided by the log and every server decides alike.
package session
