package test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// A backup saved from a real cluster verifies; one flipped byte, a truncation or a foreign file is
// refused by inspect and by restore, with a clear message and nothing changed; restoring the good file
// puts every node back to the saved keys, and the write index keeps moving forward.
func TestBackupSaveInspectRefuseCorruptAndRestoreOnEveryNode(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info"})
	leader := c.Leader(t)
	follower := (leader + 1) % 3
	const n = 100
	for i := 0; i < n; i++ {
		c.MustPut(t, i%3, fmt.Sprintf("bk-%03d", i), []byte(fmt.Sprintf("value-%d", i)))
	}
	// An exactly-once write the backup will hold (same value: the key's content is unchanged).
	idemBefore := c.Node(leader).PutIdempotent("bk-000", []byte("value-0"), "restore-before")
	require.True(t, idemBefore.OK(), "%s", idemBefore)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	addrs := c.Node(follower).HTTPAddr

	out, _, code := harness.RunCLI(t, "snapshot", "save", file, "--addr", addrs)
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("%d keys", n))
	out, _, code = harness.RunCLI(t, "snapshot", "inspect", file)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "SHA-256 ok")
	assert.Regexp(t, fmt.Sprintf(`keys\s+%d\n`, n), out)
	assert.Regexp(t, `cluster id\s+[0-9a-f]{32}\n`, out)

	good, err := os.ReadFile(file)
	require.NoError(t, err)

	// --timeout bounds the wait for a node's answer, not the transfer: a download slower than it (as a
	// 1 M-key backup is slower than 15 s on a busy machine) completes; --save-timeout bounds the whole
	// save, and past it FILE is not written.
	var requests atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := requests.Add(1) == 1
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(good[:len(good)/2])
		w.(http.Flusher).Flush()
		rest := time.After(600 * time.Millisecond) // 3× the second save's --timeout after its answer began
		if first {
			rest = nil // the first save's download stalls until the client gives up
		}
		select {
		case <-rest:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(good[len(good)/2:])
	}))
	defer slow.Close()
	slowAddr := strings.TrimPrefix(slow.URL, "http://")
	stalled := filepath.Join(dir, "stalled.snap")
	_, slowErr, code := harness.RunCLI(t, "snapshot", "save", stalled, "--addr", slowAddr, "--save-timeout", "500ms")
	require.NotEqual(t, 0, code)
	assert.Contains(t, slowErr, "not done within --save-timeout 500ms")
	assert.NoFileExists(t, stalled)
	assert.NoFileExists(t, stalled+".part")
	out, slowErr, code = harness.RunCLI(t, "snapshot", "save", stalled, "--addr", slowAddr, "--timeout", "200ms")
	require.Equal(t, 0, code, slowErr)
	require.EqualValues(t, 2, requests.Load(), "one download, outliving --timeout, not retried")
	assert.Contains(t, out, fmt.Sprintf("%d keys", n))
	saved, err := os.ReadFile(stalled)
	require.NoError(t, err)
	require.Equal(t, good, saved)
	bad := map[string][]byte{
		"flipped.snap":   flip(good, len(good)/2),
		"truncated.snap": good[:len(good)-40],
		"foreign.snap":   []byte("SQLite format 3\x00 not a raftkv backup at all"),
	}
	wantMsg := map[string]string{"flipped.snap": "SHA-256 mismatch", "truncated.snap": "truncated", "foreign.snap": "not a raftkv snapshot archive"}
	for name, b := range bad {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		_, errOut, code := harness.RunCLI(t, "snapshot", "inspect", p)
		assert.Equal(t, 2, code, name)
		assert.Contains(t, errOut, wantMsg[name], name)
		_, errOut, code = harness.RunCLI(t, "snapshot", "restore", p, "--addr", addrs)
		assert.Equal(t, 2, code, name)
		assert.Contains(t, errOut, "nothing changed", name)
		// The server refuses it too, even when a client skips the local check.
		resp := c.Node(leader).Do(http.MethodPut, "/v1/snapshot", b)
		assert.Equal(t, http.StatusBadRequest, resp.Status, "%s: %s", name, resp)
		assert.Equal(t, "invalid_archive", resp.Code, name)
	}

	// Offline: the file seeds an empty data dir as a new cluster's first node (store tests start one);
	// a data dir that holds a node is refused.
	seed := filepath.Join(dir, "seed")
	out, _, code = harness.RunCLI(t, "snapshot", "restore", file, "--data-dir", seed, "--id", "s1", "--raft-addr", "127.0.0.1:7001")
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("%d keys", n))
	_, errOut, code := harness.RunCLI(t, "snapshot", "restore", file, "--data-dir", seed, "--id", "s1")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "already holds a node")

	// Change the cluster after the backup: delete half the keys, add one.
	for i := 0; i < n/2; i++ {
		require.True(t, c.Node(leader).Delete(fmt.Sprintf("bk-%03d", i)).OK())
	}
	after := c.MustPut(t, leader, "after-backup", []byte("x"))
	idemAfter := c.Node(leader).PutIdempotent("after-backup-idem", []byte("z"), "restore-after")
	require.True(t, idemAfter.OK(), "%s", idemAfter)
	require.Equal(t, http.StatusNotFound, c.Node(follower).Get("bk-000").Status, "the bad restores changed nothing")

	// A restore that cannot be done within --restore-timeout says so and changes nothing (the leader's
	// side of the deadline: store.TestRestorePastItsDeadlineChangesNothing).
	_, errOut, code = harness.RunCLI(t, "snapshot", "restore", file, "--addr", addrs, "--restore-timeout", "1ms")
	assert.Equal(t, 3, code, errOut)
	assert.Contains(t, errOut, "not done within --restore-timeout 1ms; nothing changed")
	require.Equal(t, http.StatusNotFound, c.Node(follower).Get("bk-000").Status, "the timed-out restore changed nothing")

	out, _, code = harness.RunCLI(t, "snapshot", "restore", file, "--addr", addrs)
	require.Equal(t, 0, code)
	assert.Contains(t, out, fmt.Sprintf("%d keys", n))
	for i := 0; i < c.Size(); i++ {
		node := c.Node(i)
		harness.WaitFor(t, 20*time.Second, node.ID+" serves the restored keys", func() error {
			for _, consistency := range []string{"linearizable", "stale"} {
				for k := 0; k < n; k++ {
					r := node.GetConsistency(fmt.Sprintf("bk-%03d", k), consistency)
					if !r.OK() || string(r.Body) != fmt.Sprintf("value-%d", k) {
						return fmt.Errorf("%s read of bk-%03d: %s", consistency, k, r)
					}
				}
				if r := node.GetConsistency("after-backup", consistency); r.Status != http.StatusNotFound {
					return fmt.Errorf("%s read of after-backup: %s", consistency, r)
				}
			}
			return nil
		})
	}
	// Watch history older than the restore is compacted on every node: a watcher relists (etcd needs
	// opt-in flags for this, etcd#16028).
	for i := 0; i < c.Size(); i++ {
		r := c.Node(i).Do(http.MethodGet, fmt.Sprintf("/v1/watch?prefix=bk-&index=%d", after.Index), nil)
		assert.Equal(t, http.StatusGone, r.Status, "%s: %s", c.Node(i).ID, r)
		assert.Equal(t, "compacted", r.Code, c.Node(i).ID)
	}
	// The restore brought the backup's idempotency records: a retry of a write the backup holds is
	// answered with its first index, not applied twice; one the restore undid applies again.
	retry := c.Node(follower).PutIdempotent("bk-000", []byte("value-0"), "restore-before")
	require.True(t, retry.OK(), "%s", retry)
	assert.Equal(t, idemBefore.Index, retry.Index, "answered from the restored record")
	assert.Equal(t, idemBefore.Index, c.Node(leader).Get("bk-000").ModIndex, "not applied again")
	retry = c.Node(follower).PutIdempotent("after-backup-idem", []byte("z"), "restore-after")
	require.True(t, retry.OK(), "%s", retry)
	assert.Greater(t, retry.Index, idemAfter.Index, "undone by the restore, so applied again")

	next := c.MustPut(t, follower, "after-restore", []byte("y"))
	assert.Greater(t, next.Index, after.Index, "the write index moves forward across a restore")
	r := c.Node(leader).Get("bk-000")
	require.True(t, r.OK())
	assert.Less(t, r.ModIndex, next.Index)
	assert.True(t, strings.HasPrefix(string(r.Body), "value-"))

	// A restarted node comes back with the restored state (it installed it as a snapshot).
	c.Stop(follower)
	c.Restart(follower)
	c.WaitReady(t, follower)
	r = c.Node(follower).GetConsistency("bk-099", "stale")
	require.True(t, r.OK(), "%s", r)
	assert.Equal(t, "value-99", string(r.Body))
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x01
	return out
}
