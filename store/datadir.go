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
	// Pending: this data dir has not yet been admitted to vote (admission.go). Absent, and so false,
	// in the data dirs of earlier builds, whose nodes voted already.
	Pending bool `json:"pending,omitempty"`
}

// readIdentity reads the data dir's identity; found is false when the directory has none yet. A data
// dir written by another node is refused: starting node B on node A's log would corrupt the cluster.
func readIdentity(dir, nodeID string) (id identity, found bool, err error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return identity{}, false, nil
	case err != nil:
		return identity{}, false, startupStorageError("read "+path, dir, err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.NodeID == "" || id.DataID == "" {
		return identity{}, false, fmt.Errorf("%w: %w: %s in %s is unreadable (%v); restore it or wipe the directory to rejoin as a new member", ErrDataDir, ErrCorrupt, identityFile, dir, err)
	}
	if id.NodeID != nodeID {
		return identity{}, false, fmt.Errorf("%w: data dir %s belongs to node %q, not %q: use --id %s or another --data-dir", ErrDataDir, dir, id.NodeID, nodeID, id.NodeID)
	}
	return id, true, nil
}

// errPartialWipe: the identity survived but the Raft log did not. Accepting that would bring the node
// back under the identity the cluster knows, with none of the entries it acknowledged, and the leader
// would count it as the member it was. Checked before the log is opened, since opening creates it.
func errPartialWipe(dir string, id identity) error {
	return fmt.Errorf("%w: data dir %s lost its raft log: %s (node %q) is there but %s is not, so this node "+
		"would come back as the member the cluster knows without the writes it acknowledged. Restore %s from a "+
		"backup, or delete everything in %s (%s, %s and snapshots/) so that the node rejoins as a new member",
		ErrDataDir, dir, identityFile, id.NodeID, raftDBFile, raftDBFile, dir, identityFile, raftDBFile)
}

// newIdentity gives a data dir without one a fresh identity. Open calls it only after the Raft log
// exists, so that a crash in between leaves a log without an identity (accepted while the log is
// empty), never an identity without a log (refused as a partial wipe).
func newIdentity(dir, nodeID string) (identity, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return identity{}, fmt.Errorf("generate data id: %w", err)
	}
	id := identity{NodeID: nodeID, DataID: hex.EncodeToString(raw[:]), Pending: true}
	b, _ := json.Marshal(id)
	path := filepath.Join(dir, identityFile)
	if err := writeFileSync(path, b); err != nil {
		return identity{}, startupStorageError("write "+path, dir, err)
	}
	return id, nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
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
