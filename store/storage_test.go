package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
)

// writeSomeAndClose runs a one-node store in dir, writes n keys and closes it.
func writeSomeAndClose(t *testing.T, dir string, n int) Config {
	t.Helper()
	cfg := Config{NodeID: "a", DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", BootstrapExpect: 1}
	s, err := Open(cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Ready() == nil }, waitFor, 10*time.Millisecond)
	for i := range n {
		_, err := s.Put(ctxT(t), fmt.Sprintf("key-%04d", i), []byte("value"), Precondition{})
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return cfg
}

// damageBucketRoot overwrites the header of the root page of raft-boltdb's logs bucket, as a bad disk
// sector would.
func damageBucketRoot(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	var root uint64
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket([]byte("logs")).Root())
		return nil
	}))
	pageSize := db.Info().PageSize
	require.NoError(t, db.Close())
	require.NotZero(t, root, "the logs bucket is not inline")

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	garbage := make([]byte, 16)
	for i := range garbage {
		garbage[i] = 0xA5
	}
	_, err = f.WriteAt(garbage, int64(root)*int64(pageSize))
	require.NoError(t, err)
}

// A damaged page in raft.db used to end the process in a panic trace from BoltDB ("freepages: failed
// to get all reachable pages") instead of the clear start-up error the README promises.
func TestDamagedBoltPageEndsStartInAPanic(t *testing.T) {
	dir := t.TempDir()
	cfg := writeSomeAndClose(t, dir, 300)
	damageBucketRoot(t, filepath.Join(dir, raftDBFile))

	s, err := Open(cfg)
	if err == nil {
		s.Close()
	}
	require.ErrorIs(t, err, ErrDataDir)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "move "+dir+" aside")
	t.Log(err)
}

// failingStable is a stable store whose writes fail once told to, as on a disk gone read-only.
type failingStable struct {
	raft.StableStore
	err atomic.Pointer[error]
}

func (f *failingStable) failWith(err error) { f.err.Store(&err) }

func (f *failingStable) Set(k, v []byte) error {
	if err := f.err.Load(); err != nil {
		return *err
	}
	return f.StableStore.Set(k, v)
}

func (f *failingStable) SetUint64(k []byte, v uint64) error {
	if err := f.err.Load(); err != nil {
		return *err
	}
	return f.StableStore.SetUint64(k, v)
}

// A follower whose filesystem turned read-only crashed at the next election with a raw panic from
// Raft's own goroutine ("failed to save current term"), which no caller can recover.
func TestReadOnlyDiskPanicsTheNodeAtTheNextElection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	var mu sync.Mutex
	stables := map[string]*failingStable{}
	c.configure = func(id string, cfg *Config) {
		cfg.wrapStableStore = func(ss raft.StableStore) raft.StableStore {
			mu.Lock()
			defer mu.Unlock()
			stables[id] = &failingStable{StableStore: ss}
			return stables[id]
		}
	}
	c.startCluster(3)
	leader := c.leader()
	victim := c.follower()
	vs := c.nodes[victim].store
	mu.Lock()
	stables[victim].failWith(&os.PathError{Op: "write", Path: filepath.Join(c.nodes[victim].dir, raftDBFile), Err: syscall.EROFS})
	mu.Unlock()

	c.stop(leader) // the next election makes every survivor save a new term
	select {
	case <-vs.Failed():
	case <-time.After(waitFor):
		t.Fatal("the node that cannot save its term went on")
	}
	require.ErrorIs(t, vs.Failure(), ErrReadOnly)
	require.NotErrorIs(t, vs.Failure(), ErrCorrupt)
	require.ErrorContains(t, vs.Failure(), "remount it read-write")
	require.ErrorIs(t, vs.Ready(), ErrFailed)
	c.log.mu.Lock()
	logs := c.log.buf.String()
	c.log.mu.Unlock()
	require.Regexp(t, `level=ERROR msg="node stopped serving"[^\n]*raft cannot save its state: read-only filesystem`, logs)

	// The old leader back: with the third node it elects a leader, and the failed node closes cleanly.
	c.start(leader, 3)
	c.leader(victim)
	c.stop(victim)
}

// A raft.db created and never initialized (a crash right after creating it) is a fresh log, not a
// damaged one.
func TestEmptyRaftDBIsAFreshLog(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, raftDBFile), nil, 0o600))
	b, err := openBolt(dir)
	require.NoError(t, err)
	require.NoError(t, b.Close())
}
