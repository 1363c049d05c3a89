package exraft

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/exraft/exraft/internal/wire"
)

// Config configures one server. Only Name is required; the zero value of
// every other field picks a working default.
type Config struct {
	// Name identifies the server; it must be unique in the cluster.
	Name string
	// Addr is the listen address, "127.0.0.1:0" by default. With a port of 0
	// the server picks a free one; Server.Addr reports the address peers dial.
	Addr string
	// Listener, if set, is served instead of listening on Addr. The server
	// closes it when it stops.
	Listener net.Listener
	// Dial, if set, opens connections to peers instead of net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// InitialConfig is the membership a new cluster starts from. This server
	// is always a member, whether it is listed or not. A server started with
	// no InitialConfig and MinMajority >= 2 waits until a leader adds it.
	InitialConfig []Peer
	// MinMajority raises the quorum: quorum = max(voters/2+1, MinMajority).
	// Zero means a plain majority.
	MinMajority int
	// HeartbeatInterval is how often the leader contacts idle followers;
	// 50ms by default. It must be below ElectionTimeoutMin.
	HeartbeatInterval time.Duration
	// ElectionTimeoutMin and ElectionTimeoutMax bound the randomized time a
	// follower waits without hearing from a leader before it campaigns;
	// 150ms and 300ms by default.
	ElectionTimeoutMin time.Duration
	ElectionTimeoutMax time.Duration
	// Logger receives the server's diagnostics; nil discards them.
	Logger *slog.Logger

	// MaxFrameSize bounds one message on the wire, in bytes; 8 MiB by
	// default. A peer or client that sends a larger frame is disconnected.
	MaxFrameSize int
	// DisableAutoRejoin stops the leader from re-admitting, on its own, a
	// member that comes back as a new incarnation (restarted with an empty
	// log). AddServer of the same name and address still re-admits it.
	DisableAutoRejoin bool

	// TLS, if set, makes the server accept and dial peers over TLS with this
	// configuration. For mutual TLS, give it Certificates (presented to
	// peers both when accepting and when dialing), RootCAs and ClientCAs,
	// and set ClientAuth to tls.RequireAndVerifyClientCert. When ServerName
	// is empty, a dial verifies the host part of the peer's address.
	TLS *tls.Config
	// ClusterID names the cluster. Every connection, from a peer or a
	// client, must present the same ClusterID or it is refused, and both
	// ends log why. It guards against mistakes (two clusters on one
	// network), not attackers: it is not secret. At most 255 bytes.
	ClusterID string
	// Secret, if set, must be known to every peer and client. Each end of a
	// connection proves it knows the Secret without sending it (an HMAC
	// over fresh nonces), so a connection from anyone else is refused. It
	// does not encrypt anything: use TLS for that.
	Secret []byte

	// MaxCommandSize bounds a Write's command, in bytes; 1 MiB by default,
	// and at most MaxFrameSize-1024. A larger command fails with an error
	// matching ErrTooLarge and nothing is appended.
	MaxCommandSize int
	// MaxConns bounds the connections the server serves at once, from
	// peers and clients together; 1024 by default. Connections beyond it
	// are closed as soon as they are accepted.
	MaxConns int
	// MaxConnsPerHost bounds the connections from one remote IP address;
	// 256 by default. Beyond it a connection is refused in the handshake,
	// with an error matching ErrUnauthorized that says why.
	MaxConnsPerHost int
	// MaxPendingCalls bounds the client calls (Write, Read, AddServer...)
	// the server runs at once, over all connections; 4096 by default. When
	// it is reached the server stops reading calls from clients until one
	// finishes, so a flood of calls queues in TCP instead of in memory.
	// Traffic between peers is not counted, so the cluster keeps working.
	MaxPendingCalls int
	// IOTimeout bounds the handshake of a connection the server accepts,
	// any one write, the arrival of the rest of a frame once it has begun,
	// and the wait for a peer's answer; 10s by default. A connection that
	// exceeds it is closed, so a peer that stops reading or sends half a
	// frame cannot hold the server's resources. Dialing a peer, handshake
	// included, is bounded more tightly, by twice ElectionTimeoutMax (at
	// least 500ms, at most IOTimeout): while it dials, the peer gets no
	// messages. Raise the election timeouts for links with round trips
	// near 100ms.
	IOTimeout time.Duration

	// SnapshotThreshold is how many entries a server applies between two
	// snapshots on average: each server spreads its snapshot points by up
	// to a quarter of it either way, by a hash of its name, so that the
	// servers of a cluster do not all take one at once (docs/design.md
	// §9). TrailingLogs is how many entries before its latest
	// snapshot it keeps, so that a follower that lags by fewer is caught
	// up from the log rather than sent the whole state. Zero picks the
	// defaults, 16384 and 4096 (see defaultSnapshotThreshold). Both are
	// ignored unless the state machine is a Snapshotter, so that one
	// Config can serve state machines of either kind.
	SnapshotThreshold int
	TrailingLogs      int

	// SessionTimeout is how long a client Session may stay idle before the
	// cluster forgets it, judged by the clock of the leaders that append
	// its entries; 10 minutes by default. MaxSessions bounds the sessions
	// the cluster keeps: registering one more forgets the least recently
	// used; 65536 by default. The leader that registers a session writes
	// both values into the log, so every server applies the same ones.
	SessionTimeout time.Duration
	MaxSessions    int
}

const (
	defaultMaxCommandSize     = 1 << 20
	defaultMaxConns           = 1024
	defaultMaxConnsPerHost    = 256
	defaultMaxPendingCalls    = 4096
	defaultAddr               = "127.0.0.1:0"
	defaultHeartbeatInterval  = 50 * time.Millisecond
	defaultElectionTimeoutMin = 150 * time.Millisecond
	defaultElectionTimeoutMax = 300 * time.Millisecond

	// An entry costs about 64 bytes of log beyond its command (see the
	// README's Performance), so a log of up to threshold+trailing entries,
	// plus the 4096-entry chunk it frees memory by, holds about 1.6 MB of
	// bookkeeping, and 16-byte commands double that: small next to most
	// states. A snapshot costs time in proportion to the state, so taking
	// one every 16384 writes keeps that cost per write low even for a
	// state of tens of megabytes. Trailing one chunk of entries catches up
	// a follower that fell a few thousand entries behind (a restart of its
	// connection under load) from the log, far cheaper than the state;
	// fewer would free little, since memory goes back a chunk at a time.
	defaultSnapshotThreshold = 16384
	defaultTrailingLogs      = 4096

	// A session outlives, by far, a leader change (under a second) and a
	// blank restart of every server one after the other (seconds each), so
	// that a client retrying through them still finds it. Each costs about
	// 200 bytes plus its unacknowledged results, so the bound is a few
	// tens of megabytes at most.
	defaultSessionTimeout = 10 * time.Minute
	defaultMaxSessions    = 65536
)

// ConfigError reports a Config field that cannot be used.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "exraft: Config." + e.Field + ": " + e.Reason }

// withDefaults returns a copy of c with every unset field given its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" && c.Listener == nil {
		c.Addr = defaultAddr
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = defaultHeartbeatInterval
	}
	if c.ElectionTimeoutMin == 0 && c.ElectionTimeoutMax == 0 {
		c.ElectionTimeoutMin = defaultElectionTimeoutMin
		c.ElectionTimeoutMax = defaultElectionTimeoutMax
	} else if c.ElectionTimeoutMax == 0 {
		c.ElectionTimeoutMax = 2 * c.ElectionTimeoutMin
	} else if c.ElectionTimeoutMin == 0 {
		c.ElectionTimeoutMin = c.ElectionTimeoutMax / 2
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = wire.DefaultMaxFrame
	}
	if c.MaxCommandSize == 0 {
		c.MaxCommandSize = min(defaultMaxCommandSize, c.MaxFrameSize-wire.FrameOverhead)
	}
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.MaxConnsPerHost == 0 {
		c.MaxConnsPerHost = defaultMaxConnsPerHost
	}
	if c.MaxPendingCalls == 0 {
		c.MaxPendingCalls = defaultMaxPendingCalls
	}
	if c.IOTimeout == 0 {
		c.IOTimeout = defaultIOTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = defaultTrailingLogs
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = defaultSessionTimeout
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = defaultMaxSessions
	}
	return c
}

// validate reports the first field of c (after withDefaults) that is wrong.
func (c Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if c.Name == "" {
		return bad("Name", "must not be empty")
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return bad("Addr", "%q is not host:port: %v", c.Addr, err)
		}
	}
	if c.MinMajority < 0 {
		return bad("MinMajority", "must not be negative (got %d)", c.MinMajority)
	}
	if c.HeartbeatInterval < 0 {
		return bad("HeartbeatInterval", "must not be negative (got %v)", c.HeartbeatInterval)
	}
	if c.ElectionTimeoutMin < 0 {
		return bad("ElectionTimeoutMin", "must not be negative (got %v)", c.ElectionTimeoutMin)
	}
	if c.ElectionTimeoutMax < 0 {
		return bad("ElectionTimeoutMax", "must not be negative (got %v)", c.ElectionTimeoutMax)
	}
	if c.ElectionTimeoutMin > c.ElectionTimeoutMax {
		return bad("ElectionTimeoutMin", "%v is above ElectionTimeoutMax %v", c.ElectionTimeoutMin, c.ElectionTimeoutMax)
	}
	if c.HeartbeatInterval >= c.ElectionTimeoutMin {
		return bad("HeartbeatInterval", "%v must be below ElectionTimeoutMin %v, or followers time out between heartbeats", c.HeartbeatInterval, c.ElectionTimeoutMin)
	}
	if c.MaxFrameSize < 0 {
		return bad("MaxFrameSize", "must not be negative (got %d)", c.MaxFrameSize)
	}
	if c.MaxFrameSize < 4096 {
		return bad("MaxFrameSize", "%d bytes is too small to carry a message (at least 4096)", c.MaxFrameSize)
	}
	if c.MaxCommandSize < 0 {
		return bad("MaxCommandSize", "must not be negative (got %d)", c.MaxCommandSize)
	}
	if c.MaxCommandSize > c.MaxFrameSize-wire.FrameOverhead {
		return bad("MaxCommandSize", "%d bytes cannot travel in a frame of MaxFrameSize %d (at most %d)", c.MaxCommandSize, c.MaxFrameSize, c.MaxFrameSize-wire.FrameOverhead)
	}
	if c.MaxConns < 0 {
		return bad("MaxConns", "must not be negative (got %d)", c.MaxConns)
	}
	if c.MaxConnsPerHost < 0 {
		return bad("MaxConnsPerHost", "must not be negative (got %d)", c.MaxConnsPerHost)
	}
	if c.MaxPendingCalls < 0 {
		return bad("MaxPendingCalls", "must not be negative (got %d)", c.MaxPendingCalls)
	}
	if c.IOTimeout < 0 {
		return bad("IOTimeout", "must not be negative (got %v)", c.IOTimeout)
	}
	if c.SnapshotThreshold < 0 {
		return bad("SnapshotThreshold", "must not be negative (got %d); 0 picks the default, %d entries", c.SnapshotThreshold, defaultSnapshotThreshold)
	}
	if c.TrailingLogs < 0 {
		return bad("TrailingLogs", "must not be negative (got %d); 0 picks the default, %d entries", c.TrailingLogs, defaultTrailingLogs)
	}
	if c.SessionTimeout < time.Millisecond {
		return bad("SessionTimeout", "must be at least 1ms (got %v); 0 picks the default, %v", c.SessionTimeout, defaultSessionTimeout)
	}
	if c.MaxSessions < 0 {
		return bad("MaxSessions", "must not be negative (got %d); 0 picks the default, %d", c.MaxSessions, defaultMaxSessions)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		return bad("TLS", "has no certificate to present (set Certificates or GetCertificate)")
	}
	if len(c.ClusterID) > maxClusterID {
		return bad("ClusterID", "%d bytes is too long (at most %d)", len(c.ClusterID), maxClusterID)
	}
	seen := make(map[string]bool, len(c.InitialConfig))
	for i, p := range c.InitialConfig {
		if p.Name == "" {
			return bad("InitialConfig", "peer %d has an empty Name", i)
		}
		if seen[p.Name] {
			return bad("InitialConfig", "name %q appears twice", p.Name)
		}
		seen[p.Name] = true
		if p.Name == c.Name {
			continue // this server's address is whatever it listens on
		}
		if p.Addr == "" {
			return bad("InitialConfig", "peer %q has an empty Addr", p.Name)
		}
		if _, _, err := net.SplitHostPort(p.Addr); err != nil {
			return bad("InitialConfig", "peer %q: Addr %q is not host:port: %v", p.Name, p.Addr, err)
		}
	}
	return nil
}

// ticks converts the timing fields to the protocol's logical clock: the
// driver ticks the raft.Node every tick (half a heartbeat, or a tenth of the
// minimum election timeout if shorter, at least 1 ms), and the other three
// are counts of ticks.
func (c Config) ticks() (tick time.Duration, heartbeat, electionMin, electionMax int) {
	tick = c.HeartbeatInterval / 2
	if m := c.ElectionTimeoutMin / 10; m < tick {
		tick = m
	}
	if tick < time.Millisecond {
		tick = time.Millisecond
	}
	round := func(d time.Duration) int {
		n := int((d + tick/2) / tick)
		if n < 1 {
			n = 1
		}
		return n
	}
	heartbeat = round(c.HeartbeatInterval)
	electionMin = round(c.ElectionTimeoutMin)
	electionMax = round(c.ElectionTimeoutMax)
	if electionMin <= heartbeat {
		electionMin = heartbeat + 1
	}
	if electionMax < electionMin {
		electionMax = electionMin
	}
	return tick, heartbeat, electionMin, electionMax
}
