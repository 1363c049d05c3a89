package exraft

import "time"

// SampleKind is the kind of a metric in the Prometheus data model.
type SampleKind uint8

const (
	// CounterSample only goes up, from the server's start.
	CounterSample SampleKind = iota
	// GaugeSample goes up and down.
	GaugeSample
	// HistogramSample counts observations in buckets.
	HistogramSample
)

// Sample is one metric, named and described as a Prometheus collector
// exports it: Value, or Histogram for a HistogramSample. Labels tell apart
// the samples of one name (a peer's address, a role); the server's own
// name is for the exporter to add.
type Sample struct {
	Name      string
	Help      string
	Kind      SampleKind
	Labels    []Label
	Value     float64
	Histogram *Histogram
}

// Label is a label of a Sample.
type Label struct{ Name, Value string }

// Samples lists m as metrics of the Prometheus data model, in a fixed
// order, every name prefixed "exraft_". Names with several samples (one per
// peer, one per role) list them together.
func (m Metrics) Samples() []Sample {
	st := &m.Status
	var out []Sample
	add := func(name, help string, kind SampleKind, v float64, labels ...Label) {
		out = append(out, Sample{Name: "exraft_" + name, Help: help, Kind: kind, Value: v, Labels: labels})
	}
	hist := func(name, help string, h Histogram) {
		out = append(out, Sample{Name: "exraft_" + name, Help: help, Kind: HistogramSample, Histogram: &h})
	}
	for _, r := range []Role{Follower, Candidate, Leader, Stopped} {
		add("role", "1 for the server's role, 0 for the others.", GaugeSample, b2f(st.Role == r), Label{"role", r.String()})
	}
	add("term", "The server's current term.", GaugeSample, float64(st.Term))
	add("leader_known", "1 if the server knows a leader.", GaugeSample, b2f(st.Leader.Name != ""))
	add("commit_index", "The last index known committed.", GaugeSample, float64(st.CommitIndex))
	add("applied_index", "The last index the state machine applied.", GaugeSample, float64(st.AppliedIndex))
	add("last_index", "The last index in the log.", GaugeSample, float64(st.LastIndex))
	add("first_index", "The first index the log still holds.", GaugeSample, float64(st.FirstIndex))
	add("snapshot_index", "The last index the latest snapshot covers; 0 without one.", GaugeSample, float64(st.SnapshotIndex))
	add("members", "Voters of the configuration in use.", GaugeSample, float64(len(st.Members)))
	add("leader_changes_total", "Times the server learned of a new leader.", CounterSample, float64(m.LeaderChanges))
	add("prevotes_total", "Pre-vote rounds the server started.", CounterSample, float64(m.PreVotes))
	add("elections_total", "Elections the server started.", CounterSample, float64(m.Elections))
	add("writes_total", "Writes proposed on this server as leader, session writes included.", CounterSample, float64(m.Writes))
	add("write_errors_total", "Writes that failed (leadership lost, context ended, stopped).", CounterSample, float64(m.WriteErrors))
	hist("write_seconds", "Time from a write's proposal to its answer, successful writes.", m.WriteTime)
	add("reads_total", "Linearizable reads served on this server as leader.", CounterSample, float64(m.Reads))
	add("read_errors_total", "Linearizable reads that failed.", CounterSample, float64(m.ReadErrors))
	hist("read_seconds", "Time a successful linearizable read took.", m.ReadTime)
	hist("apply_seconds", "Time the state machine took per batch of committed entries.", m.ApplyTime)
	add("snapshots_taken_total", "Snapshots this server took.", CounterSample, float64(m.SnapshotsTaken))
	add("snapshots_sent_total", "Snapshots this server sent to followers, completed.", CounterSample, float64(m.SnapshotsSent))
	add("snapshots_restored_total", "Snapshots from a leader this server restored.", CounterSample, float64(m.SnapshotsRestored))
	add("loop_stalls_total", "Times the protocol loop did not come round for 2s or more (logged with its stack).", CounterSample, float64(m.LoopStalls))
	add("applier_stalls_total", "Times the applier was held on one batch for 2s or more: a state machine call that did not return (logged with its stack).", CounterSample, float64(m.ApplierStalls))
	add("sessions", "Client sessions the cluster keeps, as far as this server applied.", GaugeSample, float64(m.Sessions))
	for _, p := range m.Peers {
		add("peer_sent_messages_total", "Protocol messages sent to a peer.", CounterSample, float64(p.Messages), Label{"peer", p.Addr})
	}
	for _, p := range m.Peers {
		add("peer_sent_bytes_total", "Bytes of protocol messages sent to a peer.", CounterSample, float64(p.Bytes), Label{"peer", p.Addr})
	}
	for _, p := range m.Peers {
		add("peer_snapshot_bytes_total", "Bytes of snapshots sent to a peer, retries included.", CounterSample, float64(p.SnapshotBytesOut), Label{"peer", p.Addr})
	}
	for _, p := range st.Peers {
		add("peer_lag", "On the leader: entries a peer lacks.", GaugeSample, float64(p.Lag), Label{"peer", p.Addr})
	}
	for _, p := range st.Peers {
		since := -1.0
		if !p.LastContact.IsZero() {
			since = time.Since(p.LastContact).Seconds()
		}
		add("peer_last_contact_seconds", "On the leader: seconds since a peer last answered; -1 if it never did.", GaugeSample, since, Label{"peer", p.Addr})
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SampleFamilies returns one Sample of every name Samples may list, with
// its labels' names, whatever the cluster looks like now: what a collector
// describes up front (the per-peer names appear only on a leader, or once
// something was sent).
func SampleFamilies() []Sample {
	m := Metrics{Peers: []PeerTraffic{{}}, Status: Status{Peers: []PeerStatus{{}}}}
	var out []Sample
	seen := map[string]bool{}
	for _, s := range m.Samples() {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	return out
}
