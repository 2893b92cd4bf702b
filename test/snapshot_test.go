package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// logSince returns a node's log output after the given length (see logLen).
func logSince(node *harness.Node, offset int) string {
	data, _ := os.ReadFile(node.LogPath)
	if offset > len(data) {
		return ""
	}
	return string(data[offset:])
}

func logLen(node *harness.Node) int {
	fi, err := os.Stat(node.LogPath)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// With a small snapshot threshold and few trailing logs: a restarted node restores from its own
// snapshot plus the log tail; a node that missed more than the trailing logs catches up by a
// snapshot installed from the leader. Either way it has every key.
//
// Whether a snapshot was taken, restored or installed is read from hashicorp/raft's log messages
// and only reported: the assertions are on the data.
func TestSnapshotRestoreAndInstall(t *testing.T) {
	opts := harness.Options{SnapshotThreshold: 64, TrailingLogs: 32, SnapshotInterval: time.Second}
	c := harness.StartCluster(t, 3, opts)
	leader := c.Leader(t)
	follower := (leader + 1) % 3
	fnode := c.Node(follower)

	first := putMany(t, c, leader, "snap-a-", 500, 8)
	err := harness.Poll(15*time.Second, func() error {
		if !strings.Contains(logSince(fnode, 0), "snapshot complete") {
			return fmt.Errorf("no \"snapshot complete\" in %s's log", fnode.ID)
		}
		return nil
	})
	t.Logf("%s took a snapshot: %v", fnode.ID, err == nil)

	// Restart: restore from the local snapshot and replay the tail.
	c.Stop(follower)
	mark := logLen(fnode)
	c.Restart(follower)
	c.WaitReady(t, follower)
	t.Logf("%s restart log mentions a restore from snapshot: %v", fnode.ID, strings.Contains(logSince(fnode, mark), "restored from snapshot"))
	harness.WaitFor(t, 20*time.Second, fnode.ID+" has every key after its restart", func() error {
		return checkList(fnode, "snap-a-", 200, "stale", first)
	})
	require.NoError(t, checkList(fnode, "snap-", 0, "linearizable", first))
	for _, k := range []string{"snap-a-00000", "snap-a-00250", "snap-a-00499"} {
		require.NoError(t, checkGet(fnode, k, first[k], "linearizable"))
	}

	// Down while 500 more keys are written: far beyond the leader's 32 trailing logs.
	c.Stop(follower)
	leader = c.Leader(t)
	leaderMark := logLen(c.Node(leader))
	second := putMany(t, c, leader, "snap-b-", 500, 8)
	err = harness.Poll(15*time.Second, func() error {
		if !strings.Contains(logSince(c.Node(leader), leaderMark), "compacting logs") {
			return fmt.Errorf("no \"compacting logs\" in the leader's log")
		}
		return nil
	})
	t.Logf("leader %s compacted its log after the second batch: %v", c.Node(leader).ID, err == nil)
	mark = logLen(fnode)
	c.Restart(follower)
	c.WaitReady(t, follower)
	all := merge(first, second)
	harness.WaitFor(t, 30*time.Second, fnode.ID+" caught up", func() error {
		return checkList(fnode, "snap-", 250, "stale", all)
	})
	t.Logf("%s installed a snapshot from the leader: %v", fnode.ID, strings.Contains(logSince(fnode, mark), "Installed remote snapshot"))
	require.NoError(t, checkList(fnode, "snap-", 0, "linearizable", all))
	for i := 0; i < 3; i++ {
		require.NoError(t, checkList(c.Node(i), "snap-b-", 100, "linearizable", second))
	}
	c.MustPut(t, follower, "snap-after", []byte("ok"))
}
