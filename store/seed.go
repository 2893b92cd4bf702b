package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/archive"
	"github.com/raftkv/raftkv/fsm"
)

// SeedConfig is an offline restore into a new node's data dir.
type SeedConfig struct {
	DataDir  string
	NodeID   string
	RaftAddr string // the address the node will advertise on its node port
	Logger   *slog.Logger
}

// Seed makes an empty data dir the first node of a new cluster holding a backup's keys: it verifies
// the archive in full, then writes a Raft snapshot of the state whose configuration is this node alone,
// as a voter. Started with `serve` on that data dir, the node elects itself and serves the keys; other
// nodes join it as usual. A data dir that already holds a node is refused: restoring into a running
// cluster is Restore's job, through Raft.
func Seed(cfg SeedConfig, r io.Reader) (RestoreResult, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return RestoreResult{}, fmt.Errorf("%w: seeding needs a data dir, a node id and a raft address", ErrInvalid)
	}
	for _, name := range []string{identityFile, raftDBFile, "snapshots"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); err == nil {
			return RestoreResult{}, fmt.Errorf("%w: data dir %s already holds a node (%s); seed an empty one, or restore into the running cluster",
				ErrInvalid, cfg.DataDir, name)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("create data dir: %w", err)
	}
	raw, err := os.CreateTemp(cfg.DataDir, "seed-*.archive-data")
	if err != nil {
		return RestoreResult{}, err
	}
	defer os.Remove(raw.Name())
	defer raw.Close()
	meta, err := archive.Read(r, raw)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
	}
	if meta.DataFormat != fsm.SnapshotFormat {
		return RestoreResult{}, fmt.Errorf("%w: data format %q, this build reads %q", ErrInvalidArchive, meta.DataFormat, fsm.SnapshotFormat)
	}
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{}, err
	}
	// The new cluster's indexes continue from the backup's, so indexes a client saw stay in the past.
	index := max(meta.WriteIndex, meta.RaftIndex) + 1
	const term = 1

	bolt, err := openBolt(cfg.DataDir)
	if err != nil {
		return RestoreResult{}, err
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetain, newHclog(cfg.Logger, "raft"))
	if err != nil {
		return RestoreResult{}, fmt.Errorf("data dir %s: open snapshot store: %w", cfg.DataDir, err)
	}
	_, trans := raft.NewInmemTransport("")
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.RaftAddr)}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("create snapshot: %w", err)
	}
	info, err := fsm.New().PrepareRestore(raw, sink, index)
	if err != nil {
		_ = sink.Cancel()
		if errors.Is(err, fsm.ErrInvalidSnapshot) {
			return RestoreResult{}, fmt.Errorf("%w: the checksum matches but the data is not a valid state: %w", ErrInvalidArchive, err)
		}
		return RestoreResult{}, err
	}
	if err := sink.Close(); err != nil {
		return RestoreResult{}, fmt.Errorf("write snapshot: %w", err)
	}
	// Raft keeps the current term in its stable store; the snapshot's term must not be ahead of it.
	if err := bolt.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return RestoreResult{}, fmt.Errorf("write raft term: %w", err)
	}
	// The identity last: a data dir with an identity and no log is one that lost its log.
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return RestoreResult{}, err
	}
	b, _ := json.Marshal(identity{NodeID: cfg.NodeID, DataID: hex.EncodeToString(id[:])})
	if err := writeFileSync(filepath.Join(cfg.DataDir, identityFile), b); err != nil {
		return RestoreResult{}, fmt.Errorf("write %s: %w", identityFile, err)
	}
	return RestoreResult{Archive: meta, Keys: info.Keys, Bytes: info.Bytes, WriteIndex: index}, nil
}
