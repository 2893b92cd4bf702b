package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSeededDataDirStartsANewClusterWithTheBackupsKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	ctx := ctxT(t)
	src := newTestCluster(t)
	src.startCluster(1)
	s := src.nodes["n1"].store
	var last uint64
	for i := 0; i < 20; i++ {
		idx, err := s.Put(ctx, fmt.Sprintf("k%02d", i), []byte(fmt.Sprintf("v%d", i)), Precondition{})
		require.NoError(t, err)
		last = idx
	}
	b, err := s.Backup(ctx)
	require.NoError(t, err)
	var archive bytes.Buffer
	require.NoError(t, b.Write(&archive))

	dir := filepath.Join(t.TempDir(), "seeded")
	res, err := Seed(SeedConfig{DataDir: dir, NodeID: "s1", RaftAddr: "127.0.0.1:1"}, bytes.NewReader(archive.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 20, res.Keys)
	_, err = Seed(SeedConfig{DataDir: dir, NodeID: "s1", RaftAddr: "127.0.0.1:1"}, bytes.NewReader(archive.Bytes()))
	assert.ErrorIs(t, err, ErrInvalid, "a data dir that holds a node is not seeded again")
	bad := bytes.Clone(archive.Bytes())
	bad[len(bad)/2] ^= 1
	_, err = Seed(SeedConfig{DataDir: filepath.Join(t.TempDir(), "x"), NodeID: "s1", RaftAddr: "127.0.0.1:1"}, bytes.NewReader(bad))
	assert.ErrorIs(t, err, ErrInvalidArchive)

	dst := newTestCluster(t)
	dst.nodes["s1"] = &testNode{id: "s1", dir: dir, raftAddr: "127.0.0.1:0", gossAddr: "127.0.0.1:0"}
	dst.start("s1", 0)
	dst.start("s2", 0, dst.nodes["s1"].gossAddr)
	dst.waitReady("s1", "s2")
	for _, id := range []string{"s1", "s2"} {
		e, err := dst.nodes[id].store.Get(ctx, "k07", Linearizable)
		require.NoError(t, err, id)
		assert.Equal(t, "v7", string(e.Value))
	}
	idx, err := dst.nodes["s2"].store.Put(ctx, "new", []byte("x"), Precondition{})
	require.NoError(t, err)
	assert.Greater(t, idx, last, "indexes continue past the backup's")
	require.Eventually(t, func() bool { return dst.suffrage("s1", "s2") == "voter" }, waitFor, 50*time.Millisecond)
}
