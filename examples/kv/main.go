// Command kv is a replicated key-value store built on exraft.
//
// Run with no flags, it starts a three-server cluster inside this process and
// walks through the life of a cluster step by step: bootstrap, snapshots,
// adding a server (caught up from a snapshot), writing through the leader,
// following a redirect, losing the leader and electing a new one, and reading
// the data back:
//
//	go run ./examples/kv
//
// Run with flags, it is one server of a cluster, with a small command line on
// stdin (set, get, del, status, quit). Three terminals make a cluster, each
// server given the same -join list of all three addresses, in any order:
//
//	go run ./examples/kv -name a -listen 127.0.0.1:7001 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//	go run ./examples/kv -name b -listen 127.0.0.1:7002 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//	go run ./examples/kv -name c -listen 127.0.0.1:7003 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//
// The first server in the list starts the cluster, unless another one in the
// list belongs to a cluster already; the others wait until the cluster adds
// them. Or, bootstrapping all three at once:
//
//	go run ./examples/kv -name a -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
//	go run ./examples/kv -name b -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
//	go run ./examples/kv -name c -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
//
// Any server of either layout, restarted with the same flags, rejoins its
// cluster while the cluster has a majority running: the first server of the
// -join layout finds the others in a cluster and asks to be added back
// instead of starting a new one. kv -h says more.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/exraft/exraft"
)

func main() {
	var opts nodeOptions
	flag.StringVar(&opts.name, "name", "", "this server's `name`, unique in the cluster")
	flag.StringVar(&opts.listen, "listen", "", "`host:port` to listen on and to be dialed at\n(default: this server's address in -peers, else 127.0.0.1:0)")
	flag.StringVar(&opts.peers, "peers", "", "bootstrap a cluster of these servers, this one included:\ncomma-separated `name=host:port` pairs")
	flag.StringVar(&opts.join, "join", "", "the servers of the cluster to join: comma-separated `host:port` addresses,\n"+
		"this server's own (as in -listen) included. The first in the list starts a\n"+
		"new cluster, unless another one in the list belongs to a cluster already;\n"+
		"every other server waits, asking the others again and again, until the\n"+
		"cluster adds it. A single address that is not this server's: join the\n"+
		"cluster of the server there, never start one")
	flag.StringVar(&opts.cluster, "cluster", "", "the cluster's `ID`: servers and clients of another ID are refused.\nSet KV_SECRET in the environment to require a shared secret as well")
	flag.BoolVar(&opts.verbose, "v", false, "log protocol events to stderr")
	flag.StringVar(&opts.metrics, "metrics", "", "serve this server's metrics for Prometheus at http://`host:port`/metrics")
	flag.Usage = usage
	flag.Parse()

	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kv: unexpected argument %q\n\n", flag.Arg(0))
		usage()
		os.Exit(2)
	}

	var err error
	if flag.NFlag() == 0 {
		err = runDemo()
	} else {
		err = runNode(opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kv: error:", err)
		os.Exit(1)
	}
}

func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprint(out, `kv is a replicated key-value store built on exraft.

Usage:
  kv                                run a three-server cluster in this process
                                    and show what it does, step by step
  kv -name N -listen ADDR -join LIST
                                    start one server of the cluster of the
                                    servers at LIST (ADDR among them): the
                                    first in LIST starts it, unless another in
                                    LIST belongs to a cluster already; the
                                    others wait until the cluster adds them
  kv -name N -listen ADDR -join A   start a server and wait until the cluster
                                    that the server at A belongs to adds it
  kv -name N -peers LIST            start one server of a bootstrap cluster
  kv -name N [-listen ADDR]         start a new one-server cluster that others
                                    can join

A three-server cluster, one command per terminal (from the repository root;
a built kv binary takes the same flags). Either give each server the same
-join list, its own address included, and start them in any order:

  go run ./examples/kv -name a -listen 127.0.0.1:7001 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  go run ./examples/kv -name b -listen 127.0.0.1:7002 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  go run ./examples/kv -name c -listen 127.0.0.1:7003 -join 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003

a, first in the list, asks b and c whether they belong to a cluster; on a
first start neither does (a server waiting to be added does not count, and
nor does one not running yet), so a starts a new cluster of one, and adds b
and c as they ask.

Or name all three from the start; there is no leader until all three run:

  go run ./examples/kv -name a -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
  go run ./examples/kv -name b -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003
  go run ./examples/kv -name c -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003

Restarting a server. Nothing is kept on disk: a server that stops loses its
copy of the data, and a restarted one starts empty and gets a new copy from
the cluster's leader, if the cluster has one. Restart it with the same flags,
-listen address included: the cluster knows it by name and address.
  - A -join server rejoins. One that is not first in -join never elects
    itself: it asks the other servers in -join to add it back, again and
    again, saying what it waits for, until it is added or you type quit.
  - The first server in -join asks the others whether they belong to a
    cluster (up to 3s each, all at once). If one does, it rejoins as above.
    If none does, it starts a new, empty cluster: what it must do on a first
    start, and what it does when restarted while all the others are down or
    do not answer. With all three down, the data is gone anyway; but if the
    others were only stopped (Ctrl-Z) or cut off, they keep the old cluster
    going when they come back, and the new one is a second cluster beside it:
    restart it only while another server of its cluster runs and answers.
  - A -peers server rejoins: the leader sees it come back and lets it in.
  - A server with neither -join nor -peers starts a new, empty cluster every
    time it starts, restarts included: with the same flags, it would lead a
    second cluster of its own beside the first. To bring it back, have it
    join a server that is still in the cluster:
      go run ./examples/kv -name a -listen 127.0.0.1:7001 -join 127.0.0.1:7002
  - A cluster lets servers back in only while it has a leader, which takes
    a majority of its members running: in a cluster of three, one server at
    a time may be down or rejoining. Lose more and the cluster cannot
    recover; start a new one.

A server started with flags reads commands from stdin:
  set <key> <value>   write a value (through the leader)
  get <key>           read a value (linearizable, from the leader)
  del <key>           delete a key
  status              print this server's view of the cluster
  help                list the commands
  quit                stop this server and exit

Flags:
`)
	flag.PrintDefaults()
}

// printStatus prints one server's view of the cluster on one line.
func printStatus(indent string, st exraft.Status) {
	leader := st.Leader.Name
	if leader == "" {
		leader = "(none)"
	}
	fmt.Printf("%s%-6s %-9s term %d  commit %d  applied %d  leader %s  members [%s]",
		indent, st.Name, st.Role, st.Term, st.CommitIndex, st.AppliedIndex, leader, peerNames(st.Members))
	if len(st.Learners) > 0 {
		fmt.Printf("  catching up [%s]", peerNames(st.Learners))
	}
	fmt.Println()
}

func peerNames(peers []exraft.Peer) string {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.Name
	}
	return strings.Join(names, " ")
}
