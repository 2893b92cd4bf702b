package store

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The reproduction from issue 10: W is committed on A and B while C lags; A crashes and B comes back
// with an empty data dir. B, with no configuration, used to grant C its vote, and C led with a log
// that never had W: an acknowledged write was gone.
func TestWipedVoterElectsALaggingNodeAndLosesAWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)

	lagging := ids[2]
	c.nodes[lagging].store.mux.Isolate(true)
	a := c.leader(lagging)
	_, err := c.nodes[a].store.Put(ctx, "w", []byte("acknowledged"), Precondition{})
	require.NoError(t, err)
	var b string
	for _, id := range ids {
		if id != a && id != lagging {
			b = id
		}
	}

	c.stop(a) // a crash as far as the others can tell: no graceful leave
	c.stop(b)
	require.NoError(t, os.RemoveAll(c.nodes[b].dir))
	c.start(b, 0, c.nodes[lagging].gossAddr)
	c.nodes[lagging].store.mux.Isolate(false)

	// Only two of three nodes are up and one of them lost its log: no leader may be elected by the
	// one that never had W. Watch stores captured now; stop and start rewrite c.nodes.
	lag, wiped := c.nodes[lagging].store, c.nodes[b].store
	require.Never(t, func() bool { return lag.isLeader() || wiped.isLeader() }, 5*time.Second, 20*time.Millisecond,
		"a leader was elected without the only surviving copy of W")

	c.start(a, 0)
	leader := c.leader()
	e, err := c.nodes[leader].store.Get(ctxT(t), "w", Linearizable)
	require.NoError(t, err, "the acknowledged write is lost")
	require.Equal(t, "acknowledged", string(e.Value))

	// B is re-added as its new incarnation and votes again: with A down once more, B and C elect.
	require.Eventually(t, func() bool {
		l := c.leader()
		return c.suffrage(l, b) == "voter" && c.nodes[b].store.admitted()
	}, readdDelay+waitFor, 50*time.Millisecond)
	c.stop(a)
	l := c.leader(a)
	e, err = c.nodes[l].store.Get(ctxT(t), "w", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "acknowledged", string(e.Value))
}
