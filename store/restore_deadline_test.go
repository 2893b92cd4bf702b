package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowReader hands out its bytes a few at a time, each after a pause: an upload over a slow link.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause) // the link's pace, not a wait for state
	return s.r.Read(p[:min(len(p), s.chunk)])
}

// A restore whose deadline passes while the archive is still arriving is called off whole: ErrTimeout
// saying nothing changed, the keys and the write index as they were, and the next restore (without
// the deadline) goes through.
func TestRestorePastItsDeadlineChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	ctx := ctxT(t)
	c := newTestCluster(t)
	c.startCluster(1)
	s := c.nodes["n1"].store
	for i := 0; i < 50; i++ {
		_, err := s.Put(ctx, fmt.Sprintf("k%02d", i), []byte("before"), Precondition{})
		require.NoError(t, err)
	}
	b, err := s.Backup(ctx)
	require.NoError(t, err)
	var archive bytes.Buffer
	require.NoError(t, b.Write(&archive))
	last, err := s.Put(ctx, "k00", []byte("after the backup"), Precondition{})
	require.NoError(t, err)

	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = s.Restore(dctx, &slowReader{r: bytes.NewReader(archive.Bytes()), chunk: 64, pause: 10 * time.Millisecond})
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "nothing changed")
	e, err := s.Get(ctx, "k00", Linearizable)
	require.NoError(t, err)
	assert.Equal(t, "after the backup", string(e.Value), "nothing restored")
	assert.Equal(t, last, s.fsm.LastWriteIndex(), "the write index did not move")

	res, err := s.Restore(ctx, bytes.NewReader(archive.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 50, res.Keys)
	e, err = s.Get(ctx, "k00", Linearizable)
	require.NoError(t, err)
	assert.Equal(t, "before", string(e.Value))
	assert.Greater(t, res.WriteIndex, last)
}
