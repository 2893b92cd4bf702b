package fsm

// Change is one key's change made by a write: what a watcher of that key sees. A write changes zero
// keys (a failed cas, a delete of an absent key, a member record), one (a put or a delete) or several
// (a transaction), all at the write's one index.
type Change struct {
	Delete bool // the key was removed; Value is nil and CreateIndex/ModIndex are the removed entry's
	Key    string
	Value  []byte // the new value (a put); shared with the FSM, read-only
	// CreateIndex and ModIndex are the entry's after a put; a delete carries the index of the delete as
	// ModIndex and the removed entry's CreateIndex.
	CreateIndex uint64
	ModIndex    uint64
	// Prev is the value before the change; HadPrev is false when the key did not exist.
	Prev    []byte
	HadPrev bool
}

// ChangeSink receives every write's changes, in write-index order, with no gap: Apply calls Changed
// once for every write index it hands out (with no changes for a write that changed nothing), under
// the FSM's lock, so a read that reports index N has been preceded by every Changed up to N. Restored
// says the whole state was replaced by a snapshot at write index index: the changes before it are
// unknown to this FSM.
//
// Both run on the apply path: they must be quick and never block (watch.Hub only appends to memory),
// and they must not call back into the FSM. The changes slice is only valid during the call (the FSM
// reuses it); the Change values in it, and the bytes they point to, are the sink's to keep.
type ChangeSink interface {
	Changed(index uint64, changes []Change)
	Restored(index uint64)
}

// SetChangeSink installs the sink. Call it before the FSM is handed to Raft; it is not synchronised
// with Apply.
func (f *FSM) SetChangeSink(s ChangeSink) { f.sink = s }

// WriteSize is what a change holds in memory beyond its fixed fields, for bounding a history of them.
func (c *Change) WriteSize() int { return len(c.Key) + len(c.Value) + len(c.Prev) + 64 }
