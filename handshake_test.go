package exraft

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// runHandshake runs both sides of a handshake over an in-memory pipe and
// returns their errors.
func runHandshake(t *testing.T, dialer, acceptor identity, refuse string) (dialErr, acceptErr error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		err := acceptor.acceptHandshake(b, refuse)
		b.Close() // as serveConn does when the handshake fails
		done <- err
	}()
	dialErr = dialer.dialHandshake(a, "acceptor:1")
	if dialErr != nil {
		a.Close()
	}
	acceptErr = <-done
	return dialErr, acceptErr
}

func TestHandshakeAgreeingEndsConnect(t *testing.T) {
	for _, id := range []identity{
		{},
		{clusterID: "prod"},
		{clusterID: "prod", secret: []byte("k")},
	} {
		// The acceptor closes the pipe once it is done, so a dialer that
		// succeeded may still be reading: only the verdicts matter here.
		dialErr, acceptErr := runHandshake(t, id, id, "")
		if dialErr != nil || acceptErr != nil {
			t.Fatalf("%+v: dialer %v, acceptor %v; want both accepted", id, dialErr, acceptErr)
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	cases := []struct {
		name             string
		dialer, acceptor identity
		refuse           string
		want             string // in both errors
	}{
		{"cluster", identity{clusterID: "a"}, identity{clusterID: "b"}, "", `ClusterID "a" differs from this server's "b"`},
		{"wrong secret", identity{secret: []byte("x")}, identity{secret: []byte("y")}, "", "Secret"},
		{"dialer lacks secret", identity{}, identity{secret: []byte("y")}, "", "Secret"},
		{"acceptor lacks secret", identity{secret: []byte("x")}, identity{}, "", "Secret"},
		{"refused", identity{}, identity{}, "too many connections", "too many connections"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dialErr, acceptErr := runHandshake(t, c.dialer, c.acceptor, c.refuse)
			if !errors.Is(dialErr, ErrUnauthorized) || !strings.Contains(dialErr.Error(), c.want) {
				t.Errorf("dialer: %v; want ErrUnauthorized mentioning %q", dialErr, c.want)
			}
			if acceptErr == nil || !strings.Contains(acceptErr.Error(), c.want) {
				t.Errorf("acceptor: %v; want an error mentioning %q", acceptErr, c.want)
			}
		})
	}
}

// TestHandshakeRejectsStrangers: bytes that are not a hello end the
// handshake on the acceptor's side with an error, without a verdict.
func TestHandshakeRejectsStrangers(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"EXRAFT\x09\x00" + strings.Repeat("n", nonceSize),        // another version
		"EXRAFT\x02\x05ab",                                       // cut short
		"EXRAFT\x02\x00" + strings.Repeat("n", nonceSize) + "xx", // no line end
		"",
	} {
		if err := (identity{}).acceptHandshake(scriptConn{in: strings.NewReader(in)}, ""); err == nil {
			t.Errorf("input %q: accepted", in)
		}
	}
}

// TestHandshakeProofsDependOnNonces: a proof recorded from one handshake is
// no good in another, because each end picks a fresh nonce.
func TestHandshakeProofsDependOnNonces(t *testing.T) {
	id := identity{clusterID: "c", secret: []byte("k")}
	n1, n2, n3 := newNonce(), newNonce(), newNonce()
	p := id.proof("dialer", n1, n2, nil)
	if string(p) == string(id.proof("dialer", n1, n3, nil)) {
		t.Fatal("the dialer's proof does not depend on the acceptor's nonce")
	}
	if string(p) == string(id.proof("acceptor", n1, n2, nil)) {
		t.Fatal("the two roles' proofs are the same: one end could echo the other's")
	}
	if string(p) == string(identity{clusterID: "c", secret: []byte("j")}.proof("dialer", n1, n2, nil)) {
		t.Fatal("the proof does not depend on the secret")
	}
}

// TestHandshakeDialerWaitsForVerdict: a dialer whose acceptor vanishes
// mid-handshake gets an error, not a hang.
func TestHandshakeDialerWaitsForVerdict(t *testing.T) {
	a, b := net.Pipe()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		io.ReadFull(b, make([]byte, len(handshakeMagic)+2+nonceSize+len(helloEnd)))
		b.Close()
	}()
	if err := (identity{}).dialHandshake(a, "x:1"); err == nil || !strings.Contains(err.Error(), "closed the connection before accepting it") {
		t.Fatalf("got %v; want an error saying the connection closed", err)
	}
}

// scriptConn is a connection whose other end sent in and then stopped:
// reads past in see io.EOF, and whatever is written goes nowhere.
type scriptConn struct {
	net.Conn // nil: only the methods below are used
	in       *strings.Reader
}

func (c scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c scriptConn) Write(p []byte) (int, error) { return len(p), nil }
func (c scriptConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// FuzzAcceptHandshake: whatever a stranger sends, the acceptor returns, and
// it accepts only a dialer that proved the secret, which random bytes
// cannot do.
func FuzzAcceptHandshake(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("EXRAFT\x02\x00" + strings.Repeat("\x00", nonceSize) + "\r\n" + strings.Repeat("\x00", 1+proofSize)))
	f.Add([]byte("EXRAFT\x02\xff"))
	f.Add([]byte("EXRAFT\x02\x00" + strings.Repeat("\x00", nonceSize) + "\r\n\x01\x03bye"))
	f.Fuzz(func(t *testing.T, in []byte) {
		err := (identity{secret: []byte("k")}).acceptHandshake(scriptConn{in: strings.NewReader(string(in))}, "")
		if err == nil {
			t.Fatalf("accepted %q", in)
		}
	})
}
