package fsm

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// applier feeds commands to an FSM at consecutive log indexes, as Raft would.
type applier struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newApplier(t testing.TB) *applier { return &applier{t: t, f: New()} }

func (a *applier) raw(data []byte) Result {
	a.index++
	res, ok := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data}).(Result)
	require.True(a.t, ok, "Apply returns a Result value")
	require.Equal(a.t, a.index, a.f.AppliedIndex())
	return res
}

func (a *applier) apply(c Command) Result { return a.raw(c.Encode()) }

func (a *applier) put(key, value string) Result {
	return a.apply(Command{Op: OpPut, Key: key, Value: []byte(value)})
}

func (a *applier) mustGet(key string) Entry {
	e, ok := a.f.Get(key)
	require.True(a.t, ok, "key %q", key)
	return e
}

func TestPutGet(t *testing.T) {
	a := newApplier(t)
	_, ok := a.f.Get("a")
	require.False(t, ok)

	require.Equal(t, Result{Index: 1}, a.put("a", "one"))
	require.Equal(t, Entry{Key: "a", Value: []byte("one"), CreateIndex: 1, ModIndex: 1}, a.mustGet("a"))

	a.put("b", "x")
	require.Equal(t, Result{Index: 3}, a.put("a", "two"))
	require.Equal(t, Entry{Key: "a", Value: []byte("two"), CreateIndex: 1, ModIndex: 3}, a.mustGet("a"),
		"a replace keeps CreateIndex and moves ModIndex")
	require.Equal(t, 2, a.f.Len())
}

func TestPutEmptyValueIsNotNil(t *testing.T) {
	a := newApplier(t)
	a.put("a", "")
	require.NotNil(t, a.mustGet("a").Value, "an empty value must read back as empty, not null")
}

func TestPutCopiesValueOutOfLog(t *testing.T) {
	a := newApplier(t)
	data := Command{Op: OpPut, Key: "k", Value: []byte("original")}.Encode()
	a.raw(data)
	for i := range data {
		data[i] = 'X' // Raft may reuse the log buffer.
	}
	require.Equal(t, []byte("original"), a.mustGet("k").Value)
}

func TestCASPut(t *testing.T) {
	a := newApplier(t)
	casPut := func(key string, casIndex uint64, value string) Result {
		return a.apply(Command{Op: OpPut, Key: key, Value: []byte(value), CAS: true, CASIndex: casIndex})
	}

	require.Equal(t, Result{Index: 1}, casPut("k", 0, "v1"), "cas=0 creates an absent key")
	require.Equal(t, Result{Index: 2, CASFailed: true, Current: 1}, casPut("k", 0, "v2"), "cas=0 fails on a present key")
	require.Equal(t, Result{Index: 3, CASFailed: true, Current: 1}, casPut("k", 2, "v2"), "stale index")
	require.Equal(t, Entry{Key: "k", Value: []byte("v1"), CreateIndex: 1, ModIndex: 1}, a.mustGet("k"), "failed CAS changes nothing")

	require.Equal(t, Result{Index: 4}, casPut("k", 1, "v2"))
	require.Equal(t, Entry{Key: "k", Value: []byte("v2"), CreateIndex: 1, ModIndex: 4}, a.mustGet("k"))

	require.Equal(t, Result{Index: 5, CASFailed: true, Current: 0}, casPut("absent", 4, "v"), "absent key has current 0")
	_, ok := a.f.Get("absent")
	require.False(t, ok)
}

func TestDelete(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")

	require.Equal(t, Result{Index: 2}, a.apply(Command{Op: OpDelete, Key: "absent"}), "deleting an absent key is not an error")
	require.Equal(t, Result{Index: 3, Deleted: true}, a.apply(Command{Op: OpDelete, Key: "k"}))
	_, ok := a.f.Get("k")
	require.False(t, ok)
	require.Zero(t, a.f.Len())

	a.put("k", "again") // index 4: a new life, a new CreateIndex
	require.Equal(t, Entry{Key: "k", Value: []byte("again"), CreateIndex: 4, ModIndex: 4}, a.mustGet("k"))
}

func TestCASDelete(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	casDelete := func(key string, casIndex uint64) Result {
		return a.apply(Command{Op: OpDelete, Key: key, CAS: true, CASIndex: casIndex})
	}

	require.Equal(t, Result{Index: 2, CASFailed: true, Current: 1}, casDelete("k", 7))
	require.Equal(t, Result{Index: 3, CASFailed: true, Current: 1}, casDelete("k", 0))
	a.mustGet("k")
	require.Equal(t, Result{Index: 4, Deleted: true}, casDelete("k", 1))
	require.Equal(t, Result{Index: 5}, casDelete("k", 0), "cas=0 on an absent key matches; nothing to delete")
	require.Equal(t, Result{Index: 6, CASFailed: true}, casDelete("k", 1))
}

func TestSetMember(t *testing.T) {
	a := newApplier(t)
	_, ok := a.f.MemberDataID("n1")
	require.False(t, ok)

	require.Equal(t, Result{Index: 1}, a.apply(Command{Op: OpSetMember, Key: "n1", Value: []byte("d1")}))
	a.apply(Command{Op: OpSetMember, Key: "n1", Value: []byte("d2")})
	id, ok := a.f.MemberDataID("n1")
	require.True(t, ok)
	require.Equal(t, "d2", id)
	require.Zero(t, a.f.Len(), "members are not keys")
}

func TestApplyUndecodableCommand(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")

	res := a.raw([]byte{9, 9, 9})
	require.ErrorIs(t, res.Err, ErrInvalidCommand)
	require.ErrorContains(t, res.Err, "log index 2")
	require.Zero(t, res.Index, "an invalid command is no write")
	require.Equal(t, 1, a.f.Len())

	res = a.raw(nil)
	require.ErrorIs(t, res.Err, ErrInvalidCommand)
	require.Equal(t, uint64(3), a.f.AppliedIndex(), "a bad entry still advances the applied index")
}

func TestStoreConfigurationAdvancesAppliedIndex(t *testing.T) {
	f := New()
	f.StoreConfiguration(5, raft.Configuration{})
	require.Equal(t, uint64(5), f.AppliedIndex())
	f.StoreConfiguration(3, raft.Configuration{})
	require.Equal(t, uint64(5), f.AppliedIndex(), "the applied index never goes back")
	require.Zero(t, f.Len())
}

func TestList(t *testing.T) {
	a := newApplier(t)
	for _, k := range []string{"b", "a/3", "a/1", "a", "a/2", "ab", "a0", "c/1"} {
		a.put(k, "v-"+k)
	}
	keys := func(entries []Entry) []string {
		var ks []string
		for _, e := range entries {
			ks = append(ks, e.Key)
		}
		return ks
	}

	tests := []struct {
		name          string
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"all", "", "", 0, []string{"a", "a/1", "a/2", "a/3", "a0", "ab", "b", "c/1"}, false},
		{"all limited", "", "", 3, []string{"a", "a/1", "a/2"}, true},
		{"limit exactly matches", "a/", "", 3, []string{"a/1", "a/2", "a/3"}, false},
		{"prefix", "a/", "", 10, []string{"a/1", "a/2", "a/3"}, false},
		{"prefix includes the prefix key", "a", "", 0, []string{"a", "a/1", "a/2", "a/3", "a0", "ab"}, false},
		{"after", "a/", "a/1", 0, []string{"a/2", "a/3"}, false},
		{"after absent key", "a/", "a/15", 0, []string{"a/2", "a/3"}, false},
		{"after and limit", "", "a/3", 2, []string{"a0", "ab"}, true},
		{"after before prefix", "b", "a", 0, []string{"b"}, false},
		{"after past prefix", "a/", "a/9", 0, nil, false},
		{"after the last key", "", "c/1", 1, nil, false},
		{"no match", "zzz", "", 5, nil, false},
		{"negative limit is unlimited", "c", "", -1, []string{"c/1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, more := a.f.List(tt.prefix, tt.after, tt.limit)
			require.Equal(t, tt.want, keys(entries))
			require.Equal(t, tt.more, more)
			for _, e := range entries {
				require.Equal(t, "v-"+e.Key, string(e.Value))
			}
		})
	}
}

func TestListPagination(t *testing.T) {
	a := newApplier(t)
	for i := range 25 {
		a.put(fmt.Sprintf("p/%02d", i), "v")
	}
	a.put("q", "v")
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		entries, more := a.f.List("p/", after, 7)
		for _, e := range entries {
			got = append(got, e.Key)
		}
		if !more {
			break
		}
		after = entries[len(entries)-1].Key
	}
	require.Len(t, got, 25)
	require.Equal(t, "p/00", got[0])
	require.Equal(t, "p/24", got[24])
}

func TestWaitAppliedReached(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	require.NoError(t, a.f.WaitApplied(context.Background(), 0))
	require.NoError(t, a.f.WaitApplied(context.Background(), 1))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.f.WaitApplied(ctx, 1), "a reached index wins over a cancelled context")
}

func TestWaitAppliedDoesNotAllocateWhenReached(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_ = a.f.WaitApplied(ctx, 1)
	})
	require.Zero(t, allocs)
}

func TestWaitAppliedUnblocks(t *testing.T) {
	a := newApplier(t)
	const waiters = 5
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() { errs <- a.f.WaitApplied(context.Background(), uint64(2+i%2)) }()
	}

	a.put("k", "v") // index 1: nobody is satisfied
	select {
	case err := <-errs:
		t.Fatalf("WaitApplied returned at index 1: %v", err)
	default:
	}
	a.put("k", "v")
	a.f.StoreConfiguration(3, raft.Configuration{})
	for range waiters {
		require.NoError(t, <-errs)
	}
}

func TestWaitAppliedSeesTheWrite(t *testing.T) {
	a := newApplier(t)
	done := make(chan Entry)
	go func() {
		if err := a.f.WaitApplied(context.Background(), 1); err != nil {
			close(done)
			return
		}
		e, _ := a.f.Get("k")
		done <- e
	}()
	a.put("k", "v")
	require.Equal(t, []byte("v"), (<-done).Value, "waiting for an index makes its write visible")
}

func TestWaitAppliedCancelled(t *testing.T) {
	f := New()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.WaitApplied(ctx, 10) }()
	f.StoreConfiguration(9, raft.Configuration{})
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "applied index 10")
}

func TestConcurrentReadersDuringApplyAndPersist(t *testing.T) {
	a := newApplier(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				key := fmt.Sprintf("k%d", r)
				if e, ok := a.f.Get(key); ok {
					_ = e.Value[0]
				}
				a.f.List("k", "", 10)
				a.f.Len()
				_ = a.f.WaitApplied(ctx, a.f.AppliedIndex()+1)
			}
		})
	}
	for i := range 2000 {
		a.put(fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
		if i%500 == 0 {
			snap, err := a.f.Snapshot()
			require.NoError(t, err)
			wg.Go(func() {
				defer snap.Release()
				_ = snap.Persist(&memSink{})
			})
		}
	}
	cancel()
	wg.Wait()
}

func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	const keys = 200_000
	value := make([]byte, 100)
	f := New()
	before := heapInUse()
	var buf []byte
	for i := range keys {
		buf = AppendCommand(buf[:0], Command{Op: OpPut, Key: fmt.Sprintf("key/%08d", i), Value: value})
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: buf})
	}
	perKey := (heapInUse() - before) / keys
	runtime.KeepAlive(f)
	t.Logf("%d bytes per key of 100-byte values", perKey)
	// 1 M keys must fit well under 1 GiB; at 400 B/key a million take under 400 MB.
	require.Less(t, perKey, uint64(400))
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkApplyPut(b *testing.B) {
	data := make([][]byte, 1024)
	for i := range data {
		data[i] = Command{Op: OpPut, Key: fmt.Sprintf("users/%06d", i), Value: make([]byte, 100)}.Encode()
	}
	f := New()
	l := &raft.Log{Type: raft.LogCommand}
	b.ReportAllocs()
	for b.Loop() {
		l.Index++
		l.Data = data[l.Index%uint64(len(data))]
		f.Apply(l)
	}
}

func TestNoopChangesNothingButTheIndex(t *testing.T) {
	a := newApplier(t)
	a.apply(Command{Op: OpPut, Key: "k", Value: []byte("v")})
	require.Equal(t, Result{}, a.apply(Command{Op: OpNoop}))
	e, ok := a.f.Get("k")
	require.True(t, ok)
	require.Equal(t, uint64(1), e.ModIndex)
	require.Equal(t, uint64(2), a.f.AppliedIndex())
}
