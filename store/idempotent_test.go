package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// putIdem retries an idempotent put until it has a definite answer, as a client would: a refusal
// while the leader has not yet seen every member's log format (ErrNotReady) or a lost leader is
// safe to retry with the same key.
func putIdem(t *testing.T, s *Store, idemKey, key, value string, pre Precondition) (uint64, error) {
	t.Helper()
	ctx := WithIdempotencyKey(ctxT(t), idemKey)
	var index uint64
	var err error
	require.Eventually(t, func() bool {
		index, err = s.Put(ctx, key, []byte(value), pre)
		return !errors.Is(err, ErrNotReady) && !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrIndeterminate)
	}, waitFor, 20*time.Millisecond)
	return index, err
}

// TestIdempotentWriteAppliesOnceAcrossNodesAndLeaderChanges: a retry with the same key gets the first
// outcome from any node, through forwarding, and after the leader that applied it is gone.
func TestIdempotentWriteAppliesOnceAcrossNodesAndLeaderChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	leader := c.leader()
	follower := c.follower()

	first, err := putIdem(t, c.nodes[follower].store, "req-1", "k", "v1", Precondition{}) // forwarded
	require.NoError(t, err)
	again, err := putIdem(t, c.nodes[leader].store, "req-1", "k", "v1", Precondition{})
	require.NoError(t, err)
	require.Equal(t, first, again, "a retry on another node returns the first index")

	_, err = putIdem(t, c.nodes[leader].store, "req-1", "k", "a different value", Precondition{})
	require.ErrorIs(t, err, ErrIdempotencyKeyReused)

	// The cas=0 create cannot apply twice without failing: a replay answers its first success.
	created, err := putIdem(t, c.nodes[leader].store, "create-1", "c", "x", Precondition{Check: true})
	require.NoError(t, err)

	c.stop(leader)
	newLeader := c.leader(leader)
	for id, n := range c.nodes {
		if n.store == nil {
			continue
		}
		got, err := putIdem(t, n.store, "req-1", "k", "v1", Precondition{})
		require.NoError(t, err, "node %s (leader %s)", id, newLeader)
		require.Equal(t, first, got, "node %s, after the leader change", id)
		got, err = putIdem(t, n.store, "create-1", "c", "x", Precondition{Check: true})
		require.NoError(t, err, "a replayed cas=0 create succeeds again instead of failing its cas")
		require.Equal(t, created, got)
	}
	e, err := c.nodes[newLeader].store.Get(context.Background(), "k", Linearizable)
	require.NoError(t, err)
	require.Equal(t, first, e.ModIndex, "applied exactly once")
	require.Equal(t, first, e.CreateIndex)
}
