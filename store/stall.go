package store

// stall.go: a leader whose disk stalls must stop leading. hashicorp/raft sends heartbeats from a
// goroutine per follower, beside the leader loop, so a leader blocked in a log write that never ends
// keeps its followers content while nothing commits: writes time out, and no election ever comes (raft
// #503, #614). Raft's own remedies (LeadershipTransfer, stepping down) run on that blocked loop. So the
// store watches the log write in flight (diskGuard) and, once one has run longer than
// Config.DiskStallTimeout, says so, reports not ready and stops sending heartbeats: the followers
// time out and elect a leader among themselves. When the write finishes the old leader hears the
// higher term and steps down.

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// ErrDiskStalled: a write to this node's raft log has not finished within Config.DiskStallTimeout.
var ErrDiskStalled = errors.New("disk stalled")

var errMutedForStall = errors.New("heartbeats stopped: this leader's disk has stalled")

// diskStall is the stall this node suffers from now, or nil.
func (s *Store) diskStall(now time.Time) error {
	if d := s.disk.writeInFlight(now); d >= s.cfg.DiskStallTimeout {
		return fmt.Errorf("%w: a write to the raft log in %s has not finished for %s (check the disk: a frozen "+
			"filesystem, a hung device or network volume)", ErrDiskStalled, s.cfg.DataDir, d.Round(time.Millisecond))
	}
	return nil
}

// watchDiskStall mutes this node's heartbeats while it leads on a stalled disk, and logs when a
// stall begins and ends.
func (s *Store) watchDiskStall() {
	every := max(s.cfg.DiskStallTimeout/4, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		err := s.diskStall(time.Now())
		switch {
		case err != nil && !stalled:
			stalled = true
			if s.isLeader() {
				s.heartbeatsMuted.Store(true)
				s.logger.Error("this leader's disk stalled: stopping heartbeats so that the others elect a new leader", "err", err)
			} else {
				s.logger.Error("this node's disk stalled: not ready until the write finishes", "err", err)
			}
		case err == nil && stalled:
			stalled = false
			s.heartbeatsMuted.Store(false)
			s.logger.Info("the stalled raft log write finished")
		}
	}
}

// muteGate is Raft's transport with this node's AppendEntries (heartbeats and replication) and
// snapshot installs refused while heartbeatsMuted is set.
// It also records, in seen, what each follower acknowledged (replview.go).
type muteGate struct {
	*votingGate
	muted func() bool
	seen  *replicationView
}

func (g muteGate) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if g.muted() {
		return errMutedForStall
	}
	if err := g.votingGate.AppendEntries(id, target, args, resp); err != nil {
		return err
	}
	g.seen.appendEntries(id, args, resp)
	return nil
}

func (g muteGate) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := g.votingGate.InstallSnapshot(id, target, args, resp, data); err != nil {
		return err
	}
	g.seen.installSnapshot(id, args, resp)
	return nil
}

func (g muteGate) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if g.muted() {
		return nil, errMutedForStall
	}
	return g.votingGate.AppendEntriesPipeline(id, target)
}

var (
	_ raft.Transport   = muteGate{}
	_ raft.WithPreVote = muteGate{}
	_ raft.WithClose   = muteGate{}
)
