package fsm

import "github.com/google/btree"

// Stats returns the number of keys, the bytes of their keys and values, and how many commands this FSM
// has applied since it was created (restores do not count): what metrics report about the state.
func (f *FSM) Stats() (keys int, bytes int64, writes uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tree.Len(), f.bytes.Load(), f.writes.Load()
}

func entrySize(e Entry) int64 { return int64(len(e.Key) + len(e.Value)) }

func treeSize(t *btree.BTreeG[Entry]) int64 {
	var n int64
	t.Ascend(func(e Entry) bool {
		n += entrySize(e)
		return true
	})
	return n
}
