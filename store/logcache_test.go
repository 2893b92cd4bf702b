package store

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// Issue 11 item 9: raft's LogCache kept its last 1024 entries whatever their size (1 GiB of 1 MiB
// values per node). The cache holds at most its byte budget, and every entry still reads back.
func TestLogCacheIsBoundedByBytes(t *testing.T) {
	const budget = 4 << 20
	inner := raft.NewInmemStore()
	c, err := newLogCache(inner, 1024, budget)
	require.NoError(t, err)
	value := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i)}, 1<<20) }
	for i := uint64(1); i <= 64; i++ {
		require.NoError(t, c.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: value(i)}}))
		require.LessOrEqual(t, c.cachedBytes(), int64(budget))
	}
	require.Equal(t, int64(budget), c.cachedBytes(), "the newest entries that fit stay cached")
	for i := uint64(1); i <= 64; i++ {
		var l raft.Log
		require.NoError(t, c.GetLog(i, &l))
		require.Equal(t, value(i), l.Data, "entry %d, cached or not", i)
	}

	huge := &raft.Log{Index: 65, Term: 1, Data: make([]byte, budget+1)}
	require.NoError(t, c.StoreLog(huge))
	require.LessOrEqual(t, c.cachedBytes(), int64(budget), "an entry over the whole budget is not cached")
	var l raft.Log
	require.NoError(t, c.GetLog(65, &l))
	require.Len(t, l.Data, budget+1)

	require.NoError(t, c.DeleteRange(60, 65))
	require.Zero(t, c.cachedBytes())
	require.ErrorIs(t, c.GetLog(62, &l), raft.ErrLogNotFound)
}

func TestLogCacheKeepsSmallEntriesByCount(t *testing.T) {
	c, err := newLogCache(raft.NewInmemStore(), 8, 1<<20)
	require.NoError(t, err)
	var logs []*raft.Log
	for i := uint64(1); i <= 20; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte("v")})
	}
	require.NoError(t, c.StoreLogs(logs))
	require.Equal(t, int64(8), c.cachedBytes(), "the ring holds the last 8")
}
