package transport

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// Container IPs are reused: gossip still maps n2 to an address that n3 now holds. Raft traffic and
// RPCs meant for n2 used to be taken by n3 as its own.
func TestTrafficForOneNodeIsTakenByTheNodeNowAtItsAddress(t *testing.T) {
	n3 := listen(t)
	n3.SetLocalID("n3")
	var calls int
	srv := ServeRPC(n3, func(_ context.Context, method string, _ []byte) ([]byte, error) {
		calls++
		return []byte("n3 answered " + method), nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close(context.Background()) })
	caller := listen(t)
	rpc := NewRPCClient(caller, time.Second)
	t.Cleanup(rpc.Close)
	stale := TargetAddr("n2", n3.Addr().String()) // gossip's view: n2 is at n3's address

	_, err := rpc.Call(context.Background(), stale, "health", nil)
	require.ErrorIs(t, err, ErrUnreachable, "an RPC meant for n2 reached n3")
	require.Zero(t, calls)
	_, err = caller.RaftLayer().Dial(raft.ServerAddress(stale), time.Second)
	require.ErrorIs(t, err, ErrWrongNode, "a raft connection meant for n2 was accepted by n3")

	// The right id, or a plain address (a peer without the check), still gets through.
	resp, err := rpc.Call(context.Background(), TargetAddr("n3", n3.Addr().String()), "health", nil)
	require.NoError(t, err)
	require.Equal(t, "n3 answered health", string(resp))
	accepted := make(chan error, 1)
	go func() {
		c, err := n3.RaftLayer().Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := caller.RaftLayer().Dial(raft.ServerAddress(TargetAddr("n3", n3.Addr().String())), time.Second)
	require.NoError(t, err)
	c.Close()
	require.NoError(t, <-accepted)
}

// A build before the targeted handshake closes a connection whose first byte is 'T': the dialer
// must fall back to the plain protocol byte instead of treating the peer as down.
func TestOlderBuildsAreDialedWithoutTheTarget(t *testing.T) {
	client := listen(t)
	handler := func(_ context.Context, method string, req []byte) ([]byte, error) {
		return append([]byte("old "+method+":"), req...), nil
	}
	old := oldBuildServer(t, handler)
	rpc := NewRPCClient(client, time.Second)
	defer rpc.Close()
	resp, err := rpc.Call(context.Background(), TargetAddr("n2", old), "echo", []byte("x"))
	require.NoError(t, err)
	require.Equal(t, "old echo:x", string(resp))
	require.True(t, client.isLegacyTarget(old))
	require.False(t, errors.Is(err, ErrWrongNode))
}
