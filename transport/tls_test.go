package transport

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/tlsutil"
	"github.com/raftkv/raftkv/tlsutil/tlstest"
)

func listenTLS(t *testing.T, id string, src *tlsutil.Source) *Mux {
	t.Helper()
	m, err := ListenTLS("127.0.0.1:0", "", src, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	m.SetLocalID(id)
	t.Cleanup(func() { m.Close() })
	return m
}

// serveCounting serves an echo RPC on m and counts the calls that reached the handler.
func serveCounting(t *testing.T, m *Mux) *atomic.Int64 {
	var calls atomic.Int64
	srv := ServeRPC(m, func(_ context.Context, method string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close(context.Background()) })
	return &calls
}

func TestNodePortMutualTLSCarriesRaftAndRPCBetweenMembers(t *testing.T) {
	issue := tlstest.NodeCerts(t)
	n1, n2 := listenTLS(t, "n1", issue("n1")), listenTLS(t, "n2", issue("n2"))
	calls := serveCounting(t, n1)

	rpc := NewRPCClient(n2, time.Second)
	defer rpc.Close()
	resp, err := rpc.Call(context.Background(), TargetAddr("n1", n1.Addr().String()), "echo", []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "x", string(resp))
	assert.EqualValues(t, 1, calls.Load())

	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := n1.RaftLayer().Accept(); err == nil {
			accepted <- c
		}
	}()
	conn, err := n2.RaftLayer().Dial(raft.ServerAddress(TargetAddr("n1", n1.Addr().String())), time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("hello"))
	require.NoError(t, err)
	got := <-accepted
	defer got.Close()
	peer, ok := PeerNodeID(got)
	assert.True(t, ok)
	assert.Equal(t, "n2", peer, "the accepting node knows which node dialed, from its certificate")
}

func TestNodePortMutualTLSRefusesWhoCannotProveTheTargetID(t *testing.T) {
	issue := tlstest.NodeCerts(t)
	n1 := listenTLS(t, "n1", issue("n1"))
	calls := serveCounting(t, n1)
	n2 := listenTLS(t, "n2", issue("n2"))
	rpc := NewRPCClient(n2, time.Second)
	defer rpc.Close()

	// Gossip still maps n3 to the address n1 holds now: the dialer refuses, from n1's certificate.
	_, err := rpc.Call(context.Background(), TargetAddr("n3", n1.Addr().String()), "echo", nil)
	require.ErrorContains(t, err, ErrWrongNode.Error())

	// A node whose certificate names another id than it claims to be is refused by the dialer too.
	impostor := listenTLS(t, "n1", issue("n9"))
	serveCounting(t, impostor)
	_, err = rpc.Call(context.Background(), TargetAddr("n1", impostor.Addr().String()), "echo", nil)
	require.ErrorContains(t, err, ErrWrongNode.Error())
	assert.Zero(t, calls.Load())
}

func TestNodePortMutualTLSGivesNothingToAHostWithoutACertificateFromTheCA(t *testing.T) {
	issue := tlstest.NodeCerts(t)
	n1 := listenTLS(t, "n1", issue("n1"))
	calls := serveCounting(t, n1)
	raftConns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := n1.RaftLayer().Accept()
			if err != nil {
				return
			}
			raftConns <- c
		}
	}()
	addr := TargetAddr("n1", n1.Addr().String())

	plain := listen(t) // no TLS at all: speaks the protocol bytes in the clear
	rogueCA := tlstest.NodeCerts(t)
	otherCA := listenTLS(t, "n1", rogueCA("n1")) // TLS, a node certificate, but from another CA
	for name, m := range map[string]*Mux{"plain": plain, "another CA": otherCA} {
		rpc := NewRPCClient(m, time.Second)
		_, err := rpc.Call(context.Background(), addr, "echo", []byte("forged"))
		assert.Error(t, err, name)
		rpc.Close()
		_, err = m.RaftLayer().Dial(raft.ServerAddress(addr), time.Second)
		if err == nil {
			// TLS 1.3 finishes the client's handshake before the server judged its certificate;
			// whatever it then sends goes nowhere.
			t.Logf("%s: dial returned before the server refused", name)
		}
	}

	// Garbage: random bytes, a TLS record header with nonsense, a half handshake, then silence.
	for _, junk := range [][]byte{[]byte("R\x00\x01garbage"), {0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3}, make([]byte, 4096)} {
		c, err := net.Dial("tcp", n1.Addr().String())
		require.NoError(t, err)
		c.Write(junk)
		c.Close()
	}

	// The real member still gets through, and nothing the others sent reached the handler or Raft.
	n2 := listenTLS(t, "n2", issue("n2"))
	rpc := NewRPCClient(n2, time.Second)
	defer rpc.Close()
	require.Eventually(t, func() bool {
		_, err := rpc.Call(context.Background(), addr, "echo", []byte("ok"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	assert.EqualValues(t, 1, calls.Load(), "only the member's call reached the handler")
	select {
	case c := <-raftConns:
		t.Fatalf("a connection without a cluster certificate reached Raft: %v", c.RemoteAddr())
	default:
	}
}

func TestListenTLSNeedsACertificateAndTheCA(t *testing.T) {
	issue := tlstest.NodeCerts(t)
	src := issue("n1")
	caOnly, err := tlsutil.Load(tlsutil.Files{CA: src.Files().CA}, nil)
	require.NoError(t, err)
	_, err = ListenTLS("127.0.0.1:0", "", caOnly, slog.New(slog.DiscardHandler))
	assert.Error(t, err)
}
