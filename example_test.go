package exraft_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
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
