// Package watch keeps one node's recent history of changes, in memory, and serves it to watchers: every
// change with an index from N on, exactly once and in index order, or a clear "compacted" when N is
// older than what the node still holds. It owns that history and nothing else: the FSM feeds it
// (fsm.ChangeSink), httpapi reads it; it never touches Raft, the network or the disk.
//
// The shape is a pull model, unlike etcd's watchable store (server/storage/mvcc/watchable_store.go),
// which pushes each event into every synced watcher's channel and moves a watcher whose channel is full
// to a "victim" list that a background loop retries and an "unsynced" group caught up from the
// backend. Here the apply path only appends to one shared, bounded history and wakes whoever waits;
// each watcher reads the history from its own position at its own pace. So a slow watcher costs the
// others nothing and never blocks apply (there is no channel to fill), a watcher that is behind and one
// that is live run the same code (no synced/unsynced hand-over, where etcd's duplicate and lost events
// have come from), and memory is bounded by the history, not by watchers times their backlog.
package watch

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/raftkv/raftkv/fsm"
)

// Defaults of the history bounds (the --watch-history and --watch-history-bytes flags).
const (
	DefaultHistory      = 10 * time.Minute
	DefaultHistoryBytes = 256 << 20
)

// ErrCompacted: the requested index is older than the history this node holds; the concrete error is
// *CompactedError. A watcher must re-read (list) and watch from the list's index + 1.
var ErrCompacted = errors.New("watch index compacted")

// CompactedError says what the history holds: changes after CompactIndex, up to CurrentIndex.
type CompactedError struct {
	Requested, CompactIndex, CurrentIndex uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("index %d is compacted: this node holds changes after %d (now at %d)", e.Requested, e.CompactIndex, e.CurrentIndex)
}

func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Event is every change of one write index, in the order the write made them.
type Event struct {
	Index   uint64
	Changes []fsm.Change
}

// Filter selects changes: one key, or every key under a prefix (Prefix "" is every key), and the kinds.
type Filter struct {
	Key      string
	Prefix   string
	IsPrefix bool
	NoPut    bool // leave out puts
	NoDelete bool // leave out deletes
}

func (f *Filter) match(c *fsm.Change) bool {
	if (c.Delete && f.NoDelete) || (!c.Delete && f.NoPut) {
		return false
	}
	if f.IsPrefix {
		return strings.HasPrefix(c.Key, f.Prefix)
	}
	return c.Key == f.Key
}

// Config bounds the history. Zero values take the defaults.
type Config struct {
	History      time.Duration // changes are kept at least this long (unless over MaxBytes)
	HistoryBytes int64
	Now          func() time.Time // tests
}

// record is one write index's changes as the history keeps them. The first change is stored inline and
// the arrival time as an integer, so that the common single-change write costs one slot of a chunk and
// no allocation of its own.
type record struct {
	index uint64
	at    int64 // arrival, Unix nanoseconds
	size  int64
	first fsm.Change
	rest  []fsm.Change // a transaction's further changes
}

// chunkLen is the number of records per chunk. The history grows by whole chunks instead of by doubling
// one slice, so apply never copies the history and memory follows what is held.
const chunkLen = 1024

// Hub is the history and its readers' meeting point. Its methods are safe for concurrent use.
type Hub struct {
	cfg Config

	mu sync.Mutex
	// chunks hold the records in index order; chunks[0][head:] and every later chunk are live. A
	// record is never changed once appended and a chunk's array is never reused, so a reader may scan
	// a view of them without the lock (see Read).
	chunks  [][]record
	head    int
	events  int
	bytes   int64
	compact uint64 // every change with index <= compact has been dropped (or predates this node's state)
	current uint64 // the last write index applied: the history is complete up to it
	notify  chan struct{}
}

var _ fsm.ChangeSink = (*Hub)(nil)

// New returns an empty hub at index 0.
func New(cfg Config) *Hub {
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.HistoryBytes <= 0 {
		cfg.HistoryBytes = DefaultHistoryBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Hub{cfg: cfg, notify: make(chan struct{})}
}

// recordOverhead is what a record costs beyond the bytes of its keys and values: its chunk slot and,
// for a transaction, the Change structs of its further changes.
const recordOverhead = int64(unsafe.Sizeof(record{}))

// Changed implements fsm.ChangeSink: it appends the write's changes and drops what the bounds no longer
// allow. It never blocks on a reader.
func (h *Hub) Changed(index uint64, changes []fsm.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if index <= h.current {
		return // replayed after a restore to a later index; already accounted for
	}
	h.current = index
	if len(changes) == 0 {
		return
	}
	now := h.cfg.Now()
	r := record{index: index, at: now.UnixNano(), first: changes[0], size: recordOverhead}
	if len(changes) > 1 {
		r.rest = append([]fsm.Change(nil), changes[1:]...)
		r.size += int64(len(r.rest)) * int64(unsafe.Sizeof(fsm.Change{}))
	}
	for i := range changes {
		r.size += int64(len(changes[i].Key) + len(changes[i].Value) + len(changes[i].Prev))
	}
	if n := len(h.chunks); n == 0 || len(h.chunks[n-1]) == chunkLen {
		h.chunks = append(h.chunks, make([]record, 0, chunkLen))
	}
	last := &h.chunks[len(h.chunks)-1]
	*last = append(*last, r)
	h.events++
	h.bytes += r.size
	h.trim(now)
	close(h.notify)
	h.notify = make(chan struct{})
}

// Restored implements fsm.ChangeSink: the state jumped to a snapshot at index, so the changes up to it
// are unknown here; a reader still needing one of them gets ErrCompacted.
func (h *Hub) Restored(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if index <= h.current {
		return // the snapshot is a state this history already leads to
	}
	h.chunks, h.head, h.events, h.bytes = nil, 0, 0, 0
	h.compact, h.current = index, index
	close(h.notify)
	h.notify = make(chan struct{})
}

// trim drops the oldest records past either bound, always keeping the newest one.
func (h *Hub) trim(now time.Time) {
	cutoff := now.Add(-h.cfg.History).UnixNano()
	for h.events > 1 {
		r := &h.chunks[0][h.head]
		if h.bytes <= h.cfg.HistoryBytes && r.at >= cutoff {
			break
		}
		h.bytes -= r.size
		h.compact = r.index
		h.events--
		h.head++
		if h.head == chunkLen {
			// The chunk leaves the history; readers still scanning it keep it alive until they finish.
			h.chunks[0] = nil
			h.chunks, h.head = h.chunks[1:], 0
		}
	}
}

// Wake returns a channel closed at the next change (or restore). Take it before Read, then wait on it
// if Read found nothing: a change between the two closes the channel already taken.
func (h *Hub) Wake() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.notify
}

// Current is the last write index the hub has seen.
func (h *Hub) Current() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}

// Bounds returns the compact index (changes after it are held) and the current index.
func (h *Hub) Bounds() (compact, current uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.compact, h.current
}

// Read returns the events with an index >= from that have a change f matches, each holding only the
// matching changes, at most maxEvents of them (<= 0: no limit), and through: every matching change with
// an index up to through is in evs (so the next Read starts at through + 1). through is from - 1 when
// nothing new has been applied. A from at or below the compact index is *CompactedError: the history
// no longer says what happened there.
func (h *Hub) Read(from uint64, f *Filter, maxEvents int) (evs []Event, through uint64, err error) {
	if from == 0 {
		from = 1
	}
	// Only a view of the chunks from the one holding from is taken under the lock; the scan runs
	// without it, so a reader far behind, filtering a long history, never holds up Changed (apply).
	h.mu.Lock()
	if from <= h.compact {
		err := &CompactedError{Requested: from, CompactIndex: h.compact, CurrentIndex: h.current}
		h.mu.Unlock()
		return nil, 0, err
	}
	through = max(h.current, from-1)
	// The last chunk whose first record is <= from holds from, if anything does.
	c := sort.Search(len(h.chunks), func(i int) bool { return h.chunks[i][0].index > from })
	c = max(c-1, 0)
	var view [][]record
	for i := c; i < len(h.chunks); i++ {
		ch := h.chunks[i]
		if i == 0 {
			ch = ch[h.head:]
		}
		view = append(view, ch[:len(ch):len(ch)])
	}
	h.mu.Unlock()

	for _, ch := range view {
		i := sort.Search(len(ch), func(i int) bool { return ch[i].index >= from })
		for ; i < len(ch); i++ {
			r := &ch[i]
			if maxEvents > 0 && len(evs) == maxEvents {
				return evs, r.index - 1, nil
			}
			var matched []fsm.Change
			if f.match(&r.first) {
				matched = append(matched, r.first)
			}
			for j := range r.rest {
				if f.match(&r.rest[j]) {
					matched = append(matched, r.rest[j])
				}
			}
			if len(matched) > 0 {
				evs = append(evs, Event{Index: r.index, Changes: matched})
			}
		}
	}
	return evs, through, nil
}

// Stats is the history's size, for metrics and tests.
type Stats struct {
	Events        int
	Bytes         int64
	Compact, Last uint64
}

func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Events: h.events, Bytes: h.bytes, Compact: h.compact, Last: h.current}
}
