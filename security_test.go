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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exraft/exraft"
)

// secJoinWait is how long AddServer of a server that must not get in is
// given before it has to give up.
const secJoinWait = 3 * time.Second

// ---------------------------------------------------------------------------
// Certificates

// secCA is a certificate authority made for one test.
type secCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // holds only cert
}

func secSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial number: %v", err)
	}
	return n
}

func secNewCA(t testing.TB, name string) *secCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          secSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &secCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for 127.0.0.1 that serves both ends of a
// connection (server and client authentication), signed by ca.
func (ca *secCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return ca.issueFor(t, name, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
}

// issueFor is issue for the given IP addresses and DNS names.
func (ca *secCA) issueFor(t testing.TB, name string, ips []net.IP, dnsNames []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key of %s: %v", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: secSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("certificate of %s: %v", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate of %s: %v", name, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// secServerTLS is a server's TLS configuration: it presents cert and trusts
// ca for the peers it dials; mutual also makes it require a client
// certificate signed by ca.
func secServerTLS(ca *secCA, cert tls.Certificate, mutual bool) *tls.Config {
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
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			t.Fatalf("write to %s: %v", addr, err)
		}
	}
	return conn
}

// ---------------------------------------------------------------------------
// Logs

// ---------------------------------------------------------------------------
// Helpers

// secRefused runs call with a ctx of waitShort and checks that it failed,
// well before that deadline: a refusal, not a hang. It returns the error.
func secRefused(t *testing.T, what string, call func(ctx context.Context) error) error {
	t.Helper()
	ctx := ctxFor(t, waitShort)
	began := time.Now()
	err := call(ctx)
	took := time.Since(began)
	if err == nil {
		t.Fatalf("%s succeeded; want it refused", what)
	}
	if errors.Is(err, context.DeadlineExceeded) || took > waitShort/2 {
		t.Fatalf("%s: %v after %v; want a prompt refusal, not a wait for the ctx (%v)", what, err, took, waitShort)
	}
	t.Logf("%s refused after %v: %v", what, took.Round(time.Millisecond), err)
	return err
}

// secClientWrite writes cmd through cl at whichever of servers leads.
func secClientWrite(t *testing.T, cl *exraft.Client, servers []*exraft.Server, cmd string) string {
	t.Helper()
	return string(atLeader(t, servers, "Client.Write", cmd, func(s *exraft.Server, ctx context.Context, b []byte) ([]byte, error) {
		return cl.Write(ctx, s.Addr(), b)
	}))
}

// secClientRead reads q through cl at whichever of servers leads.
func secClientRead(t *testing.T, cl *exraft.Client, servers []*exraft.Server, q string) string {
	t.Helper()
	return string(atLeader(t, servers, "Client.Read", q, func(s *exraft.Server, ctx context.Context, b []byte) ([]byte, error) {
		return cl.Read(ctx, s.Addr(), b)
	}))
}

// secStartJoiner starts a server that waits to be added to a cluster: its
// InitialConfig names only itself and MinMajority is 2. mutate adjusts its
// Config before it starts.
func secStartJoiner(t *testing.T, name string, mutate func(*exraft.Config)) *exraft.Server {
	t.Helper()
	cfg := fastConfig(name)
	l := listen(t)
	cfg.Listener = l
	cfg.InitialConfig = []exraft.Peer{{Name: name, Addr: l.Addr().String()}}
	cfg.MinMajority = 2
	if mutate != nil {
		mutate(&cfg)
	}
	return start(t, newKV(), cfg)
}

// secCannotJoin checks that joiner cannot get into the cluster c: AddServer
// on the leader ends with its ctx's deadline, joiner is a member nowhere and
// never hears from a leader, and the cluster still commits (key=done) without
// it.
func secCannotJoin(t *testing.T, c *cluster, joiner *exraft.Server, key string) {
	t.Helper()
	writeAny(t, c.servers, "set before-"+key+" yes")
	leader := awaitLeader(t, c.servers)
	ctx, cancel := context.WithTimeout(context.Background(), secJoinWait)
	defer cancel()
	began := time.Now()
	err := leader.AddServer(ctx, joiner.Peer())
	t.Logf("AddServer(%v) on %s returned %v after %v", joiner.Peer(), leader.Name(), err, time.Since(began).Round(time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AddServer(%v) on %s: got %v, want context.DeadlineExceeded:%s", joiner.Peer(), leader.Name(), err, statuses(c.servers))
	}
	for _, s := range c.servers {
		if st := s.Status(); mbHasName(st.Members, joiner.Name()) {
			t.Fatalf("%s lists %s among its Members %v after the failed AddServer", s.Name(), joiner.Name(), st.Members)
		}
	}
	eventually(t, waitShort, func() bool { return len(leader.Status().Learners) == 0 },
		"the leader's Learners to be empty after the failed AddServer:%s", statuses{leader})
	writeAny(t, c.servers, "set "+key+" done")
	mbAllHave(t, c.servers, key, "done")
	if p, ok := joiner.Leader(); ok {
		t.Fatalf("%s knows leader %v: it heard from the cluster", joiner.Name(), p)
	}
	if st := joiner.Status(); st.Role == exraft.Leader || mbHasName(st.Members, leader.Name()) {
		t.Fatalf("%s: Status %+v; want a lone follower that knows no other member", joiner.Name(), st)
	}
	if got := dirty(joiner, "get before-"+key); got != "" {
		t.Fatalf("%s applied before-%s=%q: it received the cluster's log", joiner.Name(), key, got)
	}
}

// The handshake on the wire, for raw connections that play a dialer by hand
// (see handshake.go): hello = "EXRAFT", version 2, len(ClusterID),
// ClusterID, a 32-byte nonce, CR LF; the acceptor answers 0, its nonce and its
// proof; the dialer sends 0 and its proof; the acceptor's last verdict is 0.
// A refusal is 1, a length byte and the reason.
const (
	secNonceSize = 32
	secProofSize = sha256.Size
)

// secProof is HMAC-SHA256(secret, role, len(clusterID), clusterID, dialer
// nonce, acceptor nonce), the proof of a plain (non-TLS) connection.
func secProof(secret []byte, role, clusterID string, dialerNonce, acceptorNonce []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(role))
	mac.Write([]byte{byte(len(clusterID))})
	mac.Write([]byte(clusterID))
	mac.Write(dialerNonce)
	mac.Write(acceptorNonce)
	return mac.Sum(nil)
}

// secRawHello dials addr and sends a hello with clusterID; it returns the
// connection, the dialer's nonce and the acceptor's nonce once the acceptor
// accepted the hello.
func secRawHello(t *testing.T, addr, clusterID string) (net.Conn, []byte, []byte) {
	t.Helper()
	conn := secRawDial(t, addr)
	nonce, theirs, err := secHello(conn, clusterID)
	if err != nil {
		t.Fatal(err)
	}
	return conn, nonce, theirs
}

// secRawHandshake opens a plain connection to addr that has passed the
// handshake (no Secret, ClusterID ""), ready for frames.
func secRawHandshake(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn := secRawDial(t, addr)
	if err := secPlainHandshake(conn); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	return conn
}

// secRawDial dials addr, with a deadline for the handshake.
func secRawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(waitShort)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	return conn
}

// secHello sends a hello with clusterID on conn; it returns the dialer's
// nonce and the acceptor's once the acceptor accepted the hello.
func secHello(conn net.Conn, clusterID string) (nonce, theirs []byte, err error) {
	nonce = make([]byte, secNonceSize)
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
	challenge := make([]byte, 1+secNonceSize)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return nil, nil, fmt.Errorf("read the acceptor's challenge: %w", err)
	}
	if challenge[0] != 0 {
		return nil, nil, fmt.Errorf("the acceptor refused the hello: %q", challenge)
	}
	return nonce, challenge[1:], nil
}

// secPlainHandshake plays the dialer's side of the handshake on conn, with
// no Secret and ClusterID "", so that frames can follow; it sets no
// deadline. It never calls t, for tests that dial from many goroutines
// (hostile_test.go).
func secPlainHandshake(conn net.Conn) error {
	nonce, theirs, err := secHello(conn, "")
	if err != nil {
		return err
	}
	if _, err := conn.Write(secProof(nil, "dialer", "", nonce, theirs)); err != nil {
		return fmt.Errorf("write the dialer's proof: %w", err)
	}
	answer := make([]byte, 1+secProofSize)
	if _, err := io.ReadFull(conn, answer); err != nil || answer[0] != 0 {
		return fmt.Errorf("the acceptor's verdict on the dialer's proof: %q %v, want accepted", answer, err)
	}
	if !hmac.Equal(answer[1:], secProof(nil, "acceptor", "", nonce, theirs)) {
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
	ca := secNewCA(t, "exraft test CA")
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.TLS = secServerTLS(ca, ca.issue(t, cfg.Name), false)
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set inproc 1")
	mbAllHave(t, c.servers, "inproc", "1")

	cl := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool}}
	defer cl.Close()
	if got := secClientWrite(t, cl, c.servers, "set tls yes"); got != "ok" {
		t.Fatalf("Write over TLS returned %q, want ok", got)
	}
	if got := secClientRead(t, cl, c.servers, "get tls"); got != "yes" {
		t.Fatalf("Read over TLS = %q, want yes", got)
	}
	mbAllHave(t, c.servers, "tls", "yes")

	leader := awaitLeader(t, c.servers)
	plain := &exraft.Client{}
	defer plain.Close()
	secRefused(t, "a plain Write to a TLS server", func(ctx context.Context) error {
		_, err := plain.Write(ctx, leader.Addr(), []byte("set plain yes"))
		return err
	})
	secRefused(t, "a plain GetStatus of a TLS server", func(ctx context.Context) error {
		_, err := plain.GetStatus(ctx, leader.Addr())
		return err
	})

	other := secNewCA(t, "some other CA")
	untrusting := &exraft.Client{TLS: &tls.Config{RootCAs: other.pool}}
	defer untrusting.Close()
	err := secRefused(t, "a Write from a Client that does not trust the CA", func(ctx context.Context) error {
		_, err := untrusting.Write(ctx, leader.Addr(), []byte("set untrusting yes"))
		return err
	})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Write from a Client that does not trust the CA: %v (%T), want an x509.UnknownAuthorityError", err, err)
	}

	// A server whose certificate names another address: with ServerName
	// empty the address dialed is verified, so a Client refuses it; naming
	// the certificate's host in ServerName lets it through.
	elsewhereCfg := fastConfig("elsewhere")
	elsewhereCfg.TLS = secServerTLS(ca, ca.issueFor(t, "elsewhere", []net.IP{net.IPv4(10, 9, 9, 9)}, []string{"elsewhere.example"}), false)
	elsewhere := start(t, newKV(), elsewhereCfg)
	err = secRefused(t, "a Client dialing a server whose certificate names another address", func(ctx context.Context) error {
		_, err := cl.GetStatus(ctx, elsewhere.Addr())
		return err
	})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("GetStatus of a server whose certificate names 10.9.9.9: %v (%T), want an x509.HostnameError", err, err)
	}
	named := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool, ServerName: "elsewhere.example"}}
	defer named.Close()
	if st, err := named.GetStatus(ctxFor(t, waitShort), elsewhere.Addr()); err != nil || st.Name != "elsewhere" {
		t.Fatalf("GetStatus with ServerName elsewhere.example: %+v, %v", st, err)
	}

	if got := secClientWrite(t, cl, c.servers, "set after refused"); got != "ok" {
		t.Fatalf("Write over TLS after the refusals returned %q, want ok", got)
	}
	for _, k := range []string{"plain", "untrusting"} {
		if got := secClientRead(t, cl, c.servers, "get "+k); got != "" {
			t.Fatalf("the refused Write of %s was applied: %q", k, got)
		}
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
	ca := secNewCA(t, "exraft cluster CA")
	rogue := secNewCA(t, "exraft rogue CA")
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.TLS = secServerTLS(ca, ca.issue(t, cfg.Name), true)
		cfg.ClusterID, cfg.Secret = clusterID, secret
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set mtls 1")
	mbAllHave(t, c.servers, "mtls", "1")

	good := &exraft.Client{
		TLS:       &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "client")}},
		ClusterID: clusterID,
		Secret:    secret,
	}
	defer good.Close()
	if got := secClientWrite(t, good, c.servers, "set client yes"); got != "ok" {
		t.Fatalf("Write with a client certificate returned %q, want ok", got)
	}
	if got := secClientRead(t, good, c.servers, "get client"); got != "yes" {
		t.Fatalf("Read with a client certificate = %q, want yes", got)
	}

	leader := awaitLeader(t, c.servers)
	anonymous := &exraft.Client{TLS: &tls.Config{RootCAs: ca.pool}, ClusterID: clusterID, Secret: secret}
	defer anonymous.Close()
	secRefused(t, "a Write with no client certificate", func(ctx context.Context) error {
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
	secRefused(t, "a Write with a client certificate of another CA", func(ctx context.Context) error {
		_, err := impostor.Write(ctx, leader.Addr(), []byte("set impostor yes"))
		return err
	})

	// A fourth server trusts the cluster's CA but holds a certificate of the
	// rogue CA: the cluster must neither admit it nor let it vote.
	raft4 := secStartJoiner(t, "raft4", func(cfg *exraft.Config) {
		cfg.TLS = secServerTLS(ca, rogue.issue(t, "raft4"), true)
		cfg.ClusterID, cfg.Secret = clusterID, secret
	})
	secCannotJoin(t, c, raft4, "after-rogue")

	for _, k := range []string{"anonymous", "impostor"} {
		if got := secClientRead(t, good, c.servers, "get "+k); got != "" {
			t.Fatalf("the refused Write of %s was applied: %q", k, got)
		}
	}
}

// ---------------------------------------------------------------------------
// The handshake: ClusterID and Secret

// TestClusterIDMismatch: a Client or a server of another ClusterID is
// refused with an error that says why, and both ends log the refusal.
func TestClusterIDMismatch(t *testing.T) {
	logs := make([]*exraft.TestLog, 3)
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.ClusterID = "a"
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set cluster a")

	right := &exraft.Client{ClusterID: "a"}
	defer right.Close()
	if got := secClientWrite(t, right, c.servers, "set right yes"); got != "ok" {
		t.Fatalf("Write with the right ClusterID returned %q, want ok", got)
	}

	leader := awaitLeader(t, c.servers)
	for _, id := range []string{"b", ""} {
		cl := &exraft.Client{ClusterID: id}
		err := secRefused(t, fmt.Sprintf("a Write with ClusterID %q", id), func(ctx context.Context) error {
			_, err := cl.Write(ctx, leader.Addr(), []byte("set wrong yes"))
			return err
		})
		cl.Close()
		if !errors.Is(err, exraft.ErrUnauthorized) {
			t.Fatalf("Write with ClusterID %q: %v (%T), want an error matching ErrUnauthorized", id, err, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "ClusterID") || !strings.Contains(msg, fmt.Sprintf("%q", id)) || !strings.Contains(msg, `"a"`) {
			t.Fatalf("Write with ClusterID %q: error %q does not name both ClusterIDs", id, msg)
		}
	}
	leaderLog := logs[indexOf(c.servers, leader)]
	eventually(t, waitShort, func() bool { return leaderLog.Has("refused a connection", "ClusterID") },
		"%s to log that it refused the Client; its log:\n%s", leader.Name(), leaderLog)

	// A server of cluster "b", added to cluster "a", never gets in; it
	// refuses the leader (the acceptor's log) and the leader hears why (the
	// dialer's log).
	bLog := &exraft.TestLog{}
	b := secStartJoiner(t, "raft-b", func(cfg *exraft.Config) {
		cfg.ClusterID = "b"
		cfg.Logger = bLog.Logger()
	})
	secCannotJoin(t, c, b, "after-b")
	eventually(t, waitShort, func() bool { return bLog.Has("refused a connection", "ClusterID") },
		"%s to log that it refused cluster a; its log:\n%s", b.Name(), bLog)
	eventually(t, waitShort, func() bool {
		for _, l := range logs {
			if l.Has("a peer refused this server's connection", b.Addr(), "ClusterID", `\"a\"`, `\"b\"`) {
				return true
			}
		}
		return false
	}, "a server of cluster a to log that %s refused it; leader's log:\n%s", b.Addr(), leaderLog)

	if got := secClientRead(t, right, c.servers, "get wrong"); got != "" {
		t.Fatalf("a refused Write was applied: wrong=%q", got)
	}
}

// indexOf returns the index of s in servers, or -1.
func indexOf(servers []*exraft.Server, s *exraft.Server) int {
	for i, x := range servers {
		if x == s {
			return i
		}
	}
	return -1
}

// TestSecret: with a Secret, only Clients and servers that know it get in.
func TestSecret(t *testing.T) {
	secret := []byte("s3cret")
	logs := make([]*exraft.TestLog, 3)
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.Secret = secret
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set secret kept")
	mbAllHave(t, c.servers, "secret", "kept")

	right := &exraft.Client{Secret: []byte("s3cret")}
	defer right.Close()
	if got := secClientWrite(t, right, c.servers, "set right yes"); got != "ok" {
		t.Fatalf("Write with the right Secret returned %q, want ok", got)
	}
	if got := secClientRead(t, right, c.servers, "get right"); got != "yes" {
		t.Fatalf("Read with the right Secret = %q, want yes", got)
	}

	leader := awaitLeader(t, c.servers)
	for _, tc := range []struct {
		what   string
		secret []byte
	}{
		{"a wrong Secret", []byte("s3cres")},
		{"no Secret", nil},
		{"a longer Secret", []byte("s3cret!")},
	} {
		cl := &exraft.Client{Secret: tc.secret}
		err := secRefused(t, "a Write with "+tc.what, func(ctx context.Context) error {
			_, err := cl.Write(ctx, leader.Addr(), []byte("set wrong yes"))
			return err
		})
		cl.Close()
		if !errors.Is(err, exraft.ErrUnauthorized) {
			t.Fatalf("Write with %s: %v (%T), want an error matching ErrUnauthorized", tc.what, err, err)
		}
		if !strings.Contains(err.Error(), "Secret") {
			t.Fatalf("Write with %s: error %q does not say the Secret is the problem", tc.what, err)
		}
	}

	// A dialer that does not know the Secret, and sends a made-up proof, is
	// refused by the acceptor, which has proved nothing to it.
	follower := others(c.servers, leader)[0]
	fi := indexOf(c.servers, follower)
	conn, _, _ := secRawHello(t, follower.Addr(), "")
	if _, err := conn.Write(make([]byte, secProofSize)); err != nil {
		t.Fatalf("write a fake proof: %v", err)
	}
	reply, _ := secReadEnd(t, "a fake proof", conn, time.Now(), 0)
	if len(reply) < 2 || reply[0] != 1 || int(reply[1]) != len(reply)-2 || !strings.Contains(string(reply[2:]), "Secret") {
		t.Fatalf("answer to a fake proof: %q; want a refusal (1, length, reason naming the Secret)", reply)
	}
	eventually(t, waitShort, func() bool { return logs[fi].Has("refused a connection", "Secret", conn.LocalAddr().String()) },
		"%s to log that it refused a fake proof; its log:\n%s", follower.Name(), logs[fi])

	// A server of the same (empty) ClusterID that lacks the Secret.
	nlog := &exraft.TestLog{}
	nosecret := secStartJoiner(t, "raft-nosecret", func(cfg *exraft.Config) { cfg.Logger = nlog.Logger() })
	secCannotJoin(t, c, nosecret, "after-nosecret")
	eventually(t, waitShort, func() bool { return nlog.Has("refused a connection", "Secret") },
		"%s to log the refusal; its log:\n%s", nosecret.Name(), nlog)

	if got := secClientRead(t, right, c.servers, "get wrong"); got != "" {
		t.Fatalf("a refused Write was applied: wrong=%q", got)
	}
}

// ---------------------------------------------------------------------------
// Limits

// TestMaxCommandSize: a command above MaxCommandSize fails with ErrTooLarge,
// in process and by address, and appends nothing; one of exactly the limit
// commits, and so do later writes.
func TestMaxCommandSize(t *testing.T) {
	const limit = 1000
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.MaxCommandSize = limit
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set warm up")
	mbAllHave(t, c.servers, "warm", "up")
	leader := awaitLeader(t, c.servers)
	eventually(t, waitShort, func() bool {
		st := leader.Status()
		return st.AppliedIndex == st.LastIndex
	}, "the leader to apply its whole log:%s", statuses{leader})

	big := "set big " + strings.Repeat("x", limit+1-len("set big "))
	if len(big) != limit+1 {
		t.Fatalf("test bug: len(big) = %d", len(big))
	}
	cl := &exraft.Client{}
	defer cl.Close()
	before := leader.Status()
	_, err := leader.Write(ctxFor(t, waitShort), []byte(big))
	if !errors.Is(err, exraft.ErrTooLarge) {
		t.Fatalf("Server.Write of %d bytes with MaxCommandSize %d: got %v, want ErrTooLarge", len(big), limit, err)
	}
	if !strings.Contains(err.Error(), "MaxCommandSize") {
		t.Errorf("Server.Write of a command too large: error %q does not name MaxCommandSize", err)
	}
	_, err = cl.Write(ctxFor(t, waitShort), leader.Addr(), []byte(big))
	if !errors.Is(err, exraft.ErrTooLarge) {
		t.Fatalf("Client.Write of %d bytes with MaxCommandSize %d: got %v (%T), want ErrTooLarge", len(big), limit, err, err)
	}
	after := leader.Status()
	if after.Term == before.Term && after.LastIndex != before.LastIndex {
		t.Fatalf("the leader's LastIndex went from %d to %d in term %d: a command too large was appended", before.LastIndex, after.LastIndex, after.Term)
	}
	if after.Term != before.Term {
		t.Logf("the term changed (%d -> %d): LastIndex is not compared, the histories are", before.Term, after.Term)
	}

	// Exactly the limit is accepted, and the cluster goes on committing.
	exact := "set exact " + strings.Repeat("y", limit-len("set exact "))
	writeAny(t, c.servers, exact)
	writeAny(t, c.servers, "set after big")
	mbAllHave(t, c.servers, "after", "big")
	mbAllHave(t, c.servers, "exact", strings.Repeat("y", limit-len("set exact ")))
	for i, kv := range c.kvs {
		for _, cmd := range kv.history() {
			if cmd == big {
				t.Fatalf("%s applied the command that was too large", c.servers[i].Name())
			}
		}
	}

	// A call that does not fit the Client's own frame fails the same way,
	// and the Client remains usable.
	small := &exraft.Client{MaxFrameSize: 4096}
	defer small.Close()
	huge := "set huge " + strings.Repeat("z", 8192)
	_, err = small.Write(ctxFor(t, waitShort), leader.Addr(), []byte(huge))
	if !errors.Is(err, exraft.ErrTooLarge) {
		t.Fatalf("Write of %d bytes through a Client with MaxFrameSize 4096: got %v, want ErrTooLarge", len(huge), err)
	}
	if got := secClientWrite(t, small, c.servers, "set small ok"); got != "ok" {
		t.Fatalf("Write through the small Client after ErrTooLarge returned %q, want ok", got)
	}
}

// secTwoAndNoMore starts a one-server cluster whose limit (set by limit)
// admits two connections, and checks that two Clients get in; a third is
// refused promptly (refused checks its error further); the two keep
// working; the server logs each of logged; and once the first Client
// closes, the third gets in. It returns the server and the three Clients.
func secTwoAndNoMore(t *testing.T, limit func(*exraft.Config), logged []string, refused func(who string, err error)) (*exraft.Server, []*exraft.Client) {
	t.Helper()
	slg := &exraft.TestLog{}
	c := startCluster(t, 1, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		limit(cfg)
		cfg.Logger = slg.Logger()
	}})
	s := awaitLeader(t, c.servers)
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
		if err := status(cl); err != nil {
			t.Fatalf("client %d of 2: %v", i+1, err)
		}
	}
	refused("a third Client", secRefused(t, "a third Client", func(ctx context.Context) error {
		_, err := cls[2].GetStatus(ctx, s.Addr())
		return err
	}))
	for i, cl := range cls[:2] {
		if _, err := cl.Write(ctxFor(t, waitShort), s.Addr(), []byte(fmt.Sprintf("set c%d yes", i+1))); err != nil {
			t.Fatalf("client %d after the refusal: %v", i+1, err)
		}
	}
	eventually(t, waitShort, func() bool { return slg.Has(logged...) },
		"the server to log the refusal (%q); its log:\n%s", logged, slg)
	cls[0].Close()
	var last error
	eventually(t, waitShort, func() bool {
		last = status(cls[2])
		return last == nil
	}, "a third Client to get in once the first closed (last error: %v)", lastErr{&last})
	return s, cls
}

// TestMaxConnsPerHost: past MaxConnsPerHost connections from one address a
// new one is refused with a reason; when one closes there is room again.
func TestMaxConnsPerHost(t *testing.T) {
	refused := func(who string, err error) {
		t.Helper()
		if !errors.Is(err, exraft.ErrUnauthorized) || !strings.Contains(err.Error(), "MaxConnsPerHost") {
			t.Fatalf("%s past MaxConnsPerHost: %v; want ErrUnauthorized naming MaxConnsPerHost", who, err)
		}
	}
	s, cls := secTwoAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConnsPerHost = 2 },
		[]string{"refused a connection", "MaxConnsPerHost"}, refused)
	// The second and third Clients hold the two places now.
	refused("the first Client, reconnecting", secRefused(t, "the first Client, reconnecting", func(ctx context.Context) error {
		_, err := cls[0].GetStatus(ctx, s.Addr())
		return err
	}))
	if got := dirty(s, "get c1"); got != "yes" {
		t.Fatalf("c1=%q, want yes", got)
	}
}

// TestMaxConns: past MaxConns connections a new one is closed at once; when
// one closes there is room again.
func TestMaxConns(t *testing.T) {
	secTwoAndNoMore(t, func(cfg *exraft.Config) { cfg.MaxConns = 2 },
		[]string{"MaxConns reached"}, func(string, error) {})
}

// TestBadInputsEachLogged: different bad inputs from one host are each
// logged, while the same refusal repeated (a client redialing with the wrong
// ClusterID) is logged once, not once a connection.
func TestBadInputsEachLogged(t *testing.T) {
	slg := &exraft.TestLog{}
	c := startCluster(t, 1, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.ClusterID = "here"
		cfg.Logger = slg.Logger()
	}})
	s := awaitLeader(t, c.servers)
	openings := []string{"GET / HTTP/1.1\r\n\r\n", "\x00\x01\x02\x03\x04\x05\x06\x07", "SSH-2.0-OpenSSH_9.6\r\n"}
	for _, in := range openings {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conn.Write([]byte(in))
		conn.SetReadDeadline(time.Now().Add(waitShort))
		io.Copy(io.Discard, conn) // until the server closes it
		conn.Close()
	}
	eventually(t, waitShort, func() bool { return strings.Count(slg.String(), "not an exraft client or peer") == len(openings) },
		"the server to log each of %d bad openings; its log:\n%s", len(openings), slg)
	elsewhere := &exraft.Client{ClusterID: "elsewhere"}
	defer elsewhere.Close()
	for i := 0; i < 5; i++ {
		secRefused(t, "a Client of another cluster", func(ctx context.Context) error {
			_, err := elsewhere.GetStatus(ctx, s.Addr())
			return err
		})
	}
	if n := strings.Count(slg.String(), `differs from this server's \"here\"`); n != 1 {
		t.Fatalf("five refusals of the same ClusterID logged %d times, want once; the log:\n%s", n, slg)
	}
}

// TestBadPeersFailAtOnce: AddServer of a Peer that could never be reached
// fails at once with an error that names the problem, in process and by
// address, instead of waiting for the caller's deadline; nothing changes.
func TestBadPeersFailAtOnce(t *testing.T) {
	c := startCluster(t, 1, clusterOptions{})
	s := awaitLeader(t, c.servers)
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
			err := secRefused(t, fmt.Sprintf("%s(%+v)", call.how, p), call.add)
			if !strings.Contains(err.Error(), "AddServer") {
				t.Fatalf("%s(%+v): %v; want an error naming AddServer", call.how, p, err)
			}
		}
	}
	if m := s.Status().Members; len(m) != 1 {
		t.Fatalf("members after bad AddServer calls: %v", m)
	}
}

// TestWriteKeepsNoCallerBuffer: a caller may reuse its command buffer once
// Write returns. The leader's log must hold its own copy: a server added
// later is caught up from that log and must apply what was written.
func TestWriteKeepsNoCallerBuffer(t *testing.T) {
	c := startCluster(t, 1, clusterOptions{})
	l := awaitLeader(t, c.servers)
	buf := []byte("set k v1")
	if _, err := l.Write(ctxFor(t, waitShort), buf); err != nil {
		t.Fatalf("Write: %v", err)
	}
	copy(buf, "set k XX") // the caller's buffer, reused
	joiner := secStartJoiner(t, "late", nil)
	if err := l.AddServer(ctxFor(t, waitLong), joiner.Peer()); err != nil {
		t.Fatalf("AddServer: %v", err)
	}
	eventually(t, waitShort, func() bool { return dirty(joiner, "get k") != "" },
		"the new server to apply k")
	if got := dirty(joiner, "get k"); got != "v1" {
		t.Fatalf("the new server has k=%q, want v1: the leader's log kept the caller's buffer", got)
	}
}

// TestHandshakeBudget: strangers who open connections and stall in the
// handshake take at most their own budget (64 with MaxConns 512), not
// every slot: past it, new connections are closed at once, while a Client
// already connected keeps working, and once the strangers go, new ones get
// in again.
func TestHandshakeBudget(t *testing.T) {
	slg := &exraft.TestLog{}
	c := startCluster(t, 1, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.MaxConns = 512 // a budget of max(64, 512/8)
		cfg.Logger = slg.Logger()
	}})
	s := awaitLeader(t, c.servers)
	before := &exraft.Client{}
	defer before.Close()
	if _, err := before.GetStatus(ctxFor(t, waitShort), s.Addr()); err != nil {
		t.Fatalf("a Client before the strangers: %v", err)
	}
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
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		stalled = append(stalled, conn)
		refused = slg.Has("too many handshakes")
	}
	if !refused {
		eventually(t, waitShort, func() bool { return slg.Has("too many handshakes") },
			"the server to turn away connections past its handshake budget; its log:\n%s", slg)
	}
	if n := len(stalled); n < 64 {
		t.Fatalf("the server turned connections away after %d strangers; want a budget of 64", n)
	}
	if _, err := before.Write(ctxFor(t, waitShort), s.Addr(), []byte("set during yes")); err != nil {
		t.Fatalf("the Client connected before the strangers: %v", err)
	}
	for _, conn := range stalled {
		conn.Close()
	}
	stalled = nil
	after := &exraft.Client{}
	defer after.Close()
	var last error
	eventually(t, waitShort, func() bool {
		_, last = after.GetStatus(ctxFor(t, waitShort), s.Addr())
		return last == nil
	}, "a new Client to get in once the strangers left (last error: %v)", lastErr{&last})
}

// TestClientIOTimeout: a Client's IOTimeout bounds the handshake with a
// server that accepts the connection and never answers.
func TestClientIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	l := listen(t)
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
	ctx := ctxFor(t, waitLong)
	began := time.Now()
	_, err := cl.GetStatus(ctx, l.Addr().String())
	took := time.Since(began)
	t.Logf("GetStatus of a server that never answers: %v after %v", err, took.Round(time.Millisecond))
	if err == nil {
		t.Fatalf("GetStatus of a server that never answers succeeded")
	}
	if ctx.Err() != nil || took > waitShort/2 {
		t.Fatalf("GetStatus of a server that never answers took %v; want about the Client's IOTimeout %v", took, ioTimeout)
	}
	if took < ioTimeout*2/3 {
		t.Fatalf("GetStatus of a server that never answers gave up after %v, before IOTimeout %v", took, ioTimeout)
	}
}

// TestClientClusterIDTooLong: the handshake carries a ClusterID's length in
// one byte, so a Client's ClusterID above 255 bytes can never be sent; the
// error must say so rather than blame something else.
func TestClientClusterIDTooLong(t *testing.T) {
	c := startCluster(t, 1, clusterOptions{})
	s := awaitLeader(t, c.servers)
	for _, n := range []int{256, 300} {
		cl := &exraft.Client{ClusterID: strings.Repeat("a", n)}
		err := secRefused(t, fmt.Sprintf("a Client with a %d-byte ClusterID", n), func(ctx context.Context) error {
			_, err := cl.GetStatus(ctx, s.Addr())
			return err
		})
		cl.Close()
		if msg := err.Error(); !strings.Contains(msg, "ClusterID") || strings.Contains(msg, "Secret") || !strings.Contains(msg, "255") {
			t.Errorf("a Client with a %d-byte ClusterID: %q; want an error saying a ClusterID has at most 255 bytes", n, msg)
		}
	}
}

// TestSecurityConfigErrors: the new limits and ClusterID are validated, each
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
			cfg := fastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(newKV(), cfg)
			if err == nil {
				_ = exraft.StopServer(s)
				t.Fatalf("StartServer accepted %s", tc.name)
			}
			var ce *exraft.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("StartServer: %v (%T), want a *exraft.ConfigError", err, err)
			}
			if ce.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("StartServer: ConfigError for field %q (%v), want field %q", ce.Field, err, tc.field)
			}
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
			cfg := fastConfig("cfg")
			tc.mutate(&cfg)
			s, err := exraft.StartServer(newKV(), cfg)
			if err != nil {
				t.Fatalf("StartServer with %s: %v", tc.name, err)
			}
			if err := exraft.StopServer(s); err != nil {
				t.Fatalf("StopServer: %v", err)
			}
		})
	}
}

// TestMaxPendingCalls: with MaxPendingCalls 4, a Client firing 64 Writes at
// once sees every one of them succeed (they queue, they do not fail), and the
// cluster goes on committing.
func TestMaxPendingCalls(t *testing.T) {
	const n = 64
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		cfg.MaxPendingCalls = 4
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set warm up")
	leader := awaitLeader(t, c.servers)

	cl := &exraft.Client{}
	defer cl.Close()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
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
			if failed <= 5 {
				t.Errorf("%v", err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent Writes failed with MaxPendingCalls 4; want all to succeed", failed, n)
	}
	dump := parseDump(readAny(t, c.servers, "dump"))
	for i := range n {
		if got := dump[fmt.Sprintf("p%d", i)]; got != fmt.Sprintf("v%d", i) {
			t.Fatalf("p%d = %q after the flood, want v%d", i, got, i)
		}
	}
	writeAny(t, c.servers, "set after flood")
	mbAllHave(t, c.servers, "after", "flood")
	if got := secClientWrite(t, cl, c.servers, "set client again"); got != "ok" {
		t.Fatalf("the flooding Client's next Write returned %q, want ok", got)
	}
}

// secReadEnd reads conn until the server ends it, and returns what arrived
// and how long that took since began. Our own deadline (waitShort) ending the
// read fails the test: the server kept the connection.
func secReadEnd(t *testing.T, what string, conn net.Conn, began time.Time, ioTimeout time.Duration) ([]byte, time.Duration) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(waitShort)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	got, err := io.ReadAll(conn)
	took := time.Since(began)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open for %v (IOTimeout %v)", what, took, ioTimeout)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: reading until the server closes: %v", what, err)
	}
	t.Logf("%s: closed by the server after %v (read %q, %v)", what, took.Round(time.Millisecond), got, err)
	return got, took
}

// TestIOTimeout: a connection that never sends its handshake is closed after
// IOTimeout, one that opens with garbage is closed at once and logged, and
// the cluster is unaffected by either.
func TestIOTimeout(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	logs := make([]*exraft.TestLog, 3)
	c := startCluster(t, 3, clusterOptions{configure: func(i int, cfg *exraft.Config) {
		logs[i] = &exraft.TestLog{}
		cfg.Logger = logs[i].Logger()
		cfg.IOTimeout = ioTimeout
	}})
	leaderVia(t, c.servers[0], c.servers)
	writeAny(t, c.servers, "set before raw")

	readEnd := func(what string, conn net.Conn, began time.Time) ([]byte, time.Duration) {
		t.Helper()
		return secReadEnd(t, what, conn, began, ioTimeout)
	}

	// A connection that says nothing.
	idle := c.servers[0]
	began := time.Now()
	conn := dialRaw(t, idle.Addr(), nil)
	got, took := readEnd("a silent connection", conn, began)
	if len(got) != 0 {
		t.Fatalf("the server sent %q to a connection that never said hello", got)
	}
	if took < ioTimeout*2/3 {
		t.Fatalf("a silent connection was closed after %v, before IOTimeout %v", took, ioTimeout)
	}
	if took > waitShort/2 {
		t.Fatalf("a silent connection was closed after %v, want about IOTimeout %v", took, ioTimeout)
	}
	eventually(t, waitShort, func() bool { return logs[0].Has("refused a connection", "no handshake", conn.LocalAddr().String()) },
		"%s to log that the silent connection sent no handshake; its log:\n%s", idle.Name(), logs[0])
	writeAny(t, c.servers, "set after idle")
	mbAllHave(t, c.servers, "after", "idle")

	// A connection that opens with something else than exraft.
	target := c.servers[1]
	began = time.Now()
	garbage := dialRaw(t, target.Addr(), []byte("GET / HTTP/1.1\r\n\r\n"))
	got, took = readEnd("a connection that sent HTTP", garbage, began)
	if len(got) != 0 {
		t.Fatalf("the server answered %q to HTTP", got)
	}
	if took > waitShort/2 {
		t.Fatalf("a connection that sent HTTP was closed after %v, want at once", took)
	}
	eventually(t, waitShort, func() bool {
		return logs[1].Has("refused a connection", "not an exraft client", garbage.LocalAddr().String())
	},
		"%s to log the refusal of the HTTP request; its log:\n%s", target.Name(), logs[1])
	writeAny(t, c.servers, "set after garbage")
	mbAllHave(t, c.servers, "after", "garbage")

	// A hello of a handshake version this server does not speak is refused
	// with the reason.
	third := c.servers[2]
	began = time.Now()
	v9 := dialRaw(t, third.Addr(), append([]byte("EXRAFT\x09\x00"), make([]byte, secNonceSize)...))
	got, _ = readEnd("a hello of version 9", v9, began)
	if len(got) < 2 || got[0] != 1 || int(got[1]) != len(got)-2 || !strings.Contains(string(got[2:]), "version 9") {
		t.Fatalf("answer to a version 9 hello: %q; want a refusal (1, length, reason naming version 9)", got)
	}
	eventually(t, waitShort, func() bool { return logs[2].Has("refused a connection", "version 9", v9.LocalAddr().String()) },
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
			s := c.servers[tc.server]
			conn := secRawHandshake(t, s.Addr())
			began := time.Now()
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatalf("write: %v", err)
			}
			got, took := secReadEnd(t, tc.name, conn, began, ioTimeout)
			if len(got) != 0 {
				t.Fatalf("the server answered %q", got)
			}
			if tc.slow && took < ioTimeout*2/3 {
				t.Fatalf("closed after %v, before IOTimeout %v", took, ioTimeout)
			}
			if took > waitShort/2 {
				t.Fatalf("closed after %v, want about IOTimeout %v", took, ioTimeout)
			}
			eventually(t, waitShort, func() bool {
				return logs[tc.server].Has("closed a connection after bad input", conn.LocalAddr().String())
			},
				"%s to log the bad input; its log:\n%s", s.Name(), logs[tc.server])
		})
	}
	writeAny(t, c.servers, "set after frames")
	mbAllHave(t, c.servers, "after", "frames")

	// A real Client still gets in.
	cl := &exraft.Client{}
	defer cl.Close()
	st, err := cl.GetStatus(ctxFor(t, waitShort), target.Addr())
	if err != nil || st.Name != target.Name() {
		t.Fatalf("GetStatus(%s) after the garbage: %+v, %v", target.Name(), st, err)
	}
}
