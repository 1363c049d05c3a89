package exraft_test

// Tests of who may talk to a cluster and how much it will take: TLS and
// mutual TLS between servers and clients, the handshake's ClusterID and
// Secret, and the limits that keep one client from hurting the cluster
// (MaxCommandSize, MaxConnsPerHost, MaxPendingCalls, IOTimeout). Everything
// runs on loopback; certificates are made in memory when the test runs.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/exraft/exraft"
	"github.com/exraft/exraft/internal/testkit"
)

// joinWait is how long AddServer of a server that must not get in is
// given before it has to give up.
const joinWait = 3 * time.Second

// ---------------------------------------------------------------------------
// Certificates

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // holds only cert
}

func serialNumber(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err, "serial number")
	return n
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err, "CA key")
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err, "CA certificate")
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err, "parse CA certificate")
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for 127.0.0.1 that serves both ends of a
// connection (server and client authentication), signed by ca.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return ca.issueFor(t, name, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
}

// issueFor is issue for the given IP addresses and DNS names.
func (ca *testCA) issueFor(t testing.TB, name string, ips []net.IP, dnsNames []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err, "key of %s", name)
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err, "certificate of %s", name)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err, "parse certificate of %s", name)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverTLS is a server's TLS configuration: it presents cert and trusts
// ca for the peers it dials; mutual also makes it require a client
// certificate signed by ca.
func serverTLS(ca *testCA, cert tls.Certificate, mutual bool) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	if mutual {
		cfg.ClientCAs = ca.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// dialRaw opens a plain connection to addr and writes send on it; the
// connection closes at the end of the test.
func dialRaw(t *testing.T, addr string, send []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err, "dial %s", addr)
	t.Cleanup(func() { conn.Close() })
	if len(send) > 0 {
		_, err := conn.Write(send)
		require.NoError(t, err, "write to %s", addr)
	}
	return conn
}

// ---------------------------------------------------------------------------
// Helpers

// requireRefused runs call with a ctx of testkit.WaitShort and checks that
// it failed, well before that deadline: a refusal, not a hang. It returns
// the error.
func requireRefused(t *testing.T, what string, call func(ctx context.Context) error) error {
	t.Helper()
	ctx := testkit.Ctx(t, testkit.WaitShort)
	began := time.Now()
	err := call(ctx)
	took := time.Since(began)
	require.Error(t, err, "%s succeeded; want it refused", what)
	require.Falsef(t, errors.Is(err, context.DeadlineExceeded) || took > testkit.WaitShort/2,
		"%s: %v after %v; want a prompt refusal, not a wait for the ctx (%v)", what, err, took, testkit.WaitShort)
	t.Logf("%s refused after %v: %v", what, took.Round(time.Millisecond), err)
	return err
}

// clientWrite writes cmd through cl at whichever of servers leads.
func clientWrite(t *testing.T, cl *exraft.Client, servers []*exraft.Server, cmd string) string {
	t.Helper()
	return string(testkit.AtLeader(t, servers, "Client.Write", cmd, func(s *exraft.Server, ctx context.Context, b []byte) ([]byte, error) {
		return cl.Write(ctx, s.Addr(), b)
	}))
}

// clientRead reads q through cl at whichever of servers leads.
func clientRead(t *testing.T, cl *exraft.Client, servers []*exraft.Server, q string) string {
	t.Helper()
	return string(testkit.AtLeader(t, servers, "Client.Read", q, func(s *exraft.Server, ctx context.Context, b []byte) ([]byte, error) {
		return cl.Read(ctx, s.Addr(), b)
	}))
}

// startJoiner is testkit.StartAlone with an InitialConfig that names the
// server itself; mutate adjusts its Config last.
func startJoiner(t *testing.T, name string, mutate func(*exraft.Config)) *exraft.Server {
	t.Helper()
	s, _ := testkit.StartAlone(t, name, func(cfg *exraft.Config) {
		cfg.InitialConfig = []exraft.Peer{{Name: name, Addr: cfg.Listener.Addr().String()}}
		if mutate != nil {
			mutate(cfg)
		}
	})
	return s
}

// requireCannotJoin checks that joiner cannot get into the cluster c: AddServer
// on the leader ends with its ctx's deadline, joiner is a member nowhere and
// never hears from a leader, and the cluster still commits (key=done) without
// it.
func requireCannotJoin(t *testing.T, c *testkit.Cluster, joiner *exraft.Server, key string) {
	t.Helper()
	testkit.WriteAny(t, c.Servers(), "set before-"+key+" yes")
	leader := testkit.AwaitLeader(t, c.Servers())
	ctx, cancel := context.WithTimeout(context.Background(), joinWait)
	defer cancel()
	began := time.Now()
	err := leader.AddServer(ctx, joiner.Peer())
	t.Logf("AddServer(%v) on %s returned %v after %v", joiner.Peer(), leader.Name(), err, time.Since(began).Round(time.Millisecond))
	require.ErrorIsf(t, err, context.DeadlineExceeded, "AddServer(%v) on %s:%v", joiner.Peer(), leader.Name(), testkit.Statuses(c.Servers()))
	for _, s := range c.Servers() {
		st := s.Status()
		require.Falsef(t, testkit.HasName(st.Members, joiner.Name()),
			"%s lists %s among its Members %v after the failed AddServer", s.Name(), joiner.Name(), st.Members)
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the failed AddServer:%v", testkit.Statuses{leader})
	testkit.WriteAny(t, c.Servers(), "set "+key+" done")
	testkit.AwaitAllHave(t, c.Servers(), key, "done")
	p, ok := joiner.Leader()
	require.Falsef(t, ok, "%s knows leader %v: it heard from the cluster", joiner.Name(), p)
	st := joiner.Status()
	require.Falsef(t, st.Role == exraft.Leader || testkit.HasName(st.Members, leader.Name()),
		"%s: Status %+v; want a lone follower that knows no other member", joiner.Name(), st)
	require.Empty(t, testkit.Dirty(joiner, "get before-"+key), "%s applied before-%s: it received the cluster's log", joiner.Name(), key)
}

// The handshake on the wire, for raw connections that play a dialer by hand
// (see handshake.go): hello = "EXRAFT", version 2, len(ClusterID),
// ClusterID, a 32-byte nonce, CR LF; the acceptor answers 0, its nonce and its
// proof; the dialer sends 0 and its proof; the acceptor's last verdict is 0.
// A refusal is 1, a length byte and the reason.
const (
	nonceSize = 32
	proofSize = sha256.Size
)

// requireRefusal checks that got, what a server sent before closing a
// connection, is a refusal (1, a length byte, the reason) whose reason
// contains want.
func requireRefusal(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	require.Truef(t, len(got) >= 2 && got[0] == 1 && int(got[1]) == len(got)-2 && strings.Contains(string(got[2:]), want),
		"answer to %s: %q; want a refusal (1, length, reason naming %s)", what, got, want)
}

// handshakeProof is HMAC-SHA256(secret, role, len(clusterID), clusterID, dialer
// nonce, acceptor nonce), the proof of a plain (non-TLS) connection.
func handshakeProof(secret []byte, role, clusterID string, dialerNonce, acceptorNonce []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(role))
	mac.Write([]byte{byte(len(clusterID))})
	mac.Write([]byte(clusterID))
	mac.Write(dialerNonce)
	mac.Write(acceptorNonce)
	return mac.Sum(nil)
}

// rawHello dials addr and sends a hello with clusterID; it returns the
// connection, the dialer's nonce and the acceptor's nonce once the acceptor
// accepted the hello.
func rawHello(t *testing.T, addr, clusterID string) (net.Conn, []byte, []byte) {
	t.Helper()
	conn := dialRaw(t, addr, nil)
	require.NoError(t, conn.SetDeadline(time.Now().Add(testkit.WaitShort)), "SetDeadline")
	nonce, theirs, err := sendHello(conn, clusterID)
	require.NoError(t, err)
	return conn, nonce, theirs
}

// sendHello sends a hello with clusterID on conn; it returns the dialer's
// nonce and the acceptor's once the acceptor accepted the hello.
func sendHello(conn net.Conn, clusterID string) (nonce, theirs []byte, err error) {
	nonce = make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("nonce: %w", err)
	}
	hello := append([]byte("EXRAFT"), 2, byte(len(clusterID)))
	hello = append(hello, clusterID...)
	hello = append(hello, nonce...)
	hello = append(hello, "\r\n"...)
	if _, err := conn.Write(hello); err != nil {
		return nil, nil, fmt.Errorf("write hello: %w", err)
	}
	challenge := make([]byte, 1+nonceSize)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return nil, nil, fmt.Errorf("read the acceptor's challenge: %w", err)
	}
	if challenge[0] != 0 {
		return nil, nil, fmt.Errorf("the acceptor refused the hello: %q", challenge)
	}
	return nonce, challenge[1:], nil
}

// rawHandshake opens a plain connection to addr that has passed the
// handshake (no Secret, ClusterID ""), ready for frames.
func rawHandshake(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn := dialRaw(t, addr, nil)
	require.NoError(t, conn.SetDeadline(time.Now().Add(testkit.WaitShort)), "SetDeadline")
	require.NoError(t, plainHandshake(conn))
	require.NoError(t, conn.SetDeadline(time.Time{}), "SetDeadline")
	return conn
}

// plainHandshake plays the dialer's side of the handshake on conn, with no
// Secret and ClusterID "", so that frames can follow. It never calls t, for
// tests that dial from many goroutines (hostile_test.go).
func plainHandshake(conn net.Conn) error {
	nonce, theirs, err := sendHello(conn, "")
	if err != nil {
		return err
	}
	if _, err := conn.Write(handshakeProof(nil, "dialer", "", nonce, theirs)); err != nil {
		return fmt.Errorf("write the dialer's proof: %w", err)
	}
	answer := make([]byte, 1+proofSize)
	if _, err := io.ReadFull(conn, answer); err != nil || answer[0] != 0 {
		return fmt.Errorf("the acceptor's verdict on the dialer's proof: %q %v, want accepted", answer, err)
	}
	if !hmac.Equal(answer[1:], handshakeProof(nil, "acceptor", "", nonce, theirs)) {
		return errors.New("the acceptor's proof does not verify: the test's idea of the handshake is wrong")
	}
	if _, err := conn.Write([]byte{0}); err != nil {
		return fmt.Errorf("write the dialer's verdict: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// TLS

// TestTLSCluster: three servers over TLS elect a leader and commit; a Client
// that trusts the CA writes and reads through them, while a plain Client and
// one that does not trust the CA are turned away promptly.
func TestTLSCluster(t *testing.T) {
	ca := newTestCA(t, "exraft test CA")
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.TLS = serverTLS(ca, ca.issue(t, cfg.Name), false)
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set inproc 1")
	testkit.AwaitAllHave(t, c.Servers(), "inproc", "1")

	cl := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool}}
	defer cl.Close()
	require.Equal(t, "ok", clientWrite(t, cl, c.Servers(), "set tls yes"), "Write over TLS")
	require.Equal(t, "yes", clientRead(t, cl, c.Servers(), "get tls"), "Read over TLS")
	testkit.AwaitAllHave(t, c.Servers(), "tls", "yes")

	leader := testkit.AwaitLeader(t, c.Servers())
	plain := &exraft.Client{}
	defer plain.Close()
	requireRefused(t, "a plain Write to a TLS server", func(ctx context.Context) error {
		_, err := plain.Write(ctx, leader.Addr(), []byte("set plain yes"))
		return err
	})
	requireRefused(t, "a plain GetStatus of a TLS server", func(ctx context.Context) error {
		_, err := plain.GetStatus(ctx, leader.Addr())
		return err
	})

	other := newTestCA(t, "some other CA")
	untrusting := &exraft.Client{TLS: &tls.Config{RootCAs: other.pool}}
	defer untrusting.Close()
	err := requireRefused(t, "a Write from a Client that does not trust the CA", func(ctx context.Context) error {
		_, err := untrusting.Write(ctx, leader.Addr(), []byte("set untrusting yes"))
		return err
	})
	var unknown x509.UnknownAuthorityError
	require.ErrorAsf(t, err, &unknown, "Write from a Client that does not trust the CA: %v (%T), want an x509.UnknownAuthorityError", err, err)

	// A server whose certificate names another address: with ServerName
	// empty the address dialed is verified, so a Client refuses it; naming
	// the certificate's host in ServerName lets it through.
	elsewhereCfg := testkit.FastConfig("elsewhere")
	elsewhereCfg.TLS = serverTLS(ca, ca.issueFor(t, "elsewhere", []net.IP{net.IPv4(10, 9, 9, 9)}, []string{"elsewhere.example"}), false)
	elsewhere := testkit.Start(t, testkit.NewKV(), elsewhereCfg)
	err = requireRefused(t, "a Client dialing a server whose certificate names another address", func(ctx context.Context) error {
		_, err := cl.GetStatus(ctx, elsewhere.Addr())
		return err
	})
	var hostErr x509.HostnameError
	require.ErrorAsf(t, err, &hostErr, "GetStatus of a server whose certificate names 10.9.9.9: %v (%T), want an x509.HostnameError", err, err)
	named := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool, ServerName: "elsewhere.example"}}
	defer named.Close()
	st, err := named.GetStatus(testkit.Ctx(t, testkit.WaitShort), elsewhere.Addr())
	require.NoError(t, err, "GetStatus with ServerName elsewhere.example")
	require.Equal(t, "elsewhere", st.Name, "GetStatus with ServerName elsewhere.example")

	require.Equal(t, "ok", clientWrite(t, cl, c.Servers(), "set after refused"), "Write over TLS after the refusals")
	for _, k := range []string{"plain", "untrusting"} {
		require.Empty(t, clientRead(t, cl, c.Servers(), "get "+k), "the refused Write of %s was applied", k)
	}
}

// TestMutualTLS: with client certificates required, the cluster elects and
// commits; a server whose certificate another CA signed cannot join, and
// Clients with no certificate or one from another CA are refused. Everyone
// has the right ClusterID and Secret, which are bound to the TLS session, so
// only the certificates make the difference.
func TestMutualTLS(t *testing.T) {
	const clusterID = "mtls"
	secret := []byte("mtls-s3cret")
	ca := newTestCA(t, "exraft cluster CA")
	rogue := newTestCA(t, "exraft rogue CA")
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.TLS = serverTLS(ca, ca.issue(t, cfg.Name), true)
		cfg.ClusterID, cfg.Secret = clusterID, secret
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set mtls 1")
	testkit.AwaitAllHave(t, c.Servers(), "mtls", "1")

	good := &exraft.Client{
		TLS:       &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "client")}},
		ClusterID: clusterID,
		Secret:    secret,
	}
	defer good.Close()
	require.Equal(t, "ok", clientWrite(t, good, c.Servers(), "set client yes"), "Write with a client certificate")
	require.Equal(t, "yes", clientRead(t, good, c.Servers(), "get client"), "Read with a client certificate")

	leader := testkit.AwaitLeader(t, c.Servers())
	anonymous := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool}, ClusterID: clusterID, Secret: secret}
	defer anonymous.Close()
	requireRefused(t, "a Write with no client certificate", func(ctx context.Context) error {
		_, err := anonymous.Write(ctx, leader.Addr(), []byte("set anonymous yes"))
		return err
	})
	// The rogue certificate is offered whatever CAs the server asks for, so
	// that the server has to check its signature.
	rogueCert := rogue.issue(t, "rogue client")
	impostor := &exraft.Client{TLS: &tls.Config{
		RootCAs: ca.pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &rogueCert, nil
		},
	}, ClusterID: clusterID, Secret: secret}
	defer impostor.Close()
	requireRefused(t, "a Write with a client certificate of another CA", func(ctx context.Context) error {
		_, err := impostor.Write(ctx, leader.Addr(), []byte("set impostor yes"))
		return err
	})

	// A fourth server trusts the cluster's CA but holds a certificate of the
	// rogue CA: the cluster must neither admit it nor let it vote.
	raft4 := startJoiner(t, "raft4", func(cfg *exraft.Config) {
		cfg.TLS = serverTLS(ca, rogue.issue(t, "raft4"), true)
		cfg.ClusterID, cfg.Secret = clusterID, secret
	})
	requireCannotJoin(t, c, raft4, "after-rogue")

	for _, k := range []string{"anonymous", "impostor"} {
		require.Empty(t, clientRead(t, good, c.Servers(), "get "+k), "the refused Write of %s was applied", k)
	}
}

// ---------------------------------------------------------------------------
// The handshake: ClusterID and Secret

// TestClusterIDMismatch: a Client or a server of another ClusterID is
// refused with an error that says why, and both ends log the refusal.
func TestClusterIDMismatch(t *testing.T) {
	logs := make([]*exraft.TestLog, 3)
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.ClusterID = "a"
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set cluster a")

	right := &exraft.Client{ClusterID: "a"}
	defer right.Close()
	require.Equal(t, "ok", clientWrite(t, right, c.Servers(), "set right yes"), "Write with the right ClusterID")

	leader := testkit.AwaitLeader(t, c.Servers())
	for _, id := range []string{"b", ""} {
		cl := &exraft.Client{ClusterID: id}
		err := requireRefused(t, fmt.Sprintf("a Write with ClusterID %q", id), func(ctx context.Context) error {
			_, err := cl.Write(ctx, leader.Addr(), []byte("set wrong yes"))
			return err
		})
		cl.Close()
		require.ErrorIsf(t, err, exraft.ErrUnauthorized, "Write with ClusterID %q: %v (%T), want an error matching ErrUnauthorized", id, err, err)
		msg := err.Error()
		require.Truef(t, strings.Contains(msg, "ClusterID") && strings.Contains(msg, fmt.Sprintf("%q", id)) && strings.Contains(msg, `"a"`),
			"Write with ClusterID %q: error %q does not name both ClusterIDs", id, msg)
	}
	leaderLog := logs[slices.Index(c.Servers(), leader)]
	testkit.Eventually(t, testkit.WaitShort, func() bool { return leaderLog.Has("refused a connection", "ClusterID") },
		"%s to log that it refused the Client; its log:\n%s", leader.Name(), leaderLog)

	// A server of cluster "b", added to cluster "a", never gets in; it
	// refuses the leader (the acceptor's log) and the leader hears why (the
	// dialer's log).
	bLog := &exraft.TestLog{}
	b := startJoiner(t, "raft-b", func(cfg *exraft.Config) {
		cfg.ClusterID = "b"
		cfg.Logger = bLog.Logger()
	})
	requireCannotJoin(t, c, b, "after-b")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return bLog.Has("refused a connection", "ClusterID") },
		"%s to log that it refused cluster a; its log:\n%s", b.Name(), bLog)
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		for _, l := range logs {
			if l.Has("a peer refused this server's connection", b.Addr(), "ClusterID", `\"a\"`, `\"b\"`) {
				return true
			}
		}
		return false
	}, "a server of cluster a to log that %s refused it; leader's log:\n%s", b.Addr(), leaderLog)

	require.Empty(t, clientRead(t, right, c.Servers(), "get wrong"), "a refused Write was applied")
}

// TestSecret: with a Secret, only Clients and servers that know it get in.
func TestSecret(t *testing.T) {
	secret := []byte("s3cret")
	logs := make([]*exraft.TestLog, 3)
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.Secret = secret
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set secret kept")
	testkit.AwaitAllHave(t, c.Servers(), "secret", "kept")

	right := &exraft.Client{Secret: []byte("s3cret")}
	defer right.Close()
	require.Equal(t, "ok", clientWrite(t, right, c.Servers(), "set right yes"), "Write with the right Secret")
	require.Equal(t, "yes", clientRead(t, right, c.Servers(), "get right"), "Read with the right Secret")

	leader := testkit.AwaitLeader(t, c.Servers())
	for _, tc := range []struct {
		what   string
		secret []byte
	}{
		{"a wrong Secret", []byte("s3cres")},
		{"no Secret", nil},
		{"a longer Secret", []byte("s3cret!")},
	} {
		cl := &exraft.Client{Secret: tc.secret}
		err := requireRefused(t, "a Write with "+tc.what, func(ctx context.Context) error {
			_, err := cl.Write(ctx, leader.Addr(), []byte("set wrong yes"))
			return err
		})
		cl.Close()
		require.ErrorIsf(t, err, exraft.ErrUnauthorized, "Write with %s: %v (%T), want an error matching ErrUnauthorized", tc.what, err, err)
		require.Contains(t, err.Error(), "Secret", "Write with %s: the error does not say the Secret is the problem", tc.what)
	}

	// A dialer that does not know the Secret, and sends a made-up proof, is
	// refused by the acceptor, which has proved nothing to it.
	follower := testkit.Others(c.Servers(), leader)[0]
	fi := slices.Index(c.Servers(), follower)
	conn, _, _ := rawHello(t, follower.Addr(), "")
	_, err := conn.Write(make([]byte, proofSize))
	require.NoError(t, err, "write a fake proof")
	reply, _ := readUntilClosed(t, "a fake proof", conn, time.Now(), 0)
	requireRefusal(t, "a fake proof", reply, "Secret")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs[fi].Has("refused a connection", "Secret", conn.LocalAddr().String()) },
		"%s to log that it refused a fake proof; its log:\n%s", follower.Name(), logs[fi])

	// A server of the same (empty) ClusterID that lacks the Secret.
	nlog := &exraft.TestLog{}
	nosecret := startJoiner(t, "raft-nosecret", func(cfg *exraft.Config) { cfg.Logger = nlog.Logger() })
	requireCannotJoin(t, c, nosecret, "after-nosecret")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return nlog.Has("refused a connection", "Secret") },
		"%s to log the refusal; its log:\n%s", nosecret.Name(), nlog)

	require.Empty(t, clientRead(t, right, c.Servers(), "get wrong"), "a refused Write was applied")
}

// ---------------------------------------------------------------------------
// Limits

// TestMaxCommandSize: a command above MaxCommandSize fails with ErrTooLarge,
// in process and by address, and appends nothing; one of exactly the limit
// commits, and so do later writes.
func TestMaxCommandSize(t *testing.T) {
	const limit = 1000
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxCommandSize = limit
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set warm up")
	testkit.AwaitAllHave(t, c.Servers(), "warm", "up")
	leader := testkit.AwaitLeader(t, c.Servers())
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		st := leader.Status()
		return st.AppliedIndex == st.LastIndex
	}, "the leader to apply its whole log:%s", testkit.Statuses{leader})

	big := "set big " + strings.Repeat("x", limit+1-len("set big "))
	require.Len(t, big, limit+1, "test bug")
	cl := &exraft.Client{}
	defer cl.Close()
	before := leader.Status()
	_, err := leader.Write(testkit.Ctx(t, testkit.WaitShort), []byte(big))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Server.Write of %d bytes with MaxCommandSize %d: got %v, want ErrTooLarge", len(big), limit, err)
	assert.Contains(t, err.Error(), "MaxCommandSize", "Server.Write of a command too large: the error does not name the limit")
	_, err = cl.Write(testkit.Ctx(t, testkit.WaitShort), leader.Addr(), []byte(big))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Client.Write of %d bytes with MaxCommandSize %d: got %v (%T), want ErrTooLarge", len(big), limit, err, err)
	after := leader.Status()
	if after.Term == before.Term {
		require.Equalf(t, before.LastIndex, after.LastIndex, "the leader's LastIndex moved in term %d: a command too large was appended", after.Term)
	}
	if after.Term != before.Term {
		t.Logf("the term changed (%d -> %d): LastIndex is not compared, the histories are", before.Term, after.Term)
	}

	// Exactly the limit is accepted, and the cluster goes on committing.
	exact := "set exact " + strings.Repeat("y", limit-len("set exact "))
	testkit.WriteAny(t, c.Servers(), exact)
	testkit.WriteAny(t, c.Servers(), "set after big")
	testkit.AwaitAllHave(t, c.Servers(), "after", "big")
	testkit.AwaitAllHave(t, c.Servers(), "exact", strings.Repeat("y", limit-len("set exact ")))
	for _, s := range c.Servers() {
		for _, cmd := range c.KV(s.Name()).History() {
			require.Falsef(t, cmd == big, "%s applied the command that was too large", s.Name())
		}
	}

	// A call that does not fit the Client's own frame fails the same way,
	// and the Client remains usable.
	small := &exraft.Client{MaxFrameSize: 4096}
	defer small.Close()
	huge := "set huge " + strings.Repeat("z", 8192)
	_, err = small.Write(testkit.Ctx(t, testkit.WaitShort), leader.Addr(), []byte(huge))
	require.ErrorIsf(t, err, exraft.ErrTooLarge, "Write of %d bytes through a Client with MaxFrameSize 4096: got %v, want ErrTooLarge", len(huge), err)
	require.Equal(t, "ok", clientWrite(t, small, c.Servers(), "set small ok"), "Write through the small Client after ErrTooLarge")
}

// twoClientsAndNoMore starts a one-server cluster whose limit (set by limit)
// admits two connections, and checks that two Clients get in; a third is
// refused promptly (refused checks its error further); the two keep
// working; the server logs each of logged; and once the first Client
// closes, the third gets in. It returns the server and the three Clients.
func twoClientsAndNoMore(t *testing.T, limit func(*exraft.Config), logged []string, refused func(who string, err error)) (*exraft.Server, []*exraft.Client) {
	t.Helper()
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		limit(cfg)
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	status := func(cl *exraft.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cl.GetStatus(ctx, s.Addr())
		return err
	}
	cls := []*exraft.Client{{}, {}, {}}
	for _, cl := range cls {
		t.Cleanup(func() { cl.Close() })
	}
	for i, cl := range cls[:2] {
		require.NoError(t, status(cl), "client %d of 2", i+1)
	}
	refused("a third Client", requireRefused(t, "a third Client", func(ctx context.Context) error {
		_, err := cls[2].GetStatus(ctx, s.Addr())
		return err
	}))
	for i, cl := range cls[:2] {
		_, err := cl.Write(testkit.Ctx(t, testkit.WaitShort), s.Addr(), []byte(fmt.Sprintf("set c%d yes", i+1)))
		require.NoError(t, err, "client %d after the refusal", i+1)
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return slg.Has(logged...) },
		"the server to log the refusal (%q); its log:\n%s", logged, slg)
	cls[0].Close()
	var last error
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		last = status(cls[2])
		return last == nil
	}, "a third Client to get in once the first closed (last error: %v)", testkit.LastErr(&last))
	return s, cls
}

// TestMaxConnsPerHost: past MaxConnsPerHost connections from one address a
// new one is refused with a reason; when one closes there is room again.
func TestMaxConnsPerHost(t *testing.T) {
	refused := func(who string, err error) {
		t.Helper()
		require.ErrorIs(t, err, exraft.ErrUnauthorized, "%s past MaxConnsPerHost", who)
		require.Contains(t, err.Error(), "MaxConnsPerHost", "%s past MaxConnsPerHost: the error does not name the limit", who)
	}
	s, cls := twoClientsAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConnsPerHost = 2 },
		[]string{"refused a connection", "MaxConnsPerHost"}, refused)
	// The second and third Clients hold the two places now.
	refused("the first Client, reconnecting", requireRefused(t, "the first Client, reconnecting", func(ctx context.Context) error {
		_, err := cls[0].GetStatus(ctx, s.Addr())
		return err
	}))
	require.Equal(t, "yes", testkit.Dirty(s, "get c1"), "c1")
}

// TestMaxConns: past MaxConns connections a new one is closed at once; when
// one closes there is room again.
func TestMaxConns(t *testing.T) {
	twoClientsAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConns = 2 },
		[]string{"MaxConns reached"}, func(string, error) {})
}

// TestBadInputsEachLogged: different bad inputs from one host are each
// logged, while the same refusal repeated (a client redialing with the wrong
// ClusterID) is logged once, not once a connection.
func TestBadInputsEachLogged(t *testing.T) {
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.ClusterID = "here"
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	openings := []string{"GET / HTTP/1.1\r\n\r\n", "\x00\x01\x02\x03\x04\x05\x06\x07", "SSH-2.0-OpenSSH_9.6\r\n"}
	for _, in := range openings {
		conn, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err, "dial")
		conn.Write([]byte(in))
		conn.SetReadDeadline(time.Now().Add(testkit.WaitShort))
		io.Copy(io.Discard, conn) // until the server closes it
		conn.Close()
	}
	testkit.Eventually(t, testkit.WaitShort, func() bool { return strings.Count(slg.String(), "not an exraft client or peer") == len(openings) },
		"the server to log each of %d bad openings; its log:\n%s", len(openings), slg)
	elsewhere := &exraft.Client{ClusterID: "elsewhere"}
	defer elsewhere.Close()
	for i := 0; i < 5; i++ {
		requireRefused(t, "a Client of another cluster", func(ctx context.Context) error {
			_, err := elsewhere.GetStatus(ctx, s.Addr())
			return err
		})
	}
	require.Equalf(t, 1, strings.Count(slg.String(), `differs from this server's \"here\"`),
		"five refusals of the same ClusterID: times logged; the log:\n%s", slg)
}

// TestBadPeersFailAtOnce: AddServer of a Peer that could never be reached
// fails at once with an error that names the problem, in process and by
// address, instead of waiting for the caller's deadline; nothing changes.
func TestBadPeersFailAtOnce(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := testkit.AwaitLeader(t, c.Servers())
	cl := &exraft.Client{}
	defer cl.Close()
	for _, p := range []exraft.Peer{
		{Name: "", Addr: "127.0.0.1:1"},
		{Name: "x", Addr: ""},
		{Name: "x", Addr: "no-port-here"},
	} {
		for _, call := range []struct {
			how string
			add func(ctx context.Context) error
		}{
			{"Server.AddServer", func(ctx context.Context) error { return s.AddServer(ctx, p) }},
			{"Client.AddServer", func(ctx context.Context) error { return cl.AddServer(ctx, s.Addr(), p) }},
		} {
			err := requireRefused(t, fmt.Sprintf("%s(%+v)", call.how, p), call.add)
			require.Contains(t, err.Error(), "AddServer", "%s(%+v): want an error naming AddServer", call.how, p)
		}
	}
	require.Len(t, s.Status().Members, 1, "members after bad AddServer calls")
}

// TestWriteKeepsNoCallerBuffer: a caller may reuse its command buffer once
// Write returns. The leader's log must hold its own copy: a server added
// later is caught up from that log and must apply what was written.
func TestWriteKeepsNoCallerBuffer(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	l := testkit.AwaitLeader(t, c.Servers())
	buf := []byte("set k v1")
	_, err := l.Write(testkit.Ctx(t, testkit.WaitShort), buf)
	require.NoError(t, err, "Write")
	copy(buf, "set k XX") // the caller's buffer, reused
	joiner := startJoiner(t, "late", nil)
	require.NoError(t, l.AddServer(testkit.Ctx(t, testkit.WaitLong), joiner.Peer()), "AddServer")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return testkit.Dirty(joiner, "get k") != "" },
		"the new server to apply k")
	require.Equal(t, "v1", testkit.Dirty(joiner, "get k"), "the new server's k: the leader's log kept the caller's buffer")
}

// TestHandshakeBudget: strangers who open connections and stall in the
// handshake take at most their own budget (64 with MaxConns 512), not
// every slot: past it, new connections are closed at once, while a Client
// already connected keeps working, and once the strangers go, new ones get
// in again.
func TestHandshakeBudget(t *testing.T) {
	slg := &exraft.TestLog{}
	c := testkit.StartCluster(t, 1, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxConns = 512 // a budget of max(64, 512/8)
		cfg.Logger = slg.Logger()
	}})
	s := testkit.AwaitLeader(t, c.Servers())
	before := &exraft.Client{}
	defer before.Close()
	_, err := before.GetStatus(testkit.Ctx(t, testkit.WaitShort), s.Addr())
	require.NoError(t, err, "a Client before the strangers")
	var stalled []net.Conn
	defer func() {
		for _, conn := range stalled {
			conn.Close()
		}
	}()
	// Strangers that say nothing, until the server starts turning new
	// connections away.
	refused := false
	for i := 0; i < 200 && !refused; i++ {
		conn, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err, "dial %d", i)
		stalled = append(stalled, conn)
		refused = slg.Has("too many handshakes")
	}
	if !refused {
		testkit.Eventually(t, testkit.WaitShort, func() bool { return slg.Has("too many handshakes") },
			"the server to turn away connections past its handshake budget; its log:\n%s", slg)
	}
	require.GreaterOrEqualf(t, len(stalled), 64, "the server turned connections away after %d strangers; want a budget of 64", len(stalled))
	_, err = before.Write(testkit.Ctx(t, testkit.WaitShort), s.Addr(), []byte("set during yes"))
	require.NoError(t, err, "the Client connected before the strangers")
	for _, conn := range stalled {
		conn.Close()
	}
	stalled = nil
	after := &exraft.Client{}
	defer after.Close()
	var last error
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		_, last = after.GetStatus(testkit.Ctx(t, testkit.WaitShort), s.Addr())
		return last == nil
	}, "a new Client to get in once the strangers left (last error: %v)", testkit.LastErr(&last))
}

// TestClientIOTimeout: a Client's IOTimeout bounds the handshake with a
// server that accepts the connection and never answers.
func TestClientIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	l := testkit.Listen(t)
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	cl := &exraft.Client{IOTimeout: ioTimeout}
	defer cl.Close()
	ctx := testkit.Ctx(t, testkit.WaitLong)
	began := time.Now()
	_, err := cl.GetStatus(ctx, l.Addr().String())
	took := time.Since(began)
	t.Logf("GetStatus of a server that never answers: %v after %v", err, took.Round(time.Millisecond))
	require.Error(t, err, "GetStatus of a server that never answers succeeded")
	require.Falsef(t, ctx.Err() != nil || took > testkit.WaitShort/2, "GetStatus of a server that never answers took %v; want about the Client's IOTimeout %v", took, ioTimeout)
	require.GreaterOrEqualf(t, took, ioTimeout*2/3, "GetStatus of a server that never answers gave up after %v, before IOTimeout %v", took, ioTimeout)
}

// TestClientClusterIDTooLong: the handshake carries a ClusterID's length in
// one byte, so a Client's ClusterID above 255 bytes can never be sent; the
// error must say so rather than blame something else.
func TestClientClusterIDTooLong(t *testing.T) {
	c := testkit.StartCluster(t, 1, testkit.Options{})
	s := testkit.AwaitLeader(t, c.Servers())
	for _, n := range []int{256, 300} {
		cl := &exraft.Client{ClusterID: strings.Repeat("a", n)}
		err := requireRefused(t, fmt.Sprintf("a Client with a %d-byte ClusterID", n), func(ctx context.Context) error {
			_, err := cl.GetStatus(ctx, s.Addr())
			return err
		})
		cl.Close()
		msg := err.Error()
		assert.Truef(t, strings.Contains(msg, "ClusterID") && !strings.Contains(msg, "Secret") && strings.Contains(msg, "255"),
			"a Client with a %d-byte ClusterID: %q; want an error saying a ClusterID has at most 255 bytes", n, msg)
	}
}

// TestSecurityConfigErrors: the connection limits and ClusterID are validated, each
// with a *ConfigError that names the field.
func TestSecurityConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		field  string
		mutate func(*exraft.Config)
	}{
		{"negative MaxConns", "MaxConns", func(c *exraft.Config) { c.MaxConns = -1 }},
		{"negative MaxConnsPerHost", "MaxConnsPerHost", func(c *exraft.Config) { c.MaxConnsPerHost = -1 }},
		{"negative MaxPendingCalls", "MaxPendingCalls", func(c *exraft.Config) { c.MaxPendingCalls = -1 }},
		{"negative IOTimeout", "IOTimeout", func(c *exraft.Config) { c.IOTimeout = -time.Millisecond }},
		{"negative MaxCommandSize", "MaxCommandSize", func(c *exraft.Config) { c.MaxCommandSize = -1 }},
		{"MaxCommandSize above MaxFrameSize-1024", "MaxCommandSize", func(c *exraft.Config) {
			c.MaxFrameSize = 4096
			c.MaxCommandSize = 4096 - 1024 + 1
		}},
		{"MaxCommandSize above the default MaxFrameSize-1024", "MaxCommandSize", func(c *exraft.Config) {
			c.MaxCommandSize = 8<<20 - 1024 + 1
		}},
		{"ClusterID of 256 bytes", "ClusterID", func(c *exraft.Config) { c.ClusterID = strings.Repeat("c", 256) }},
		{"TLS without a certificate", "TLS", func(c *exraft.Config) { c.TLS = &tls.Config{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testkit.FastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(testkit.NewKV(), cfg)
			if err == nil {
				_ = exraft.StopServer(s)
				require.FailNowf(t, "StartServer accepted an invalid Config", "%s", tc.name)
			}
			var ce *exraft.ConfigError
			require.ErrorAsf(t, err, &ce, "StartServer: %v (%T), want a *exraft.ConfigError", err, err)
			require.Equal(t, tc.field, ce.Field, "StartServer: the field of the ConfigError (%v)", err)
			require.Contains(t, err.Error(), tc.field, "StartServer: the error does not name the field")
		})
	}
	// The limits themselves are allowed.
	for _, tc := range []struct {
		name   string
		mutate func(*exraft.Config)
	}{
		{"MaxCommandSize of MaxFrameSize-1024", func(c *exraft.Config) {
			c.MaxFrameSize = 4096
			c.MaxCommandSize = 4096 - 1024
		}},
		{"ClusterID of 255 bytes", func(c *exraft.Config) { c.ClusterID = strings.Repeat("c", 255) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testkit.FastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(testkit.NewKV(), cfg)
			require.NoError(t, err, "StartServer with %s", tc.name)
			require.NoError(t, exraft.StopServer(s), "StopServer")
		})
	}
}

// TestMaxPendingCalls: with MaxPendingCalls 4, a Client firing 64 Writes at
// once sees every one of them succeed (they queue, they do not fail), and the
// cluster goes on committing.
func TestMaxPendingCalls(t *testing.T) {
	const n = 64
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		cfg.MaxPendingCalls = 4
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set warm up")
	leader := testkit.AwaitLeader(t, c.Servers())

	cl := &exraft.Client{}
	defer cl.Close()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitLong)
			defer cancel()
			addr := leader.Addr()
			cmd := []byte(fmt.Sprintf("set p%d v%d", i, i))
			for {
				_, err := cl.Write(ctx, addr, cmd)
				if err == nil {
					errs <- nil
					return
				}
				var re *exraft.RedirectError
				switch {
				case errors.As(err, &re):
					addr = re.Leader.Addr // leadership moved: follow it
				case ctx.Err() == nil && (errors.Is(err, exraft.ErrNoLeader) || errors.Is(err, exraft.ErrLeadershipLost)):
					// An election: wait for its outcome, then retry.
					p, aerr := cl.AwaitLeader(ctx, addr)
					if aerr == nil {
						addr = p.Addr
					}
				default:
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 5 { // the first few say enough
				assert.NoError(t, err)
			}
		}
	}
	require.Zerof(t, failed, "%d of %d concurrent Writes failed with MaxPendingCalls 4; want all to succeed", failed, n)
	dump := testkit.ParseDump(testkit.ReadAny(t, c.Servers(), "dump"))
	for i := range n {
		require.Equal(t, fmt.Sprintf("v%d", i), dump[fmt.Sprintf("p%d", i)], "p%d after the flood", i)
	}
	testkit.WriteAny(t, c.Servers(), "set after flood")
	testkit.AwaitAllHave(t, c.Servers(), "after", "flood")
	require.Equal(t, "ok", clientWrite(t, cl, c.Servers(), "set client again"), "the flooding Client's next Write")
}

// readUntilClosed reads conn until the server ends it, and returns what arrived
// and how long that took since began. Our own deadline (testkit.WaitShort) ending the
// read fails the test: the server kept the connection.
func readUntilClosed(t *testing.T, what string, conn net.Conn, began time.Time, ioTimeout time.Duration) ([]byte, time.Duration) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testkit.WaitShort)), "SetReadDeadline")
	got, err := io.ReadAll(conn)
	took := time.Since(began)
	var ne net.Error
	require.Falsef(t, errors.As(err, &ne) && ne.Timeout(), "%s: the server kept the connection open for %v (IOTimeout %v)", what, took, ioTimeout)
	require.Falsef(t, err != nil && !errors.Is(err, syscall.ECONNRESET), "%s: reading until the server closes: %v", what, err)
	t.Logf("%s: closed by the server after %v (read %q, %v)", what, took.Round(time.Millisecond), got, err)
	return got, took
}

// TestIOTimeout: a connection that never sends its handshake is closed after
// IOTimeout, one that opens with garbage is closed at once and logged, and
// the cluster is unaffected by either.
func TestIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	logs := make([]*exraft.TestLog, 3)
	c := testkit.StartCluster(t, 3, testkit.Options{Configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.IOTimeout = ioTimeout
	}})
	testkit.LeaderVia(t, c.Servers()[0], c.Servers())
	testkit.WriteAny(t, c.Servers(), "set before raw")

	readEnd := func(what string, conn net.Conn, began time.Time) ([]byte, time.Duration) {
		t.Helper()
		return readUntilClosed(t, what, conn, began, ioTimeout)
	}

	// A connection that says nothing.
	idle := c.Servers()[0]
	began := time.Now()
	conn := dialRaw(t, idle.Addr(), nil)
	got, took := readEnd("a silent connection", conn, began)
	require.Empty(t, got, "the server answered a connection that never said hello")
	require.GreaterOrEqualf(t, took, ioTimeout*2/3, "a silent connection was closed after %v, before IOTimeout %v", took, ioTimeout)
	require.LessOrEqualf(t, took, testkit.WaitShort/2, "a silent connection was closed after %v, want about IOTimeout %v", took, ioTimeout)
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs[0].Has("refused a connection", "no handshake", conn.LocalAddr().String()) },
		"%s to log that the silent connection sent no handshake; its log:\n%s", idle.Name(), logs[0])
	testkit.WriteAny(t, c.Servers(), "set after idle")
	testkit.AwaitAllHave(t, c.Servers(), "after", "idle")

	// A connection that opens with something else than exraft.
	target := c.Servers()[1]
	began = time.Now()
	garbage := dialRaw(t, target.Addr(), []byte("GET / HTTP/1.1\r\n\r\n"))
	got, took = readEnd("a connection that sent HTTP", garbage, began)
	require.Empty(t, got, "the server answered HTTP")
	require.LessOrEqualf(t, took, testkit.WaitShort/2, "a connection that sent HTTP was closed after %v, want at once", took)
	testkit.Eventually(t, testkit.WaitShort, func() bool {
		return logs[1].Has("refused a connection", "not an exraft client", garbage.LocalAddr().String())
	},
		"%s to log the refusal of the HTTP request; its log:\n%s", target.Name(), logs[1])
	testkit.WriteAny(t, c.Servers(), "set after garbage")
	testkit.AwaitAllHave(t, c.Servers(), "after", "garbage")

	// A hello of a handshake version this server does not speak is refused
	// with the reason.
	third := c.Servers()[2]
	began = time.Now()
	v9 := dialRaw(t, third.Addr(), append([]byte("EXRAFT\x09\x00"), make([]byte, nonceSize)...))
	got, _ = readEnd("a hello of version 9", v9, began)
	requireRefusal(t, "a version 9 hello", got, "version 9")
	testkit.Eventually(t, testkit.WaitShort, func() bool { return logs[2].Has("refused a connection", "version 9", v9.LocalAddr().String()) },
		"%s to log the refusal of version 9; its log:\n%s", third.Name(), logs[2])

	// After a handshake: frames that stop halfway, and a length prefix above
	// MaxFrameSize. Each case goes to a server whose "bad input" warning
	// has not been used yet (one line per source every few seconds).
	for _, tc := range []struct {
		name   string
		server int
		send   []byte
		slow   bool // closed after IOTimeout, not at once
	}{
		{name: "half a frame body", server: 0, send: []byte{0, 0, 0, 100, 1, 2, 3, 4, 5}, slow: true},
		{name: "a length prefix above MaxFrameSize", server: 1, send: []byte{0xff, 0xff, 0xff, 0xff}},
		{name: "half a length prefix", server: 2, send: []byte{0, 0}, slow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := c.Servers()[tc.server]
			conn := rawHandshake(t, s.Addr())
			began := time.Now()
			_, err := conn.Write(tc.send)
			require.NoError(t, err, "write")
			got, took := readUntilClosed(t, tc.name, conn, began, ioTimeout)
			require.Empty(t, got, "the server answered")
			if tc.slow {
				require.GreaterOrEqualf(t, took, ioTimeout*2/3, "closed after %v, before IOTimeout %v", took, ioTimeout)
			}
			require.LessOrEqualf(t, took, testkit.WaitShort/2, "closed after %v, want about IOTimeout %v", took, ioTimeout)
			testkit.Eventually(t, testkit.WaitShort, func() bool {
				return logs[tc.server].Has("closed a connection after bad input", conn.LocalAddr().String())
			},
				"%s to log the bad input; its log:\n%s", s.Name(), logs[tc.server])
		})
	}
	testkit.WriteAny(t, c.Servers(), "set after frames")
	testkit.AwaitAllHave(t, c.Servers(), "after", "frames")

	// A real Client still gets in.
	cl := &exraft.Client{}
	defer cl.Close()
	st, err := cl.GetStatus(testkit.Ctx(t, testkit.WaitShort), target.Addr())
	require.NoError(t, err, "GetStatus(%s) after the garbage", target.Name())
	require.Equal(t, target.Name(), st.Name, "GetStatus(%s) after the garbage", target.Name())
}
