//go:build linux

package main

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

// A node whose filesystem had turned read-only was told at restart that its data dir was corrupt,
// which invites an operator to wipe a healthy directory.
func TestServeOnReadOnlyDataDirSaysCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(store.Config{NodeID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	ro := t.TempDir()
	if err := syscall.Mount(dir, ro, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
	if err := syscall.Mount("", ro, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"serve", "--id", "n1", "--data-dir", ro, "--http-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--log-level", "error"}, strings.NewReader(""), &out, &errb)
	stderr := errb.String()
	require.Equal(t, exitNodeFailed, code, stderr)
	require.Contains(t, stderr, "read-only filesystem")
	require.Contains(t, stderr, "remount it read-write")
	require.NotContains(t, stderr, "is corrupt")
	require.NotContains(t, stderr, "panic")
}
