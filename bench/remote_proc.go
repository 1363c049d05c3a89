package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/exraft/exraft"
)

// The remote mode's clients in another process: the same Client and
// Session writes, made by a process of their own, as a program that uses
// the cluster runs beside it. The round's process starts one such client
// process and has it take its turns in the same slices as the ways in
// process, over a pipe: a line asks for a workload, a line answers it.

var procAddrs = flag.String("addrs", "", "internal: with -child remoteclient, the cluster's addresses, the leader's first")

// procClient is a client process, seen from the round's process.
type procClient struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startProcClient(addrs []string) *procClient {
	cmd, in, sc := startPiped("-child", "remoteclient", "-addrs", strings.Join(addrs, ","))
	if !sc.Scan() || sc.Text() != "ready" { // warmed up
		check(fmt.Errorf("the client process did not start: %q %v", sc.Text(), sc.Err()))
	}
	return &procClient{cmd: cmd, in: in, out: sc}
}

// ask sends one request line and returns the answer's fields.
func (p *procClient) ask(format string, args ...any) []string {
	_, err := fmt.Fprintf(p.in, format+"\n", args...)
	check(err)
	if !p.out.Scan() {
		check(fmt.Errorf("the client process ended: %v", p.out.Err()))
	}
	return strings.Fields(p.out.Text())
}

func (p *procClient) stop() {
	p.in.Close()
	check(p.cmd.Wait())
}

// sequential runs n sequential writes of way in the client process.
func (p *procClient) sequential(way string, n int) []time.Duration {
	f := p.ask("seq %s %d", way, n)
	lat := make([]time.Duration, len(f))
	for i, s := range f {
		v, err := strconv.ParseInt(s, 10, 64)
		check(err)
		lat[i] = time.Duration(v)
	}
	return lat
}

// concurrent runs way's writers for d in the client process, and returns
// their latencies and the client process's CPU time.
func (p *procClient) concurrent(way string, writers int, d time.Duration) (histogram, time.Duration) {
	f := p.ask("par %s %d %d", way, writers, int64(d))
	var h histogram
	cpu, err := strconv.ParseInt(f[0], 10, 64)
	check(err)
	for _, kv := range f[1:] {
		i, c, _ := strings.Cut(kv, ":")
		idx, err1 := strconv.Atoi(i)
		n, err2 := strconv.ParseUint(c, 10, 64)
		check(err1)
		check(err2)
		h.counts[idx] += n
		h.n += int(n)
	}
	return h, time.Duration(cpu)
}

// runProcClientChild serves a round's process: it writes through one
// Client and one Session on it, as asked on stdin.
func runProcClientChild() {
	addrs := strings.Split(*procAddrs, ",")
	c := &exraft.Client{}
	defer c.Close()
	sess := c.NewSession(addrs...)
	ways := map[string]func([]byte) error{
		"Client": withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := c.Write(ctx, addrs[0], cmd)
			return err
		}),
		"Session": withDeadline(func(ctx context.Context, cmd []byte) error {
			_, err := sess.Write(ctx, cmd)
			return err
		}),
	}
	for _, w := range ways {
		warmUp(system{write: w})
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		var nums []int64
		for _, s := range f[min(2, len(f)):] {
			v, err := strconv.ParseInt(s, 10, 64)
			check(err)
			nums = append(nums, v)
		}
		if len(f) < 3 || f[0] == "par" && len(nums) < 2 {
			check(fmt.Errorf("remoteclient: cannot read %q", in.Text()))
		}
		kind, way, a := f[0], f[1], nums[0]
		w, ok := ways[way]
		if !ok {
			check(fmt.Errorf("remoteclient: no way %q", way))
		}
		var line strings.Builder
		switch kind {
		case "seq":
			for i, d := range sequentialLatencies(w, int(a)) {
				if i > 0 {
					line.WriteByte(' ')
				}
				line.WriteString(strconv.FormatInt(int64(d), 10))
			}
		case "par":
			before := sampleCPU()
			h := concurrentHist(w, int(a), time.Duration(nums[1]))
			fmt.Fprint(&line, int64(sampleCPU().self-before.self))
			for i, n := range h.counts {
				if n > 0 {
					fmt.Fprintf(&line, " %d:%d", i, n)
				}
			}
		default:
			check(fmt.Errorf("remoteclient: no workload %q", kind))
		}
		fmt.Println(line.String())
	}
}
