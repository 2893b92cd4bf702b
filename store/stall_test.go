package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// stallingLogs is a log store whose writes block while stalled, as on a full or hung disk.
type stallingLogs struct {
	raft.LogStore
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

func (l *stallingLogs) StoreLog(log *raft.Log) error {
	l.wait()
	return l.LogStore.StoreLog(log)
}

func (l *stallingLogs) StoreLogs(logs []*raft.Log) error {
	l.wait()
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
