package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
)

// TestMetricsEndpoint scrapes -metrics as Prometheus would and finds the
// server's samples in the text format.
func TestMetricsEndpoint(t *testing.T) {
	server, err := exraft.StartServer(newStore(), exraft.Config{Name: "m"})
	require.NoError(t, err)
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = server.AwaitLeader(ctx)
	require.NoError(t, err)
	_, err = server.Write(ctx, []byte("set k v"))
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	srv, err := serveMetrics(addr, server)
	require.NoError(t, err)
	defer srv.Close()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)
	for _, line := range []string{
		"# TYPE exraft_writes_total counter",
		`exraft_writes_total{server="m"} 1`,
		`exraft_role{server="m",role="leader"} 1`,
		`exraft_write_seconds_count{server="m"} 1`,
		`exraft_write_seconds_bucket{server="m",le="+Inf"} 1`,
	} {
		assert.True(t, strings.Contains(text, line), "no %q in the scrape", line)
	}
}
