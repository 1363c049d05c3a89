package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBoundsJudgeTheirSide(t *testing.T) {
	require.True(t, atLeast(4).holds(4))
	require.False(t, atLeast(4).holds(3.99))
	require.True(t, atMost(0.7).holds(0.7))
	require.False(t, atMost(0.7).holds(0.71))
	require.Equal(t, ">= 2.5", atLeast(2.5).String())
}

// TestSummaryJSONCarriesEveryFigure: -json's document holds each figure
// recorded, its target and whether it was met, for a script to read.
func TestSummaryJSONCarriesEveryFigure(t *testing.T) {
	saved, savedOut, savedJSON := figures, os.Stdout, *jsonOut
	defer func() { figures, os.Stdout, *jsonOut = saved, savedOut, savedJSON }()
	figures, *jsonOut = nil, true
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	os.Stdout = devnull // the human table

	record("compare", "writes ratio", 4.5, "x", atLeast(4), 4.4, 4.5, 4.6)
	record("growth", "p50 ratio", 1.3, "x", atMost(1.2))
	recordDuration("failover", "p50", 151*time.Millisecond, "ms", nil)
	var out bytes.Buffer
	printSummary(&out)

	var doc report
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	require.Len(t, doc.Figures, 3)
	require.True(t, *doc.Figures[0].Met)
	require.Equal(t, []float64{4.4, 4.5, 4.6}, doc.Figures[0].Rounds)
	require.False(t, *doc.Figures[1].Met)
	require.Nil(t, doc.Figures[2].Met, "a figure without a target is not judged")
	require.InDelta(t, 151, doc.Figures[2].Value, 1e-9)
	require.Contains(t, out.String(), `"op": ">="`, "the bound reads as written, not HTML-escaped")
}

// TestSilentConnDropsEverythingForGood: a cut connection loses what either
// side sends without an error, stays that way after the heal, and a
// connection dialed after the heal works.
func TestSilentConnDropsEverythingForGood(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var received atomic.Int64
	go echo(ln, &received)
	sn := &silentNet{cut: map[string]bool{}}
	dial := sn.dialer("127.0.0.1:1")
	ctx := context.Background()

	old, err := dial(ctx, ln.Addr().String())
	require.NoError(t, err)
	defer old.Close()
	requireEcho(t, old)

	sn.cutOff(ln.Addr().String())
	n, err := old.Write([]byte("lost"))
	require.NoError(t, err, "a silent network reports nothing")
	require.Equal(t, 4, n)
	requireSilent(t, old)
	during, err := dial(ctx, ln.Addr().String())
	require.NoError(t, err)
	defer during.Close()
	requireSilent(t, during)
	require.EqualValues(t, 4, received.Load(), "the server got only the ping from before the cut")

	sn.heal(ln.Addr().String())
	requireSilent(t, old)
	require.EqualValues(t, 4, received.Load(), "nor anything on the old connection after the heal")
	fresh, err := dial(ctx, ln.Addr().String())
	require.NoError(t, err)
	defer fresh.Close()
	requireEcho(t, fresh)
}

// echo answers every connection with what it sent, and counts the bytes
// it received.
func echo(ln net.Listener, received *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

func requireEcho(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
}

// requireSilent: a ping gets no answer within a short deadline. The
// deadline is the condition itself (silence for that long), not a wait for
// something to happen.
func requireSilent(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = c.Read(make([]byte, 4))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
}

// TestHealTrialSeesTheFollowerCatchUp runs the heal section's trial, both
// kinds, with a short cut: the trial itself fails if the cut let entries
// through or the follower never catches up.
func TestHealTrialSeesTheFollowerCatchUp(t *testing.T) {
	saved := *cutFor
	defer func() { *cutFor = saved }()
	*cutFor = 500 * time.Millisecond
	for _, k := range healKinds {
		d, err := healTrial(k.restarts)
		require.NoError(t, err, k.name)
		require.Positive(t, d, k.name)
	}
}
