package store

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the most recent log entries in memory, so that the leader replicates them to
// followers without reading them back from BoltDB. hashicorp/raft's LogCache bounds its ring by entry
// count only: with 1 MiB values its 1024 slots held up to 1 GiB on every node, on top of the same bytes
// in the FSM (issue 11 item 9). This one is bounded by count and by bytes; an entry larger than the
// whole byte budget is not cached.
type logCache struct {
	raft.LogStore
	maxBytes int64

	mu    sync.RWMutex
	slots []*raft.Log // by index modulo len(slots)
	bytes int64       // of the Data of the entries in slots
	last  uint64      // the highest index cached, the end of the ring
}

func newLogCache(store raft.LogStore, entries int, maxBytes int64) (*logCache, error) {
	if entries <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("log cache of %d entries and %d bytes: both must be positive", entries, maxBytes)
	}
	return &logCache{LogStore: store, maxBytes: maxBytes, slots: make([]*raft.Log, entries)}, nil
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	cached := c.slots[idx%uint64(len(c.slots))]
	c.mu.RUnlock()
	if cached != nil && cached.Index == idx {
		*log = *cached
		return nil
	}
	return c.LogStore.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores logs and then caches them: only what the store holds may be served from memory.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := uint64(len(c.slots))
	for _, l := range logs {
		c.dropLocked(l.Index % n)
		if int64(len(l.Data)) <= c.maxBytes {
			c.slots[l.Index%n] = l
			c.bytes += int64(len(l.Data))
		}
		c.last = max(c.last, l.Index)
	}
	// Over budget: drop the oldest entries of the ring until the rest fits.
	for idx := c.last - min(c.last, n-1); c.bytes > c.maxBytes && idx <= c.last; idx++ {
		if s := c.slots[idx%n]; s != nil && s.Index == idx {
			c.dropLocked(idx % n)
		}
	}
	return nil
}

func (c *logCache) dropLocked(slot uint64) {
	if old := c.slots[slot]; old != nil {
		c.bytes -= int64(len(old.Data))
		c.slots[slot] = nil
	}
}

// DeleteRange empties the cache, as raft's LogCache does: deletions are compaction (old entries, long
// evicted) or the removal of a conflicting tail, both rare.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.slots)
	c.bytes, c.last = 0, 0
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}

// cachedBytes is what the cache holds (for tests).
func (c *logCache) cachedBytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes
}

// IsMonotonic passes on the store's promise (see timedLogStore).
func (c *logCache) IsMonotonic() bool {
	m, ok := c.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
