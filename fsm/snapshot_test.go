package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	failAfter         int // if > 0, writes fail once this many bytes have been written
}

var errSinkFull = errors.New("sink full")

func (s *memSink) Write(p []byte) (int, error) {
	if s.failAfter > 0 && s.Len()+len(p) > s.failAfter {
		return 0, errSinkFull
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string            { return "mem" }
func (s *memSink) Close() error          { s.closed = true; return nil }
func (s *memSink) Cancel() error         { s.cancelled = true; return nil }
func (s *memSink) reader() io.ReadCloser { return io.NopCloser(bytes.NewReader(s.Bytes())) }

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	require.NoError(t, err)
	defer snap.Release()
	return persistSnapshot(t, snap)
}

func persistSnapshot(t *testing.T, snap raft.FSMSnapshot) []byte {
	t.Helper()
	sink := &memSink{}
	require.NoError(t, snap.Persist(sink))
	require.True(t, sink.closed)
	require.False(t, sink.cancelled)
	return sink.Bytes()
}

func restored(t *testing.T, data []byte) *FSM {
	t.Helper()
	f := New()
	require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(data))))
	return f
}

// model is the obviously-correct reference the FSM is checked against.
type model struct {
	entries   map[string]Entry
	members   map[string]string
	applied   uint64
	lastWrite uint64
}

func newModel() *model {
	return &model{entries: map[string]Entry{}, members: map[string]string{}}
}

// apply applies c, carried by the entry at logIndex.
func (m *model) apply(logIndex uint64, c Command) Result {
	m.applied = logIndex
	index := max(m.lastWrite+1, logIndex)
	m.lastWrite = index
	res := Result{Index: index}
	if c.Op == OpSetMember {
		m.members[c.Key] = string(c.Value)
		return res
	}
	old, found := m.entries[c.Key]
	if c.CAS && old.ModIndex != c.CASIndex { // an absent key's zero Entry has ModIndex 0
		return Result{Index: index, CASFailed: true, Current: old.ModIndex}
	}
	switch c.Op {
	case OpPut:
		create := index
		if found {
			create = old.CreateIndex
		}
		m.entries[c.Key] = Entry{Key: c.Key, Value: append([]byte{}, c.Value...), CreateIndex: create, ModIndex: index}
	case OpDelete:
		delete(m.entries, c.Key)
		res.Deleted = found
	}
	return res
}

// list is the model's List: filter, sort, cut.
func (m *model) list(prefix, after string, limit int) ([]Entry, bool) {
	var out []Entry
	for _, k := range slices.Sorted(maps.Keys(m.entries)) {
		if strings.HasPrefix(k, prefix) && (after == "" || k > after) {
			out = append(out, m.entries[k])
		}
	}
	if limit > 0 && len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// requireSameState compares every observable of f with m.
func requireSameState(t *testing.T, m *model, f *FSM) {
	t.Helper()
	all, more := f.List("", "", 0)
	want, _ := m.list("", "", 0)
	require.False(t, more)
	require.Equal(t, want, all)
	require.Equal(t, len(m.entries), f.Len())
	require.Equal(t, m.applied, f.AppliedIndex())
	require.Equal(t, m.lastWrite, f.LastWriteIndex())
	for id, dataID := range m.members {
		got, ok := f.MemberDataID(id)
		require.True(t, ok)
		require.Equal(t, dataID, got)
	}
	_, ok := f.MemberDataID("never-a-member")
	require.False(t, ok)
}

var modelKeys = []string{"", "a", "a/", "a/1", "a/2", "a/10", "ab", "b", "b/x", "\xff"}

// randomModelCommand draws commands over a small key space so that keys collide and CAS indexes
// often match: the interesting cases are the common ones.
func randomModelCommand(rng *rand.Rand, m *model) Command {
	key := modelKeys[rng.Intn(len(modelKeys))]
	var c Command
	switch n := rng.Intn(10); {
	case n < 5:
		c = Command{Op: OpPut, Key: key, Value: []byte(fmt.Sprint(rng.Intn(1000)))}
		if rng.Intn(4) == 0 {
			c.Value = nil
		}
	case n < 8:
		c = Command{Op: OpDelete, Key: key}
	default:
		return Command{Op: OpSetMember, Key: fmt.Sprintf("node-%d", rng.Intn(3)), Value: []byte(fmt.Sprint(rng.Intn(5)))}
	}
	if rng.Intn(2) == 0 {
		c.CAS = true
		switch rng.Intn(3) {
		case 0:
			c.CASIndex = m.entries[key].ModIndex // matches
		case 1:
			c.CASIndex = 0
		default:
			c.CASIndex = uint64(rng.Intn(int(m.applied) + 2))
		}
	}
	return c
}

func TestFSMMatchesModel(t *testing.T) {
	for seed := range int64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			m, a := newModel(), newApplier(t)
			for range 300 {
				if rng.Intn(50) == 0 {
					// A configuration entry: no data, but an index.
					a.index++
					a.f.StoreConfiguration(a.index, raft.Configuration{})
					m.applied = a.index
					continue
				}
				if rng.Intn(50) == 0 {
					res := a.raw([]byte{1, 9})
					require.Error(t, res.Err)
					m.applied = a.index
					continue
				}
				c := randomModelCommand(rng, m)
				want := m.apply(a.index+1, c)
				require.Equal(t, want, a.apply(c), "command %+v", c)
				requireSameState(t, m, a.f)

				prefix, after := modelKeys[rng.Intn(len(modelKeys))], ""
				if rng.Intn(2) == 0 {
					after = modelKeys[rng.Intn(len(modelKeys))]
				}
				limit := rng.Intn(5)
				wantList, wantMore := m.list(prefix, after, limit)
				gotList, gotMore := a.f.List(prefix, after, limit)
				require.Equal(t, wantList, gotList, "List(%q, %q, %d)", prefix, after, limit)
				require.Equal(t, wantMore, gotMore, "List(%q, %q, %d) more", prefix, after, limit)
			}

			requireSameState(t, m, restored(t, persist(t, a.f)))
		})
	}
}

func TestSnapshotIsAPointInTime(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	m, a := newModel(), newApplier(t)
	for range 200 {
		c := randomModelCommand(rng, m)
		m.apply(a.index+1, c)
		a.apply(c)
	}
	snap, err := a.f.Snapshot()
	require.NoError(t, err)
	defer snap.Release()

	// Keep writing after the snapshot, including to keys it holds, before it is persisted.
	for _, k := range modelKeys {
		a.put(k, "after the snapshot")
	}
	a.apply(Command{Op: OpDelete, Key: "a"})
	a.apply(Command{Op: OpSetMember, Key: "node-0", Value: []byte("changed")})

	requireSameState(t, m, restored(t, persistSnapshot(t, snap)))
}

func TestSnapshotIsDeterministic(t *testing.T) {
	build := func(order []int) []byte {
		a := newApplier(t)
		for _, i := range order {
			a.apply(Command{Op: OpSetMember, Key: fmt.Sprintf("n%d", i), Value: []byte("d")})
		}
		return persist(t, a.f)
	}
	require.Equal(t, build([]int{1, 2, 3}), build([]int{1, 2, 3}))
}

func TestRestoreEmpty(t *testing.T) {
	f := restored(t, persist(t, New()))
	require.Zero(t, f.Len())
	require.Zero(t, f.AppliedIndex())
}

func TestRestoreReplacesState(t *testing.T) {
	src := newApplier(t)
	src.put("new", "v")
	src.apply(Command{Op: OpSetMember, Key: "n1", Value: []byte("d1")})
	data := persist(t, src.f)

	dst := newApplier(t)
	dst.put("old", "v")
	dst.apply(Command{Op: OpSetMember, Key: "n2", Value: []byte("d2")})
	require.NoError(t, dst.f.Restore(io.NopCloser(bytes.NewReader(data))))

	_, ok := dst.f.Get("old")
	require.False(t, ok, "state from before the restore is gone")
	_, ok = dst.f.MemberDataID("n2")
	require.False(t, ok)
	require.Equal(t, src.mustGet("new"), dst.mustGet("new"))
	require.Equal(t, uint64(2), dst.f.AppliedIndex(), "the applied index is the snapshot's")
}

func TestRestoreRefusesASnapshotOlderThanTheAppliedState(t *testing.T) {
	src := newApplier(t)
	src.put("k", "old")
	stale := persist(t, src.f) // at index 1

	dst := newApplier(t)
	dst.put("k", "v1")
	dst.put("k", "v2")
	dst.apply(Command{Op: OpSetMember, Key: "n2", Value: []byte("d2")})
	before := persist(t, dst.f)

	err := dst.f.Restore(io.NopCloser(bytes.NewReader(stale)))
	require.ErrorIs(t, err, ErrStaleSnapshot)
	require.Equal(t, uint64(3), dst.f.AppliedIndex(), "nothing moved back")
	require.Equal(t, before, persist(t, dst.f), "the state is untouched")

	// The same index is not older: restoring it again is allowed (and changes nothing).
	require.NoError(t, dst.f.Restore(io.NopCloser(bytes.NewReader(before))))
	require.Equal(t, before, persist(t, dst.f))
}

func TestRestoreWakesWaiters(t *testing.T) {
	src := newApplier(t)
	for range 3 {
		src.put("k", "v")
	}
	f := New()
	errc := make(chan error, 1)
	go func() { errc <- f.WaitApplied(t.Context(), 3) }()
	require.NoError(t, f.Restore(persistSnapshotReader(t, src.f)))
	require.NoError(t, <-errc)
}

func persistSnapshotReader(t *testing.T, f *FSM) io.ReadCloser {
	return io.NopCloser(bytes.NewReader(persist(t, f)))
}

// damagedFixture returns an FSM with some state and a valid snapshot of different state, to check
// that a failed Restore leaves the FSM exactly as it was.
func damagedFixture(t *testing.T) (target *applier, snapshot []byte) {
	src := newApplier(t)
	src.put("a", "1")
	src.put("b", strings.Repeat("x", 40))
	src.apply(Command{Op: OpSetMember, Key: "n1", Value: []byte("d1")})

	target = newApplier(t)
	target.put("keep", "me")
	target.apply(Command{Op: OpSetMember, Key: "n9", Value: []byte("d9")})
	return target, persist(t, src.f)
}

func requireUntouched(t *testing.T, a *applier) {
	t.Helper()
	require.Equal(t, Entry{Key: "keep", Value: []byte("me"), CreateIndex: 1, ModIndex: 1}, a.mustGet("keep"))
	require.Equal(t, 1, a.f.Len())
	id, ok := a.f.MemberDataID("n9")
	require.True(t, ok)
	require.Equal(t, "d9", id)
	require.Equal(t, uint64(2), a.f.AppliedIndex())
}

func TestRestoreRejectsEveryFlippedByte(t *testing.T) {
	target, good := damagedFixture(t)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x10
		err := target.f.Restore(io.NopCloser(bytes.NewReader(bad)))
		require.ErrorIs(t, err, ErrInvalidSnapshot, "byte %d of %d flipped", i, len(good))
	}
	requireUntouched(t, target)

	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	require.ErrorContains(t, target.f.Restore(io.NopCloser(bytes.NewReader(bad))), "checksum mismatch")
}

func TestRestoreRejectsEveryTruncation(t *testing.T) {
	target, good := damagedFixture(t)
	for n := range len(good) {
		err := target.f.Restore(io.NopCloser(bytes.NewReader(good[:n])))
		require.ErrorIs(t, err, ErrInvalidSnapshot, "first %d of %d bytes", n, len(good))
		require.ErrorContains(t, err, "truncated")
	}
	requireUntouched(t, target)
}

func TestRestoreRejectsTrailingBytes(t *testing.T) {
	target, good := damagedFixture(t)
	err := target.f.Restore(io.NopCloser(bytes.NewReader(append(good, 0))))
	require.ErrorIs(t, err, ErrInvalidSnapshot)
	require.ErrorContains(t, err, "trailing bytes")
	requireUntouched(t, target)
}

// withChecksum recomputes the trailer so a test can get past the CRC to the check it targets.
func withChecksum(body []byte) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

func TestRestoreRejectsWrongMagicAndVersion(t *testing.T) {
	target, good := damagedFixture(t)
	body := good[:len(good)-4]

	otherVersion := bytes.Clone(body)
	otherVersion[len(snapshotMagic)] = snapshotVersion + 1
	err := target.f.Restore(io.NopCloser(bytes.NewReader(withChecksum(otherVersion))))
	require.ErrorIs(t, err, ErrInvalidSnapshot)
	require.ErrorContains(t, err, fmt.Sprintf("unknown format version %d", snapshotVersion+1))

	err = target.f.Restore(io.NopCloser(strings.NewReader(`{"not":"a snapshot"}`)))
	require.ErrorIs(t, err, ErrInvalidSnapshot)
	require.ErrorContains(t, err, "bad magic")
	requireUntouched(t, target)
}

func TestRestoreReadsVersion1(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	a.apply(Command{Op: OpSetMember, Key: "n1", Value: []byte("d")})
	a.index++
	a.f.StoreConfiguration(a.index, raft.Configuration{})
	body := persist(t, a.f)
	// Version 3 is version 4 without the lock byte of each entry (here, of "k", the last) and without
	// the session clock and the (empty) session and lock delay lists at the end.
	v3 := append(bytes.Clone(body[:len(body)-4-10-9-1]), body[len(body)-4-10-9:len(body)-4-10]...)
	v3[len(snapshotMagic)] = snapshotVersionV3
	f3 := restored(t, withChecksum(v3))
	e3, ok := f3.Get("k")
	require.True(t, ok)
	require.Equal(t, "v", string(e3.Value))
	require.Nil(t, e3.Lock)
	// Version 2 is version 3 without the dedup clock and (empty) record list at the end; version 1 is
	// version 2 without the last write index after the applied index.
	body = body[:len(body)-4-10-9-1]
	at := len(snapshotMagic) + 1 + 8
	v1 := append(bytes.Clone(body[:at]), body[at+8:]...)
	v1[len(snapshotMagic)] = snapshotVersionV1

	f := restored(t, withChecksum(v1))
	require.Equal(t, uint64(3), f.AppliedIndex())
	require.Equal(t, uint64(3), f.LastWriteIndex(), "a version 1 snapshot's applied index bounds its writes")
	e, ok := f.Get("k")
	require.True(t, ok)
	require.Equal(t, "v", string(e.Value))
}

func TestRestoreRejectsUnorderedKeys(t *testing.T) {
	target, good := damagedFixture(t)
	// Entries "a" and "b": make the second key "a" as well.
	body := good[:len(good)-4]
	i := bytes.LastIndex(body, []byte{1, 'b', 40})
	require.Positive(t, i)
	dup := bytes.Clone(body)
	dup[i+1] = 'a'
	err := target.f.Restore(io.NopCloser(bytes.NewReader(withChecksum(dup))))
	require.ErrorIs(t, err, ErrInvalidSnapshot)
	require.ErrorContains(t, err, "not after")
	requireUntouched(t, target)
}

func TestRestoreHugeLengthDoesNotAllocateIt(t *testing.T) {
	// A header, no members, one entry whose key claims to be 1 TiB long.
	body := append([]byte(snapshotMagic), snapshotVersion)
	body = binary.BigEndian.AppendUint64(body, 1)
	body = binary.BigEndian.AppendUint64(body, 1)
	body = append(body, 0, 1)
	body = binary.AppendUvarint(body, 1<<40)
	err := New().Restore(io.NopCloser(bytes.NewReader(withChecksum(body))))
	require.ErrorIs(t, err, ErrInvalidSnapshot)
	require.ErrorContains(t, err, "truncated")
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestRestoreReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	err := New().Restore(io.NopCloser(failingReader{boom}))
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, ErrInvalidSnapshot, "a read failure is not a damaged snapshot")
}

func TestPersistCancelsSinkOnError(t *testing.T) {
	a := newApplier(t)
	for i := range 1000 {
		a.put(fmt.Sprint(i), strings.Repeat("v", 100))
	}
	snap, err := a.f.Snapshot()
	require.NoError(t, err)
	sink := &memSink{failAfter: 10_000}
	err = snap.Persist(sink)
	require.ErrorIs(t, err, errSinkFull)
	require.True(t, sink.cancelled)
	require.False(t, sink.closed)
}

func TestSnapshotLargeValues(t *testing.T) {
	a := newApplier(t)
	big := bytes.Repeat([]byte("0123456789"), 20_000) // larger than maxPrealloc
	a.apply(Command{Op: OpPut, Key: "big", Value: big})
	a.put("small", "s")
	f := restored(t, persist(t, a.f))
	e, ok := f.Get("big")
	require.True(t, ok)
	require.Equal(t, big, e.Value)
	require.Equal(t, len(e.Value), cap(e.Value), "restored values carry no spare capacity")
	require.Equal(t, 2, f.Len())
}
