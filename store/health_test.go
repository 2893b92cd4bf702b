package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHealthShowsAStoppedServerAndTheToleranceLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	fol := c.follower()
	require.Eventually(t, func() bool {
		h, err := c.nodes[fol].store.Health(ctx)
		return err == nil && h.Healthy && h.FailureTolerance == 1 && len(h.Servers) == 3
	}, waitFor, 50*time.Millisecond, "a 3-node cluster is healthy and tolerates one failure")

	down := c.follower(fol)
	c.stop(down)
	var h Health
	require.Eventually(t, func() bool {
		var err error
		h, err = c.nodes[fol].store.Health(ctx)
		return err == nil && !h.Healthy && h.FailureTolerance == 0
	}, waitFor, 50*time.Millisecond)
	for _, s := range h.Servers {
		if s.ID == down {
			assert.False(t, s.Healthy)
			assert.NotEmpty(t, s.Reason)
			assert.EqualValues(t, -1, s.LastContactMs)
		} else {
			assert.True(t, s.Healthy, "%s: %s", s.ID, s.Reason)
			assert.LessOrEqual(t, s.Behind, uint64(readyMaxLag))
		}
	}
	assert.Equal(t, c.leader(), h.Leader)
}

func TestStatsRoundTrip(t *testing.T) {
	in := serverStats{term: 3, lastIndex: 1 << 40, applied: 17, lastContactMs: -1}
	out, err := decodeStats(encodeStats(in))
	require.NoError(t, err)
	assert.Equal(t, in, out)
	_, err = decodeStats(append(encodeStats(in), 0))
	assert.ErrorIs(t, err, errBadStats)
}
