package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The read index a leader hands out is its commit index, and a follower waits until its FSM has seen
// that index. hashicorp/raft does not pass its own no-ops and barriers to the FSM, so the index must
// always be an entry the FSM sees: the leadership entry is a no-op *command* (not raft.Barrier), and
// nothing else the store proposes is invisible to the FSM. A Barrier (or any entry the FSM does not
// see) at the end of the log would leave followers waiting for an index their FSM never reports.
func TestReadIndexIsAnEntryNoFSMEverSees(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	check := func(why string) {
		t.Helper()
		leader := c.nodes[c.leader()].store
		var idx uint64
		require.Eventually(t, func() bool {
			var err error
			idx, err = leader.confirmReadIndex()
			return err == nil
		}, waitFor, 20*time.Millisecond)
		for _, id := range ids {
			s := c.nodes[id].store
			require.Eventually(t, func() bool { return s.fsm.AppliedIndex() >= idx }, waitFor, 10*time.Millisecond,
				"%s: %s never saw read index %d (its FSM is at %d)", why, id, idx, s.fsm.AppliedIndex())
		}
		// The leader may still be proposing entries of its own (member records after bootstrap), so
		// compare once the log is quiet: an entry the FSM never sees at the end of the log would keep
		// the read index above the FSM's index for good.
		var applied uint64
		require.Eventually(t, func() bool {
			ri, err := leader.confirmReadIndex()
			applied = leader.fsm.AppliedIndex()
			idx = ri
			return err == nil && ri == applied
		}, waitFor, 20*time.Millisecond, "%s: the read index %d is not an entry the leader's FSM saw (it is at %d)", why, idx, applied)
	}
	check("after bootstrap")
	_, err := c.nodes[ids[0]].store.Put(ctxT(t), "k", []byte("v"), Precondition{})
	require.NoError(t, err)
	check("after a write")
	old := c.leader()
	require.NoError(t, c.nodes[old].store.raft.LeadershipTransfer().Error())
	require.Eventually(t, func() bool { return !c.nodes[old].store.isLeader() }, waitFor, 20*time.Millisecond)
	check("in a new term")
}
