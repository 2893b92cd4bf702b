package store

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type countingObserver struct {
	nopObserver
	mu                                  sync.Mutex
	leaderChanges, committed, forwarded int
	boltCommits, readBatches            int
}

func (o *countingObserver) LeaderChanged() { o.mu.Lock(); o.leaderChanges++; o.mu.Unlock() }
func (o *countingObserver) EntryCommitted(n int, _ time.Duration) {
	o.mu.Lock()
	o.committed += n
	o.mu.Unlock()
}
func (o *countingObserver) ForwardRPC(time.Duration, error) {
	o.mu.Lock()
	o.forwarded++
	o.mu.Unlock()
}
func (o *countingObserver) LogStoreCommit(time.Duration) { o.mu.Lock(); o.boltCommits++; o.mu.Unlock() }
func (o *countingObserver) ReadIndexBatch(int)           { o.mu.Lock(); o.readBatches++; o.mu.Unlock() }

func (o *countingObserver) get(f func(*countingObserver) int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return f(o)
}

func TestObserverSeesLeaderChangesCommitsForwardsAndDiskCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	obs := map[string]*countingObserver{}
	var mu sync.Mutex
	c.configure = func(id string, cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		obs[id] = &countingObserver{}
		cfg.Observer = obs[id]
	}
	c.startCluster(3)
	ctx := ctxT(t)
	lead, fol := c.leader(), c.follower()
	_, err := c.nodes[fol].store.Put(ctx, "k", []byte("v"), Precondition{})
	require.NoError(t, err)
	_, err = c.nodes[fol].store.Get(ctx, "k", Linearizable)
	require.NoError(t, err)

	assert.GreaterOrEqual(t, obs[lead].get(func(o *countingObserver) int { return o.committed }), 1)
	assert.Equal(t, 1, obs[fol].get(func(o *countingObserver) int { return o.forwarded }))
	assert.Positive(t, obs[fol].get(func(o *countingObserver) int { return o.boltCommits }))
	assert.Positive(t, obs[fol].get(func(o *countingObserver) int { return o.readBatches }))
	for id, o := range obs {
		require.Eventually(t, func() bool { return o.get(func(o *countingObserver) int { return o.leaderChanges }) >= 1 },
			waitFor, 20*time.Millisecond, "%s saw the leader", id)
	}
	// Eventually: the leader's own entries (member records, no-ops) may be in flight a moment longer;
	// a write counted and never uncounted would keep this above zero for good.
	require.Eventually(t, func() bool { return c.nodes[lead].store.Metrics().ProposalsPending == 0 },
		waitFor, 20*time.Millisecond, "nothing stays pending")
	m := c.nodes[fol].store.Metrics()
	assert.True(t, m.HasLeader)
	assert.EqualValues(t, 1, m.Keys)
	assert.EqualValues(t, 2, m.Bytes)
	assert.Equal(t, 3, m.RaftServers["voter"])
	assert.Equal(t, 3, m.GossipMembers["alive"])
}
