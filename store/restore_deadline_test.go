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

// stalledUpload hands out the first half of its bytes, then nothing until stall is closed (an upload
// whose link stops for a while), then the rest.
type stalledUpload struct {
	b     []byte
	off   int
	stall <-chan struct{}
}

func (s *stalledUpload) Read(p []byte) (int, error) {
	if s.off >= len(s.b)/2 {
		<-s.stall
	}
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	end := len(s.b)
	if s.off < len(s.b)/2 {
		end = len(s.b) / 2
	}
	n := copy(p, s.b[s.off:end])
	s.off += n
	return n, nil
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

	// The deadline passes while the upload is stalled halfway.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = s.Restore(dctx, &stalledUpload{b: archive.Bytes(), stall: dctx.Done()})
	require.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "nothing changed")
	e, err := s.Get(ctx, "k00", Linearizable)
	require.NoError(t, err)
	assert.Equal(t, "after the backup", string(e.Value), "nothing restored")
	// A restore moves the write index past restoreIndexGap; the leader's own records may add a few.
	assert.Less(t, s.fsm.LastWriteIndex(), uint64(restoreIndexGap), "the write index did not jump")

	res, err := s.Restore(ctx, bytes.NewReader(archive.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 50, res.Keys)
	e, err = s.Get(ctx, "k00", Linearizable)
	require.NoError(t, err)
	assert.Equal(t, "before", string(e.Value))
	assert.Greater(t, res.WriteIndex, last)
}
