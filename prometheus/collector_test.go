package prometheus_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	exraftprom "github.com/exraft/exraft/prometheus"
)

type counter struct{ n int }

func (c *counter) Apply([]byte) []byte { c.n++; return nil }
func (c *counter) Query([]byte) []byte { return []byte(fmt.Sprint(c.n)) }

// startThree starts a cluster of three on loopback and returns it with the
// leader first.
func startThree(t *testing.T) []*exraft.Server {
	var lns []net.Listener
	var peers []exraft.Peer
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		peers = append(peers, exraft.Peer{Name: fmt.Sprintf("p%d", i), Addr: ln.Addr().String()})
	}
	var servers []*exraft.Server
	for i := range peers {
		s, err := exraft.StartServer(&counter{}, exraft.Config{Name: peers[i].Name, Listener: lns[i], InitialConfig: peers})
		require.NoError(t, err)
		t.Cleanup(func() { s.Stop() })
		servers = append(servers, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := servers[0].AwaitLeader(ctx)
	require.NoError(t, err)
	for i, s := range servers {
		if s.Name() == l.Name {
			servers[0], servers[i] = servers[i], servers[0]
		}
	}
	return servers
}

// TestScrape registers the collectors of a whole cluster in one registry,
// scrapes it over HTTP as Prometheus does, and finds the figures.
func TestScrape(t *testing.T) {
	servers := startThree(t)
	reg := prometheus.NewPedanticRegistry()
	for _, s := range servers {
		require.NoError(t, reg.Register(exraftprom.NewCollector(s)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 7 {
		_, err := servers[0].Write(ctx, []byte("x"))
		require.NoError(t, err)
	}
	// The leader's view of its peers is refreshed on its clock's ticks.
	require.Eventually(t, func() bool { return len(servers[0].Status().Peers) == 2 }, 20*time.Second, time.Millisecond,
		"the leader reports its two peers")
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)

	leader := servers[0].Name()
	has := func(line string) { assert.True(t, strings.Contains(text, line), "the scrape has no %q", line) }
	has(fmt.Sprintf(`exraft_writes_total{server=%q} 7`, leader))
	has(fmt.Sprintf(`exraft_write_seconds_count{server=%q} 7`, leader))
	has(fmt.Sprintf(`exraft_role{role="leader",server=%q} 1`, leader))
	has("# TYPE exraft_write_seconds histogram")
	has("# HELP exraft_term The server's current term.")
	for _, f := range servers[1:] {
		has(fmt.Sprintf(`exraft_role{role="follower",server=%q} 1`, f.Name()))
		has(fmt.Sprintf(`exraft_peer_lag{peer=%q,server=%q}`, f.Addr(), leader))
	}
	assert.Equal(t, 3, strings.Count(text, "exraft_term{"), "one term per server")
}

// TestCollectorIsConsistent: the pedantic registry checks every scrape
// against the descriptions; a second scrape after the cluster changed (a
// peer the leader no longer reaches) stays valid.
func TestCollectorIsConsistent(t *testing.T) {
	servers := startThree(t)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(exraftprom.NewCollector(servers[0])))
	_, err := reg.Gather()
	require.NoError(t, err)
	require.NoError(t, servers[2].Stop())
	families, err := reg.Gather()
	require.NoError(t, err)
	assert.NotEmpty(t, families)
}
