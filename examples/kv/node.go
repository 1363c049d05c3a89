package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/exraft/exraft"
)

const replHelp = "commands: set <key> <value> | get <key> | del <key> | status | help | quit"

// callTimeout bounds every call the command line makes.
const callTimeout = 10 * time.Second

// joinAttemptTimeout bounds one request to be added: the leader catches the
// new server up before it becomes a voter, which takes a while for a large
// store, but a leader that takes longer than this is stuck on something, and
// asking afresh picks up whatever has changed since.
const joinAttemptTimeout = 30 * time.Second

// A refused join is retried sooner at first, for the leader that is just
// starting, then less often, for the cluster that is down for longer.
const (
	joinRetryMin = 250 * time.Millisecond
	joinRetryMax = 5 * time.Second
)

// joinReportEvery repeats an unchanged "waiting to be added" line, so that a
// long wait still shows that it is waiting and not stuck.
const joinReportEvery = 30 * time.Second

// seedProbeTimeout bounds the question the first seed asks each other seed
// before it may start a new cluster: whether it belongs to one already. The
// seeds are asked at once, so this bounds the whole check. A seed that does
// not answer in time counts as not belonging to a cluster.
const seedProbeTimeout = 3 * time.Second

type nodeOptions struct {
	name    string
	listen  string
	peers   string // name=host:port,...
	join    string // host:port,... of seeds: servers of the cluster to join
	cluster string // ClusterID
	verbose bool
	metrics string // address to serve /metrics on; "" for none
}

// runNode runs one server of a cluster in this process, with a command line
// on stdin, until "quit", an interrupt or a fatal error.
func runNode(opts nodeOptions) error {
	if opts.name == "" {
		return errors.New("-name is required")
	}
	if opts.peers != "" && opts.join != "" {
		return errors.New("use -peers or -join, not both")
	}
	var seeds []string // the other servers in -join, in its order
	var firstSeed bool // this server's address is the first in -join
	if opts.join != "" {
		all, err := parseSeeds(opts.join)
		if err != nil {
			return err
		}
		for i, addr := range all {
			switch {
			case addr != opts.listen:
				seeds = append(seeds, addr)
			case i == 0:
				firstSeed = true
			}
		}
		if len(seeds) == 0 {
			return fmt.Errorf("-join %s names only this server's own address: list the addresses of the other servers too (or, to start a new cluster of one, leave -join out)", opts.join)
		}
	}

	// The secret comes from the environment, not a flag, so that it does
	// not show in the process list.
	secret := []byte(os.Getenv("KV_SECRET"))
	cfg := exraft.Config{Name: opts.name, Addr: opts.listen, ClusterID: opts.cluster, Secret: secret}
	// A command line types short values, so a snapshot of the store costs
	// little next to the log it replaces: take one every 10,000 writes
	// rather than the default 16,384, and keep the log that much shorter.
	cfg.SnapshotThreshold = 10_000
	// The command line calls servers through the package functions.
	exraft.DefaultClient.ClusterID, exraft.DefaultClient.Secret = opts.cluster, secret
	if opts.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}

	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	joining := opts.join != ""
	switch {
	case opts.peers != "":
		// One server of a bootstrap cluster. A bootstrap configuration names
		// servers, not the runs (incarnations) of them, so a vote from a
		// server that restarted blank cannot be told from one that kept its
		// log: the first election therefore needs every server named in
		// -peers, not a majority. The first leader ties each member to the
		// run it heard from, and plain majorities decide from then on.
		peers, err := parsePeers(opts.peers)
		if err != nil {
			return err
		}
		self, ok := findPeer(peers, opts.name)
		if !ok {
			return fmt.Errorf("-peers must include this server, %q", opts.name)
		}
		if cfg.Addr == "" {
			cfg.Addr = self.Addr
		}
		cfg.InitialConfig = peers
	case firstSeed:
		// The first seed starts the cluster, but only if there is none yet:
		// nothing is on disk, so a restart cannot be told from a first start
		// by this server alone. The other seeds can tell: any of them that
		// belongs to a cluster means this is a restart, and this server asks
		// to be added back like any other. A seed that still waits to be
		// added, or does not answer, says nothing of a cluster.
		client := &exraft.Client{ClusterID: opts.cluster, Secret: secret, IOTimeout: seedProbeTimeout}
		answers := askSeeds(interrupted, client, seeds)
		client.Close()
		if interrupted.Err() != nil {
			return nil
		}
		in := slices.IndexFunc(answers, seedAnswer.inCluster)
		if in < 0 {
			fmt.Printf("no other server in -join belongs to a cluster (%s): %s starts a new cluster of one, which they join\n", describeSeeds(answers), opts.name)
			cfg.InitialConfig = []exraft.Peer{{Name: opts.name, Addr: opts.listen}}
			joining = false
			break
		}
		fmt.Printf("%s belongs to a cluster already: %s asks to be added to it instead of starting a new one\n", answers[in].describe(), opts.name)
		// Ask there first: it answered, and it knows the leader or soon will.
		seeds = append(append([]string{seeds[in]}, seeds[:in]...), seeds[in+1:]...)
		fallthrough
	case joining:
		// No InitialConfig, and a quorum of at least two: a server that
		// cannot count to a quorum on its own vote never campaigns, so it
		// stays an outsider until a leader adds it. Without this a restart
		// with the same flags would lead a new cluster of one, with its own
		// data, beside the one it left.
		cfg.MinMajority = 2
	default:
		// Neither: a new cluster of one, which leads at once and which other
		// servers can -join. Nothing tells a first start from a restart, so
		// a restart of this form starts a new cluster too (see usage).
	}

	server, err := exraft.StartServer(newStore(), cfg)
	if err != nil {
		return err
	}
	defer server.Stop()
	fmt.Printf("%s serves at %s\n", server.Name(), server.Addr())
	if opts.metrics != "" {
		m, err := serveMetrics(opts.metrics, server)
		if err != nil {
			return err
		}
		defer m.Close()
		fmt.Printf("metrics at http://%s/metrics\n", opts.metrics)
	}

	lines := readLines()

	switch {
	case joining:
		if opts.listen == "" {
			// A member is known by its name and address together: back at
			// another port, it would be refused its old place.
			fmt.Printf("note: without -listen, %s listens on a new port at each start, and the cluster would refuse it after a restart; to be able to restart it, give it -listen (now %s)\n", server.Name(), server.Addr())
		}
		if joined := join(interrupted, server, seeds, lines); !joined {
			return nil
		}
	case opts.peers != "":
		fmt.Println("the first election needs every server in -peers running; once a cluster has a leader, it lets a restarted server back in")
	}
	// The command line writes and reads through a Session on the whole
	// cluster: it finds the leader, and a write it retries (after a lost
	// answer or a leader change) is applied once.
	session := exraft.NewSession(clusterAddrs(server, opts, seeds)...)
	defer closeSession(session)
	return repl(interrupted, server, session, lines)
}

// clusterAddrs is every address this server knows of its cluster, its own
// first: a Session needs one that answers, and learns the rest.
func clusterAddrs(server *exraft.Server, opts nodeOptions, seeds []string) []string {
	addrs := append([]string{server.Addr()}, seeds...)
	if peers, err := parsePeers(opts.peers); err == nil && opts.peers != "" {
		for _, p := range peers {
			if !slices.Contains(addrs, p.Addr) {
				addrs = append(addrs, p.Addr)
			}
		}
	}
	return addrs
}

// closeSession tells the cluster to forget the command line's session, so
// that it does not keep it until it expires.
func closeSession(session *exraft.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = session.Close(ctx) // a cluster without a leader forgets it on expiry
}

// seedAnswer is what a seed said when asked for its status.
type seedAnswer struct {
	addr   string
	status exraft.Status
	err    error
}

// askSeeds asks every seed for its status at once, each within
// seedProbeTimeout, and returns the answers in the order of seeds.
func askSeeds(ctx context.Context, client *exraft.Client, seeds []string) []seedAnswer {
	answers := make([]seedAnswer, len(seeds))
	var wg sync.WaitGroup
	for i, addr := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, seedProbeTimeout)
			defer cancel()
			st, err := client.GetStatus(ctx, addr)
			answers[i] = seedAnswer{addr: addr, status: st, err: err}
		}()
	}
	wg.Wait()
	return answers
}

// inCluster reports whether the seed belongs to a cluster: it knows a
// leader, or a member other than itself, or it has seen a term begin. A
// server that waits to be added (no InitialConfig, MinMajority 2) has none
// of these: it counts itself as its only member, in term 0, with no leader.
func (a seedAnswer) inCluster() bool {
	if a.err != nil {
		return false
	}
	st := a.status
	if st.Leader.Name != "" || st.Term > 0 {
		return true
	}
	return slices.ContainsFunc(st.Members, func(p exraft.Peer) bool { return p.Name != st.Name })
}

// describe says in a few words what the seed answered.
func (a seedAnswer) describe() string {
	st := a.status
	switch {
	case a.err != nil:
		return fmt.Sprintf("%s gives no status: %v", a.addr, a.err)
	case a.inCluster():
		leader := st.Leader.Name
		if leader == "" {
			leader = "(none)"
		}
		return fmt.Sprintf("%s (%s) is %s in term %d, leader %s, members [%s]", a.addr, st.Name, st.Role, st.Term, leader, peerNames(st.Members))
	default:
		return fmt.Sprintf("%s (%s) waits to be added", a.addr, st.Name)
	}
}

func describeSeeds(answers []seedAnswer) string {
	parts := make([]string, len(answers))
	for i, a := range answers {
		parts[i] = a.describe()
	}
	return strings.Join(parts, "; ")
}

// readLines delivers stdin line by line, and closes the channel when stdin
// ends. One reader serves both the wait to join and the command line, so
// that a line typed during the wait is not lost to a reader that has gone.
func readLines() <-chan string {
	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	return lines
}

// join asks the cluster that the seeds belong to to add server, and asks
// again, less and less often, until it does. Each attempt asks the seeds one
// after the other until one of them (or the leader it redirects to) adds
// server, beginning with the seed after the one that began the previous
// attempt, so that a seed that hangs does not always come first. It reports
// whether server joined: false means the user quit or interrupted it first.
// Meanwhile server is a passive outsider (see MinMajority in runNode), so
// waiting is safe however long it takes.
//
// Only status and quit work while it waits: the other commands need a
// leader, and this server has none to ask until it is a member.
func join(ctx context.Context, server *exraft.Server, seeds []string, lines <-chan string) (joined bool) {
	at := strings.Join(seeds, ", ")
	fmt.Printf("asking the cluster at %s to add %s (type quit to give up)\n", at, server.Name())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends an attempt still under way when the user quits

	first := 0
	attempt := func() <-chan error {
		done := make(chan error, 1)
		start := first
		first = (first + 1) % len(seeds)
		go func() {
			errs := make([]error, len(seeds))
			for i := range seeds {
				n := (start + i) % len(seeds)
				actx, acancel := context.WithTimeout(ctx, joinAttemptTimeout)
				errs[n] = addSelf(actx, seeds[n], server.Peer())
				acancel()
				if errs[n] == nil || ctx.Err() != nil {
					done <- errs[n]
					return
				}
			}
			done <- &joinError{seeds: seeds, errs: errs}
		}()
		return done
	}
	pending := attempt()
	var retry <-chan time.Time
	delay := joinRetryMin
	var lastReport string
	var lastReportAt time.Time
	for {
		select {
		case <-ctx.Done():
			fmt.Println()
			return false

		case err := <-pending:
			pending = nil
			if err == nil {
				fmt.Printf("%s is a member of the cluster\n", server.Name())
				return true
			}
			report := fmt.Sprintf("waiting to be added by the cluster: %s", explainJoin(err))
			if report != lastReport || time.Since(lastReportAt) >= joinReportEvery {
				fmt.Println(report)
				lastReport, lastReportAt = report, time.Now()
			}
			retry = time.After(delay)
			delay = min(2*delay, joinRetryMax)

		case <-retry:
			retry = nil
			pending = attempt()

		case line, ok := <-lines:
			if !ok {
				// Stdin ended: keep waiting, and serve once added, as the
				// command line does in the background.
				lines = nil
				continue
			}
			switch words := strings.Fields(line); {
			case len(words) == 0:
			case words[0] == "quit" || words[0] == "exit":
				return false
			case words[0] == "status":
				printStatus("", server.Status())
			default:
				fmt.Printf("%s is not a member yet: it waits to be added by the cluster at %s. Meanwhile: status | quit\n", server.Name(), at)
			}
		}
	}
}

// joinError is a join attempt that every seed refused: what each said.
type joinError struct {
	seeds []string
	errs  []error
}

func (e *joinError) Error() string { return e.explain(func(err error) string { return err.Error() }) }

// explain says what the seeds said, in their order, seeds that said the same
// thing together.
func (e *joinError) explain(say func(error) string) string {
	var said []string
	at := map[string][]string{}
	for i, err := range e.errs {
		s := say(err)
		if _, ok := at[s]; !ok {
			said = append(said, s)
		}
		at[s] = append(at[s], e.seeds[i])
	}
	if len(e.seeds) == 1 {
		return said[0]
	}
	parts := make([]string, len(said))
	for i, s := range said {
		parts[i] = strings.Join(at[s], ", ") + ": " + s
	}
	return strings.Join(parts, "; ")
}

// addSelf asks the server at addr to add self, following redirects to the
// leader. Unlike onLeader it does not wait for a leader to be elected: the
// caller retries anyway, and says meanwhile what stands in the way.
func addSelf(ctx context.Context, addr string, self exraft.Peer) error {
	const maxHops = 5
	for hop := 0; ; hop++ {
		err := exraft.AddServer(ctx, addr, self)
		var redirect *exraft.RedirectError
		if hop == maxHops || !errors.As(err, &redirect) {
			return err
		}
		addr = redirect.Leader.Addr
	}
}

// explainJoin turns the errors a join commonly meets into what they mean for
// the user; the rest speak for themselves.
func explainJoin(err error) string {
	var all *joinError
	switch {
	case errors.As(err, &all):
		return all.explain(explainJoin)
	case errors.Is(err, exraft.ErrNoLeader):
		return "no leader is known there. An election may be under way (it takes a second or so); if this lasts, the cluster has lost most of its members for good (nothing is on disk, and a restarted member cannot vote until a leader lets it back in), and only a new cluster gets going again"
	case errors.Is(err, exraft.ErrUnauthorized):
		return err.Error() + " (-cluster and KV_SECRET must be the same on every server)"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%v (gave up on this request after %v; asking again)", err, joinAttemptTimeout)
	}
	return err.Error()
}

// repl reads commands until "quit" or an interrupt. When stdin ends, the
// server keeps serving until it is interrupted, so it can also run in the
// background.
func repl(interrupted context.Context, server *exraft.Server, session *exraft.Session, lines <-chan string) error {
	fmt.Println(replHelp)
	for {
		fmt.Print("> ")
		var line string
		var ok bool
		select {
		case <-interrupted.Done():
			fmt.Println()
			return nil
		case line, ok = <-lines:
		}
		if !ok {
			fmt.Println("\n(stdin closed; serving until interrupted)")
			lines = nil // a nil channel blocks: wait for the interrupt
			continue
		}
		if quit := runCommand(server, session, strings.TrimSpace(line)); quit {
			return nil
		}
	}
}

// runCommand runs one command line and reports whether it was "quit".
func runCommand(server *exraft.Server, session *exraft.Session, line string) (quit bool) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()

	words := strings.Fields(line)
	if len(words) == 0 {
		return false
	}
	switch words[0] {
	case "quit", "exit":
		return true

	case "set":
		if len(words) < 3 {
			fmt.Println("usage: set <key> <value>")
			break
		}
		// The value is the rest of the line after the key, spaces included.
		key := words[1]
		_, value, _ := strings.Cut(strings.TrimSpace(line[len("set"):]), key)
		write(ctx, session, "set "+key+" "+strings.TrimSpace(value))

	case "del":
		if len(words) != 2 {
			fmt.Println("usage: del <key>")
			break
		}
		write(ctx, session, "delete "+words[1])

	case "get":
		if len(words) != 2 {
			fmt.Println("usage: get <key>")
			break
		}
		value, err := session.Read(ctx, []byte("get "+words[1]))
		switch {
		case err != nil:
			fmt.Println("error:", err)
		case len(value) == 0:
			fmt.Println("(not found)")
		default:
			fmt.Println(string(value))
		}

	case "status":
		printStatus("", server.Status())

	case "help":
		fmt.Println(replHelp)

	default:
		fmt.Printf("unknown command %q; %s\n", words[0], replHelp)
	}
	return false
}

// write applies a command on the cluster, once, and prints the state
// machine's answer.
func write(ctx context.Context, session *exraft.Session, command string) {
	result, err := session.Write(ctx, []byte(command))
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// The Session retried until the deadline: the cluster has had no
		// leader, or none it could reach, all that time.
		fmt.Println("error: timed out; the write was applied once or not at all (it may still be, once):", err)
	case errors.Is(err, exraft.ErrSessionExpired):
		fmt.Println("error: the cluster forgot this session while the write's outcome was unknown; it was applied once or not at all")
	case err != nil:
		fmt.Println("error:", err)
	default:
		fmt.Println(string(result))
	}
}

// parseSeeds parses "host:port,host:port,...".
func parseSeeds(list string) ([]string, error) {
	var seeds []string
	for _, addr := range strings.Split(list, ",") {
		addr = strings.TrimSpace(addr)
		if _, _, err := net.SplitHostPort(addr); err != nil || addr == "" {
			return nil, fmt.Errorf("-join: %q is not host:port", addr)
		}
		if slices.Contains(seeds, addr) {
			return nil, fmt.Errorf("-join: %q is listed twice", addr)
		}
		seeds = append(seeds, addr)
	}
	return seeds, nil
}

// parsePeers parses "name=host:port,name=host:port,...".
func parsePeers(list string) ([]exraft.Peer, error) {
	var peers []exraft.Peer
	for _, item := range strings.Split(list, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not name=host:port", item)
		}
		if _, dup := findPeer(peers, name); dup {
			return nil, fmt.Errorf("-peers: %q is listed twice", name)
		}
		peers = append(peers, exraft.Peer{Name: name, Addr: addr})
	}
	return peers, nil
}

func findPeer(peers []exraft.Peer, name string) (exraft.Peer, bool) {
	for _, p := range peers {
		if p.Name == name {
			return p, true
		}
	}
	return exraft.Peer{}, false
}
