// Package fsm is raftkv's replicated state: the ordered key space, the record of each member's
// data-dir id, and the index of the last Raft entry applied. It implements raft.FSM and
// raft.ConfigurationStore, and defines the versioned binary encoding of the commands that travel
// through the Raft log.
//
// Everything here is deterministic: the same log produces the same state and the same results on
// every node. The package therefore never reads a clock, draws a random number, touches the network
// or does any I/O other than writing a snapshot to the sink Raft hands it and reading one back in
// Restore. It does not validate keys or values (httpapi does) and knows nothing of leadership (store
// does); it applies whatever Raft committed.
//
// The key space lives in a github.com/google/btree BTreeG rather than a map or a radix tree:
//   - Clone is an O(1) lazy copy-on-write, so Snapshot returns immediately and Persist streams a
//     frozen point in time while Apply keeps mutating the live tree;
//   - keys are kept in byte order, so prefix listing and "after" continuation are a single
//     ordered scan rather than a sort;
//   - items are stored by value in wide nodes, so each key costs little beyond its key and value
//     bytes, which is what keeps a million 100-byte values well under a gigabyte.
package fsm
