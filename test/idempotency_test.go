package test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// kill -9 of the leader while writers retry every write that has no definite answer with its
// Idempotency-Key, on any live node: every write ends up applied exactly once — its key was written once
// (CreateIndex == ModIndex) at the index the writer was finally told — also where the original was
// applied by the dead leader and only the retry got an answer.
func TestIdempotentRetriesAcrossALeaderKillApplyOnce(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{})
	leader := c.Leader(t)

	// The deterministic case first: applied and acknowledged by the leader, which then dies.
	first := c.Node(leader).PutIdempotent("idem/fixed", []byte("v"), "fixed-1")
	require.True(t, first.OK(), first.String())

	const writers, perWriter = 3, 40
	var (
		mu    sync.Mutex
		acked = map[string]uint64{} // key -> index finally answered
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if i == 5 {
					started <- struct{}{}
				}
				key := fmt.Sprintf("idem/w%d-%03d", w, i)
				idemKey := "req-" + key
				deadline := time.Now().Add(60 * time.Second)
				for attempt := 0; ; attempt++ {
					if time.Now().After(deadline) {
						t.Errorf("%s: no definite answer within 60s", key)
						return
					}
					live := c.Live()
					r := c.Node(live[(w+attempt)%len(live)]).PutIdempotent(key, []byte(key), idemKey)
					if r.OK() {
						mu.Lock()
						acked[key] = r.Index
						mu.Unlock()
						break
					}
					if r.Outcome() == harness.Applied || r.Status == 422 || (r.Status >= 400 && r.Status < 500) {
						t.Errorf("%s: %s", key, r)
						return
					}
					// Indeterminate or no effect: the same key makes the retry safe either way.
				}
			}
		}()
	}
	for range writers {
		<-started
	}
	c.Kill9(leader)
	wg.Wait()
	require.False(t, t.Failed())

	newLeader := c.Leader(t)
	n := c.Node(newLeader)
	retry := n.PutIdempotent("idem/fixed", []byte("v"), "fixed-1")
	require.True(t, retry.OK(), retry.String())
	require.Equal(t, first.Index, retry.Index, "the retry on the new leader answers the first index")
	reused := n.PutIdempotent("idem/fixed", []byte("other"), "fixed-1")
	require.Equal(t, 422, reused.Status, reused.String())
	require.Equal(t, "idempotency_key_reused", reused.Code)

	acked["idem/fixed"] = first.Index
	require.Len(t, acked, writers*perWriter+1)
	for key, index := range acked {
		g := n.Get(key)
		require.True(t, g.OK(), g.String())
		require.Equal(t, index, g.ModIndex, "%s: the answered write is the one in the store", key)
		require.Equal(t, g.CreateIndex, g.ModIndex, "%s: written once, not twice", key)
	}
}
