// Package raft is the Raft protocol as a deterministic state machine, after
// etcd-io/raft: no goroutines, clocks, locks or I/O, and nothing outside the
// standard library (imports_test.go keeps it so). Its driver, exraft's
// driver.go, owns a Node and talks to it through api.go alone
// (docs/design.md §1).
//
// Each rule lives in one place, named after it, in the file below. "§" is a
// section of the Raft paper (Ongaro and Ousterhout, "In Search of an
// Understandable Consensus Algorithm", 2014); "thesis §" one of Ongaro's
// dissertation ("Consensus: Bridging Theory and Practice", 2014).
//
//	Rule                                             File            Source
//	-----------------------------------------------  --------------  ----------------------------------
//	Server state: term, vote, log, role              state.go        Figure 2 "State", §5.1
//	A later term converts, an earlier one is refused step.go         Figure 2 "Rules for All Servers"
//	Leader lease: outsiders do not move terms        step.go         thesis §4.2.3
//	Leader election, randomized timeouts             election.go     §5.2
//	RequestVote receiver, election restriction       election.go     Figure 2, §5.2, §5.4.1
//	Pre-vote                                         election.go     thesis §9.6
//	No-op entry at the start of a term               election.go     §8
//	Heartbeats and election timeouts                 tick.go         §5.2
//	Check-quorum: a cut-off leader steps down        tick.go         thesis §6.2
//	AppendEntries receiver, log matching             replication.go  Figure 2, §5.3
//	Leader's appends, fast back-off                  replication.go  §5.3
//	Probing and pipelining, per follower             progress.go     §5.3
//	Commit: a quorum, entries of the current term    commit.go       §5.3, §5.4.2, Figure 8
//	Linearizable reads (ReadIndex)                   readindex.go    thesis §6.4; docs/design.md §5
//	Single-server membership changes                 membership.go   thesis §4.1, §4.2.1; docs/design.md §6
//	A removed leader hands over                      membership.go   thesis §4.2.2
//	Leadership transfer (TimeoutNow), on request     transfer.go     thesis §3.10
//	TriggerElection asks the leader to hand over     election.go     thesis §3.10
//	The leader's view of each follower (Progress)    progress.go     thesis §6.2
//	Session records go through the log as commands   replication.go  thesis §6.3; docs/design.md §10
//	Incarnations: only the bound one counts          incarnation.go  docs/design.md §2
//	Re-admission: learners are the configuration's   membership.go   docs/design.md §2; thesis §4.2.1
//	Bootstrap: every voter until incarnations bind   membership.go   docs/design.md §3
//	Snapshots: compaction, InstallSnapshot receiver  snapshot.go     §7, Figure 13; thesis §5.1–§5.4
//	A follower being sent a snapshot gets no appends progress.go     thesis §5.4.1
//	The log, compacted below its floor               log.go          §5.3, §7
//	Messages: the RPCs as one-way messages           message.go      Figure 2
//	Configuration entries, encoded                   confentry.go    docs/design.md §6
//	The driver's contract                            api.go          docs/design.md §1
//
// Safety rests on the paper's properties, which the simulator (sim_test.go)
// checks after every step: Election Safety, Log Matching, Leader
// Completeness and State Machine Safety (§5.4.3, Figure 3).
package raft
