// Command queue is a replicated FIFO queue built on exraft: three servers in
// one process, a few items pushed through the leader and popped again.
//
//	go run ./examples/queue
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/exraft/exraft"
)

// queue is the replicated state machine: a FIFO of strings.
//
//	push <item>   command: appends the item, answers the new length
//	pop           command: removes the oldest item and answers it ("" if empty)
//	len           query: answers the number of items
//
// Pop is a command, not a query: it changes the queue, so it must go through
// the log to happen on every server.
type queue struct {
	items []string
}

func (q *queue) Apply(command []byte) []byte {
	op, arg, _ := strings.Cut(string(command), " ")
	switch op {
	case "push":
		q.items = append(q.items, arg)
		return []byte(strconv.Itoa(len(q.items)))
	case "pop":
		if len(q.items) == 0 {
			return nil
		}
		item := q.items[0]
		q.items = q.items[1:]
		return []byte(item)
	}
	return nil
}

func (q *queue) Query(query []byte) []byte {
	if string(query) == "len" {
		return []byte(strconv.Itoa(len(q.items)))
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "queue: error:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Three listeners first, so that the bootstrap configuration can name
	// every server's address.
	names := []string{"q1", "q2", "q3"}
	var listeners []net.Listener
	var peers []exraft.Peer
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		listeners = append(listeners, ln)
		peers = append(peers, exraft.Peer{Name: name, Addr: ln.Addr().String()})
	}

	servers := make(map[string]*exraft.Server)
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for i, p := range peers {
		s, err := exraft.StartServer(&queue{}, exraft.Config{
			Name:          p.Name,
			Listener:      listeners[i],
			InitialConfig: peers,
		})
		if err != nil {
			return fmt.Errorf("start %s: %w", p.Name, err)
		}
		servers[p.Name] = s
	}

	leaderPeer, err := servers["q1"].AwaitLeader(ctx)
	if err != nil {
		return fmt.Errorf("await leader: %w", err)
	}
	leader := servers[leaderPeer.Name]
	show("leader", leaderPeer.String())

	for _, item := range []string{"first", "second", "third"} {
		n, err := leader.Write(ctx, []byte("push "+item))
		if err != nil {
			return fmt.Errorf("push %s: %w", item, err)
		}
		show("push "+item, "length "+string(n))
	}

	n, err := leader.Read(ctx, []byte("len"))
	if err != nil {
		return fmt.Errorf("len: %w", err)
	}
	show("len", string(n))

	// A follower refuses writes and names the leader. Writes commit once a
	// majority has them, so a follower may not have heard from the leader
	// yet (it would answer ErrNoLeader): wait until it knows the leader.
	follower := names[0]
	if follower == leaderPeer.Name {
		follower = names[1]
	}
	if _, err := servers[follower].AwaitLeader(ctx); err != nil {
		return fmt.Errorf("await leader on %s: %w", follower, err)
	}
	_, err = servers[follower].Write(ctx, []byte("pop"))
	var redirect *exraft.RedirectError
	if !errors.As(err, &redirect) {
		return fmt.Errorf("pop on follower %s: want a redirect, got %v", follower, err)
	}
	show("pop on "+follower, "redirected to "+redirect.Leader.Name)

	for range 3 {
		item, err := leader.Write(ctx, []byte("pop"))
		if err != nil {
			return fmt.Errorf("pop: %w", err)
		}
		show("pop", string(item))
	}

	n, err = leader.Read(ctx, []byte("len"))
	if err != nil {
		return fmt.Errorf("len: %w", err)
	}
	show("len", string(n))

	// Every server applied the same commands in the same order. ReadDirty
	// answers from a server's own copy; a follower learns of the latest
	// commits with the next heartbeat, so wait until its copy has caught up.
	for _, name := range names {
		s := servers[name]
		if err := awaitApplied(ctx, s, leader.Status().CommitIndex); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		n, err := s.ReadDirty(ctx, []byte("len"))
		if err != nil {
			return fmt.Errorf("len on %s: %w", name, err)
		}
		show("len on "+name, string(n)+" (ReadDirty: its own copy)")
	}

	for _, name := range names {
		if err := servers[name].Stop(); err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
		delete(servers, name)
	}
	show("stop", "all three servers stopped")
	return nil
}

// show prints one operation and its outcome.
func show(op, outcome string) {
	fmt.Printf("%-12s -> %s\n", op, outcome)
}

// awaitApplied waits until s has applied every entry up to index.
func awaitApplied(ctx context.Context, s *exraft.Server, index uint64) error {
	for s.Status().AppliedIndex < index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
