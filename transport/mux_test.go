package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func listen(t *testing.T) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestOnePortCarriesRaftAndRPC(t *testing.T) {
	server, client := listen(t), listen(t)
	srv := ServeRPC(server, func(_ context.Context, method string, req []byte) ([]byte, error) {
		if method == "fail" {
			return nil, errors.New("boom")
		}
		return append([]byte(method+":"), req...), nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close(context.Background()) })

	// Raft stream: bytes go through the raft layer untouched.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := server.RaftLayer().Accept()
		if err == nil {
			accepted <- c
		}
	}()
	conn, err := client.RaftLayer().Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("hello"))
	require.NoError(t, err)
	got := <-accepted
	defer got.Close()
	buf := make([]byte, 5)
	_, err = io.ReadFull(got, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))

	// RPC on the same port.
	rpc := NewRPCClient(client, time.Second)
	defer rpc.Close()
	resp, err := rpc.Call(context.Background(), server.Addr().String(), "echo", []byte("x"))
	require.NoError(t, err)
	require.Equal(t, "echo:x", string(resp))
	_, err = rpc.Call(context.Background(), server.Addr().String(), "fail", nil)
	require.ErrorContains(t, err, "boom")
	require.NotErrorIs(t, err, ErrUnreachable, "the request reached the peer")

	// Isolation refuses dials: the caller knows nothing was sent.
	client.Isolate(true)
	_, err = rpc.Call(context.Background(), server.Addr().String(), "echo", nil)
	require.ErrorIs(t, err, ErrUnreachable)
	client.Isolate(false)
	_, err = rpc.Call(context.Background(), server.Addr().String(), "echo", nil)
	require.NoError(t, err)
}

func TestUnreachablePeerIsReportedAsSuch(t *testing.T) {
	m := listen(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	dead.Close()
	rpc := NewRPCClient(m, time.Second)
	defer rpc.Close()
	_, err = rpc.Call(context.Background(), addr, "echo", nil)
	require.ErrorIs(t, err, ErrUnreachable)
}

func TestAdvertiseRejectsWildcardsAndResolvesNames(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7001}
	a, err := resolveAdvertise(bound, "")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7001", a.String())
	a, err = resolveAdvertise(bound, "localhost:9000")
	require.NoError(t, err)
	require.Equal(t, 9000, a.Port)
	_, err = resolveAdvertise(bound, "0.0.0.0:9000")
	require.Error(t, err)
	_, err = resolveAdvertise(bound, "nohost")
	require.Error(t, err)
}
