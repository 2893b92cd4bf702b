package transport

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flakyListener fails its first failures Accept calls with EMFILE, as a process at its descriptor
// limit does.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

func muxOn(t *testing.T, ln net.Listener, maxInbound int) *Mux {
	t.Helper()
	m := newMux(ln, ln.Addr(), maxInbound, nil, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { m.Close() })
	return m
}

func TestNodePortStopsAcceptingAfterOneEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fl := &flakyListener{Listener: ln}
	fl.failures.Store(3)
	m := muxOn(t, fl, DefaultMaxInboundConns)

	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := m.RaftLayer().Accept(); err == nil {
			accepted <- c
		}
	}()
	conn, err := m.dialProto(m.Addr().String(), "", protoRaft, time.Second)
	require.NoError(t, err)
	defer conn.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the port no longer accepts after accept failed with EMFILE")
	}
}

func TestNodePortHoldsUnboundedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	const limit = 4
	m := muxOn(t, ln, limit)

	// limit silent connections take every slot (each waits to name its protocol).
	var held []net.Conn
	for range limit {
		c, err := net.Dial("tcp", m.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		held = append(held, c)
	}
	require.Eventually(t, func() bool { return len(m.inbound) == limit }, 5*time.Second, time.Millisecond)

	// One more is closed at once.
	extra, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = extra.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a connection over the limit is closed")

	// Closing one frees its slot for the next.
	held[0].Close()
	require.Eventually(t, func() bool { return len(m.inbound) == limit-1 }, 5*time.Second, time.Millisecond)
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := m.RaftLayer().Accept(); err == nil {
			accepted <- c
		}
	}()
	conn, err := m.dialProto(m.Addr().String(), "", protoRaft, time.Second)
	require.NoError(t, err)
	defer conn.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot is not reused")
	}
	require.Eventually(t, func() bool { return len(m.inbound) == limit-1 }, 5*time.Second, time.Millisecond,
		"closing a routed connection frees its slot")
}
