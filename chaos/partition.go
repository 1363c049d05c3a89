package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// A split says, for each pair of servers, whether they can talk; the
// harness and the clients, outside the namespaces, reach everyone.
type split func(n *nemesis, ctx context.Context) (cut func(i, j int) bool, what string)

// isolateLeader: the leader alone, the rest together.
func isolateLeader(n *nemesis, ctx context.Context) (func(i, j int) bool, string) {
	l := n.pick(ctx, true)
	return func(i, j int) bool { return i == l || j == l }, "the leader " + n.c.names[l] + " alone"
}

// majorityMinority: a random minority apart from the majority.
func majorityMinority(n *nemesis, _ context.Context) (func(i, j int) bool, string) {
	perm := n.rng.Perm(len(n.c.names))
	minority := map[int]bool{}
	for _, i := range perm[:len(perm)/2] {
		minority[i] = true
	}
	return func(i, j int) bool { return minority[i] != minority[j] }, "minority " + n.names(minority) + " apart"
}

// bridge: two halves that cannot talk, and one server that talks to both.
func bridge(n *nemesis, _ context.Context) (func(i, j int) bool, string) {
	perm := n.rng.Perm(len(n.c.names))
	b := perm[0]
	left := map[int]bool{}
	for _, i := range perm[1 : 1+(len(perm)-1)/2] {
		left[i] = true
	}
	cut := func(i, j int) bool { return i != b && j != b && left[i] != left[j] }
	return cut, fmt.Sprintf("halves %s | rest, bridged by %s", n.names(left), n.c.names[b])
}

// partition cuts the links a split says, silently, holds, and heals.
func (n *nemesis) partition(ctx context.Context, s split) (string, error) {
	cut, what := s(n, ctx)
	defer func() { _ = n.c.net.healAll() }()
	for i := range n.c.names {
		for j := range n.c.names {
			if i != j && cut(i, j) {
				if err := n.c.net.cut(i, j); err != nil {
					return "", err
				}
			}
		}
	}
	d := n.pace.hold(n.rng)
	sleepCtx(ctx, d)
	return fmt.Sprintf("partition: %s, for %v", what, d.Round(time.Millisecond)), nil
}

func (n *nemesis) names(set map[int]bool) string {
	var out []string
	for i, name := range n.c.names {
		if set[i] {
			out = append(out, name)
		}
	}
	return "{" + strings.Join(out, ",") + "}"
}
