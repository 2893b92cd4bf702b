package store

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft bounds the log by entries: a snapshot after SnapshotThreshold new ones, TrailingLogs kept after
// it. With 1 MiB values the default 10240 trailing entries are 10 GiB of log on disk (and BoltDB maps
// its file into memory). So the store also bounds it by bytes: logSizes remembers the size of every
// entry the log holds, and boundLogBytes, a loop of its own, (1) lowers TrailingLogs to the newest
// entries that fit in Config.TrailingBytes, and (2) takes a snapshot once the entries after the last
// snapshot exceed Config.SnapshotBytes. Both are local: every node bounds its own log.
//
// The price of fewer trailing bytes is that a follower which falls further behind than they reach is
// sent a snapshot instead of the entries it misses.

// logSizes wraps a log store and remembers the size of each entry it holds, in index order. It starts
// empty at Open: entries written before this process started are not counted until compacted away, so
// right after a restart the bound is loose by at most what the log held then.
type logSizes struct {
	raft.LogStore
	mu    sync.Mutex
	sizes []entrySize // ascending index
	bytes int64
}

type entrySize struct {
	index uint64
	size  int64
}

func (l *logSizes) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

func (l *logSizes) StoreLogs(logs []*raft.Log) error {
	if err := l.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, log := range logs {
		// An index at or below the newest known replaces a conflicting tail.
		for n := len(l.sizes); n > 0 && l.sizes[n-1].index >= log.Index; n-- {
			l.bytes -= l.sizes[n-1].size
			l.sizes = l.sizes[:n-1]
		}
		l.sizes = append(l.sizes, entrySize{log.Index, int64(len(log.Data))})
		l.bytes += int64(len(log.Data))
	}
	return nil
}

func (l *logSizes) DeleteRange(min, max uint64) error {
	err := l.LogStore.DeleteRange(min, max)
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.sizes[:0]
	for _, e := range l.sizes {
		if e.index >= min && e.index <= max {
			l.bytes -= e.size
			continue
		}
		kept = append(kept, e)
	}
	clear(l.sizes[len(kept):])
	l.sizes = kept
	return err
}

// IsMonotonic passes on the store's promise (see timedLogStore).
func (l *logSizes) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// retained is the count and total size of the entries the log holds (as far as this process knows).
func (l *logSizes) retained() (entries int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sizes), l.bytes
}

// bytesAfter is the total size of the entries with an index above index.
func (l *logSizes) bytesAfter(index uint64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.sizes), func(i int) bool { return l.sizes[i].index > index })
	var total int64
	for _, e := range l.sizes[i:] {
		total += e.size
	}
	return total
}

// trailingFor is how many of the newest entries fit in maxBytes, at least 1; math.MaxUint64 when every
// entry it knows of fits (the byte bound does not bind, and right after a restart entries it has not
// seen must not count as fitting).
func (l *logSizes) trailingFor(maxBytes int64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var total int64
	for i := len(l.sizes) - 1; i >= 0; i-- {
		if total += l.sizes[i].size; total > maxBytes {
			return max(uint64(len(l.sizes)-1-i), 1)
		}
	}
	return math.MaxUint64
}

// boundLogBytes runs until the store closes, every logBoundInterval.
func (s *Store) boundLogBytes() {
	t := time.NewTicker(s.cfg.logBoundInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.boundLogBytesOnce()
	}
}

// boundLogBytesOnce sets TrailingLogs by bytes and takes a snapshot if the log since the last one is
// over SnapshotBytes. The snapshot then compacts the log down to the trailing entries.
func (s *Store) boundLogBytesOnce() {
	trailing := min(s.cfg.TrailingLogs, s.logSizes.trailingFor(s.cfg.TrailingBytes))
	if rc := s.raft.ReloadableConfig(); rc.TrailingLogs != trailing {
		rc.TrailingLogs = trailing
		if err := s.raft.ReloadConfig(rc); err != nil {
			s.logger.Warn("cannot bound the trailing log by bytes", "trailing_logs", trailing, "err", err)
		}
	}
	lastSnap, _ := strconv.ParseUint(s.raft.Stats()["last_snapshot_index"], 10, 64)
	if since := s.logSizes.bytesAfter(lastSnap); since >= s.cfg.SnapshotBytes {
		s.logger.Info("snapshot: the log since the last one is over its byte bound",
			"bytes", since, "snapshot_bytes", s.cfg.SnapshotBytes, "trailing_logs", trailing)
		if err := s.raft.Snapshot().Error(); err != nil && s.ctx.Err() == nil {
			s.logger.Warn("snapshot by bytes failed", "err", err)
		}
	}
}
