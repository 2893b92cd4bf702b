package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/acl"
)

// Snapshot format, version 3 (integers are uvarints unless stated):
//
//	magic        7 bytes  "RKVSNAP"
//	version      1 byte   = 3
//	applied      8 bytes  big-endian: the FSM's applied index at the snapshot
//	last write   8 bytes  big-endian: the index of the last write applied
//	members      count, then per member in id order: id, data id (each length-prefixed)
//	entries      count, then per entry in key order: key, value (each length-prefixed),
//	             CreateIndex, ModIndex
//	dedup clock  8 bytes  big-endian: the idempotency records' clock (leader Unix milliseconds)
//	dedup        count, then per record oldest first: idempotency key (length-prefixed), request
//	             sum (16 bytes), recorded at (8 bytes big-endian), index, current, flags (1 byte:
//	             bit 0 deleted, bit 1 cas failed, bit 2 transaction, bit 3 ok (a lock or session
//	             answer), bit 4 session id), then for a transaction its result (length-prefixed,
//	             TxnResult.AppendEncoded), then with bit 4 a session create's id (length-prefixed).
//	             Bits 3 and 4 appear only once every member applies FormatIdempotentSessions.
//	session clock 8 bytes big-endian: the largest leader stamp of a session command (Unix ms)
//	sessions     count, then per session in id order: id, name (length-prefixed), ttl ms, behavior
//	             (1 byte), lock delay ms, create index, renew index, remaining ms
//	lock delays  count, then per key in key order: key (length-prefixed), until (8 bytes big-endian)
//	acl          version 5 only: length-prefixed acl.State (acl.State.MarshalBinary)
//	crc          4 bytes  big-endian CRC-32C of every byte before it
//
// Version 4 is still written while the ACL state is empty, so a cluster that never used ACLs keeps
// snapshots the previous build reads (a rolling upgrade's followers install the leader's snapshots).
// In version 4 every entry also has, after its ModIndex, a lock byte: 0 for none, 1 for a lock,
// followed by its session id (length-prefixed, empty once released) and lock index. Version 3 lacks
// the lock byte and everything from the session clock on (it has no sessions). Version 2 lacks the dedup clock and records (it was written before idempotency keys, so it has
// none). Version 1 also lacks the last write index; it was written when every write had its own
// entry, so its applied index stands in for it. The same state always produces the same bytes (members are
// sorted, the tree is ordered).
const (
	snapshotMagic     = "RKVSNAP"
	snapshotVersion   = 5
	snapshotVersionV4 = 4
	snapshotVersionV3 = 3
	snapshotVersionV2 = 2
	snapshotVersionV1 = 1
)

// ErrInvalidSnapshot is wrapped by Restore errors caused by the snapshot's content (wrong magic or
// version, checksum mismatch, truncation, malformed fields) as opposed to failing to read it.
var ErrInvalidSnapshot = errors.New("fsm: invalid snapshot")

// ErrStaleSnapshot is returned by Restore for a snapshot older than the state it would replace.
var ErrStaleSnapshot = errors.New("fsm: snapshot older than the applied state")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshot is a frozen point in time: a copy-on-write clone of the tree and a copy of the members.
type snapshot struct {
	applied   uint64
	lastWrite uint64
	members   map[string]string
	tree      *btree.BTreeG[Entry]
	dedup     dedupTable // records are never modified once added, so sharing them is safe
	sessClock int64
	sessions  []Session        // id order, without keys (rebuilt from the tree's locks on restore)
	delays    map[string]int64 // key → until
	// backup: written for a backup, which carries no sessions: a key owned by a delete-behavior session
	// is left out (it would outlive its owner), a released-behavior one loses its holder.
	backup bool
	acl    *acl.State // immutable; nil or empty in a backup
}

// Snapshot captures the current state in O(1) plus the size of the (small) member map. Raft calls it
// on the FSM goroutine, so no Apply runs meanwhile; the write lock keeps readers off the tree while
// Clone rewires it. Apply may continue as soon as Snapshot returns: it copies the nodes it touches.
//
// A halted FSM refuses: Raft labels a snapshot with the last index it handed to Apply, and this state
// lacks the entry that halted it, so the snapshot would make the loss permanent.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if c := f.halt.Load(); c != nil {
		return nil, fmt.Errorf("fsm: no snapshot: %w (%v)", ErrHalted, c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &snapshot{
		applied:   f.applied.Load(),
		lastWrite: f.lastWrite.Load(),
		members:   maps.Clone(f.members),
		tree:      f.tree.Clone(),
		dedup:     dedupTable{clock: f.dedup.clock, order: slices.Clone(f.dedup.order)},
		sessClock: f.sess.clock,
		sessions:  f.sessionCopiesLocked(),
		delays:    maps.Clone(f.sess.delays),
		acl:       f.acl.Load(),
	}, nil
}

// sessionCopiesLocked copies the sessions, which Apply mutates in place, in id order. f.mu is held.
func (f *FSM) sessionCopiesLocked() []Session {
	out := make([]Session, 0, len(f.sess.byID))
	for _, id := range slices.Sorted(maps.Keys(f.sess.byID)) {
		c := *f.sess.byID[id]
		c.keys = nil
		out = append(out, c)
	}
	return out
}

// Persist streams the snapshot to sink, closing it on success and cancelling it on any error.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel() // the write error is the one worth reporting
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("fsm: persist snapshot: close sink: %w", err)
	}
	return nil
}

// Release is a no-op: the clone is garbage once Raft drops the snapshot.
func (s *snapshot) Release() {}

func (s *snapshot) write(w io.Writer) error {
	crc := crc32.New(castagnoli)
	sw := snapshotWriter{w: bufio.NewWriter(io.MultiWriter(w, crc))}

	sw.write([]byte(snapshotMagic))
	version := byte(snapshotVersion)
	var aclBytes []byte
	if s.acl != nil && !s.acl.Empty() {
		var err error
		if aclBytes, err = s.acl.MarshalBinary(); err != nil {
			return err
		}
	} else {
		version = snapshotVersionV4
	}
	sw.write([]byte{version})
	sw.write(binary.BigEndian.AppendUint64(nil, s.applied))
	sw.write(binary.BigEndian.AppendUint64(nil, s.lastWrite))

	sw.uvarint(uint64(len(s.members)))
	for _, id := range slices.Sorted(maps.Keys(s.members)) {
		sw.string(id)
		sw.string(s.members[id])
	}

	behavior := make(map[string]Behavior, len(s.sessions))
	for _, ss := range s.sessions {
		behavior[ss.ID] = ss.Behavior
	}
	skip := func(e *Entry) bool { return s.backup && behavior[e.Holder()] == BehaviorDelete }
	n := s.tree.Len()
	if s.backup {
		s.tree.Ascend(func(e Entry) bool {
			if skip(&e) {
				n--
			}
			return true
		})
	}
	sw.uvarint(uint64(n))
	s.tree.Ascend(func(e Entry) bool {
		if skip(&e) {
			return true
		}
		sw.string(e.Key)
		sw.uvarint(uint64(len(e.Value)))
		sw.write(e.Value)
		sw.uvarint(e.CreateIndex)
		sw.uvarint(e.ModIndex)
		if e.Lock == nil {
			sw.write([]byte{0})
		} else {
			sw.write([]byte{1})
			holder := e.Lock.Session
			if s.backup {
				holder = ""
			}
			sw.string(holder)
			sw.uvarint(e.Lock.Index)
		}
		return sw.err == nil
	})

	sw.write(binary.BigEndian.AppendUint64(nil, uint64(s.dedup.clock)))
	sw.uvarint(uint64(len(s.dedup.order)))
	for _, r := range s.dedup.order {
		sw.string(r.key)
		sw.write(r.sum[:])
		sw.write(binary.BigEndian.AppendUint64(nil, uint64(r.at)))
		sw.uvarint(r.res.Index)
		sw.uvarint(r.res.Current)
		var flags byte
		if r.res.Deleted {
			flags |= 1
		}
		if r.res.CASFailed {
			flags |= 2
		}
		if r.res.Txn != nil {
			flags |= 4
		}
		if r.res.OK {
			flags |= 8
		}
		if r.res.SessionID != "" {
			flags |= 16
		}
		sw.write([]byte{flags})
		if r.res.Txn != nil {
			enc := r.res.Txn.AppendEncoded(nil)
			sw.uvarint(uint64(len(enc)))
			sw.write(enc)
		}
		if r.res.SessionID != "" {
			sw.string(r.res.SessionID)
		}
	}

	sw.write(binary.BigEndian.AppendUint64(nil, uint64(s.sessClock)))
	sessions, delays := s.sessions, s.delays
	if s.backup {
		sessions, delays = nil, nil
	}
	sw.uvarint(uint64(len(sessions)))
	for _, ss := range sessions {
		sw.string(ss.ID)
		sw.string(ss.Name)
		sw.uvarint(uint64(ss.TTL.Milliseconds()))
		sw.write([]byte{byte(ss.Behavior)})
		sw.uvarint(uint64(ss.LockDelay.Milliseconds()))
		sw.uvarint(ss.CreateIndex)
		sw.uvarint(ss.RenewIndex)
		sw.uvarint(uint64(max(ss.Remaining.Milliseconds(), 0)))
	}
	sw.uvarint(uint64(len(delays)))
	for _, k := range slices.Sorted(maps.Keys(delays)) {
		sw.string(k)
		sw.write(binary.BigEndian.AppendUint64(nil, uint64(delays[k])))
	}
	if version == snapshotVersion {
		sw.uvarint(uint64(len(aclBytes)))
		sw.write(aclBytes)
	}

	// Flush before reading the checksum: crc sees bytes only as the buffer drains into it.
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return sw.err
	}
	_, err := w.Write(crc.Sum(nil))
	return err
}

// snapshotWriter keeps the first error and turns later writes into no-ops, so the format above reads
// as a straight sequence of writes with one error check at the end.
type snapshotWriter struct {
	w   *bufio.Writer
	err error
}

func (sw *snapshotWriter) write(b []byte) {
	if sw.err == nil {
		_, sw.err = sw.w.Write(b)
	}
}

func (sw *snapshotWriter) uvarint(v uint64) {
	if sw.err == nil {
		_, sw.err = sw.w.Write(binary.AppendUvarint(sw.w.AvailableBuffer(), v))
	}
}

func (sw *snapshotWriter) string(s string) {
	sw.uvarint(uint64(len(s)))
	if sw.err == nil {
		_, sw.err = sw.w.WriteString(s)
	}
}

// Restore replaces the whole state with the snapshot read from rc, or, if the snapshot cannot be
// read in full and verified, returns an error and leaves the state untouched: the new tree is built
// aside and swapped in only after the checksum matches. Raft closes rc.
//
// A snapshot older than what this FSM has already applied is refused (ErrStaleSnapshot). Committed
// state never goes backwards, so such a snapshot can only be a late one, such as a transfer the leader
// began for a member's previous incarnation that lands after a newer one. hashicorp/raft would install
// it, move its applied index and configuration back, and panic later on a log it no longer has;
// refused here, raft fails the InstallSnapshot RPC before changing anything.
func (f *FSM) Restore(rc io.ReadCloser) error {
	s, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if applied := f.applied.Load(); s.applied < applied {
		return fmt.Errorf("%w: the snapshot is at index %d, this node has applied %d", ErrStaleSnapshot, s.applied, applied)
	}
	size, hash := treeSize(s.tree), treeHash(s.tree)
	f.mu.Lock()
	f.tree, f.members, f.dedup = s.tree, s.members, s.dedup
	f.acl.Store(s.acl)
	f.sess.clock, f.sess.byID, f.sess.delays = s.sessClock, make(map[string]*Session, len(s.sessions)), s.delays
	restored := make([]SessionCheckpointItem, 0, len(s.sessions))
	for i := range s.sessions {
		ss := &s.sessions[i]
		f.sess.byID[ss.ID] = ss
		restored = append(restored, SessionCheckpointItem{ID: ss.ID, Gen: ss.RenewIndex, Remaining: ss.Remaining})
	}
	s.tree.Ascend(func(e Entry) bool {
		if h := e.Holder(); h != "" {
			f.sess.byID[h].keys[e.Key] = struct{}{} // readSnapshot checked that h is live
		}
		return true
	})
	if f.sessSink != nil {
		f.sessSink.SessionsRestored(restored)
	}
	f.bytes.Store(size)
	f.stateHash = hash
	f.marks = [hashHistory]hashMark{}
	f.markLocked(s.lastWrite)
	f.lastWrite.Store(s.lastWrite)
	if f.sink != nil {
		f.sink.Restored(s.lastWrite)
	}
	f.mu.Unlock()
	f.setApplied(s.applied)
	return nil
}

func readSnapshot(r io.Reader) (*snapshot, error) {
	sr := &snapshotReader{r: bufio.NewReader(r)}

	header := make([]byte, len(snapshotMagic)+1+8)
	if err := sr.full(header); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if string(header[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic %q, not a raftkv snapshot", ErrInvalidSnapshot, header[:len(snapshotMagic)])
	}
	version := header[len(snapshotMagic)]
	if version < snapshotVersionV1 || version > snapshotVersion {
		return nil, fmt.Errorf("%w: unknown format version %d (want %d)", ErrInvalidSnapshot, version, snapshotVersion)
	}
	s := &snapshot{
		applied: binary.BigEndian.Uint64(header[len(snapshotMagic)+1:]),
		members: make(map[string]string),
		tree:    newTree(),
		dedup:   newDedupTable(),
		delays:  make(map[string]int64),
		acl:     acl.NewState(),
	}
	s.lastWrite = s.applied
	if version >= snapshotVersionV2 {
		b := make([]byte, 8)
		if err := sr.full(b); err != nil {
			return nil, fmt.Errorf("read last write index: %w", err)
		}
		s.lastWrite = binary.BigEndian.Uint64(b)
	}

	nMembers, err := sr.uvarint()
	if err != nil {
		return nil, fmt.Errorf("read member count: %w", err)
	}
	for i := range nMembers {
		id, err := sr.string()
		if err != nil {
			return nil, fmt.Errorf("read member %d: %w", i, err)
		}
		dataID, err := sr.string()
		if err != nil {
			return nil, fmt.Errorf("read member %d: %w", i, err)
		}
		s.members[id] = dataID
	}

	nEntries, err := sr.uvarint()
	if err != nil {
		return nil, fmt.Errorf("read entry count: %w", err)
	}
	var prev string
	for i := range nEntries {
		e, err := sr.entry(version >= snapshotVersionV4)
		if err != nil {
			return nil, fmt.Errorf("read entry %d of %d: %w", i, nEntries, err)
		}
		// Writers emit keys in strictly ascending order; anything else is damage, and checking it
		// guarantees the count we read is the count we hold.
		if i > 0 && e.Key <= prev {
			return nil, fmt.Errorf("%w: entry %d key %q not after %q", ErrInvalidSnapshot, i, e.Key, prev)
		}
		prev = e.Key
		s.tree.ReplaceOrInsert(e)
	}
	if version >= snapshotVersionV3 {
		if err := sr.dedup(&s.dedup); err != nil {
			return nil, err
		}
	}
	if version >= snapshotVersionV4 {
		if err := sr.sessions(s); err != nil {
			return nil, err
		}
	}
	if version >= snapshotVersion {
		b, err := sr.bytes()
		if err != nil {
			return nil, fmt.Errorf("read acl state: %w", err)
		}
		if s.acl, err = acl.UnmarshalState(b); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
		}
	}

	want := sr.crc
	trailer := make([]byte, 4)
	if _, err := io.ReadFull(sr.r, trailer); err != nil {
		return nil, fmt.Errorf("read checksum: %w", truncated(err))
	}
	if got := binary.BigEndian.Uint32(trailer); got != want {
		return nil, fmt.Errorf("%w: checksum mismatch: stored %#08x, computed %#08x", ErrInvalidSnapshot, got, want)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("read past checksum: %w", err)
		}
		return nil, fmt.Errorf("%w: trailing bytes after checksum", ErrInvalidSnapshot)
	}
	return s, nil
}

// snapshotReader checksums exactly the bytes it consumes, which a hashing reader under the bufio
// could not: bufio reads ahead into the checksum trailer.
type snapshotReader struct {
	r       *bufio.Reader
	crc     uint32
	one     [1]byte
	readErr error // the last error from r, to tell a failing reader from malformed bytes
}

func (sr *snapshotReader) ReadByte() (byte, error) {
	b, err := sr.r.ReadByte()
	if err != nil {
		sr.readErr = err
		return 0, err
	}
	sr.one[0] = b
	sr.crc = crc32.Update(sr.crc, castagnoli, sr.one[:])
	return b, nil
}

func (sr *snapshotReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	sr.crc = crc32.Update(sr.crc, castagnoli, p[:n])
	return n, err
}

func (sr *snapshotReader) full(p []byte) error {
	_, err := io.ReadFull(sr, p)
	return truncated(err)
}

func (sr *snapshotReader) uvarint() (uint64, error) {
	sr.readErr = nil
	v, err := binary.ReadUvarint(sr)
	switch {
	case err == nil:
		return v, nil
	case sr.readErr == nil: // the bytes were there but do not form a varint (overflow)
		return 0, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	default:
		return 0, truncated(err)
	}
}

// maxPrealloc bounds how much a length prefix alone can make us allocate. Longer fields grow as
// their bytes actually arrive, so a corrupt length fails at the end of the input (or the checksum)
// instead of exhausting memory first.
const maxPrealloc = 64 << 10

func (sr *snapshotReader) bytes() ([]byte, error) {
	n, err := sr.uvarint()
	if err != nil {
		return nil, err
	}
	if n <= maxPrealloc {
		b := make([]byte, n)
		return b, sr.full(b)
	}
	if n > math.MaxInt64 {
		return nil, fmt.Errorf("%w: field length %d", ErrInvalidSnapshot, n)
	}
	b, err := io.ReadAll(io.LimitReader(sr, int64(n)))
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) != n {
		return nil, truncated(io.ErrUnexpectedEOF)
	}
	// ReadAll over-allocates as it grows; keep only what the entry needs.
	exact := make([]byte, n)
	copy(exact, b)
	return exact, nil
}

func (sr *snapshotReader) string() (string, error) {
	b, err := sr.bytes()
	return string(b), err
}

func (sr *snapshotReader) entry(withLock bool) (Entry, error) {
	var e Entry
	var err error
	if e.Key, err = sr.string(); err != nil {
		return Entry{}, fmt.Errorf("key: %w", err)
	}
	if e.Value, err = sr.bytes(); err != nil {
		return Entry{}, fmt.Errorf("value of %q: %w", e.Key, err)
	}
	if e.CreateIndex, err = sr.uvarint(); err != nil {
		return Entry{}, fmt.Errorf("create index of %q: %w", e.Key, err)
	}
	if e.ModIndex, err = sr.uvarint(); err != nil {
		return Entry{}, fmt.Errorf("mod index of %q: %w", e.Key, err)
	}
	if !withLock {
		return e, nil
	}
	flag, err := sr.ReadByte()
	if err != nil {
		return Entry{}, fmt.Errorf("lock of %q: %w", e.Key, truncated(err))
	}
	switch flag {
	case 0:
	case 1:
		e.Lock = &Lock{}
		if e.Lock.Session, err = sr.string(); err != nil {
			return Entry{}, fmt.Errorf("lock holder of %q: %w", e.Key, err)
		}
		if e.Lock.Index, err = sr.uvarint(); err != nil {
			return Entry{}, fmt.Errorf("lock index of %q: %w", e.Key, err)
		}
	default:
		return Entry{}, fmt.Errorf("%w: entry %q has lock flag %d", ErrInvalidSnapshot, e.Key, flag)
	}
	return e, nil
}

// sessions reads a version-4 snapshot's session clock, sessions and lock delays into s, and checks
// that every key's holder is among the sessions.
func (sr *snapshotReader) sessions(s *snapshot) error {
	b := make([]byte, 8)
	if err := sr.full(b); err != nil {
		return fmt.Errorf("read session clock: %w", err)
	}
	s.sessClock = int64(binary.BigEndian.Uint64(b))
	n, err := sr.uvarint()
	if err != nil {
		return fmt.Errorf("read session count: %w", err)
	}
	live := make(map[string]bool)
	for i := range n {
		ss := Session{keys: map[string]struct{}{}}
		var ttl, delay, remaining uint64
		ss.ID, err = sr.string()
		if err == nil {
			ss.Name, err = sr.string()
		}
		if err == nil {
			ttl, err = sr.uvarint()
		}
		var beh byte
		if err == nil {
			if beh, err = sr.ReadByte(); err != nil {
				err = truncated(err)
			}
		}
		if err == nil {
			delay, err = sr.uvarint()
		}
		if err == nil {
			ss.CreateIndex, err = sr.uvarint()
		}
		if err == nil {
			ss.RenewIndex, err = sr.uvarint()
		}
		if err == nil {
			remaining, err = sr.uvarint()
		}
		if err != nil {
			return fmt.Errorf("read session %d: %w", i, err)
		}
		ss.Behavior = Behavior(beh)
		if ss.ID == "" || live[ss.ID] || (ss.Behavior != BehaviorRelease && ss.Behavior != BehaviorDelete) {
			return fmt.Errorf("%w: session %d (%q) empty, repeated or with behavior %d", ErrInvalidSnapshot, i, ss.ID, beh)
		}
		live[ss.ID] = true
		ss.TTL, ss.LockDelay = time.Duration(ttl)*time.Millisecond, time.Duration(delay)*time.Millisecond
		ss.Remaining = time.Duration(remaining) * time.Millisecond
		s.sessions = append(s.sessions, ss)
	}
	var badHolder string
	s.tree.Ascend(func(e Entry) bool {
		if h := e.Holder(); h != "" && !live[h] {
			badHolder = e.Key
			return false
		}
		return true
	})
	if badHolder != "" {
		return fmt.Errorf("%w: key %q is held by a session the snapshot does not have", ErrInvalidSnapshot, badHolder)
	}
	if n, err = sr.uvarint(); err != nil {
		return fmt.Errorf("read lock delay count: %w", err)
	}
	for i := range n {
		k, err := sr.string()
		if err == nil {
			err = sr.full(b)
		}
		if err != nil {
			return fmt.Errorf("read lock delay %d: %w", i, err)
		}
		s.delays[k] = int64(binary.BigEndian.Uint64(b))
	}
	return nil
}

// dedup reads the dedup clock and records of a version-3 snapshot into d.
func (sr *snapshotReader) dedup(d *dedupTable) error {
	b := make([]byte, 8)
	if err := sr.full(b); err != nil {
		return fmt.Errorf("read dedup clock: %w", err)
	}
	d.clock = int64(binary.BigEndian.Uint64(b))
	n, err := sr.uvarint()
	if err != nil {
		return fmt.Errorf("read dedup record count: %w", err)
	}
	for i := range n {
		r := &dedupRecord{}
		if r.key, err = sr.string(); err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, err)
		}
		if err := sr.full(r.sum[:]); err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, err)
		}
		if err := sr.full(b); err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, err)
		}
		r.at = int64(binary.BigEndian.Uint64(b))
		if r.res.Index, err = sr.uvarint(); err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, err)
		}
		if r.res.Current, err = sr.uvarint(); err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, err)
		}
		flags, err := sr.ReadByte()
		if err != nil {
			return fmt.Errorf("read dedup record %d: %w", i, truncated(err))
		}
		if flags&^31 != 0 {
			return fmt.Errorf("%w: dedup record %d has unknown flags %#02x", ErrInvalidSnapshot, i, flags)
		}
		r.res.Deleted, r.res.CASFailed, r.res.OK = flags&1 != 0, flags&2 != 0, flags&8 != 0
		if flags&4 != 0 {
			enc, err := sr.bytes()
			if err != nil {
				return fmt.Errorf("read dedup record %d: transaction result: %w", i, err)
			}
			if r.res.Txn, err = DecodeTxnResult(enc); err != nil {
				return fmt.Errorf("%w: dedup record %d: %w", ErrInvalidSnapshot, i, err)
			}
		}
		if flags&16 != 0 {
			if r.res.SessionID, err = sr.string(); err != nil {
				return fmt.Errorf("read dedup record %d: session id: %w", i, err)
			}
		}
		// Records are written oldest first, each at or after the one before and under a unique key.
		if _, dup := d.byKey[r.key]; dup || (len(d.order) > 0 && r.at < d.order[len(d.order)-1].at) {
			return fmt.Errorf("%w: dedup record %d (%q) out of order or repeated", ErrInvalidSnapshot, i, r.key)
		}
		d.byKey[r.key] = r
		d.order = append(d.order, r)
	}
	return nil
}

// truncated marks running out of input as a damaged snapshot; other read errors pass through.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: %w", ErrInvalidSnapshot, io.ErrUnexpectedEOF)
	}
	return err
}
