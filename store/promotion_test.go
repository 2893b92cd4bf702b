package store

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// A member's own report of how far it has applied is not what promotes it: a node whose log stores
// nothing, while it claims to have applied everything, stays a non-voter; once its log works it is
// promoted on what the leader saw it acknowledge.
func TestMemberThatLiesAboutItsProgressIsNotPromoted(t *testing.T) {
	c := newTestCluster(t)
	var mu sync.Mutex
	logs := map[string]*stallingLogs{}
	c.configure = func(id string, cfg *Config) {
		if id != "n2" {
			return
		}
		cfg.reportApplied = func(uint64) uint64 { return math.MaxUint32 } // "I have applied everything"
		cfg.wrapLogStore = func(ls raft.LogStore) raft.LogStore {
			mu.Lock()
			defer mu.Unlock()
			logs[id] = &stallingLogs{LogStore: ls}
			logs[id].failing.Store(true) // and stores nothing
			return logs[id]
		}
	}
	c.startCluster(1)
	leader := c.nodes["n1"].store
	ctx := ctxT(t)
	for i := range 2 * caughtUpLag {
		_, err := leader.Put(ctx, fmt.Sprint("k", i), []byte("v"), Precondition{})
		require.NoError(t, err)
	}

	c.start("n2", 0, c.nodes["n1"].gossAddr)
	require.Eventually(t, func() bool { return c.suffrage("n1", "n2") == "nonvoter" }, waitFor, 20*time.Millisecond,
		"n2 never added as a non-voter")
	require.Never(t, func() bool { return c.suffrage("n1", "n2") == "voter" }, 3*time.Second, 50*time.Millisecond,
		"a member whose log stores nothing was promoted on its own word")

	mu.Lock()
	logs["n2"].failing.Store(false)
	mu.Unlock()
	require.Eventually(t, func() bool { return c.suffrage("n1", "n2") == "voter" }, waitFor, 20*time.Millisecond,
		"a member that caught up was never promoted")
}
