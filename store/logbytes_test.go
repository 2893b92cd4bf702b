package store

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func TestLogSizesFollowStoresAndDeletes(t *testing.T) {
	l := &logSizes{LogStore: raft.NewInmemStore()}
	for i := uint64(1); i <= 10; i++ {
		require.NoError(t, l.StoreLog(&raft.Log{Index: i, Data: make([]byte, 100*i)}))
	}
	n, b := l.retained()
	require.Equal(t, 10, n)
	require.Equal(t, int64(5500), b)
	require.Equal(t, int64(1000+900), l.bytesAfter(8))
	require.Equal(t, uint64(2), l.trailingFor(1900), "entries 9 and 10")
	require.Equal(t, uint64(1), l.trailingFor(1), "at least one")
	require.Equal(t, uint64(math.MaxUint64), l.trailingFor(5500), "no bound while everything fits")

	require.NoError(t, l.DeleteRange(1, 4)) // compaction
	require.NoError(t, l.DeleteRange(9, 10))
	require.NoError(t, l.StoreLogs([]*raft.Log{{Index: 8, Data: make([]byte, 7)}, {Index: 9, Data: make([]byte, 9)}})) // a conflicting tail replaced
	n, b = l.retained()
	require.Equal(t, 5, n)
	require.Equal(t, int64(500+600+700+7+9), b)
}

// Issue 11 item 9: the log was bounded by entries only (a snapshot every 8192, 10240 kept after it), so
// large values kept gigabytes of it. With byte bounds, a node snapshots once the log since its last
// snapshot exceeds SnapshotBytes and keeps at most TrailingBytes after it, whatever the entry counts.
func TestLogIsBoundedByBytes(t *testing.T) {
	const (
		snapBytes     = 512 << 10
		trailingBytes = 256 << 10
		valueSize     = 32 << 10 // large writes: one per entry
	)
	c := newTestCluster(t)
	c.configure = func(_ string, cfg *Config) {
		cfg.SnapshotThreshold = 1 << 30 // never by count
		cfg.SnapshotBytes = snapBytes
		cfg.TrailingBytes = trailingBytes
		cfg.logBoundInterval = 20 * time.Millisecond
	}
	ids := c.startCluster(3)
	lead := c.nodes[c.leader()].store
	value := bytes.Repeat([]byte("v"), valueSize)
	const writes = 96 // 3 MiB: six times the snapshot bound
	for i := range writes {
		_, err := lead.Put(ctxT(t), "k"+strconv.Itoa(i%8), value, Precondition{})
		require.NoError(t, err)
	}
	for _, id := range ids {
		s := c.nodes[id].store
		require.Eventually(t, func() bool {
			_, b := s.logSizes.retained()
			return b <= snapBytes+trailingBytes
		}, waitFor, 20*time.Millisecond, "node %s: the log is bounded by bytes", id)
		entries, b := s.logSizes.retained()
		require.Less(t, entries, writes, "node %s compacted", id)
		require.NotEqual(t, "0", s.raft.Stats()["last_snapshot_index"], "node %s took a snapshot", id)
		t.Logf("node %s: %d entries, %d bytes of log retained", id, entries, b)
		require.Eventually(t, func() bool {
			got, ok := s.fsm.Get("k7")
			return ok && bytes.Equal(value, got.Value)
		}, waitFor, 20*time.Millisecond, fmt.Sprintf("node %s has the data", id))
	}
	// Stop the nodes here: the data dirs' TempDir cleanups run before the cluster's, and a snapshot
	// still being written would leave files behind while they remove the directories.
	for _, id := range ids {
		c.stop(id)
	}
}
