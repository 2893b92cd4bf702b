package test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// recordingConn keeps every byte the client side writes, for replaying them.
type recordingConn struct {
	net.Conn
	sent bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.sent.Write(p)
	return c.Conn.Write(p)
}

// With every protection on (API TLS with client certificates, peer mTLS, gossip encryption, ACLs),
// garbage on every port of every node, and the recorded bytes of a real authorized write replayed on
// the API port, crash nothing and apply nothing.
func TestGarbageAndReplayedFramesOnEveryPortChangeNothing(t *testing.T) {
	pki := harness.NewPKI(t, "n1", "n2", "n3")
	key := newGossipKey(t)
	c := harness.StartCluster(t, 3, harness.Options{
		LogLevel:  "info",
		ClientTLS: pki.ClientTLS(),
		ExtraArgs: []string{"--acl-enabled"},
		NodeArgs: func(id string) []string {
			return append(append(pki.APIArgs(id, true), pki.PeerArgs(id)...), "--gossip-key", key)
		},
	})
	var root aclToken
	harness.WaitFor(t, 30*time.Second, "bootstrap", func() error {
		r := as(c.Node(0), "", "POST", "/v1/acl/bootstrap", "")
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		root = mustToken(t, r)
		return nil
	})
	c.SetToken(root.SecretID)
	leader := c.Leader(t)
	for i := range 10 {
		c.MustPut(t, leader, fmt.Sprintf("k/%d", i), []byte("v"))
	}

	// A real, authorized PUT over TLS, recorded byte for byte.
	ln := c.Node(leader)
	raw, err := net.DialTimeout("tcp", ln.HTTPAddr, 5*time.Second)
	require.NoError(t, err)
	rec := &recordingConn{Conn: raw}
	cfg := pki.ClientTLS().Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(ln.HTTPAddr)
	tc := tls.Client(rec, cfg)
	fmt.Fprintf(tc, "PUT /v1/kv/replayed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv1", root.SecretID)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()
	tc.Close()
	require.Equal(t, http.StatusOK, ln.Delete("replayed").Status)

	junk := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	send := func(network, addr string, payload []byte) {
		conn, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			return // a refused connection is fine: nothing to check
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write(payload)
		if network == "tcp" {
			io.Copy(io.Discard, conn) // whatever it answers, until it closes (or the deadline)
		}
		conn.Close()
	}
	for i := range 3 {
		n := c.Node(i)
		tcpJunk := [][]byte{
			junk(1), junk(64), junk(4096),
			[]byte("GET /v1/kv/k/1 HTTP/1.1\r\nHost: x\r\n\r\n"), // plaintext on a TLS port
			{0x16, 0x03, 0x01, 0x7f, 0xff, 9, 9},                 // a broken TLS record
			append([]byte("R"), junk(512)...),                    // a protocol byte without TLS
			append([]byte("T\x02n1S"), junk(64)...),              // a targeted handshake without TLS
		}
		for _, p := range tcpJunk {
			send("tcp", n.HTTPAddr, p)
			send("tcp", n.RaftAddr, p)
			send("tcp", n.GossipAddr, p)
		}
		for _, p := range [][]byte{junk(1), junk(100), junk(1400), append([]byte{1}, junk(200)...), append([]byte{0}, junk(60)...)} {
			send("udp", n.GossipAddr, p)
		}
		// The recorded write, replayed: a TLS handshake never completes twice.
		send("tcp", n.HTTPAddr, rec.sent.Bytes())
	}

	// Nothing crashed, nothing applied, nobody left, and the cluster still serves.
	for i := range 3 {
		assert.True(t, c.Running(i), "node %d crashed", i)
	}
	leader = c.Leader(t)
	st, err := c.Node(leader).Status()
	require.NoError(t, err)
	members := st.RaftMembers()
	assert.Len(t, members, 3, "%v", members)
	r := c.Node(leader).Get("replayed")
	assert.Equal(t, http.StatusNotFound, r.Status, "a replayed write applied: %s", r)
	c.MustPut(t, leader, "after", []byte("still writable"))
	for i := range 3 {
		n := c.Node(i)
		harness.WaitFor(t, 30*time.Second, n.ID+" serves", func() error {
			if r := n.GetConsistency("after", "stale"); !r.OK() {
				return fmt.Errorf("%s", r)
			}
			return nil
		})
		logs, err := os.ReadFile(n.LogPath)
		require.NoError(t, err)
		assert.NotContains(t, string(logs), "panic:", "%s", n.ID)
		assert.False(t, strings.Contains(string(logs), "level=ERROR msg=\"internal error"), "%s", n.ID)
	}
}
