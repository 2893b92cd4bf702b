package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
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
		return !retryableIdem(err)
	}, waitFor, 20*time.Millisecond)
	return index, err
}

func retryableIdem(err error) bool {
	return errors.Is(err, ErrNotReady) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrIndeterminate) ||
		errors.Is(err, ErrIdempotencyUnsupported)
}

// txnIdem is putIdem for a transaction.
func txnIdem(t *testing.T, s *Store, idemKey string, tx *fsm.Txn) (*fsm.TxnResult, uint64, error) {
	t.Helper()
	ctx := WithIdempotencyKey(ctxT(t), idemKey)
	var res *fsm.TxnResult
	var index uint64
	var err error
	require.Eventually(t, func() bool {
		res, index, err = s.Txn(ctx, tx, Linearizable)
		return !retryableIdem(err)
	}, waitFor, 20*time.Millisecond)
	return res, index, err
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

	// A transaction guarded by the key it changes: applied twice, the second run would take the
	// failure branch. Its replay answers the first run's branch, index and reads.
	move := &fsm.Txn{
		Compare: []fsm.Compare{{Target: fsm.TargetModIndex, Op: fsm.CmpEqual, Key: "k", Num: first}},
		Success: []fsm.TxnOp{{Kind: fsm.TxnPut, Key: "k", Value: []byte("moved")}, {Kind: fsm.TxnGet, Key: "c"}},
		Failure: []fsm.TxnOp{{Kind: fsm.TxnGet, Key: "k"}},
	}
	txnRes, txnIndex, err := txnIdem(t, c.nodes[follower].store, "txn-1", move) // forwarded
	require.NoError(t, err)
	require.True(t, txnRes.Succeeded)
	again2, againIndex, err := txnIdem(t, c.nodes[leader].store, "txn-1", move)
	require.NoError(t, err)
	require.Equal(t, txnIndex, againIndex)
	require.Equal(t, *txnRes, *again2)
	_, _, err = txnIdem(t, c.nodes[leader].store, "txn-1", &fsm.Txn{Success: []fsm.TxnOp{{Kind: fsm.TxnDelete, Key: "k"}}})
	require.ErrorIs(t, err, ErrIdempotencyKeyReused)

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
		res, index, err := txnIdem(t, n.store, "txn-1", move)
		require.NoError(t, err, "node %s", id)
		require.Equal(t, txnIndex, index, "node %s", id)
		require.Equal(t, *txnRes, *res, "node %s: the first run's branch and reads", id)
	}
	e, err := c.nodes[newLeader].store.Get(context.Background(), "k", Linearizable)
	require.NoError(t, err)
	require.Equal(t, txnIndex, e.ModIndex, "the put applied exactly once, the transaction too")
	require.Equal(t, "moved", string(e.Value))
	require.Equal(t, first, e.CreateIndex)
}

// While a member advertises a log format older than FormatIdempotent (a rolling upgrade), a keyed
// write is refused with ErrIdempotencyUnsupported and nothing applied: by the leader once its
// reconcile has seen the format, and by a follower before it forwards to a leader that advertises it
// (such a leader would answer the wrapper as an invalid command, a 400 for a good request).
func TestIdempotentWritesRefusedWhileAMemberRunsAnOlderFormat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	leader := c.leader()
	follower := c.follower()
	ls, fs := c.nodes[leader].store, c.nodes[follower].store
	_, err := putIdem(t, fs, "before", "k", "v", Precondition{})
	require.NoError(t, err)

	m := ls.gossip.LocalMeta()
	m.LogFormat = fsm.FormatSealed // as a build from before idempotent transactions advertises
	require.NoError(t, ls.gossip.SetMeta(m))
	require.Eventually(t, func() bool {
		f, ok := fs.gossip.LogFormat(leader)
		return ok && f == fsm.FormatSealed
	}, waitFor, 20*time.Millisecond)
	_, err = fs.Put(WithIdempotencyKey(ctxT(t), "via-follower"), "k", []byte("x"), Precondition{})
	require.ErrorIs(t, err, ErrIdempotencyUnsupported, "the follower does not forward it")
	require.ErrorContains(t, err, "the leader "+leader+" applies log format 3", "refused by the follower's check")

	require.Eventually(t, func() bool { return ls.proposer.format.Load() == fsm.FormatSealed }, waitFor, 20*time.Millisecond)
	_, err = ls.Put(WithIdempotencyKey(ctxT(t), "on-leader"), "k", []byte("y"), Precondition{})
	require.ErrorIs(t, err, ErrIdempotencyUnsupported, "the leader does not propose it")

	e, err := ls.Get(ctxT(t), "k", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value), "nothing applied")
	_, err = fs.Put(ctxT(t), "k", []byte("plain"), Precondition{})
	require.NoError(t, err, "a write without a key still goes through")
}

// A keyed session or lock write needs every member at FormatIdempotentSessions: a build at FormatACL
// refuses the wrapper around a session command. Until then it is refused like any keyed write during
// an upgrade, and the same write without a key goes through.
func TestIdempotentSessionWritesRefusedWhileAMemberRunsFormat5(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	leader := c.leader()
	follower := c.follower()
	ls, fs := c.nodes[leader].store, c.nodes[follower].store
	opts := SessionOptions{TTL: 10 * time.Second}
	var sess Session
	var err error
	require.Eventually(t, func() bool {
		sess, err = fs.CreateSession(WithIdempotencyKey(ctxT(t), "create-before"), opts)
		return !retryableIdem(err)
	}, waitFor, 20*time.Millisecond)
	require.NoError(t, err)
	again, err := ls.CreateSession(WithIdempotencyKey(ctxT(t), "create-before"), opts)
	require.NoError(t, err)
	require.Equal(t, sess.ID, again.ID, "the retry on another node answers the first session")
	require.Equal(t, sess.CreateIndex, again.CreateIndex)
	all, _, err := ls.Sessions(ctxT(t), Linearizable)
	require.NoError(t, err)
	require.Len(t, all, 1)

	m := ls.gossip.LocalMeta()
	m.LogFormat = fsm.FormatACL // as the build before keyed session writes advertises
	require.NoError(t, ls.gossip.SetMeta(m))
	require.Eventually(t, func() bool {
		f, ok := fs.gossip.LogFormat(leader)
		return ok && f == fsm.FormatACL
	}, waitFor, 20*time.Millisecond)
	_, err = fs.Acquire(WithIdempotencyKey(ctxT(t), "via-follower"), "lock", nil, sess.ID)
	require.ErrorIs(t, err, ErrIdempotencyUnsupported, "the follower does not forward it")
	require.ErrorContains(t, err, "applies log format 5")

	require.Eventually(t, func() bool { return ls.proposer.format.Load() == fsm.FormatACL }, waitFor, 20*time.Millisecond)
	_, err = ls.Acquire(WithIdempotencyKey(ctxT(t), "on-leader"), "lock", nil, sess.ID)
	require.ErrorIs(t, err, ErrIdempotencyUnsupported, "the leader does not propose it")
	_, err = ls.Put(WithIdempotencyKey(ctxT(t), "a-put"), "k", []byte("v"), Precondition{})
	require.NoError(t, err, "a keyed put needs only format 4")

	out, err := ls.Acquire(ctxT(t), "lock", nil, sess.ID)
	require.NoError(t, err, "without a key it goes through")
	require.True(t, out.OK)
}
