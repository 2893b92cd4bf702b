package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// stallingLogs is a log store whose writes block while stalled, as on a full or hung disk.
type stallingLogs struct {
	raft.LogStore
	failing atomic.Bool // writes fail, as on a full disk
	mu      sync.Mutex
	blocked chan struct{} // non-nil while stalled; closed to resume
}

func (l *stallingLogs) stall() (resume func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	l.blocked = ch
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.blocked = nil
			l.mu.Unlock()
			close(ch)
		})
	}
}

func (l *stallingLogs) wait() {
	l.mu.Lock()
	ch := l.blocked
	l.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

var errDiskFull error = syscall.ENOSPC

func (l *stallingLogs) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

func (l *stallingLogs) StoreLogs(logs []*raft.Log) error {
	l.wait()
	if l.failing.Load() {
		return errDiskFull
	}
	return l.LogStore.StoreLogs(logs)
}

func TestWriteThatTriggersACommitHangsWhileTheDiskStalls(t *testing.T) {
	c := newTestCluster(t)
	logs := map[string]*stallingLogs{}
	c.configure = func(id string, cfg *Config) {
		cfg.wrapLogStore = func(ls raft.LogStore) raft.LogStore {
			logs[id] = &stallingLogs{LogStore: ls}
			return logs[id]
		}
	}
	c.startCluster(1)
	s := c.nodes["n1"].store
	_, err := s.Put(ctxT(t), "before", []byte("v"), Precondition{})
	require.NoError(t, err)

	resume := logs["n1"].stall()
	t.Cleanup(resume) // Close needs Raft's leader loop back
	const deadline = 300 * time.Millisecond
	type outcome struct {
		err     error
		elapsed time.Duration
	}
	results := make(chan outcome, 3)
	for i := range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, err := s.Put(ctx, fmt.Sprint("k", i), []byte("v"), Precondition{})
			results <- outcome{err, time.Since(start)}
		}()
	}
	bound := time.After(3 * time.Second)
	indeterminate := 0
	for range 3 {
		select {
		case r := <-results:
			require.Less(t, r.elapsed, deadline+time.Second, "a write outlived its deadline")
			if errors.Is(r.err, ErrIndeterminate) {
				indeterminate++ // handed to Raft: it may yet commit
			} else {
				require.ErrorIs(t, r.err, context.DeadlineExceeded, "never proposed: a plain timeout")
			}
		case <-bound:
			t.Fatal("a write hung while the disk stalled")
		}
	}
	require.Equal(t, 1, indeterminate, "the write in Raft's hands is indeterminate")
	resume()
	_, err = s.Put(ctxT(t), "after", []byte("v"), Precondition{})
	require.NoError(t, err, "writes go on once the disk is back")
}

func TestReadThatRunsOutOfTimeWithALeaderIsReportedAsNoLeader(t *testing.T) {
	c := newTestCluster(t)
	logs := map[string]*stallingLogs{}
	c.configure = func(id string, cfg *Config) {
		cfg.wrapLogStore = func(ls raft.LogStore) raft.LogStore {
			logs[id] = &stallingLogs{LogStore: ls}
			return logs[id]
		}
	}
	c.startCluster(1)
	s := c.nodes["n1"].store
	resume := logs["n1"].stall()
	t.Cleanup(resume)
	// A write takes Raft's leader loop into the stalled disk: the leader is there, and slow.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		s.Put(ctx, "k", []byte("v"), Precondition{})
	}()
	var err error
	for range 10 { // the first may run before the write reaches the disk
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = s.Get(ctx, "k", Linearizable)
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			break
		}
	}
	require.NotErrorIs(t, err, ErrNoLeader, "the leader is known; the read ran out of time")
	require.ErrorIs(t, err, ErrTimeout)
}

func TestFollowerWithAFullDiskReportsReadyAndFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	var mu sync.Mutex
	logs := map[string]*stallingLogs{}
	c.configure = func(id string, cfg *Config) {
		cfg.progressInterval = 100 * time.Millisecond
		cfg.readyLagWindow = 500 * time.Millisecond
		cfg.wrapLogStore = func(ls raft.LogStore) raft.LogStore {
			mu.Lock()
			defer mu.Unlock()
			logs[id] = &stallingLogs{LogStore: ls}
			return logs[id]
		}
	}
	c.startCluster(3)
	leader := c.leader()
	f := c.follower()
	fs := c.nodes[f].store
	require.NoError(t, fs.Ready())

	mu.Lock()
	logs[f].failing.Store(true)
	mu.Unlock()
	ctx := ctxT(t)
	deadline := time.Now().Add(10 * time.Second)
	behind := func() bool {
		err := fs.Ready()
		return err != nil && strings.Contains(err.Error(), "behind the leader")
	}
	for i := 0; !behind(); i++ { // writes keep coming; the follower's log has stopped
		require.True(t, time.Now().Before(deadline), "a follower whose log stopped never reports that it is behind")
		_, err := c.nodes[leader].store.Put(ctx, fmt.Sprint("k", i), []byte("v"), Precondition{})
		require.NoError(t, err, "the other two still make a quorum")
	}
	require.ErrorIs(t, fs.Ready(), ErrNotReady)
	require.ErrorIs(t, fs.Ready(), ErrDiskFull, "the reason is named")
	info := fs.StaleInfo()
	require.False(t, info.NoContact)
	require.Greater(t, info.LastContact, 500*time.Millisecond, "stale reads must not claim freshness the node lacks")

	mu.Lock()
	logs[f].failing.Store(false)
	mu.Unlock()
	require.Eventually(t, func() bool { return fs.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"ready again once it has caught up")
	require.Less(t, fs.StaleInfo().LastContact, 5*time.Second)
}

// A leader whose disk stalled stayed leader: Raft's heartbeats, sent beside the blocked leader loop,
// kept its followers content, every write timed out, /readyz said ready and the leader logged nothing.
func TestLeaderWithStalledDiskStaysLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	var mu sync.Mutex
	logs := map[string]*stallingLogs{}
	c.configure = func(id string, cfg *Config) {
		cfg.DiskStallTimeout = time.Second
		cfg.wrapLogStore = func(ls raft.LogStore) raft.LogStore {
			mu.Lock()
			defer mu.Unlock()
			logs[id] = &stallingLogs{LogStore: ls}
			return logs[id]
		}
	}
	c.startCluster(3)
	old := c.leader()
	os := c.nodes[old].store
	mu.Lock()
	resume := logs[old].stall()
	mu.Unlock()
	t.Cleanup(resume) // Close needs Raft's leader loop back

	go func() { // takes the leader loop into the stalled disk
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		os.Put(ctx, "stuck", []byte("v"), Precondition{})
	}()
	require.Eventually(t, func() bool { return errors.Is(os.Ready(), ErrDiskStalled) }, waitFor, 20*time.Millisecond,
		"the stalled leader still says ready")
	require.ErrorIs(t, os.Ready(), ErrNotReady)
	nl := c.leader(old)
	_, err := c.nodes[nl].store.Put(ctxT(t), "after", []byte("v"), Precondition{})
	require.NoError(t, err, "the others elected a leader and commit without the stalled one")
	c.log.mu.Lock()
	require.Contains(t, c.log.buf.String(), "this leader's disk stalled")
	c.log.mu.Unlock()

	resume()
	require.Eventually(t, func() bool { return !os.isLeader() && os.Ready() == nil }, waitFor, 20*time.Millisecond,
		"the old leader steps down and catches up once its disk is back")
	e, err := os.Get(ctxT(t), "after", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
}
