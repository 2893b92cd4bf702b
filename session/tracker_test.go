package session

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type recordingProposer struct{ cmds []*fsm.SessionCmd }

func (p *recordingProposer) ProposeSession(_ context.Context, sc *fsm.SessionCmd) error {
	p.cmds = append(p.cmds, sc)
	return nil
}

func TestTrackerExpiresOnlyPastTheDeadlineAtTheCountedGeneration(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := New(Config{Now: clk.now})
	p := &recordingProposer{}
	tr.SessionTouched("a", 5, 10*time.Second)
	tr.SessionTouched("b", 6, 10*time.Second)
	clk.add(9 * time.Second)
	tr.expire(context.Background(), 3, p)
	require.Empty(t, p.cmds, "nothing before its TTL")
	tr.SessionTouched("b", 9, 10*time.Second) // renewed
	clk.add(time.Second)
	tr.expire(context.Background(), 3, p)
	require.Len(t, p.cmds, 1)
	require.Equal(t, fsm.SessionExpire, p.cmds[0].Kind)
	require.Equal(t, uint64(3), p.cmds[0].Term)
	require.Equal(t, []fsm.SessionGen{{ID: "a", Gen: 5}}, p.cmds[0].Sessions)
}

func TestCheckpointNeverMovesADeadlineLater(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := New(Config{Now: clk.now})
	tr.SessionTouched("a", 5, 10*time.Second)
	clk.add(4 * time.Second)
	// A checkpoint proposed at 3s (7s left) applied now, at 4s: counting 7s from now would be late.
	tr.SessionTouched("a", 5, 7*time.Second)
	rem, ok := tr.Remaining("a")
	require.True(t, ok)
	require.Equal(t, 6*time.Second, rem)
	// A renew (new generation) restarts the count.
	tr.SessionTouched("a", 8, 10*time.Second)
	rem, _ = tr.Remaining("a")
	require.Equal(t, 10*time.Second, rem)
}

func TestCheckpointNamesSessionsNotRecordedRecently(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := New(Config{Now: clk.now, CheckpointInterval: 2 * time.Second})
	p := &recordingProposer{}
	tr.SessionTouched("old", 1, 30*time.Second)
	clk.add(3 * time.Second)
	tr.SessionTouched("fresh", 2, 30*time.Second)
	tr.checkpoint(context.Background(), p)
	require.Len(t, p.cmds, 1)
	require.Equal(t, []fsm.SessionCheckpointItem{{ID: "old", Gen: 1, Remaining: 27 * time.Second}}, p.cmds[0].Checkpoints)
}

func TestRestoredReplacesEverything(t *testing.T) {
	tr := New(Config{})
	tr.SessionTouched("gone", 1, time.Minute)
	tr.SessionsRestored([]fsm.SessionCheckpointItem{{ID: "a", Gen: 2, Remaining: time.Second}})
	require.Equal(t, 1, tr.Len())
	_, ok := tr.Remaining("gone")
	require.False(t, ok)
	tr.SessionsEnded([]string{"a"})
	require.Zero(t, tr.Len())
}
