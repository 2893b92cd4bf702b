package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyringSavedInTheDataDirWinsOverTheFlag(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)

	keys, fromFile, err := loadKeyring(dir, nil)
	require.NoError(t, err)
	assert.Nil(t, keys, "no flag, no file: gossip stays plain")
	assert.False(t, fromFile)

	keys, fromFile, err = loadKeyring(dir, [][]byte{k1})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{k1}, keys)
	assert.False(t, fromFile)

	// A rotation saved k2 as primary; a restart with the old flag keeps what the rotation left.
	require.NoError(t, saveKeyring(dir, [][]byte{k2, k1}))
	keys, fromFile, err = loadKeyring(dir, [][]byte{k1})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{k2, k1}, keys)
	assert.True(t, fromFile)

	require.NoError(t, os.WriteFile(filepath.Join(dir, keyringFile), []byte("{not json"), 0o600))
	_, _, err = loadKeyring(dir, [][]byte{k1})
	require.ErrorIs(t, err, ErrDataDir)
	assert.ErrorContains(t, err, "remove it to start from --gossip-key")
}
