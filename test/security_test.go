package test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/tlsutil"
)

// servedSerial is the serial number of the certificate node serves on a new connection.
func servedSerial(t *testing.T, n *harness.Node, cfg *tls.Config) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(n.BaseURL + "/healthz")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

// The client API over TLS with client certificates required: plain HTTP and clients without a
// certificate from the CA get nothing; the CLI speaks it with --cacert/--cert/--key; and the nodes'
// certificates are replaced under a steady write load, picked up on SIGHUP without a restart and
// without one failed request.
func TestAPIOverTLSRotatesCertificatesUnderLoadOnSIGHUP(t *testing.T) {
	pki := harness.NewPKI(t, "n1", "n2", "n3")
	c := harness.StartCluster(t, 3, harness.Options{
		LogLevel:  "info",
		ClientTLS: pki.ClientTLS(),
		// An hour: the reload in this test is the SIGHUP's, not the poll's (tlsutil tests the poll).
		NodeArgs: func(id string) []string { return append(pki.APIArgs(id, true), "--tls-reload-interval", "1h") },
	})
	n1 := c.Node(0)

	plain := harness.NewClient(n1.HTTPAddr, 5*time.Second)
	r := plain.Put("k", []byte("v"))
	assert.False(t, r.OK(), "plain HTTP to a TLS port must not write: %s", r)

	noCert := harness.NewClient(n1.HTTPAddr, 5*time.Second)
	noCert.UseTLS(&tls.Config{RootCAs: pki.ClientTLS().RootCAs})
	r = noCert.Put("k", []byte("v"))
	assert.Error(t, r.Err, "a client without a certificate from the CA must be refused")

	_, stderr, code := harness.RunCLI(t, append([]string{"put", "--addr", n1.HTTPAddr, "tls-key", "hello"}, pki.CLIArgs()...)...)
	require.Equal(t, 0, code, stderr)
	out, stderr, code := harness.RunCLI(t, append([]string{"get", "--addr", n1.HTTPAddr, "tls-key"}, pki.CLIArgs()...)...)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "hello", out)

	// Load: writers on kept-alive connections and on a new connection per request, to every node.
	var failures, writes atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		n := c.Node(w % 3)
		cl := harness.NewClient(n.HTTPAddr, 5*time.Second)
		cl.UseTLS(pki.ClientTLS())
		if w >= 2 {
			cl.HTTP.Transport.(*http.Transport).DisableKeepAlives = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := cl.Put(fmt.Sprintf("load/%d/%d", w, i), []byte("x"))
				writes.Add(1)
				// What rotation could break is the connection: a handshake refused, a certificate not
				// trusted. An HTTP answer, even a 503 on a loaded machine, means TLS did its part.
				if r.Err != nil && isTLSFailure(r.Err) {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, r.String())
				}
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	pids := []int{c.PID(0), c.PID(1), c.PID(2)}
	for i := range 3 {
		n := c.Node(i)
		before := servedSerial(t, n, pki.ClientTLS())
		cert, _ := pki.Issue(tlsutil.CertRequest{NodeID: n.ID})
		want := readSerial(t, cert)
		require.NotEqual(t, before, want)
		assert.Equal(t, before, servedSerial(t, n, pki.ClientTLS()), "nothing changes before the SIGHUP (the poll is an hour)")
		require.NoError(t, syscall.Kill(c.PID(i), syscall.SIGHUP))
		require.Eventually(t, func() bool { return servedSerial(t, n, pki.ClientTLS()) == want },
			20*time.Second, 50*time.Millisecond, "%s still serves its old certificate after SIGHUP", n.ID)
	}
	require.Eventually(t, func() bool { return writes.Load() > 100 }, 30*time.Second, 50*time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "writes failed while certificates rotated; first: %v", firstErr.Load())
	for i := range 3 {
		assert.Equal(t, pids[i], c.PID(i), "no node restarted")
	}
	// The rotation shows in the metrics: one reload of the API's files, and the new expiry.
	m := n1.Do(http.MethodGet, "/metrics", nil)
	require.True(t, m.OK(), "%s", m)
	assert.Contains(t, string(m.Body), `raftkv_tls_reloads_total{port="api"} 1`)
	assert.Contains(t, string(m.Body), `raftkv_tls_cert_expiry_timestamp_seconds{port="api"}`)
}

func isTLSFailure(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "tls") || strings.Contains(msg, "x509") || strings.Contains(msg, "certificate")
}

func readSerial(t *testing.T, certFile string) string {
	t.Helper()
	src, err := tlsutil.Load(tlsutil.Files{Cert: certFile, Key: certFile[:len(certFile)-len(".pem")] + "-key.pem"}, nil)
	require.NoError(t, err)
	return src.Certificate().Leaf.SerialNumber.String()
}

// logShows waits until the log of one of nodes has a line containing every one of parts.
func logShows(t *testing.T, nodes []*harness.Node, parts ...string) {
	t.Helper()
	harness.WaitFor(t, 60*time.Second, "a log line with "+strings.Join(parts, " "), func() error {
		for _, n := range nodes {
			b, err := os.ReadFile(n.LogPath)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b), "\n") {
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(line, p)
				}
				if ok {
					return nil
				}
			}
		}
		return errors.New("not yet")
	})
}

// Issue 14's attack, with mutual TLS on the node port: hosts that reach the cluster by gossip and dial
// its node port, without a certificate, with one from another CA, or claiming the id of a member that
// is down, never enter the Raft configuration, get no entry, remove no one, and crash nothing; garbage
// on the node port changes nothing either.
func TestRogueNodesWithoutAClusterCertificateNeverJoin(t *testing.T) {
	pki := harness.NewPKI(t, "n1", "n2", "n3")
	opts := harness.Options{
		LogLevel:  "info",
		ClientTLS: pki.ClientTLS(),
		NodeArgs:  func(id string) []string { return append(pki.APIArgs(id, false), pki.PeerArgs(id)...) },
	}
	c := harness.StartCluster(t, 3, opts)
	leader := c.Leader(t)
	for i := range 20 {
		c.MustPut(t, leader, fmt.Sprintf("secret/%d", i), []byte("v"))
	}
	members := func() []string {
		st, err := c.Node(leader).Status()
		require.NoError(t, err)
		m := st.RaftMembers()
		sort.Strings(m)
		return m
	}
	require.Equal(t, []string{"n1", "n2", "n3"}, members())

	// n3 goes down; a host without a certificate claims its id with a fresh data dir. Without the
	// proof, the leader would take it for n3 with a wiped disk and remove the real n3.
	down := (leader + 1) % 3
	if down == leader {
		down = (leader + 2) % 3
	}
	c.Stop(down)
	downID := c.Node(down).ID

	other := harness.NewPKI(t, "n5") // another CA, a proper node certificate from it
	rogueOpts := []harness.Options{
		{LogLevel: "info"}, // plain node port, no certificate at all: n4
		{LogLevel: "info", NodeArgs: func(string) []string { return other.PeerArgs("n5") }}, // n5, another CA
		{LogLevel: "info", NodeArgs: func(string) []string { // n6 claiming to be the stopped member
			return []string{"--id", downID, "--data-dir", filepath.Join(t.TempDir(), "impostor")}
		}},
	}
	for _, o := range rogueOpts {
		c.AddNode(t, o)
	}
	// The leader (this one, or the next if leadership moved) saw each of them in gossip and refused
	// to act on it.
	founders := []*harness.Node{c.Node(0), c.Node(1), c.Node(2)}
	for _, id := range []string{"n4", "n5", downID} {
		logShows(t, founders, "does not prove its identity", "member="+id)
	}
	// Garbage on the leader's node port: a plain protocol byte and bytes, a broken TLS record.
	for _, junk := range [][]byte{[]byte("R\x00\x00\x00\x05hello"), []byte("S\x01\x02"), {0x16, 0x03, 0x01, 0x7f, 0xff, 9, 9}} {
		conn, err := net.DialTimeout("tcp", c.Node(leader).RaftAddr, 5*time.Second)
		require.NoError(t, err)
		conn.Write(junk)
		conn.Close()
	}

	assert.Equal(t, []string{"n1", "n2", "n3"}, members(), "no rogue entered, the real member stayed")
	c.MustPut(t, leader, "after", []byte("still writable"))
	for i := 3; i < 6; i++ {
		r := c.Node(i).GetConsistency("secret/1", "stale")
		assert.NotEqual(t, http.StatusOK, r.Status, "rogue %d holds replicated data: %s", i, r)
		assert.True(t, c.Running(i), "rogue %d crashed", i)
	}
	for _, i := range []int{leader, 3 - leader - down} {
		assert.True(t, c.Running(i))
	}

	// The rogues go; the real member comes back and is a member as before.
	for i := 3; i < 6; i++ {
		c.Kill9(i)
	}
	c.Restart(down)
	c.WaitReady(t, down)
	r := c.Node(down).GetConsistency("after", "stale")
	harness.WaitFor(t, 30*time.Second, downID+" caught up", func() error {
		if r = c.Node(down).GetConsistency("after", "stale"); !r.OK() {
			return errors.New(r.String())
		}
		return nil
	})
	assert.Equal(t, []string{"n1", "n2", "n3"}, members())
}

// Gossip encrypted with a keyring: a host without the key never becomes a member, and the key is
// rotated (install, use, remove) on a running cluster under writes, survives a restart (the keyring is
// saved in the data dir), and a node given the new key joins.
func TestGossipKeyRotatesWithoutDowntime(t *testing.T) {
	k1, k2 := newGossipKey(t), newGossipKey(t)
	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info",
		NodeArgs: func(string) []string { return []string{"--gossip-key", k1} }})
	leader := c.Leader(t)
	addr := c.Node(leader).HTTPAddr
	keyring := func(args ...string) string {
		out, stderr, code := harness.RunCLI(t, append(append([]string{"keyring"}, args...), "--addr", addr)...)
		require.Equal(t, 0, code, stderr)
		return out
	}
	assert.Contains(t, keyring("list"), k1+"  3/3 nodes  (in use on 3)")

	rogue := c.AddNode(t, harness.Options{LogLevel: "info"}) // same join addresses, no key
	c.MustPut(t, leader, "before", []byte("1"))

	keyring("install", k2)
	c.MustPut(t, leader, "installed", []byte("1"))
	out := keyring("list")
	assert.Contains(t, out, k1+"  3/3 nodes  (in use on 3)")
	assert.Contains(t, out, k2+"  3/3 nodes\n")
	keyring("use", k2)
	c.MustPut(t, leader, "used", []byte("1"))
	keyring("remove", k1)
	out = keyring("list")
	assert.NotContains(t, out, k1)
	assert.Contains(t, out, k2+"  3/3 nodes  (in use on 3)")
	_, _, code := harness.RunCLI(t, "keyring", "remove", k2, "--addr", addr)
	assert.NotEqual(t, 0, code, "the key in use cannot be removed")

	// A follower restarts with its old flag (k1): the saved keyring (k2) wins, and it is back.
	follower := (leader + 1) % 3
	c.Stop(follower)
	c.Restart(follower)
	c.WaitReady(t, follower)
	harness.WaitFor(t, 30*time.Second, "restarted node gossips again", func() error {
		st, err := c.Node(leader).Status()
		if err != nil {
			return err
		}
		if m := st.Member(c.Node(follower).ID); m == nil || m.GossipState != "alive" {
			return fmt.Errorf("%s not alive in gossip: %+v", c.Node(follower).ID, m)
		}
		return nil
	})

	// A new node with the new key joins and becomes a voter; the keyless host never got in.
	joiner := c.AddNode(t, harness.Options{LogLevel: "info", NodeArgs: func(string) []string { return []string{"--gossip-key", k2} }})
	harness.WaitFor(t, 60*time.Second, "joiner is a voter", func() error {
		st, err := c.Node(leader).Status()
		if err != nil {
			return err
		}
		if m := st.Member(c.Node(joiner).ID); m == nil || m.Suffrage != "voter" {
			return fmt.Errorf("not yet: %+v", m)
		}
		return nil
	})
	st, err := c.Node(leader).Status()
	require.NoError(t, err)
	assert.Nil(t, st.Member(c.Node(rogue).ID), "a host without the gossip key is not even a gossip member")
	r := c.Node(joiner).GetConsistency("used", "stale")
	assert.True(t, r.OK(), "%s", r)
}

func newGossipKey(t *testing.T) string {
	t.Helper()
	out, stderr, code := harness.RunCLI(t, "keyring", "generate")
	require.Equal(t, 0, code, stderr)
	return strings.TrimSpace(out)
}
