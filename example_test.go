package exraft_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exraft/exraft"
)

// register is a tiny state machine for the examples: "put v" stores v and
// returns the value it replaces; any query returns the stored value.
type register struct {
	mu    sync.Mutex
	value string
}

func (r *register) Apply(command []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.value
	r.value = strings.TrimPrefix(string(command), "put ")
	return []byte(old)
}

func (r *register) Query(query []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return []byte(r.value)
}

// A one-server cluster: it elects itself at once.
func ExampleStartServer() {
	s, err := exraft.StartServer(&register{}, exraft.Config{Name: "solo"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer exraft.StopServer(s)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leader, err := s.AwaitLeader(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leader:", leader.Name)

	if _, err := s.Write(ctx, []byte("put hello")); err != nil {
		fmt.Println(err)
		return
	}
	old, err := s.Write(ctx, []byte("put world"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("replaced: %s\n", old)

	value, err := s.Read(ctx, []byte("get"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("read: %s\n", value)
	// Output:
	// leader: solo
	// replaced: hello
	// read: world
}

// A write sent to a follower fails with a *RedirectError that names the
// leader; the caller retries there.
func ExampleRedirectError() {
	// Two servers that know each other's address from the start.
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	members := []exraft.Peer{
		{Name: "a", Addr: l1.Addr().String()},
		{Name: "b", Addr: l2.Addr().String()},
	}
	a, err := exraft.StartServer(&register{}, exraft.Config{Name: "a", Listener: l1, InitialConfig: members})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer exraft.StopServer(a)
	b, err := exraft.StartServer(&register{}, exraft.Config{Name: "b", Listener: l2, InitialConfig: members})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer exraft.StopServer(b)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader, err := a.AwaitLeader(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Pick the server that is not the leader, and wait until it knows the leader.
	follower := a
	if leader.Name == "a" {
		follower = b
	}
	if _, err := follower.AwaitLeader(ctx); err != nil {
		fmt.Println(err)
		return
	}

	addr := follower.Addr()
	command := []byte("put redirected")
	for {
		_, err := exraft.Write(ctx, addr, command)
		var redirect *exraft.RedirectError
		if errors.As(err, &redirect) {
			fmt.Println("not the leader; following the redirect")
			addr = redirect.Leader.Addr
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		break
	}
	value, err := exraft.Read(ctx, addr, []byte("get"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("read at the leader: %s\n", value)
	// Output:
	// not the leader; following the redirect
	// read at the leader: redirected
}

// The examples from here on are README.md's code blocks, word for word, so
// that the README cannot show code that no longer compiles or runs:
// TestReadmeGoBlocksAreExamples fails when the two drift apart.

// counter is README.md's state machine: it adds each command to a total.
type counter struct{ n int }

// Validate runs on the leader before a command enters the log: a command
// that is not a number fails its Write with ErrRejected.
func (c *counter) Validate(cmd []byte) error {
	_, err := strconv.Atoi(string(cmd))
	return err
}

// Apply runs on every server, once per committed command, in log order.
func (c *counter) Apply(cmd []byte) []byte {
	delta, _ := strconv.Atoi(string(cmd)) // Validate let only numbers in
	c.n += delta
	return []byte(strconv.Itoa(c.n))
}

// Query answers a read and must not change the state.
func (c *counter) Query([]byte) []byte { return []byte(strconv.Itoa(c.n)) }

// The quick start: a one-server cluster leads at once.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	s, err := exraft.StartServer(&counter{}, exraft.Config{Name: "solo"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Stop()

	if _, err := s.AwaitLeader(ctx); err != nil {
		log.Fatal(err)
	}
	n, err := s.Write(ctx, []byte("5")) // the result of Apply, once committed
	if err != nil {
		log.Fatal(err)
	}
	v, err := s.Read(ctx, []byte("get")) // a linearizable read
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Write returned %s, Read returned %s\n", n, v)
	// Output:
	// Write returned 5, Read returned 5
}

// A three-server cluster starts from an InitialConfig that lists every
// server, so the listeners come first.
func ExampleStartServer_cluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	names := []string{"a", "b", "c"}
	var lns []net.Listener
	var peers []exraft.Peer
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: name, Addr: ln.Addr().String()})
	}

	var servers []*exraft.Server
	for i, name := range names {
		s, err := exraft.StartServer(&counter{}, exraft.Config{
			Name:          name,
			Listener:      lns[i],
			InitialConfig: peers,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer s.Stop()
		servers = append(servers, s)
	}

	// The first election needs every server of InitialConfig.
	if _, err := servers[0].AwaitLeader(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(servers[0].Status().Members), "voters")
	// Output:
	// 3 voters
}

// writeVia writes cmd through s: at s if it leads, else at the leader.
func writeVia(ctx context.Context, s *exraft.Server, cmd []byte) ([]byte, error) {
	result, err := s.Write(ctx, cmd)

	var redirect *exraft.RedirectError
	switch {
	case err == nil:
		// s is the leader.
		return result, nil
	case errors.As(err, &redirect):
		// A follower that knows the leader names it: retry there.
		return exraft.Write(ctx, redirect.Leader.Addr, cmd)
	case errors.Is(err, exraft.ErrNoLeader):
		// An election is under way: wait for its outcome, then retry.
		leader, err := s.AwaitLeader(ctx)
		if err != nil {
			return nil, err
		}
		return exraft.Write(ctx, leader.Addr, cmd)
	default:
		return nil, err
	}
}

// Writes through every server of a cluster, leader or not: writeVia
// follows a follower's redirect, or waits out an election.
func ExampleWrite() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	names := []string{"a", "b", "c"}
	var lns []net.Listener
	var peers []exraft.Peer
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: name, Addr: ln.Addr().String()})
	}

	var servers []*exraft.Server
	for i, name := range names {
		s, err := exraft.StartServer(&counter{}, exraft.Config{
			Name:          name,
			Listener:      lns[i],
			InitialConfig: peers,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer s.Stop()
		servers = append(servers, s)
	}

	// No AwaitLeader first: the first writes may well find no leader yet.
	for _, s := range servers {
		total, err := writeVia(ctx, s, []byte("1"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("via %s: %s\n", s.Name(), total)
	}
	// Output:
	// via a: 1
	// via b: 2
	// via c: 3
}

// secureConfig is the Config of one server of a cluster that spans machines.
func secureConfig(name, addr string, peers []exraft.Peer, secret []byte, tlsConfig *tls.Config) exraft.Config {
	return exraft.Config{
		Name:          name,
		Addr:          addr,          // the address it listens on and the others dial
		ClusterID:     "orders-prod", // refuse other clusters' servers and clients
		Secret:        secret,        // refuse anyone who does not know it
		TLS:           tlsConfig,     // encrypt, and with client certs, authenticate
		InitialConfig: peers,
	}
}

// secureClient is a Client that secureConfig's servers let in.
func secureClient(secret []byte, tlsConfig *tls.Config) *exraft.Client {
	return &exraft.Client{ClusterID: "orders-prod", Secret: secret, TLS: tlsConfig}
}

// A server and a client that share the ClusterID and the Secret talk; a
// client without the Secret is refused.
func ExampleConfig_secure() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A real cluster reads its secret from a vault and gives every server
	// a tls.Config with certificates from its CA; this one makes a secret
	// up and goes without TLS, to stay short.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		log.Fatal(err)
	}

	s, err := exraft.StartServer(&counter{}, secureConfig("n1", "127.0.0.1:0", nil, secret, nil))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Stop()

	client := secureClient(secret, nil)
	defer client.Close()
	if _, err := client.AwaitLeader(ctx, s.Addr()); err != nil {
		log.Fatal(err)
	}
	total, err := client.Write(ctx, s.Addr(), []byte("1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("with the secret: %s\n", total)

	stranger := &exraft.Client{ClusterID: "orders-prod"}
	defer stranger.Close()
	_, err = stranger.Write(ctx, s.Addr(), []byte("1"))
	fmt.Println("without it, refused:", errors.Is(err, exraft.ErrUnauthorized))
	// Output:
	// with the secret: 1
	// without it, refused: true
}

// startCounters starts a cluster of counters, one server per name, for the
// examples that need one; stop it with stopAll.
func startCounters(names ...string) []*exraft.Server {
	var lns []net.Listener
	var peers []exraft.Peer
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: name, Addr: ln.Addr().String()})
	}
	var servers []*exraft.Server
	for i, name := range names {
		s, err := exraft.StartServer(&counter{}, exraft.Config{Name: name, Listener: lns[i], InitialConfig: peers})
		if err != nil {
			log.Fatal(err)
		}
		servers = append(servers, s)
	}
	return servers
}

// leaderAndFollower waits for servers to elect a leader, and returns it
// with one of the others.
func leaderAndFollower(ctx context.Context, servers []*exraft.Server) (leader, follower *exraft.Server) {
	p, err := servers[0].AwaitLeader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range servers {
		switch {
		case s.Name() == p.Name:
			leader = s
		case follower == nil:
			follower = s
		}
	}
	return leader, follower
}

func stopAll(servers []*exraft.Server) {
	for _, s := range servers {
		s.Stop()
	}
}

// A Session writes to the cluster rather than to one server: it finds the
// leader, waits out elections, and applies each write once however often
// it has to retry it.
func ExampleNewSession() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers := startCounters("a", "b", "c")
	defer stopAll(servers)

	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	session := exraft.NewSession(addrs...) // any of the cluster's servers
	defer session.Close(ctx)

	total, err := session.Write(ctx, []byte("1")) // Apply's result, applied once
	if err != nil {
		log.Fatal(err)
	}
	value, err := session.Read(ctx, nil) // linearizable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s, read %s\n", total, value)

	// The leader goes; the Session finds the next one on its own.
	leader, _ := leaderAndFollower(ctx, servers)
	leader.Stop()
	total, err = session.Write(ctx, []byte("1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after the leader stopped:", string(total))
	// Output:
	// wrote 1, read 1
	// after the leader stopped: 2
}

// WaitStatus blocks until a condition on the server's Status holds: here,
// until a follower has applied everything the leader has, and until the
// survivors have a new leader once the old one stops.
func ExampleServer_WaitStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers := startCounters("a", "b", "c")
	defer stopAll(servers)

	l, f := leaderAndFollower(ctx, servers)
	if _, err := l.Write(ctx, []byte("5")); err != nil {
		log.Fatal(err)
	}
	index := l.Status().AppliedIndex
	if _, err := f.WaitStatus(ctx, func(st exraft.Status) bool { return st.AppliedIndex >= index }); err != nil {
		log.Fatal(err)
	}
	total, _ := f.ReadDirty(ctx, nil)
	fmt.Println("the follower has applied the write:", string(total))

	l.Stop()
	st, err := f.WaitStatus(ctx, func(st exraft.Status) bool {
		return st.Leader.Name != "" && st.Leader.Name != l.Name()
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a new leader:", st.Leader.Name != l.Name())
	// Output:
	// the follower has applied the write: 5
	// a new leader: true
}

// TransferLeadership moves the leadership on purpose, before the leader's
// server is taken down for maintenance, say: it returns once the target
// leads.
func ExampleServer_TransferLeadership() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers := startCounters("a", "b", "c")
	defer stopAll(servers)

	l, target := leaderAndFollower(ctx, servers)
	if err := l.TransferLeadership(ctx, target.Name()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("the target leads:", target.Status().Role == exraft.Leader)
	// Output:
	// the target leads: true
}

// A server that joins a running cluster starts with MinMajority 2 and no
// InitialConfig, so that it can never lead a cluster of its own; the
// leader's AddServer catches it up, makes it a voter, and returns.
func ExampleServer_AddServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader, err := exraft.StartServer(&counter{}, exraft.Config{Name: "first"})
	if err != nil {
		log.Fatal(err)
	}
	defer leader.Stop()
	if _, err := leader.AwaitLeader(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := leader.Write(ctx, []byte("3")); err != nil {
		log.Fatal(err)
	}

	joiner, err := exraft.StartServer(&counter{}, exraft.Config{Name: "second", MinMajority: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer joiner.Stop()
	if err := leader.AddServer(ctx, joiner.Peer()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("voters:", len(leader.Status().Members))
	// AddServer returns once the new server holds the log and counts; it
	// applies what it holds on its own time.
	index := leader.Status().CommitIndex
	if _, err := joiner.WaitStatus(ctx, func(st exraft.Status) bool { return st.AppliedIndex >= index }); err != nil {
		log.Fatal(err)
	}
	total, _ := joiner.ReadDirty(ctx, nil)
	fmt.Println("the new server's copy:", string(total))
	// Output:
	// voters: 2
	// the new server's copy: 3
}

// RemoveServer takes a member out of the configuration; the removed server
// goes on running, outside the cluster, until it is stopped.
func ExampleServer_RemoveServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers := startCounters("a", "b", "c")
	defer stopAll(servers)
	l, other := leaderAndFollower(ctx, servers)
	if err := l.RemoveServer(ctx, other.Name()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("voters:", len(l.Status().Members))
	err := l.RemoveServer(ctx, other.Name())
	fmt.Println("again:", errors.Is(err, exraft.ErrUnknownServer))
	// Output:
	// voters: 2
	// again: true
}

// A Client calls servers by address, from any program: here it writes to
// the leader it asks a server about, and reads that server's Status.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers := startCounters("a", "b", "c")
	defer stopAll(servers)

	client := &exraft.Client{} // a zero Client works; set TLS, ClusterID, Secret as the servers need
	defer client.Close()
	leader, err := client.AwaitLeader(ctx, servers[0].Addr())
	if err != nil {
		log.Fatal(err)
	}
	total, err := client.Write(ctx, leader.Addr, []byte("2"))
	if err != nil {
		log.Fatal(err)
	}
	st, err := client.GetStatus(ctx, leader.Addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", string(total), "leader's role:", st.Role)
	// Output:
	// total: 2 leader's role: leader
}

// snapCounter is a counter that can snapshot itself: its state is one
// number, so Snapshot copies it and the WriterTo writes the copy.
type snapCounter struct{ counter }

func (c *snapCounter) Snapshot() (io.WriterTo, error) {
	return strings.NewReader(strconv.Itoa(c.n)), nil // a copy: later Applies do not touch it
}

func (c *snapCounter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.n, err = strconv.Atoi(string(b))
	return err
}

// A state machine that implements Snapshotter keeps the log short: every
// SnapshotThreshold entries the server snapshots it and drops the log
// before it but TrailingLogs entries.
func ExampleSnapshotter() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := exraft.StartServer(&snapCounter{}, exraft.Config{Name: "solo", SnapshotThreshold: 10, TrailingLogs: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.AwaitLeader(ctx); err != nil {
		log.Fatal(err)
	}
	for range 30 {
		if _, err := s.Write(ctx, []byte("1")); err != nil {
			log.Fatal(err)
		}
	}
	st, err := s.WaitStatus(ctx, func(st exraft.Status) bool { return st.SnapshotIndex > 0 })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the log no longer starts at 1:", st.FirstIndex > 1)
	total, _ := s.Read(ctx, nil)
	fmt.Println("total:", string(total))
	// Output:
	// the log no longer starts at 1: true
	// total: 30
}
