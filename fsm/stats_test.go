package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatsFollowPutsOverwritesDeletesAndRestore(t *testing.T) {
	a := newApplier(t)
	a.put("ab", "xyz") // 5
	a.put("c", "1")    // 2
	a.put("ab", "x")   // 5 → 3
	a.apply(Command{Op: OpDelete, Key: "c"})
	a.apply(Command{Op: OpDelete, Key: "missing"})
	keys, size, writes := a.f.Stats()
	assert.Equal(t, 1, keys)
	assert.EqualValues(t, 3, size)
	assert.EqualValues(t, 5, writes)

	restored := New()
	require.NoError(t, restored.Restore(io.NopCloser(bytes.NewReader(persist(t, a.f)))))
	keys, size, writes = restored.Stats()
	assert.Equal(t, 1, keys)
	assert.EqualValues(t, 3, size)
	assert.Zero(t, writes, "a restore applies no command")
}
