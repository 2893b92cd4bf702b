package fsm

import (
	"fmt"
	"io"
	"maps"
	"slices"
)

// SnapshotFormat names what WriteBackup writes, for a backup's metadata. A backup never carries the ACL
// state (see Backup), so it is written in version 4, which the build before ACLs reads too.
var SnapshotFormat = fmt.Sprintf("fsm-snapshot/%d", snapshotVersionV4)

// ReadsSnapshotFormat reports whether this build reads a backup whose metadata names format: this
// version's and every earlier one.
func ReadsSnapshotFormat(format string) bool {
	for v := snapshotVersionV1; v <= snapshotVersion; v++ {
		if format == fmt.Sprintf("fsm-snapshot/%d", v) {
			return true
		}
	}
	return false
}

// SnapshotInfo describes a snapshot's content.
type SnapshotInfo struct {
	Applied    uint64 // the raft index of the state
	WriteIndex uint64 // the last write in it
	Keys       int
	Bytes      int64 // keys and values
}

// BackupState is a point-in-time copy of the state for a backup: taken in O(1) like a Raft snapshot,
// written by Write off any lock.
type BackupState struct{ s *snapshot }

// Backup captures the current state: the data, not membership, and not the ACL state. Tokens and
// policies belong to the running cluster like its members: restoring an old backup must not bring back
// a revoked token, nor lock the operator out with another cluster's tokens.
func (f *FSM) Backup() BackupState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return BackupState{&snapshot{
		applied:   f.applied.Load(),
		lastWrite: f.lastWrite.Load(),
		members:   map[string]string{}, // membership belongs to the cluster, not to its data
		tree:      f.tree.Clone(),
		sessions:  f.sessionCopiesLocked(), // only to know each holder's behavior
		backup:    true,
		// The idempotency records describe exactly this state: a retry, after a restore of it, of a
		// write it holds answers that write instead of applying it again; one it does not hold (made
		// after the backup, gone with the restore) applies. Records are immutable once added.
		dedup: dedupTable{clock: f.dedup.clock, order: slices.Clone(f.dedup.order)},
	}}
}

// Info describes the captured state.
func (b BackupState) Info() SnapshotInfo {
	return SnapshotInfo{Applied: b.s.applied, WriteIndex: b.s.lastWrite, Keys: b.s.tree.Len(), Bytes: treeSize(b.s.tree)}
}

// Write writes the state in the snapshot format (SnapshotFormat).
func (b BackupState) Write(w io.Writer) error { return b.s.write(w) }

// ReadSnapshotInfo reads and verifies a whole snapshot and describes it.
func ReadSnapshotInfo(r io.Reader) (SnapshotInfo, error) {
	s, err := readSnapshot(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{Applied: s.applied, WriteIndex: s.lastWrite, Keys: s.tree.Len(), Bytes: treeSize(s.tree)}, nil
}

// PrepareRestore reads and verifies the snapshot in r (a backup's data) and writes to w the snapshot a
// restore hands to Raft: the backup's keys, this FSM's current members (membership is the running
// cluster's, not the backup's: its data-dir records decide who is a member), and index as both the
// applied and the last write index, so that the restored state's indexes are ahead of anything this
// cluster has handed out and the write index never moves backwards.
func (f *FSM) PrepareRestore(r io.Reader, w io.Writer, index uint64) (SnapshotInfo, error) {
	s, err := readSnapshot(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	f.mu.RLock()
	s.members = maps.Clone(f.members)
	s.acl = f.acl.Load() // the running cluster's, as for members
	f.mu.RUnlock()
	info := SnapshotInfo{Applied: s.applied, WriteIndex: s.lastWrite, Keys: s.tree.Len(), Bytes: treeSize(s.tree)}
	s.applied, s.lastWrite = index, index
	// A backup carries no sessions, but the clock of the cluster it goes into must not go back.
	f.mu.RLock()
	s.sessClock = max(s.sessClock, f.sess.clock)
	s.dedup.clock = max(s.dedup.clock, f.dedup.clock) // nor the dedup clock (records then expire as due)
	f.mu.RUnlock()
	if err := s.write(w); err != nil {
		return SnapshotInfo{}, err
	}
	return info, nil
}

// ClusterIDMember is the member record that holds the cluster's id (an OpSetMember with this key): no
// node id is empty, so it cannot name a node. The first leader records a random id; a restore keeps it.
const ClusterIDMember = ""

// ClusterID is the id the cluster's first leader recorded, or "" until then.
func (f *FSM) ClusterID() string {
	id, _ := f.MemberDataID(ClusterIDMember)
	return id
}
