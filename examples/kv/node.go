package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/exraft/exraft"
)

const replHelp = "commands: set <key> <value> | get <key> | del <key> | status | help | quit"

// callTimeout bounds every call the command line makes.
const callTimeout = 10 * time.Second

// joinTimeout bounds joining a cluster: the leader catches the new server up
// before it becomes a voter.
const joinTimeout = 30 * time.Second

type nodeOptions struct {
	name    string
	listen  string
	peers   string // name=host:port,...
	join    string // host:port of a member
	cluster string // ClusterID
	verbose bool
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

	// The secret comes from the environment, not a flag, so that it does
	// not show in the process list.
	secret := []byte(os.Getenv("KV_SECRET"))
	cfg := exraft.Config{Name: opts.name, Addr: opts.listen, ClusterID: opts.cluster, Secret: secret}
	// The command line calls servers through the package functions.
	exraft.DefaultClient.ClusterID, exraft.DefaultClient.Secret = opts.cluster, secret
	if opts.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	switch {
	case opts.peers != "":
		// One server of a bootstrap cluster: the servers named in -peers
		// elect a leader once a majority of them runs.
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
	case opts.join != "":
		// A server that waits to be added: with MinMajority 2 it never elects
		// itself, so it cannot start a rival cluster of one.
		cfg.MinMajority = 2
	default:
		// Neither: a cluster of one, which leads at once and which other
		// servers can -join.
	}

	server, err := exraft.StartServer(newStore(), cfg)
	if err != nil {
		return err
	}
	defer server.Stop()
	fmt.Printf("%s serves at %s\n", server.Name(), server.Addr())

	if opts.join != "" {
		fmt.Printf("asking %s to add %s to its cluster...\n", opts.join, server.Name())
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		_, err := onLeader(ctx, opts.join, func(ctx context.Context, addr string) ([]byte, error) {
			return nil, exraft.AddServer(ctx, addr, server.Peer())
		})
		cancel()
		if err != nil {
			return fmt.Errorf("join %s: %w", opts.join, err)
		}
		fmt.Printf("%s is a member of the cluster\n", server.Name())
	}

	return repl(server)
}

// repl reads commands from stdin until "quit" or an interrupt. When stdin
// ends, the server keeps serving until it is interrupted, so it can also run
// in the background.
func repl(server *exraft.Server) error {
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()

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
		if quit := runCommand(server, strings.TrimSpace(line)); quit {
			return nil
		}
	}
}

// runCommand runs one command line and reports whether it was "quit".
func runCommand(server *exraft.Server, line string) (quit bool) {
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
		write(ctx, server, "set "+key+" "+strings.TrimSpace(value))

	case "del":
		if len(words) != 2 {
			fmt.Println("usage: del <key>")
			break
		}
		write(ctx, server, "delete "+words[1])

	case "get":
		if len(words) != 2 {
			fmt.Println("usage: get <key>")
			break
		}
		value, err := onLeader(ctx, server.Addr(), func(ctx context.Context, addr string) ([]byte, error) {
			return exraft.Read(ctx, addr, []byte("get "+words[1]))
		})
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

// write sends a command to the leader and prints the state machine's answer.
func write(ctx context.Context, server *exraft.Server, command string) {
	result, err := onLeader(ctx, server.Addr(), func(ctx context.Context, addr string) ([]byte, error) {
		return exraft.Write(ctx, addr, []byte(command))
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// The command may still commit: a timeout says nothing either way.
		fmt.Println("error: timed out; the write may or may not have been applied")
	case errors.Is(err, exraft.ErrLeadershipLost):
		fmt.Println("error: the leader changed; the write may or may not have been applied")
	case err != nil:
		fmt.Println("error:", err)
	default:
		fmt.Println(string(result))
	}
}

// onLeader makes a call that only the leader serves, starting at the server
// at addr: a *RedirectError names the leader to retry at, and ErrNoLeader
// means an election is under way, so it waits for the outcome. Every call
// goes through the package-level functions, which reach any server by its
// address, this process's own included.
func onLeader(ctx context.Context, addr string, call func(ctx context.Context, addr string) ([]byte, error)) ([]byte, error) {
	const maxHops = 5 // leadership may move while we chase it, but not forever
	for hop := 0; ; hop++ {
		result, err := call(ctx, addr)
		if err == nil || !errors.Is(err, exraft.ErrNotLeader) || hop == maxHops {
			return result, err
		}
		var redirect *exraft.RedirectError
		if errors.As(err, &redirect) {
			addr = redirect.Leader.Addr
			continue
		}
		// ErrNoLeader: ask the same server to tell us when it knows one.
		leader, err := exraft.AwaitLeader(ctx, addr)
		if err != nil {
			return nil, err
		}
		addr = leader.Addr
	}
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
