package fsm

// statehash.go: a running hash of the keyspace, so that members can compare their states at the same
// write index without stopping to read it all (store/corruptcheck.go; etcd's corruption check hashes
// its whole keyspace instead). The hash is the sum, mod 2^64, of one hash per entry (key, value,
// create and mod index): a put or delete changes it in O(1), and equal keyspaces have equal hashes
// whatever order they were built in. The member table and the idempotency records are not part of it.

import (
	"encoding/binary"
	"hash/crc64"

	"github.com/google/btree"
)

// hashHistory is how many recent write indexes keep their hash (16 bytes each).
const hashHistory = 4096

var crcTable = crc64.MakeTable(crc64.ECMA) // read-only after init

type hashMark struct{ index, hash uint64 }

// entryHash is one entry's contribution to the state hash.
func entryHash(e Entry) uint64 {
	var hdr [3 * binary.MaxVarintLen64]byte
	b := binary.AppendUvarint(hdr[:0], uint64(len(e.Key)))
	b = binary.AppendUvarint(b, e.CreateIndex)
	b = binary.AppendUvarint(b, e.ModIndex)
	h := crc64.Update(0, crcTable, b)
	h = crc64.Update(h, crcTable, []byte(e.Key))
	h = crc64.Update(h, crcTable, e.Value)
	// splitmix64's finalizer: a sum of CRCs would keep their linearity; mixed, it does not.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func treeHash(t *btree.BTreeG[Entry]) uint64 {
	var h uint64
	t.Ascend(func(e Entry) bool {
		h += entryHash(e)
		return true
	})
	return h
}

// markLocked records the state hash at write index index. f.mu is held.
func (f *FSM) markLocked(index uint64) {
	f.marks[index%hashHistory] = hashMark{index: index, hash: f.stateHash}
}

// HashAt is the hash of the keyspace as it was right after write index index, if this node applied
// that write recently enough to remember it (the last 4096 writes) or restored a snapshot taken there.
func (f *FSM) HashAt(index uint64) (hash uint64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m := f.marks[index%hashHistory]
	return m.hash, index != 0 && m.index == index
}
