//go:build linux

package store

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mountOrSkip mounts (source, fstype, flags, data) on target for the test's lifetime, or skips the
// test where mounting is not allowed (no root, no CAP_SYS_ADMIN).
func mountOrSkip(t *testing.T, source, target, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := syscall.Mount(source, target, fstype, flags, data); err != nil {
		t.Skipf("cannot mount a test filesystem here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
}

// readOnlyView bind-mounts dir read-only at a new path and returns it.
func readOnlyView(t *testing.T, dir string) string {
	t.Helper()
	ro := t.TempDir()
	mountOrSkip(t, dir, ro, "", syscall.MS_BIND, "")
	if err := syscall.Mount("", ro, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only: %v", err)
	}
	return ro
}

// A node restarted on a filesystem that had turned read-only was told its data dir was corrupt,
// which invites an operator to wipe a healthy directory.
func TestRestartOnReadOnlyFilesystemIsReportedAsCorrupt(t *testing.T) {
	cfg := writeSomeAndClose(t, t.TempDir(), 5)
	cfg.DataDir = readOnlyView(t, cfg.DataDir)

	s, err := Open(cfg)
	if err == nil {
		s.Close()
	}
	require.ErrorIs(t, err, ErrDataDir)
	require.ErrorIs(t, err, ErrReadOnly)
	require.NotErrorIs(t, err, ErrCorrupt)
	require.NotContains(t, err.Error(), "is corrupt")
	require.ErrorContains(t, err, "remount it read-write")
	require.ErrorContains(t, err, "do not wipe it")
}

// A full disk went unnamed: the node logged Raft's "failed to commit logs" and nothing saying the disk
// was full or what to do, and the client saw the same.
func TestFullDiskGoesUnnamed(t *testing.T) {
	dir := t.TempDir()
	mountOrSkip(t, "tmpfs", dir, "tmpfs", 0, "size=2m")
	c := newTestCluster(t)
	c.configure = func(id string, cfg *Config) { cfg.DataDir = dir }
	s := c.start("n1", 1)
	c.waitReady("n1")
	_, err := s.Put(ctxT(t), "before", []byte("v"), Precondition{})
	require.NoError(t, err)

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	big := bytes.Repeat([]byte("x"), 256<<10)
	_, err = s.Put(ctxT(t), "big", big, Precondition{})
	require.ErrorContains(t, err, "disk full", "the client is told why its write did not go through")
	require.ErrorContains(t, err, "free space on the filesystem that holds "+dir)
	c.log.mu.Lock()
	logs := c.log.buf.String()
	c.log.mu.Unlock()
	require.Regexp(t, `level=ERROR msg="cannot write the raft log[^\n]*disk full`, logs)
	require.NotContains(t, logs, "panic")

	// Space freed: the node writes again. Had the full disk also refused Raft's term, the node failed
	// cleanly saying so, and a restart brings it back.
	require.NoError(t, os.Remove(filler))
	if s.Failure() != nil {
		require.ErrorIs(t, s.Failure(), ErrDiskFull)
		c.stop("n1")
		s = c.start("n1", 1)
	}
	require.Eventually(t, func() bool {
		_, err := s.Put(ctxT(t), "big", big, Precondition{})
		return err == nil
	}, waitFor, 100*time.Millisecond)
	c.waitReady("n1")
	e, err := s.Get(ctxT(t), "before", Linearizable)
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value))
}

// fillDisk writes path until its filesystem has no space left.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	// Smaller writes fill what a chunk could not.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return
		}
	}
}
