// Command node is one server of the chaos suite's cluster: a kv state
// machine with snapshots behind exraft's public API, and nothing else, so
// that the suite tests what a user's program would run. The suite starts
// one per OS process, kills, freezes and restarts it with the same flags.
//
//	node -name a -listen 10.0.0.11:7000 -peers a=10.0.0.101:7000,b=...
//
// -listen is where it listens; its own entry in -peers is the address the
// others dial (a proxy in front of it), which is also the one it reports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/exraft/exraft"
)

func main() {
	name := flag.String("name", "", "this server's name")
	listen := flag.String("listen", "", "host:port to listen on")
	peers := flag.String("peers", "", "the bootstrap cluster: name=host:port,... (this server's entry is the address peers dial)")
	threshold := flag.Int("snapshot-threshold", 0, "Config.SnapshotThreshold (0: the default)")
	trailing := flag.Int("trailing-logs", 0, "Config.TrailingLogs (0: the default)")
	flag.Parse()
	if err := run(*name, *listen, *peers, *threshold, *trailing); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func run(name, listen, peerList string, threshold, trailing int) error {
	peers, err := parsePeers(peerList)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := exraft.StartServer(newKV(), exraft.Config{
		Name:              name,
		Addr:              listen,
		InitialConfig:     peers,
		Logger:            logger,
		SnapshotThreshold: threshold,
		TrailingLogs:      trailing,
	})
	if err != nil {
		return err
	}
	// The suite waits for this line before it counts the server as up.
	fmt.Printf("serving %s at %s\n", name, s.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	done := make(chan error, 1)
	go func() { done <- s.Stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("Stop did not return within 10s")
	}
}

func parsePeers(list string) ([]exraft.Peer, error) {
	var peers []exraft.Peer
	for _, item := range strings.Split(list, ",") {
		name, addr, ok := strings.Cut(item, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not name=host:port", item)
		}
		peers = append(peers, exraft.Peer{Name: name, Addr: addr})
	}
	return peers, nil
}
