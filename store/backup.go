package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/archive"
	"github.com/raftkv/raftkv/fsm"
)

// restoreIndexGap is how far past every index this cluster has handed out a restored state's index is
// placed. Raft restores a user snapshot at max(its index, last log index)+1; the FSM refuses a snapshot
// older than what it applied (and Raft then panics), and the write index must never move backwards. The
// gap only has to exceed the entries appended while the restore is prepared (seconds), and uint64
// indexes have room for billions of restores.
const restoreIndexGap = 1 << 24

var (
	// ErrNotLeader: this request must be sent to the leader (restore); the error names it when known.
	ErrNotLeader = errors.New("not the leader")
	// ErrInvalidArchive: a backup was refused as truncated, corrupt or not a raftkv backup; nothing
	// changed.
	ErrInvalidArchive = errors.New("invalid snapshot archive")
)

// Backup is a consistent copy of the state, ready to be written as an archive.
type Backup struct {
	Meta  archive.Metadata
	Info  fsm.SnapshotInfo
	state fsm.BackupState
}

// Write writes the archive: metadata, data, checksum. A failure part-way leaves a truncated archive,
// which archive.Read refuses.
func (b *Backup) Write(w io.Writer) error {
	aw, err := archive.NewWriter(w, b.Meta)
	if err != nil {
		return err
	}
	if err := b.state.Write(aw); err != nil {
		return err
	}
	return aw.Close()
}

// Backup captures a state that reflects every write acknowledged before the call (it waits for a
// linearizable read index first), on this node, without stopping writes.
func (s *Store) Backup(ctx context.Context) (*Backup, error) {
	if err := s.waitLinearizable(ctx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	st := s.fsm.Backup()
	info := st.Info()
	return &Backup{
		Meta: archive.Metadata{
			ClusterID:  s.fsm.ClusterID(),
			NodeID:     s.cfg.NodeID,
			Time:       time.Now().UTC(),
			WriteIndex: info.WriteIndex,
			RaftIndex:  info.Applied,
			RaftTerm:   s.raft.CurrentTerm(),
			DataFormat: fsm.SnapshotFormat,
		},
		Info:  info,
		state: st,
	}, nil
}

// ArchiveInfo is what a verified archive holds.
type ArchiveInfo struct {
	Meta archive.Metadata `json:"metadata"`
	fsm.SnapshotInfo
}

// InspectArchive verifies an archive (checksum, framing, and the data itself) and describes it.
func InspectArchive(r io.Reader) (ArchiveInfo, error) {
	pr, pw := io.Pipe()
	type result struct {
		info fsm.SnapshotInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := fsm.ReadSnapshotInfo(pr)
		_, _ = io.Copy(io.Discard, pr) // let Read finish even if the data was bad
		done <- result{info, err}
	}()
	meta, err := archive.Read(r, pw)
	pw.CloseWithError(err)
	res := <-done
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
	}
	if !fsm.ReadsSnapshotFormat(meta.DataFormat) {
		return ArchiveInfo{}, fmt.Errorf("%w: data format %q, this build reads %q", ErrInvalidArchive, meta.DataFormat, fsm.SnapshotFormat)
	}
	if res.err != nil {
		return ArchiveInfo{}, fmt.Errorf("%w: the checksum matches but the data is not a valid state: %w", ErrInvalidArchive, res.err)
	}
	return ArchiveInfo{Meta: meta, SnapshotInfo: res.info}, nil
}

// RestoreResult says what a restore installed.
type RestoreResult struct {
	Archive archive.Metadata `json:"archive"`
	Keys    int              `json:"keys"`
	Bytes   int64            `json:"bytes"`
	// WriteIndex is the restored state's index: every later write gets a higher one.
	WriteIndex uint64 `json:"write_index"`
}

// restoreGate allows one restore at a time on a node.
type restoreGate struct{ mu sync.Mutex }

// Restore replaces the whole key space, on every node, with the backup read from r. It must run on the
// leader (ErrNotLeader otherwise). The backup is verified in full before anything changes; a truncated,
// corrupt or foreign archive is refused with ErrInvalidArchive. The restored state is installed through
// Raft (hashicorp/raft's user restore: the leader installs it and followers receive it as a snapshot),
// at an index past everything the cluster has handed out, so write indexes keep increasing. Membership
// stays the running cluster's. Writes in flight when the restore is installed fail as indeterminate.
func (s *Store) Restore(ctx context.Context, r io.Reader) (RestoreResult, error) {
	if !s.isLeader() {
		return RestoreResult{}, s.notLeaderError()
	}
	if !s.restoring.mu.TryLock() {
		return RestoreResult{}, fmt.Errorf("%w: another restore is in progress on this node", ErrInvalid)
	}
	defer s.restoring.mu.Unlock()

	// The archive goes to a file first: nothing reaches Raft before its checksum is verified.
	raw, err := os.CreateTemp(s.cfg.DataDir, "restore-*.archive-data")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: temp file: %w", err)
	}
	defer os.Remove(raw.Name())
	defer raw.Close()
	meta, err := archive.Read(ctxReader{ctx, r}, raw)
	if err != nil {
		if ctx.Err() != nil {
			return RestoreResult{}, restoreDeadline(ctx, "while receiving the archive")
		}
		return RestoreResult{}, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
	}
	if !fsm.ReadsSnapshotFormat(meta.DataFormat) {
		return RestoreResult{}, fmt.Errorf("%w: data format %q, this build reads %q", ErrInvalidArchive, meta.DataFormat, fsm.SnapshotFormat)
	}
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}

	index := max(s.raft.LastIndex(), s.fsm.AppliedIndex(), s.fsm.LastWriteIndex(), meta.WriteIndex, meta.RaftIndex) + restoreIndexGap
	prepared, err := os.CreateTemp(s.cfg.DataDir, "restore-*.snapshot")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: temp file: %w", err)
	}
	defer os.Remove(prepared.Name())
	defer prepared.Close()
	info, err := s.fsm.PrepareRestore(ctxReader{ctx, raw}, prepared, index)
	if err != nil {
		if ctx.Err() != nil {
			return RestoreResult{}, restoreDeadline(ctx, "while preparing the state")
		}
		if errors.Is(err, fsm.ErrInvalidSnapshot) {
			return RestoreResult{}, fmt.Errorf("%w: the checksum matches but the data is not a valid state: %w", ErrInvalidArchive, err)
		}
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	size, err := prepared.Seek(0, io.SeekCurrent)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if _, err := prepared.Seek(0, io.SeekStart); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	// The last point where the restore can still be called off whole: raft.Restore below installs it
	// on this node at once (one snapshot: all or nothing), and it cannot be interrupted.
	if ctx.Err() != nil {
		return RestoreResult{}, restoreDeadline(ctx, "before installing it")
	}
	if last := s.raft.LastIndex(); last >= index-restoreIndexGap/2 {
		// Never reached in practice; if it were, the FSM would refuse the snapshot and Raft panic.
		return RestoreResult{}, fmt.Errorf("%w: the log grew past %d while the restore was prepared; try again", ErrTimeout, last)
	}
	s.logger.Info("restoring a backup", "archive_node", meta.NodeID, "archive_time", meta.Time,
		"archive_write_index", meta.WriteIndex, "keys", info.Keys, "restore_index", index)
	err = s.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Term: s.raft.CurrentTerm(), Size: size}, prepared, 0)
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return RestoreResult{}, s.notLeaderError()
	case err != nil:
		return RestoreResult{}, fmt.Errorf("%w: restore: %v", ErrIndeterminate, err)
	}
	// Raft marks the restore with a no-op the FSM never sees; linearizable reads wait for an index the
	// FSM applies, so commit one it does.
	noopCtx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.proposer.apply(noopCtx, fsm.Command{Op: fsm.OpNoop}.Encode()); err != nil {
		s.logger.Warn("restored; the entry after it did not commit yet (reads wait for the next write)", "err", err)
	}
	s.logger.Info("restored a backup", "keys", info.Keys, "write_index", index)
	return RestoreResult{Archive: meta, Keys: info.Keys, Bytes: info.Bytes, WriteIndex: index}, nil
}

// restoreDeadline is a restore called off before anything was installed: its deadline passed (503
// timeout), or its client went away (the caller sees context.Canceled).
func restoreDeadline(ctx context.Context, when string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: the restore did not finish within its deadline (%s); nothing changed", ErrTimeout, when)
	}
	return fmt.Errorf("restore called off %s; nothing changed: %w", when, ctx.Err())
}

// ctxReader stops a restore's reading once its context ends, so a deadline cuts a slow upload or a
// long preparation short instead of waiting for the next I/O error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *Store) notLeaderError() error {
	st, err := s.Status(context.Background())
	if err == nil && st.Leader != nil && st.Leader.HTTPAddr != "" {
		return fmt.Errorf("%w: send it to the leader, %s at %s", ErrNotLeader, st.Leader.ID, st.Leader.HTTPAddr)
	}
	return fmt.Errorf("%w: no leader is known", ErrNotLeader)
}

// ensureClusterID records a cluster id if none is recorded yet: the first leader of a cluster does, and
// a leader of a cluster formed before ids existed. Backups carry it, so an operator can tell which
// cluster a file came from.
func (s *Store) ensureClusterID() {
	if s.fsm.ClusterID() != "" {
		return
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		s.logger.Warn("no cluster id recorded", "err", err)
		return
	}
	if err := s.recordDataID(fsm.ClusterIDMember, hex.EncodeToString(raw[:])); err != nil {
		s.logger.Warn("no cluster id recorded; the next leader will try again", "err", err)
	}
}
