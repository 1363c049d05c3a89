package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/exraft/exraft"
)

// cluster is the servers of one round, their proxies and, as root on Linux,
// their namespaces. listen[i] is where server i listens (what the harness
// calls, outside any fault); addrs[i] its proxy, where peers and clients
// reach it.
type cluster struct {
	names  []string
	listen []string
	addrs  []string
	net    *netns // nil on loopback
	px     *proxies
	procs  []*proc
	dir    string // logs, and what a failed check leaves
	ctl    *exraft.Client
	logf   func(format string, args ...any)

	mu         sync.Mutex
	deaths     []string // exits the nemesis did not cause
	statusErrs []error  // why each server did not answer the last status call
}

// clusterSpec says what to start.
type clusterSpec struct {
	servers             int
	netns               bool
	bin, dir            string
	threshold, trailing int
	logf                func(format string, args ...any)
}

// startCluster starts every server and waits for a healthy cluster; stop
// undoes whatever it did, also when it fails.
func startCluster(spec clusterSpec) (c *cluster, err error) {
	c = &cluster{dir: spec.dir, px: newProxies(), ctl: &exraft.Client{IOTimeout: time.Second}, logf: spec.logf}
	for i := range spec.servers {
		c.names = append(c.names, string(rune('a'+i)))
	}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if err := c.network(spec.netns); err != nil {
		return c, err
	}
	var peers []string
	for i, name := range c.names {
		peers = append(peers, name+"="+c.addrs[i])
	}
	for i := range c.names {
		if err := c.addProc(i, spec, strings.Join(peers, ",")); err != nil {
			return c, err
		}
	}
	for _, p := range c.procs {
		if err := p.start(30 * time.Second); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.awaitHealthy(ctx)
	return c, err
}

// network makes the namespaces (or picks loopback ports) and the proxies.
func (c *cluster) network(useNetns bool) error {
	if useNetns {
		c.net = newNetns(c.names)
		if err := c.net.create(); err != nil {
			c.net = nil
			return err
		}
	}
	for i, name := range c.names {
		listen, proxyAt := "", "127.0.0.1:0"
		if c.net != nil {
			listen, proxyAt = c.net.serverIP(i)+":7000", c.net.proxyIP(i)+":7000"
		} else {
			var err error
			if listen, err = freeLoopbackAddr(); err != nil {
				return err
			}
		}
		if err := c.px.add(name, proxyAt, listen); err != nil {
			return err
		}
		c.listen = append(c.listen, listen)
		c.addrs = append(c.addrs, c.px.addr(i))
	}
	return nil
}

func (c *cluster) addProc(i int, spec clusterSpec, peers string) error {
	f, err := os.Create(filepath.Join(spec.dir, c.names[i]+".log"))
	if err != nil {
		return err
	}
	argv := []string{spec.bin, "-name", c.names[i], "-listen", c.listen[i], "-peers", peers,
		"-snapshot-threshold", fmt.Sprint(spec.threshold), "-trailing-logs", fmt.Sprint(spec.trailing)}
	c.procs = append(c.procs, &proc{
		name:    c.names[i],
		logFile: f,
		died:    c.recordDeath,
		argv: func() *exec.Cmd {
			if c.net != nil {
				return c.net.command(i, argv...)
			}
			return exec.Command(argv[0], argv[1:]...)
		},
	})
	return nil
}

func (c *cluster) recordDeath(msg string) {
	c.logf("%s", msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deaths = append(c.deaths, msg)
}

// unexpectedDeaths lists the exits nobody asked for.
func (c *cluster) unexpectedDeaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.deaths...)
}

// stop kills every server, closes the proxies, removes the namespaces and
// the control client's connections. Safe to call on a half-started cluster.
func (c *cluster) stop() {
	for _, p := range c.procs {
		p.kill() // SIGKILL ends a stopped process too
		_ = p.logFile.Close()
	}
	c.px.stop()
	if c.net != nil {
		c.net.remove()
	}
	_ = c.ctl.Close()
}

// freeLoopbackAddr picks a port nothing listens on. Another process could
// take it before the server does; the server then fails to start, and the
// round says so.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
