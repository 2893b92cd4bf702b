package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
)

// forgeLoggedValue rewrites, in a stopped node's raft.db, the log entry that writes old so that it
// writes forged (same length) instead, and strips its checksum envelope, as an entry of an older
// format: a change the checksum cannot see, like a data dir patched by hand.
func forgeLoggedValue(t *testing.T, dir string, old, forged []byte) {
	t.Helper()
	require.Len(t, forged, len(old))
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	defer b.Close()
	first, err := b.FirstIndex()
	require.NoError(t, err)
	last, err := b.LastIndex()
	require.NoError(t, err)
	changed := 0
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		require.NoError(t, b.GetLog(i, &l))
		if l.Type != raft.LogCommand || !bytes.Contains(l.Data, old) {
			continue
		}
		payload := l.Data
		if fsm.IsSealed(payload) {
			payload, err = fsm.Unseal(payload)
			require.NoError(t, err)
		}
		l.Data = bytes.Replace(payload, old, forged, 1)
		require.NoError(t, b.StoreLog(&l))
		changed++
	}
	require.Equal(t, 1, changed, "exactly one log entry writes %q", old)
}

// A member whose state came to differ from the others' (a data dir patched by hand, a bit flipped in
// memory, a bug that applied differently on one node) served it as the truth: nothing compared the
// members' states.
func TestDivergedMemberServesItsStateUnchecked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	lead := c.nodes[c.leader()].store
	ctx := ctxT(t)
	value, forged := []byte("the-value-as-written"), []byte("the-value-as-forged!")
	idx, err := lead.Put(ctx, "k", value, Precondition{})
	require.NoError(t, err)
	victim := c.follower()
	vs := c.nodes[victim].store
	require.Eventually(t, func() bool { return vs.fsm.LastWriteIndex() >= idx }, waitFor, 10*time.Millisecond)
	c.stop(victim)
	forgeLoggedValue(t, c.nodes[victim].dir, value, forged)
	vs = c.start(victim, 3)

	// The check compares states at the leader's newest write: the next writes carry the difference.
	ctx = ctxT(t)
	deadline := time.Now().Add(waitFor)
	for i := 0; vs.Failure() == nil; i++ {
		require.True(t, time.Now().Before(deadline), "the diverged member kept serving")
		_, err := lead.Put(ctx, fmt.Sprint("other", i%10), []byte("v"), Precondition{})
		require.NoError(t, err)
		select {
		case <-vs.Failed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	require.ErrorIs(t, vs.Failure(), ErrDiverged)
	require.ErrorIs(t, vs.Ready(), ErrNotReady)
	_, err = vs.Get(ctx, "k", Stale)
	require.ErrorIs(t, err, ErrFailed, "the forged value is not served")
	if e, ok := vs.fsm.Get("k"); ok {
		require.Equal(t, forged, e.Value, "the test forged what it meant to")
	}
	require.True(t, vs.Metrics().StateDiverged)

	c.log.mu.Lock()
	logs := c.log.buf.String()
	c.log.mu.Unlock()
	require.Regexp(t, `level=ERROR msg="a member's state differs from the majority's at the same index" [^\n]*member=`+victim, logs)

	// The others agree and go on.
	for id, n := range c.nodes {
		if id == victim {
			continue
		}
		require.NoError(t, n.store.Failure(), id)
		require.False(t, n.store.Metrics().StateDiverged, id)
		e, err := n.store.Get(ctx, "k", Linearizable)
		require.NoError(t, err, id)
		require.Equal(t, value, e.Value, id)
	}
}
