package fsm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A read's index is the write index of the state it was read from: every write up to it is in the
// answer, none after it. A no-op entry moves the applied index but not the write index.
func TestGetAtAndListAtReportTheWriteIndexOfTheirView(t *testing.T) {
	a := newApplier(t)
	_, _, idx := a.f.GetAt("a")
	assert.Zero(t, idx)
	r1 := a.put("a/1", "x")
	r2 := a.put("a/2", "y")
	a.apply(Command{Op: OpNoop})

	e, ok, idx := a.f.GetAt("a/1")
	require.True(t, ok)
	assert.Equal(t, r1.Index, e.ModIndex)
	assert.Equal(t, r2.Index, idx)

	_, ok, idx = a.f.GetAt("missing")
	assert.False(t, ok)
	assert.Equal(t, r2.Index, idx, "an absent key is absent at an index too")

	entries, more, idx := a.f.ListAt("a/", "", 1)
	assert.Len(t, entries, 1)
	assert.True(t, more)
	assert.Equal(t, r2.Index, idx)
}
