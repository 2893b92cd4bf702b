package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recordingSink struct {
	indexes  []uint64
	changes  [][]Change
	restored []uint64
}

func (r *recordingSink) Changed(index uint64, c []Change) {
	r.indexes = append(r.indexes, index)
	r.changes = append(r.changes, append([]Change(nil), c...))
}
func (r *recordingSink) Restored(index uint64) { r.restored = append(r.restored, index) }

// The sink hears of every write index, in order, with no gap, including writes that changed nothing,
// and each change carries the value it replaced.
func TestApplyTellsTheSinkEveryWriteIndexWithItsChanges(t *testing.T) {
	a := newApplier(t)
	sink := &recordingSink{}
	a.f.SetChangeSink(sink)
	r1 := a.put("k", "1")
	r2 := a.put("k", "2")
	r3 := a.apply(Command{Op: OpPut, Key: "k", Value: []byte("x"), CAS: true, CASIndex: 1}) // fails
	a.apply(Command{Op: OpNoop})
	r4 := a.apply(Command{Op: OpDelete, Key: "k"})
	r5 := a.apply(Command{Op: OpDelete, Key: "k"}) // absent: no change

	require.Equal(t, []uint64{r1.Index, r2.Index, r3.Index, r4.Index, r5.Index}, sink.indexes)
	assert.Equal(t, []Change{{Key: "k", Value: []byte("1"), CreateIndex: r1.Index, ModIndex: r1.Index}}, sink.changes[0])
	assert.Equal(t, []Change{{Key: "k", Value: []byte("2"), CreateIndex: r1.Index, ModIndex: r2.Index, Prev: []byte("1"), HadPrev: true}}, sink.changes[1])
	assert.Empty(t, sink.changes[2])
	assert.Equal(t, []Change{{Delete: true, Key: "k", CreateIndex: r1.Index, ModIndex: r4.Index, Prev: []byte("2"), HadPrev: true}}, sink.changes[3])
	assert.Empty(t, sink.changes[4])

	var buf bytes.Buffer
	snap, err := a.f.Snapshot()
	require.NoError(t, err)
	require.NoError(t, snap.(*snapshot).write(&buf))
	other := New()
	osink := &recordingSink{}
	other.SetChangeSink(osink)
	require.NoError(t, other.Restore(io.NopCloser(&buf)))
	assert.Equal(t, []uint64{r5.Index}, osink.restored)
}
