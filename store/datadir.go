package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const identityFile = "node.json"

// identity ties a data directory to one node id, and names the directory itself: a wiped directory
// gets a new DataID, which tells the cluster that the node lost its state.
type identity struct {
	NodeID string `json:"node_id"`
	DataID string `json:"data_id"`
}

// loadIdentity reads the data dir's identity, creating it on first use. A data dir written by another
// node is refused: starting node B on node A's log would corrupt the cluster.
func loadIdentity(dir, nodeID string) (identity, error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var id identity
		if err := json.Unmarshal(b, &id); err != nil || id.NodeID == "" || id.DataID == "" {
			return identity{}, fmt.Errorf("data dir %s is corrupt: %s is unreadable (%v); restore it or wipe the directory to rejoin as a new member", dir, identityFile, err)
		}
		if id.NodeID != nodeID {
			return identity{}, fmt.Errorf("data dir %s belongs to node %q, not %q: use --id %s or another --data-dir", dir, id.NodeID, nodeID, id.NodeID)
		}
		return id, nil
	case errors.Is(err, fs.ErrNotExist):
		if _, statErr := os.Stat(filepath.Join(dir, raftDBFile)); statErr == nil {
			return identity{}, fmt.Errorf("data dir %s is corrupt: it has a raft log but no %s", dir, identityFile)
		}
		var raw [16]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return identity{}, fmt.Errorf("generate data id: %w", err)
		}
		id := identity{NodeID: nodeID, DataID: hex.EncodeToString(raw[:])}
		b, _ := json.Marshal(id)
		if err := writeFileSync(path, b); err != nil {
			return identity{}, fmt.Errorf("write %s: %w", path, err)
		}
		return id, nil
	default:
		return identity{}, fmt.Errorf("read %s: %w", path, err)
	}
}

// writeFileSync writes atomically and durably: temp file, fsync, rename, fsync the directory.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
