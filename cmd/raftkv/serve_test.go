package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An operator told "corrupt data dir" deleted only raft.db: the node must not come back under the
// identity the cluster knows without its log, and a supervisor must be able to tell from the exit
// status that restarting will not help.
func TestServeStartedOnADataDirWhoseRaftLogWasDeleted(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "node.json"), []byte(`{"node_id":"n1","data_id":"0123abcd"}`), 0o600))

	// Bounded: a build that accepts the directory serves until the context ends, then exits 0.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"serve", "--id", "n1", "--data-dir", dir, "--http-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--log-level", "error"}, strings.NewReader(""), &out, &errb)
	stderr := errb.String()
	require.Equal(t, exitNodeFailed, code, stderr)
	require.Contains(t, stderr, "lost its raft log")
	require.Contains(t, stderr, "delete everything in "+dir)
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "refused before the log is opened (opening creates it)")
}
