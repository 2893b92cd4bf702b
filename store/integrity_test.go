package store

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/fsm"
)

// changeLoggedBytes changes one byte of old in the log entry of a stopped node's raft.db that holds
// it, as a bad disk would, and returns that entry's key in the logs bucket.
func changeLoggedBytes(t *testing.T, dir string, old []byte) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, raftDBFile), 0o600, &bbolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	changed := 0
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("logs"))
		require.NotNil(t, b, "raft-boltdb's logs bucket")
		type kv struct{ k, v []byte }
		var hits []kv
		require.NoError(t, b.ForEach(func(k, v []byte) error {
			if i := bytes.Index(v, old); i >= 0 {
				v = bytes.Clone(v)
				v[i+len(old)-1] ^= 0x01
				hits = append(hits, kv{bytes.Clone(k), v})
			}
			return nil
		}))
		for _, h := range hits {
			changed++
			if err := b.Put(h.k, h.v); err != nil {
				return err
			}
		}
		return nil
	}))
	require.Equal(t, 1, changed, "exactly one log entry holds %q", old)
}

// A changed byte in a logged value used to be applied and served as data by a linearizable GET,
// while the node said ready and logged nothing.
func TestChangedByteInFollowersLogIsNotServed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newTestCluster(t)
	c.startCluster(3)
	lead := c.nodes[c.leader()].store
	require.Eventually(t, func() bool { return lead.proposer.format.Load() >= fsm.FormatSealed }, waitFor, 10*time.Millisecond)
	ctx := ctxT(t)

	value := []byte("the-value-as-written")
	idx, err := lead.Put(ctx, "k", value, Precondition{})
	require.NoError(t, err)
	victim := c.follower()
	vs := c.nodes[victim].store
	require.Eventually(t, func() bool { return vs.fsm.LastWriteIndex() >= idx }, waitFor, 10*time.Millisecond)
	c.stop(victim)

	changeLoggedBytes(t, c.nodes[victim].dir, value)
	vs = c.start(victim, 3)
	select {
	case <-vs.Failed():
	case <-time.After(waitFor):
		t.Fatal("the node with a changed log entry kept serving")
	}
	require.ErrorIs(t, vs.Failure(), fsm.ErrChecksum)
	require.ErrorIs(t, vs.Ready(), ErrNotReady)
	require.ErrorIs(t, vs.Ready(), ErrFailed)
	_, err = vs.Get(ctx, "k", Linearizable)
	require.ErrorIs(t, err, ErrFailed)
	_, err = vs.Get(ctx, "k", Stale)
	require.ErrorIs(t, err, ErrFailed)
	if e, ok := vs.fsm.Get("k"); ok {
		require.NotEqual(t, "the-value-as-writteo", string(e.Value), "the changed value was applied")
	}
	c.log.mu.Lock()
	logs := c.log.buf.String()
	c.log.mu.Unlock()
	require.Contains(t, logs, "log entry failed its checksum")
	require.Regexp(t, `level=ERROR msg="log entry failed its checksum[^\n]*node=`+victim+`|node=`+victim+`[^\n]*log entry failed its checksum`, logs)

	// The others are unharmed and still agree on the value.
	for id, n := range c.nodes {
		if id == victim {
			continue
		}
		e, err := n.store.Get(ctx, "k", Linearizable)
		require.NoError(t, err, id)
		require.Equal(t, value, e.Value, id)
	}
	require.False(t, strings.Contains(logs, "panic"))
}
