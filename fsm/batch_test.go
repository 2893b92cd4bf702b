package fsm

import (
	"context"
	"math/rand"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// batch applies cmds as one batch entry at the next index and returns the per-command results.
func (a *applier) batch(cmds ...Command) []Result {
	a.t.Helper()
	encs := make([][]byte, len(cmds))
	for i, c := range cmds {
		encs[i] = c.Encode()
	}
	a.index++
	res, ok := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: AppendBatch(nil, encs)}).([]Result)
	require.True(a.t, ok, "a batch entry returns []Result")
	require.Len(a.t, res, len(cmds))
	require.Equal(a.t, a.index, a.f.AppliedIndex())
	return res
}

func TestBatchRoundTrip(t *testing.T) {
	cmds := [][]byte{
		Command{Op: OpPut, Key: "a", Value: []byte("1")}.Encode(),
		Command{Op: OpDelete, Key: "b", CAS: true, CASIndex: 9}.Encode(),
		Command{Op: OpSetMember, Key: "n1", Value: []byte("d")}.Encode(),
	}
	size := 0
	for _, c := range cmds {
		size += len(c)
	}
	enc := AppendBatch(nil, cmds)
	require.True(t, IsBatch(enc))
	require.LessOrEqual(t, len(enc), BatchLen(len(cmds), size), "BatchLen is an upper bound")
	got, err := DecodeBatch(enc)
	require.NoError(t, err)
	require.Equal(t, cmds, got)

	require.False(t, IsBatch(cmds[0]), "a single command is not a batch")
	require.False(t, IsBatch(nil))
}

func TestBatchEncodingIsStable(t *testing.T) {
	// The log outlives the binary: these bytes must decode the same way forever.
	enc := AppendBatch(nil, [][]byte{Command{Op: OpDelete, Key: "k"}.Encode()})
	require.Equal(t, []byte{2, 1, 6, 1, 2, 0, 1, 'k', 0}, enc)
}

func TestDecodeBatchErrors(t *testing.T) {
	put := Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode()
	tests := map[string][]byte{
		"empty":             {},
		"single command":    put,
		"no count":          {2},
		"zero count":        {2, 0},
		"count too large":   append([]byte{2, 9, byte(len(put))}, put...),
		"non-minimal count": append([]byte{2, 0x81, 0x00, byte(len(put))}, put...),
		"trailing bytes":    append(append([]byte{2, 1, byte(len(put))}, put...), 0),
		"length too large":  append([]byte{2, 1, byte(len(put) + 1)}, put...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeBatch(b)
			require.ErrorIs(t, err, ErrInvalidCommand)
		})
	}
}

func TestDecodeBatchRejectsEveryTruncation(t *testing.T) {
	enc := AppendBatch(nil, [][]byte{
		Command{Op: OpPut, Key: "k", Value: []byte("value")}.Encode(),
		Command{Op: OpDelete, Key: "other"}.Encode(),
	})
	for n := range len(enc) {
		_, err := DecodeBatch(enc[:n])
		require.ErrorIs(t, err, ErrInvalidCommand, "truncated to %d of %d bytes", n, len(enc))
	}
}

func TestApplyBatch(t *testing.T) {
	a := newApplier(t)
	a.put("cas-me", "old")
	casIndex := a.mustGet("cas-me").ModIndex

	res := a.batch(
		Command{Op: OpPut, Key: "new", Value: []byte("v")},
		Command{Op: OpPut, Key: "cas-me", Value: []byte("new"), CAS: true, CASIndex: casIndex},
		Command{Op: OpPut, Key: "absent-only", CAS: true, CASIndex: 1}, // fails: the key is absent
		Command{Op: OpDelete, Key: "missing"},
		Command{Op: OpSetMember, Key: "n1", Value: []byte("d1")},
	)
	idx := a.index
	require.Equal(t, []Result{
		{Index: idx},
		{Index: idx + 1},
		{Index: idx + 2, CASFailed: true, Current: 0},
		{Index: idx + 3},
		{Index: idx + 4},
	}, res, "the commands of a batch get consecutive indexes from the entry's")
	require.Equal(t, idx+4, a.f.LastWriteIndex())
	require.Equal(t, Entry{Key: "new", Value: []byte("v"), CreateIndex: idx, ModIndex: idx}, a.mustGet("new"))
	require.Equal(t, Entry{Key: "cas-me", Value: []byte("new"), CreateIndex: casIndex, ModIndex: idx + 1}, a.mustGet("cas-me"))

	next := a.put("after", "v")
	require.Equal(t, idx+5, next.Index, "the next entry's write follows the batch's, not the raft index")
	require.Greater(t, next.Index, a.index)
	_, ok := a.f.Get("absent-only")
	require.False(t, ok)
	id, ok := a.f.MemberDataID("n1")
	require.True(t, ok)
	require.Equal(t, "d1", id)
}

func TestApplyBatchReportsABadCommandAlone(t *testing.T) {
	a := newApplier(t)
	a.index++
	data := AppendBatch(nil, [][]byte{
		Command{Op: OpPut, Key: "good", Value: []byte("v")}.Encode(),
		{1, 9, 0, 0, 0}, // unknown op
	})
	res, ok := a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data}).([]Result)
	require.True(t, ok)
	require.NoError(t, res[0].Err)
	require.ErrorIs(t, res[1].Err, ErrInvalidCommand)
	require.ErrorContains(t, res[1].Err, "command 2")
	require.Equal(t, "v", string(a.mustGet("good").Value))
}

func TestApplyCorruptBatchChangesNothingButTheIndex(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v")
	res := a.raw([]byte{2, 5, 1})
	require.ErrorIs(t, res.Err, ErrInvalidCommand)
	require.Equal(t, 1, a.f.Len())
	require.Equal(t, uint64(2), a.f.AppliedIndex())
}

// TestFSMMatchesModelWithBatches mixes random batches, keys repeating within them, with single
// commands, and checks them against the model applying the same commands one by one.
func TestFSMMatchesModelWithBatches(t *testing.T) {
	for seed := range int64(20) {
		rng := rand.New(rand.NewSource(seed))
		m, a := newModel(), newApplier(t)
		for range 200 {
			if rng.Intn(3) == 0 {
				c := randomModelCommand(rng, m)
				require.Equal(t, m.apply(a.index+1, c), a.apply(c), "seed %d: command %+v", seed, c)
				requireSameState(t, m, a.f)
				continue
			}
			// The model sees each command only after the previous one, so a cas may target an
			// index written earlier in the same batch.
			cmds := make([]Command, 1+rng.Intn(6))
			want := make([]Result, len(cmds))
			for i := range cmds {
				cmds[i] = randomModelCommand(rng, m)
				want[i] = m.apply(a.index+1, cmds[i])
			}
			require.Equal(t, want, a.batch(cmds...), "seed %d: batch %+v", seed, cmds)
			requireSameState(t, m, a.f)
		}
		requireSameState(t, m, restored(t, persist(t, a.f)))
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, [][]byte{Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode()}))
	f.Add(AppendBatch(nil, [][]byte{{1, 2, 0, 1, 'a', 0}, {0xff}}))
	f.Add([]byte{2, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeBatch(b)
		if err != nil {
			return
		}
		require.Equal(t, b, AppendBatch(nil, cmds), "a batch has exactly one encoding")
		// Whatever the batch holds, applying it must not panic.
		New().Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: b})
	})
}

// A batch gives its writes indexes beyond its entry's Raft index: a reader that saw the last of them
// must wait on the write index, which the applied (Raft) index never reaches.
func TestWaitWriteIndexCoversBatchedWrites(t *testing.T) {
	a := newApplier(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.f.WaitWriteIndex(context.Background(), 3) }()

	a.batch(
		Command{Op: OpPut, Key: "a", Value: []byte("1")},
		Command{Op: OpPut, Key: "b", Value: []byte("2")},
		Command{Op: OpPut, Key: "c", Value: []byte("3")},
	) // raft index 1, write indexes 1..3
	require.NoError(t, <-errc)
	require.Equal(t, uint64(3), a.f.LastWriteIndex())
	require.Equal(t, uint64(1), a.f.AppliedIndex())

	err := a.f.WaitWriteIndex(ctx, 4)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "write index 4 (at 3)")
}
