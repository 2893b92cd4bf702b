package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func TestSealedEncodingIsStable(t *testing.T) {
	cmd := Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode()
	// 3, crc32c of the command (checked against an independent implementation), the command.
	require.Equal(t, []byte{3, 0x51, 0x8d, 0x29, 0xed, 1, 1, 0, 1, 'k', 1, 'v'}, Seal(cmd))
}

func TestSealInPlace(t *testing.T) {
	cmd := Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode()
	b := append(make([]byte, SealHeaderLen), cmd...)
	require.Equal(t, Seal(cmd), SealInPlace(b))
}

func TestUnsealRoundTrip(t *testing.T) {
	for _, payload := range [][]byte{
		Command{Op: OpPut, Key: "k", Value: []byte("v")}.Encode(),
		AppendBatch(nil, [][]byte{Command{Op: OpDelete, Key: "a"}.Encode(), Command{Op: OpNoop}.Encode()}),
	} {
		got, err := Unseal(Seal(payload))
		require.NoError(t, err)
		require.Equal(t, payload, got)
	}
}

// Every single changed byte and every truncation of a sealed entry is caught.
func TestUnsealCatchesEveryChangedByte(t *testing.T) {
	sealed := Seal(Command{Op: OpPut, Key: "key", Value: []byte("value")}.Encode())
	for i := 1; i < len(sealed); i++ {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			b := append([]byte(nil), sealed...)
			b[i] ^= flip
			_, err := Unseal(b)
			require.ErrorIs(t, err, ErrChecksum, "byte %d ^ %#x", i, flip)
		}
	}
	for n := 1; n < len(sealed); n++ {
		_, err := Unseal(sealed[:n])
		require.ErrorIs(t, err, ErrChecksum, "truncated to %d", n)
	}
	_, err := Unseal(Seal(Seal([]byte{1, 4, 0, 0, 0})))
	require.ErrorIs(t, err, ErrInvalidCommand, "a seal inside a seal")
}

func TestApplySealedCommandsAndBatches(t *testing.T) {
	a := newApplier(t)
	require.Equal(t, Result{Index: 1}, a.raw(Seal(Command{Op: OpPut, Key: "a", Value: []byte("1")}.Encode())))
	a.index++
	res := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: Seal(AppendBatch(nil, [][]byte{
		Command{Op: OpPut, Key: "b", Value: []byte("2")}.Encode(),
		Command{Op: OpDelete, Key: "a"}.Encode(),
	}))})
	require.Equal(t, []Result{{Index: 2}, {Index: 3, Deleted: true}}, res)
	require.Equal(t, "2", string(a.mustGet("b").Value))
	// Unsealed entries of formats 1 and 2 still apply.
	require.Equal(t, Result{Index: 4}, a.put("c", "3"))
}

// A changed byte in a logged value used to be applied and served as data.
func TestCorruptLoggedValueIsNotApplied(t *testing.T) {
	a := newApplier(t)
	a.put("k", "good")
	data := Seal(Command{Op: OpPut, Key: "k", Value: []byte("new!")}.Encode())
	data[len(data)-1] ^= 0x20 // "new!" → "new\x01"

	res, ok := a.f.Apply(&raft.Log{Index: 2, Term: 7, Type: raft.LogCommand, Data: data}).(Result)
	require.True(t, ok)
	require.ErrorIs(t, res.Err, ErrChecksum)
	var c *CorruptEntryError
	require.ErrorAs(t, res.Err, &c)
	require.Equal(t, uint64(2), c.Index)
	require.Equal(t, uint64(7), c.Term)
	require.Equal(t, "good", string(a.mustGet("k").Value), "the changed value is not applied")
	require.Equal(t, uint64(1), a.f.AppliedIndex(), "the corrupt entry does not count as applied")
	select {
	case <-a.f.Halted():
	default:
		t.Fatal("Halted is not closed")
	}
	require.Equal(t, c, a.f.Corrupt())

	// Halted: nothing later applies or advances, and no snapshot would bake the gap in.
	res = a.f.Apply(&raft.Log{Index: 3, Term: 7, Type: raft.LogCommand, Data: Seal(Command{Op: OpPut, Key: "x"}.Encode())}).(Result)
	require.ErrorIs(t, res.Err, ErrHalted)
	a.f.StoreConfiguration(4, raft.Configuration{})
	require.Equal(t, uint64(1), a.f.AppliedIndex())
	_, found := a.f.Get("x")
	require.False(t, found)
	_, err := a.f.Snapshot()
	require.ErrorIs(t, err, ErrHalted)
}
