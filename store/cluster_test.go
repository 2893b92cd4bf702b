package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

// These tests run real nodes in one process: real BoltDB files, real TCP on loopback, real gossip.

const waitFor = 20 * time.Second

// testLog collects every node's logs and prints them only when the test fails.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

type testCluster struct {
	t     *testing.T
	log   *testLog
	nodes map[string]*testNode
	// configure, when set, adjusts a node's configuration before it opens.
	configure func(id string, cfg *Config)
}

type testNode struct {
	id, dir            string
	raftAddr, gossAddr string
	store              *Store
}

func newTestCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t, log: &testLog{}, nodes: map[string]*testNode{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.store != nil {
				n.store.Close()
			}
		}
		if t.Failed() {
			c.log.mu.Lock()
			t.Log("node logs:\n" + c.log.buf.String())
			c.log.mu.Unlock()
		}
	})
	return c
}

// start opens (or reopens, keeping its data dir and ports) node id.
func (c *testCluster) start(id string, expect int, join ...string) *Store {
	c.t.Helper()
	n := c.nodes[id]
	if n == nil {
		n = &testNode{id: id, dir: c.t.TempDir(), raftAddr: "127.0.0.1:0", gossAddr: "127.0.0.1:0"}
		c.nodes[id] = n
	}
	logger := slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
	cfg := Config{
		NodeID:              id,
		DataDir:             n.dir,
		RaftAddr:            n.raftAddr,
		GossipAddr:          n.gossAddr,
		Join:                join,
		BootstrapExpect:     expect,
		RequestTimeout:      3 * time.Second,
		ReconcileInterval:   200 * time.Millisecond,
		GossipProbeInterval: 200 * time.Millisecond,
		// Often, so that every test here also shows the check raises no false alarm.
		CorruptCheckInterval: 300 * time.Millisecond,
		Logger:               logger,
	}
	if c.configure != nil {
		c.configure(id, &cfg)
	}
	s, err := Open(cfg)
	require.NoError(c.t, err)
	n.store = s
	n.raftAddr = s.mux.Addr().String()
	n.gossAddr = s.gossip.LocalAddr()
	return s
}

func (c *testCluster) stop(id string) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[id].store.Close())
	c.nodes[id].store = nil
}

func (c *testCluster) gossipAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.gossAddr)
	}
	return out
}

// startCluster starts n nodes that bootstrap together and returns their ids.
func (c *testCluster) startCluster(n int) []string {
	c.t.Helper()
	first := fmt.Sprintf("n%d", 1)
	c.start(first, n)
	ids := []string{first}
	for i := 2; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.start(id, n, c.nodes[first].gossAddr)
		ids = append(ids, id)
	}
	c.waitReady(ids...)
	// Ready is not voting: a member that lost the bootstrap race votes only once the leader has recorded
	// its data dir. A test that stops or stalls a node before then leaves the others without a majority.
	for _, id := range ids {
		s := c.nodes[id].store
		require.Eventually(c.t, s.admitted, waitFor, 20*time.Millisecond, "node %s never admitted as a voter", id)
	}
	return ids
}

func (c *testCluster) waitReady(ids ...string) {
	c.t.Helper()
	for _, id := range ids {
		s := c.nodes[id].store
		require.Eventually(c.t, func() bool { return s.Ready() == nil }, waitFor, 20*time.Millisecond, "node %s never became ready", id)
	}
}

// leader waits until exactly one live node leads (and is ready) and returns its id.
func (c *testCluster) leader(except ...string) string {
	c.t.Helper()
	var leader string
	require.Eventually(c.t, func() bool {
		leader = ""
		for id, n := range c.nodes {
			if n.store == nil || contains(except, id) {
				continue
			}
			if n.store.isLeader() && n.store.Ready() == nil {
				if leader != "" {
					return false
				}
				leader = id
			}
		}
		return leader != ""
	}, waitFor, 20*time.Millisecond, "no single ready leader")
	return leader
}

func (c *testCluster) follower(except ...string) string {
	leader := c.leader(except...)
	for id, n := range c.nodes {
		if id != leader && n.store != nil && !contains(except, id) {
			return id
		}
	}
	c.t.Fatal("no follower")
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *testCluster) suffrage(on, id string) string {
	servers, err := c.nodes[on].store.configuration()
	if err != nil {
		return ""
	}
	srv, ok := servers[raft.ServerID(id)]
	if !ok {
		return "absent"
	}
	return suffrageName(srv.Suffrage)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterForwardsWritesAndServesLinearizableReadsEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)

	fol := c.follower()
	idx, err := c.nodes[fol].store.Put(ctx, "k", []byte("v1"), Precondition{})
	require.NoError(t, err, "a follower forwards the write")
	for _, id := range ids {
		e, err := c.nodes[id].store.Get(ctx, "k", Linearizable)
		require.NoError(t, err, "linearizable read on %s", id)
		require.Equal(t, "v1", string(e.Value))
		require.Equal(t, idx, e.ModIndex)
		require.Equal(t, idx, e.CreateIndex)
	}

	_, err = c.nodes[fol].store.Put(ctx, "k", []byte("v2"), Precondition{Check: true, Index: idx + 100})
	var mismatch *CASMismatchError
	require.ErrorAs(t, err, &mismatch)
	require.ErrorIs(t, err, ErrCASMismatch)
	require.Equal(t, idx, mismatch.Current)

	idx2, err := c.nodes[fol].store.Put(ctx, "k", []byte("v2"), Precondition{Check: true, Index: idx})
	require.NoError(t, err)
	require.Greater(t, idx2, idx)

	_, err = c.nodes[fol].store.Put(ctx, "new", []byte("x"), Precondition{Check: true, Index: 0})
	require.NoError(t, err, "cas=0 creates an absent key")
	_, err = c.nodes[fol].store.Put(ctx, "new", []byte("y"), Precondition{Check: true, Index: 0})
	require.ErrorIs(t, err, ErrCASMismatch, "cas=0 refuses an existing key")

	_, deleted, err := c.nodes[fol].store.Delete(ctx, "k", Precondition{})
	require.NoError(t, err)
	require.True(t, deleted)
	_, deleted, err = c.nodes[fol].store.Delete(ctx, "k", Precondition{})
	require.NoError(t, err)
	require.False(t, deleted)
	for _, id := range ids {
		_, err := c.nodes[id].store.Get(ctx, "k", Linearizable)
		require.ErrorIs(t, err, ErrNotFound)
	}

	entries, more, err := c.nodes[fol].store.List(ctx, "", "", 10, Linearizable)
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, entries, 1)
	require.Equal(t, "new", entries[0].Key)

	st, err := c.nodes[fol].store.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Members, 3)
	require.NotNil(t, st.Leader)
	for _, m := range st.Members {
		require.Equal(t, "voter", m.Suffrage)
		require.Equal(t, "alive", m.GossipState)
	}
}

func TestIsolatedLeaderNeverServesStaleLinearizableReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	old := c.leader()
	_, err := c.nodes[old].store.Put(ctx, "k", []byte("before"), Precondition{})
	require.NoError(t, err)

	c.nodes[old].store.mux.Isolate(true)
	newLeader := c.leader(old)
	_, err = c.nodes[newLeader].store.Put(ctx, "k", []byte("after"), Precondition{})
	require.NoError(t, err)

	// The old leader may still believe it leads; its read must fail rather than answer "before".
	e, err := c.nodes[old].store.Get(ctx, "k", Linearizable)
	require.Error(t, err, "isolated node served %q", e.Value)
	// A stale read is allowed to be stale, and says so.
	e, err = c.nodes[old].store.Get(ctx, "k", Stale)
	require.NoError(t, err)
	require.Equal(t, "before", string(e.Value))

	c.nodes[old].store.mux.Isolate(false)
	require.Eventually(t, func() bool {
		e, err := c.nodes[old].store.Get(ctx, "k", Linearizable)
		return err == nil && string(e.Value) == "after"
	}, waitFor, 50*time.Millisecond)
}

func TestWriteWithoutQuorumFailsBoundedAndLeavesNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	leader := c.leader()
	for _, id := range ids {
		if id != leader {
			c.stop(id)
		}
	}
	start := time.Now()
	_, err := c.nodes[leader].store.Put(context.Background(), "k", []byte("v"), Precondition{})
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrIndeterminate) || errors.Is(err, ErrNoLeader), "got %v", err)
	require.Less(t, time.Since(start), 10*time.Second, "the request is bounded")
	_, err = c.nodes[leader].store.Get(context.Background(), "k", Linearizable)
	require.ErrorIs(t, err, ErrNoLeader)
}

func TestMembershipFollowsGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	leader := c.leader()
	for i := 0; i < 20; i++ {
		_, err := c.nodes[leader].store.Put(ctx, fmt.Sprintf("k%02d", i), []byte("v"), Precondition{})
		require.NoError(t, err)
	}

	n4 := c.start("n4", 0, c.gossipAddrs()...)
	require.Eventually(t, func() bool { return c.suffrage(c.leader(), "n4") == "voter" }, waitFor, 50*time.Millisecond,
		"a joining node is added, then promoted once caught up")
	e, err := n4.Get(ctx, "k19", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))

	require.ErrorIs(t, c.nodes[ids[1]].store.RemoveMember(ctx, "nope", false), ErrUnknownMember)

	// A graceful leave removes the node from Raft.
	require.NoError(t, n4.Leave(ctx, false))
	require.Eventually(t, func() bool { return c.suffrage(c.leader(), "n4") == "absent" }, waitFor, 50*time.Millisecond)
	c.stop("n4")

	// A failed node stays a voter until an operator removes it.
	victim := c.follower("n4")
	c.stop(victim)
	require.Eventually(t, func() bool {
		st, err := c.nodes[c.leader(victim, "n4")].store.Status(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.ID == victim {
				return m.GossipState == "dead" && m.Suffrage == "voter"
			}
		}
		return false
	}, waitFor, 50*time.Millisecond)
	other := c.follower(victim, "n4")
	require.NoError(t, c.nodes[other].store.RemoveMember(ctx, victim, false), "removal is forwarded to the leader")
	require.Equal(t, "absent", c.suffrage(c.leader(victim, "n4"), victim))
}

func TestWipedNodeRejoinsAsFreshMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	leader := c.leader()
	_, err := c.nodes[leader].store.Put(ctx, "k", []byte("v"), Precondition{})
	require.NoError(t, err)

	victim := c.follower()
	// The leader records each member's data id by a log entry of its own after bootstrap.
	var oldData string
	require.Eventually(t, func() bool {
		var ok bool
		oldData, ok = c.nodes[leader].store.fsm.MemberDataID(victim)
		return ok
	}, waitFor, 20*time.Millisecond, "the leader never recorded %s's data id", victim)
	c.stop(victim)
	require.NoError(t, os.RemoveAll(c.nodes[victim].dir))
	s := c.start(victim, 0, c.nodes[leader].gossAddr)

	require.Eventually(t, func() bool {
		l := c.leader()
		id, _ := c.nodes[l].store.fsm.MemberDataID(victim)
		return id != oldData && c.suffrage(l, victim) == "voter"
	}, readdDelay+waitFor, 50*time.Millisecond, "the wiped node is removed and, after readdDelay, re-added under its new data id")
	e, err := s.Get(ctx, "k", Stale)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
	_, err = c.nodes[c.leader()].store.Put(ctx, "k2", []byte("v2"), Precondition{})
	require.NoError(t, err)
}

func TestFullRestartKeepsEveryWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	want := map[string]uint64{}
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("k%02d", i)
		idx, err := c.nodes[ids[i%3]].store.Put(ctx, key, []byte(key), Precondition{})
		require.NoError(t, err)
		want[key] = idx
	}
	for _, id := range ids {
		c.stop(id)
	}
	for _, id := range ids {
		c.start(id, 3)
	}
	c.waitReady(ids...)
	for key, idx := range want {
		e, err := c.nodes[ids[0]].store.Get(ctx, key, Linearizable)
		require.NoError(t, err)
		require.Equal(t, key, string(e.Value))
		require.Equal(t, idx, e.ModIndex)
	}
}

func TestOpenRejectsAnotherNodesDataDirAndCorruption(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{NodeID: "a", DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", BootstrapExpect: 1}
	s, err := Open(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	cfg.NodeID = "b"
	_, err = Open(cfg)
	require.ErrorContains(t, err, `belongs to node "a"`)

	cfg.NodeID = "a"
	require.NoError(t, os.WriteFile(dir+"/"+raftDBFile, bytes.Repeat([]byte("garbage!"), 4096), 0o600))
	_, err = Open(cfg)
	require.ErrorContains(t, err, "corrupt")

	_, err = Open(Config{DataDir: t.TempDir()})
	require.ErrorContains(t, err, "node id is empty")
}

// The raft log deleted, node.json kept: the node would rejoin as the member the cluster knows, with
// none of the entries it acknowledged, and nothing would notice.
func TestPartialWipeGoesUnnoticed(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{NodeID: "a", DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", BootstrapExpect: 1}
	s, err := Open(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, raftDBFile)))

	s, err = Open(cfg)
	if err == nil {
		s.Close()
	}
	require.ErrorIs(t, err, ErrDataDir)
	require.ErrorContains(t, err, "lost its raft log")

	// A crash on first start between creating the log and writing node.json leaves an empty log and
	// no identity: that is a fresh directory, not a corrupt one.
	fresh := t.TempDir()
	b, err := openBolt(fresh)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	cfg.DataDir = fresh
	s, err = Open(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestReadBatcherSharesOneConfirmationPerBatch(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	rounds := 0
	b := newReadBatcher(func() (uint64, error) {
		mu.Lock()
		rounds++
		mu.Unlock()
		<-release
		return 42, nil
	}, nopObserver{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { b.run(ctx)(); close(done) }()
	defer func() { cancel(); <-done }()

	// The first read starts a round and blocks in it; 50 more arrive meanwhile and share the next.
	first := make(chan uint64)
	go func() { idx, _ := b.readIndex(ctx); first <- idx }()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return rounds == 1 }, time.Second, time.Millisecond)
	results := make(chan uint64, 50)
	for i := 0; i < 50; i++ {
		go func() { idx, _ := b.readIndex(ctx); results <- idx }()
	}
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.pending != nil && b.pending.readers == 50
	}, 5*time.Second, time.Millisecond)
	close(release)
	require.Equal(t, uint64(42), <-first)
	for i := 0; i < 50; i++ {
		require.Equal(t, uint64(42), <-results)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 2, rounds, "the 50 reads that queued behind the first round share the second")
}

func TestRPCResponseRoundTrip(t *testing.T) {
	for _, err := range []error{errNotLeader, ErrIndeterminate, ErrTimeout, ErrUnknownMember, ErrInvalid} {
		_, got := decodeResponse("x", encodeResponse(fmt.Errorf("ctx: %w", err), nil))
		require.ErrorIs(t, got, err)
	}
	_, got := decodeResponse("x", encodeResponse(errors.New("boom"), nil))
	require.ErrorIs(t, got, errRemote)
	payload, err := decodeResponse("x", encodeResponse(nil, []byte{1, 2}))
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, payload)
	_, err = decodeResponse("x", nil)
	require.Error(t, err)
}

func TestRemovedNodeStaysOutUntilWiped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	c.start("n4", 0, c.gossipAddrs()...)
	require.Eventually(t, func() bool { return c.suffrage(c.leader(), "n4") == "voter" }, waitFor, 50*time.Millisecond)

	// Removed while still running and gossiping: reconcile must not add it back.
	require.NoError(t, c.nodes[c.follower("n4")].store.RemoveMember(ctx, "n4", false))
	// Never abandons its last condition goroutine when the window ends, so the condition touches
	// only this store and nothing the test changes afterwards (stop rewrites c.nodes).
	watcher := c.nodes[c.leader("n4")].store
	require.Never(t, func() bool {
		servers, err := watcher.configuration()
		_, present := servers["n4"]
		return err != nil || present
	}, 2*time.Second, 50*time.Millisecond)

	// With a wiped data dir it is a new member and is added again.
	c.stop("n4")
	require.NoError(t, os.RemoveAll(c.nodes["n4"].dir))
	c.start("n4", 0, c.gossipAddrs()...)
	require.Eventually(t, func() bool { return c.suffrage(c.leader("n4"), "n4") == "voter" }, waitFor, 50*time.Millisecond)
}

func TestFramesRoundTripAndRejectGarbage(t *testing.T) {
	frames := [][]byte{[]byte("a"), bytes.Repeat([]byte("x"), 300)}
	got, err := decodeFrames(encodeFrames(frames))
	require.NoError(t, err)
	require.Equal(t, frames, got)
	enc := encodeFrames(frames)
	for i := 0; i < len(enc); i++ {
		_, err := decodeFrames(enc[:i])
		require.Error(t, err, "truncated at %d", i)
	}
	_, err = decodeFrames(append(enc, 0))
	require.Error(t, err, "trailing bytes")
	_, err = decodeFrames(encodeFrames([][]byte{{}}))
	require.Error(t, err, "an empty frame: no command or result is empty")
}

// putConcurrently runs put(0..n-1) at once and returns the index each write got.
func putConcurrently(t *testing.T, n int, put func(i int) (uint64, error)) []uint64 {
	var wg sync.WaitGroup
	indexes := make([]uint64, n)
	for i := range indexes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := put(i)
			assert.NoError(t, err)
			indexes[i] = idx
		}()
	}
	wg.Wait()
	return indexes
}

func requireDistinct(t *testing.T, indexes []uint64) {
	t.Helper()
	seen := make(map[uint64]int, len(indexes))
	for i, idx := range indexes {
		if j, dup := seen[idx]; dup {
			require.Failf(t, "index reused", "writes %d and %d both got index %d", j, i, idx)
		}
		seen[idx] = i
	}
}

func TestConcurrentForwardedWritesAllLand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	ctx := ctxT(t)
	// Batching starts once the leader's first reconcile has seen every member's log format.
	lead := c.nodes[c.leader()].store
	require.Eventually(t, func() bool { return lead.proposer.format.Load() >= fsm.FormatBatch }, waitFor, 10*time.Millisecond)
	fol := c.nodes[c.follower()].store
	before := fol.raft.LastIndex()
	indexes := putConcurrently(t, 200, func(i int) (uint64, error) {
		return fol.Put(ctx, fmt.Sprintf("k%03d", i), []byte("v"), Precondition{})
	})
	requireDistinct(t, indexes)
	for i, idx := range indexes {
		e, err := fol.Get(ctx, fmt.Sprintf("k%03d", i), Linearizable)
		require.NoError(t, err)
		require.Equal(t, idx, e.ModIndex)
	}
	require.Less(t, fol.raft.LastIndex()-before, uint64(len(indexes)), "concurrent writes share log entries")
}

// TestConcurrentWritesToOneKeyGetDistinctIndexes: writes to one key that share a log entry still get
// indexes of their own, or a cas on such an index would be ambiguous.
func TestConcurrentWritesToOneKeyGetDistinctIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	indexes := putConcurrently(t, 150, func(i int) (uint64, error) {
		return c.nodes[ids[i%len(ids)]].store.Put(ctx, "hot", []byte(fmt.Sprint(i)), Precondition{})
	})
	requireDistinct(t, indexes)
	e, err := c.nodes[ids[0]].store.Get(ctx, "hot", Linearizable)
	require.NoError(t, err)
	require.Equal(t, slices.Max(indexes), e.ModIndex, "the last write wins")
}

// TestStaleReadReflectsAWriteOnceTheAppliedIndexReachesIt checks the promise the stale read headers
// and min_index make: once a node's applied (write) index is at least a write's index (WaitIndex), its
// stale reads reflect it, also when the write shared a log entry with others.
func TestStaleReadReflectsAWriteOnceTheAppliedIndexReachesIt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	indexes := putConcurrently(t, 60, func(i int) (uint64, error) {
		return c.nodes[ids[i%len(ids)]].store.Put(ctx, fmt.Sprintf("s%02d", i), []byte(fmt.Sprint(i)), Precondition{})
	})
	for _, id := range ids {
		s := c.nodes[id].store
		require.NoError(t, s.WaitIndex(ctx, slices.Max(indexes)), "node %s catches up (min_index)", id)
		require.GreaterOrEqual(t, s.StaleInfo().WriteIndex, slices.Max(indexes))
		for i, idx := range indexes {
			e, err := s.Get(ctx, fmt.Sprintf("s%02d", i), Stale)
			require.NoError(t, err, "node %s, key s%02d", id, i)
			require.Equal(t, idx, e.ModIndex)
			require.Equal(t, fmt.Sprint(i), string(e.Value))
		}
		// An index no write has: the wait is bounded and says the node could not catch up.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := s.WaitIndex(short, slices.Max(indexes)+1000)
		cancel()
		require.ErrorIs(t, err, ErrTimeout)
	}
}

// TestCASCounterLosesNoIncrement runs read-modify-write loops on one key from every node at once: a
// cas that succeeds on an index some other write also got would lose an increment.
func TestCASCounterLosesNoIncrement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	const workers, increments = 6, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := c.nodes[ids[w%len(ids)]].store
			for done := 0; done < increments; {
				n, pre := 0, Precondition{Check: true}
				e, err := s.Get(ctx, "counter", Linearizable)
				switch {
				case errors.Is(err, ErrNotFound):
				case !assert.NoError(t, err):
					return
				default:
					n, err = strconv.Atoi(string(e.Value))
					if !assert.NoError(t, err) {
						return
					}
					pre.Index = e.ModIndex
				}
				_, err = s.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), pre)
				if errors.Is(err, ErrCASMismatch) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	e, err := c.nodes[ids[0]].store.Get(ctx, "counter", Linearizable)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*increments), string(e.Value))
}

func TestWholeClusterRestartsOnNewAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	ids := c.startCluster(3)
	ctx := ctxT(t)
	_, err := c.nodes[ids[0]].store.Put(ctx, "k", []byte("v"), Precondition{})
	require.NoError(t, err)
	for _, id := range ids {
		c.stop(id)
	}
	// Every node comes back on new ports, as containers do on new IPs: the Raft configuration still
	// names the old addresses, and only gossip knows the new ones.
	for _, id := range ids {
		c.nodes[id].raftAddr, c.nodes[id].gossAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	c.start(ids[0], 0)
	for _, id := range ids[1:] {
		c.start(id, 0, c.nodes[ids[0]].gossAddr)
	}
	c.waitReady(ids...)
	st, err := c.nodes[c.leader()].store.Status(ctx)
	require.NoError(t, err)
	for _, m := range st.Members {
		require.Equal(t, c.nodes[m.ID].raftAddr, m.RaftAddr, "status shows where %s is now", m.ID)
	}
	_, err = c.nodes[ids[1]].store.Put(ctx, "k2", []byte("v2"), Precondition{})
	require.NoError(t, err)
	e, err := c.nodes[ids[2]].store.Get(ctx, "k", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
}
