package testkit

import "github.com/exraft/exraft"

// Net returns the network the servers dial through, nil if none.
func (c *Cluster) Net() *Net { return c.opts.Net }

// Names returns the names of the servers: raft1..raftN.
func (c *Cluster) Names() []string { return append([]string(nil), c.order...) }

// Peer returns name's Peer, the same across its incarnations.
func (c *Cluster) Peer(name string) exraft.Peer {
	return exraft.Peer{Name: name, Addr: c.node(name).addr}
}

// Addr returns name's address, the same across its incarnations.
func (c *Cluster) Addr(name string) string { return c.node(name).addr }

// Server returns the current incarnation of name, stopped or not.
func (c *Cluster) Server(name string) *exraft.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).srv
}

// Servers returns the current incarnations of names, or of every server
// when no name is given, stopped or not.
func (c *Cluster) Servers(names ...string) []*exraft.Server {
	if len(names) == 0 {
		names = c.order
	}
	out := make([]*exraft.Server, len(names))
	for i, name := range names {
		out[i] = c.Server(name)
	}
	return out
}

// Live returns the servers that run, in order.
func (c *Cluster) Live() []*exraft.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*exraft.Server
	for _, name := range c.order {
		if nd := c.nodes[name]; !nd.down {
			out = append(out, nd.srv)
		}
	}
	return out
}

// Others returns the live servers other than s, in the cluster's order:
// the followers, when s leads.
func (c *Cluster) Others(s *exraft.Server) []*exraft.Server {
	var out []*exraft.Server
	for _, o := range c.Live() {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

// KV returns the KV of name's current incarnation.
func (c *Cluster) KV(name string) *KV {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).kv
}

// IsDown reports whether name was stopped and not started again.
func (c *Cluster) IsDown(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node(name).down
}
