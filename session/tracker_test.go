package session

import (
	"context"
	"fmt"
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

// The leader's 200 ms expiry scan and 2 s checkpoint over 10,000 live sessions (make bench's keepalive
// row): what they cost decides whether the scan needs a heap ordered by deadline.
func BenchmarkExpiryScan10k(b *testing.B) {
	tr := New(Config{})
	for i := range 10000 {
		tr.SessionTouched(fmt.Sprintf("s%05d", i), uint64(i+1), 15*time.Second)
	}
	p := &recordingProposer{}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		tr.expire(ctx, 1, p)
	}
	if len(p.cmds) != 0 {
		b.Fatal("expired a live session")
	}
}

func BenchmarkCheckpoint10k(b *testing.B) {
	clock := &fakeClock{t: time.Now()}
	tr := New(Config{Now: clock.now})
	for i := range 10000 {
		tr.SessionTouched(fmt.Sprintf("s%05d", i), uint64(i+1), time.Hour)
	}
	clock.add(3 * time.Second) // every session is due a checkpoint
	p := &recordingProposer{}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		p.cmds = p.cmds[:0]
		tr.checkpoint(ctx, p)
	}
}
