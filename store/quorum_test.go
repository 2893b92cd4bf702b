package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 10: three voters, one down, and a healthy one removed (or leaving): the two left need both
// their votes while one answers, and the cluster could no longer commit.
func TestRemovingAVoterWhileAnotherIsDownLosesTheQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	down := c.follower()
	c.stop(down)
	leader := c.leader(down)
	healthy := c.follower(down)
	l, h := c.nodes[leader].store, c.nodes[healthy].store

	err := h.RemoveMember(ctxT(t), healthy, false)
	require.ErrorIs(t, err, ErrWouldLoseQuorum, "removal through a follower")
	require.ErrorIs(t, l.RemoveMember(ctxT(t), leader, false), ErrWouldLoseQuorum, "the leader removing itself")
	require.ErrorIs(t, h.Leave(ctxT(t), false), ErrWouldLoseQuorum, "a graceful leave")
	_, err = l.Put(ctxT(t), "k", []byte("still committing"), Precondition{})
	require.NoError(t, err)

	// A node that leaves gossip anyway (an older build, or a leave racing a failure) is not removed
	// by reconcile while that would lose the quorum.
	require.NoError(t, h.gossip.Leave(time.Second))
	require.Never(t, func() bool { return c.suffrage(leader, healthy) != "voter" }, 3*time.Second, 50*time.Millisecond)
	_, err = l.Put(ctxT(t), "k", []byte("and still"), Precondition{})
	require.NoError(t, err)

	// Removing the dead voter is what keeps a quorum; then reconcile can take the one that left.
	require.NoError(t, l.RemoveMember(ctxT(t), down, false))
	require.Eventually(t, func() bool { return c.suffrage(leader, healthy) == "absent" }, waitFor, 50*time.Millisecond)
	_, err = l.Put(ctxT(t), "k", []byte("alone"), Precondition{})
	require.NoError(t, err)
}
