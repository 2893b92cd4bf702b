package fsm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStateHashFollowsEveryWriteAndSurvivesASnapshot(t *testing.T) {
	a := newApplier(t)
	a.put("a", "1")
	a.put("b", "2")
	a.apply(Command{Op: OpDelete, Key: "a"})
	a.put("b", "3")
	a.apply(txnCommand(&Txn{Success: []TxnOp{{Kind: TxnPut, Key: "c", Value: []byte("4")}}}))
	last := a.f.LastWriteIndex()
	h, ok := a.f.HashAt(last)
	require.True(t, ok)
	require.Equal(t, treeHash(a.f.tree), h, "the running hash is the hash of the keyspace")

	// Another member that got the same state by snapshot agrees at the same index.
	b := restored(t, persist(t, a.f))
	hb, ok := b.HashAt(last)
	require.True(t, ok)
	require.Equal(t, h, hb)

	// One changed byte, anywhere, and the hashes differ.
	b.mu.Lock()
	e, _ := b.tree.Get(Entry{Key: "b"})
	e.Value = []byte("4")
	b.tree.ReplaceOrInsert(e)
	b.mu.Unlock()
	require.NotEqual(t, h, treeHash(b.tree))

	_, ok = a.f.HashAt(last + hashHistory)
	require.False(t, ok, "an index not applied yet has no hash")
}
