package exraft_test

// Tests of who may talk to a cluster: TLS and mutual TLS between servers
// and clients, and the handshake's ClusterID and Secret (the limits that
// keep one client from hurting the cluster are in limits_test.go).
// Everything runs on loopback; certificates are made in memory when the
// test runs.

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
	"testing"
	"time"

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
