package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Every namespace and link the suite makes carries this prefix and the
// pid of the process that made it, so a later run can tell leftovers (their
// maker is gone) from a run still going, and delete only those.
const (
	nsPrefix   = "exchaos-" // namespaces: exchaos-<pid>-<server>
	linkPrefix = "xc"       // bridge xc<pid>b, host ends of veths xc<pid>v<i>
)

// bogusMAC is where a cut link's packets go: a static neighbour entry
// sends them to a MAC no interface has, so the bridge floods them and
// everyone drops them. Neither end learns anything: a silent partition,
// made with ip alone (no iptables or tc actions needed).
const bogusMAC = "02:00:00:c4:a0:5d"

// netns is the network of one run: a bridge in the root namespace, and per
// server a namespace joined to it by a veth pair. Server i listens at
// serverIP(i) in its namespace; its proxy listens at proxyIP(i), an
// address of the bridge, so that every packet between two servers crosses
// a namespace boundary where a partition can drop it.
type netns struct {
	pid    int
	subnet string // "10.213.N"
	names  []string
	bridge string
}

// netnsUsable says whether this process can make namespaces, and if not,
// why.
func netnsUsable() (bool, string) {
	if os.Getenv("CHAOS_LOOPBACK") != "" {
		return false, "CHAOS_LOOPBACK is set"
	}
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "no ip command"
	}
	// Root in a container may still lack the right to make namespaces or
	// links: try both once, rather than fail the round half-built.
	probe := fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())
	if err := ipCmd("netns", "add", probe); err != nil {
		return false, "cannot make a network namespace: " + err.Error()
	}
	defer ipCmd("netns", "del", probe)
	link := fmt.Sprintf("%s%dp", linkPrefix, os.Getpid())
	if err := ipCmd("link", "add", link, "type", "bridge"); err != nil {
		return false, "cannot make a bridge: " + err.Error()
	}
	ipCmd("link", "del", link)
	return true, ""
}

func newNetns(names []string) *netns {
	pid := os.Getpid()
	return &netns{
		pid:    pid,
		subnet: fmt.Sprintf("10.213.%d", pid%250+1),
		names:  names,
		bridge: fmt.Sprintf("%s%db", linkPrefix, pid),
	}
}

func (n *netns) ns(i int) string         { return fmt.Sprintf("%s%d-%s", nsPrefix, n.pid, n.names[i]) }
func (n *netns) veth(i int) string       { return fmt.Sprintf("%s%dv%d", linkPrefix, n.pid, i) }
func (n *netns) serverIP(i int) string   { return fmt.Sprintf("%s.%d", n.subnet, 11+i) }
func (n *netns) proxyIP(i int) string    { return fmt.Sprintf("%s.%d", n.subnet, 101+i) }
func (n *netns) indexOf(name string) int { return indexOf(n.names, name) }

// create builds the bridge and the namespaces. On error, what was made is
// removed.
func (n *netns) create() (err error) {
	defer func() {
		if err != nil {
			n.remove()
		}
	}()
	if err := ipCmd("link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	steps := [][]string{{"link", "set", n.bridge, "up"}, {"addr", "add", n.subnet + ".1/24", "dev", n.bridge}}
	for i := range n.names {
		steps = append(steps, []string{"addr", "add", n.proxyIP(i) + "/24", "dev", n.bridge})
	}
	for i := range n.names {
		steps = append(steps,
			[]string{"netns", "add", n.ns(i)},
			[]string{"link", "add", n.veth(i), "type", "veth", "peer", "name", "eth0", "netns", n.ns(i)},
			[]string{"link", "set", n.veth(i), "master", n.bridge, "up"},
			[]string{"-n", n.ns(i), "addr", "add", n.serverIP(i) + "/24", "dev", "eth0"},
			[]string{"-n", n.ns(i), "link", "set", "eth0", "up"},
			[]string{"-n", n.ns(i), "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes everything create made; it tries every step, whatever
// fails, and is safe to call twice.
func (n *netns) remove() {
	for i := range n.names {
		_ = ipCmd("netns", "del", n.ns(i)) // takes its end of the veth along
		_ = ipCmd("link", "del", n.veth(i))
	}
	_ = ipCmd("link", "del", n.bridge)
}

// cut makes the traffic from server i to server j's proxy vanish: a
// partition is cut in both directions of each pair it separates.
func (n *netns) cut(i, j int) error {
	return ipCmd("-n", n.ns(i), "neigh", "replace", n.proxyIP(j), "lladdr", bogusMAC, "nud", "permanent", "dev", "eth0")
}

// healAll forgets every cut: the neighbour tables are learned afresh.
func (n *netns) healAll() error {
	for i := range n.names {
		// Permanent entries (the cuts) survive a plain flush.
		if err := ipCmd("-n", n.ns(i), "neigh", "flush", "dev", "eth0", "nud", "all"); err != nil {
			return err
		}
	}
	return nil
}

// command runs argv inside server i's namespace.
func (n *netns) command(i int, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.ns(i)}, argv...)...)
}

// sweepLeftovers deletes the namespaces and links of earlier runs whose
// process is gone (killed before it could clean up), and reports them.
func sweepLeftovers() []string {
	var swept []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if pid, ok := ownerPid(strings.TrimPrefix(name, nsPrefix), name != strings.TrimPrefix(name, nsPrefix), "-"); ok && !alive(pid) {
			if ipCmd("netns", "del", name) == nil {
				swept = append(swept, name)
			}
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		rest := strings.TrimPrefix(name, linkPrefix)
		if pid, ok := ownerPid(rest, rest != name, ""); ok && !alive(pid) {
			if ipCmd("link", "del", name) == nil {
				swept = append(swept, name)
			}
		}
	}
	return swept
}

// ownerPid reads the pid at the start of rest, up to sep ("" for the first
// non-digit), when hasPrefix says the name is one of ours.
func ownerPid(rest string, hasPrefix bool, sep string) (int, bool) {
	if !hasPrefix {
		return 0, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end <= 0 || (sep != "" && !strings.HasPrefix(rest[end:], sep)) {
		return 0, false
	}
	pid, err := strconv.Atoi(rest[:end])
	return pid, err == nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil || pid == os.Getpid()
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}
