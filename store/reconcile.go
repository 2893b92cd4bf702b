package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

// reconcile.go: the leader makes the Raft configuration follow gossip, idempotently, on every pass.

const (
	// A non-voter is promoted once it acknowledged to this leader a log within this many entries of the
	// leader's last one, within caughtUpRecent (replview.go): the leader's own view, never the member's word.
	caughtUpLag    = 256
	caughtUpRecent = 5 * time.Second
	// readdDelay keeps a wiped node out for a moment after its removal, so that what the leader was
	// still sending its old incarnation (a snapshot, above all) mostly drains before the new one is
	// replicated to. It is a courtesy, not the safety net: the FSM refuses a snapshot older than its
	// state (fsm.ErrStaleSnapshot), which is what once let a late snapshot crash a re-added member.
	readdDelay = 2 * time.Second
)

// reconcile makes the Raft configuration follow gossip. It is idempotent: every pass compares the two
// views and fixes the first differences, so a lost event or a failed change is repaired on the next pass.
func (s *Store) reconcile(ctx context.Context) error {
	servers, err := s.configuration()
	if err != nil {
		return err
	}
	s.replView.forget(servers)
	members := s.gossip.Members()
	s.proposer.format.Store(int64(clusterFormat(servers, members)))
	var errs []error
	for _, m := range members {
		if ctx.Err() != nil {
			return nil
		}
		if m.ID == s.cfg.NodeID {
			continue
		}
		if err := s.reconcileMember(ctx, m, servers); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", m.ID, err))
		}
	}
	return errors.Join(errs...)
}

// clusterFormat is the newest log format that every server in the Raft configuration has been seen by
// gossip to advertise. A server gossip has never seen could run anything, so it makes the answer 0.
func clusterFormat(servers map[raft.ServerID]raft.Server, members []transport.Member) int {
	formats := make(map[raft.ServerID]int, len(members))
	for _, m := range members {
		formats[raft.ServerID(m.ID)] = m.LogFormat
	}
	format := fsm.LogFormat
	for id := range servers {
		f, seen := formats[id]
		if !seen {
			return 0
		}
		format = min(format, f)
	}
	return format
}

// reconcileMember fixes one member's difference between gossip and the configuration. The checks run
// in an order that matters:
//  1. gossip state: a member that left is removed (if that keeps a quorum), a failed one is left alone;
//  2. an operator's removal (the "removed:" record for this data dir) wins over gossip seeing it alive;
//  3. a member not in the configuration waits out readdDelay after a wiped removal, is not added while
//     it runs an older log format, and is otherwise added as a non-voter with its data id recorded;
//  4. a member in the configuration under another data id (wiped) is removed (if that keeps a quorum);
//     it comes back through 3 on a later pass, as a new incarnation that admission.go then lets vote;
//  5. only then is a member with no record recorded, and a non-voter promoted once the leader saw it
//     acknowledge a log that is caught up (replview.go).
func (s *Store) reconcileMember(ctx context.Context, m transport.Member, servers map[raft.ServerID]raft.Server) error {
	id := raft.ServerID(m.ID)
	srv, inConfig := servers[id]
	switch m.State {
	case transport.StateLeft:
		if !inConfig {
			return nil
		}
		if err := s.checkRemoval(ctx, servers, id); err != nil {
			// It is gone either way; removing it now would only stop the rest from committing.
			s.logger.Warn("member left, but removing it would lose the quorum; waiting for the other voters", "member", m.ID, "err", err)
			return nil
		}
		s.logger.Info("member left gracefully; removing it from raft", "member", m.ID)
		return s.raft.RemoveServer(id, 0, membershipChangeTimeout).Error()
	case transport.StateAlive:
	default:
		// A failed node stays a voter: it may come back with its data, and removing it would shrink
		// the quorum behind the operator's back. `cluster remove` is the explicit way.
		return nil
	}
	if m.RaftAddr == "" {
		return nil
	}
	addr := raft.ServerAddress(m.RaftAddr)
	recorded, hasRecord := s.fsm.MemberDataID(m.ID)
	if recorded == removedRecord(m.DataID) {
		// An operator removed this node. It stays out until it comes back with a new data dir;
		// re-adding it because gossip still sees it would undo the removal.
		return nil
	}
	switch {
	case !inConfig && time.Since(s.wipedRemovedAt[m.ID]) < readdDelay:
		return nil
	case !inConfig && m.LogFormat < fsm.LogFormat:
		// It would replicate entries, or a snapshot, it cannot read: its state would silently differ.
		s.logger.Warn("not adding member: it runs an older raftkv that cannot apply this cluster's log; upgrade it",
			"member", m.ID, "its_log_format", m.LogFormat, "needed", fsm.LogFormat)
		return nil
	case !inConfig && !s.provesMembership(ctx, m):
		return nil
	case !inConfig:
		s.logger.Info("adding member as non-voter", "member", m.ID, "raft_addr", m.RaftAddr)
		if err := s.raft.AddNonvoter(id, addr, 0, membershipChangeTimeout).Error(); err != nil {
			return fmt.Errorf("add non-voter: %w", err)
		}
		return s.recordDataID(m.ID, m.DataID)
	case hasRecord && recorded != m.DataID:
		// Same id, different data dir: the node lost the log it had acknowledged. Counting it as the
		// voter it was could lose committed writes, so it goes out and comes back as a new member. Not
		// while that would lose the quorum: until it is admitted it does not vote (admission.go), and
		// what it acknowledges meanwhile it has, since the leader sends it the whole log.
		// Not either for a host that merely claims the id in gossip: it must prove it is that node.
		if !s.provesMembership(ctx, m) {
			return nil
		}
		if err := s.checkRemoval(ctx, servers, id); err != nil {
			s.logger.Warn("member came back with a wiped data dir, but removing it would lose the quorum; waiting", "member", m.ID, "err", err)
			return nil
		}
		s.logger.Warn("member came back with a wiped data dir; removing it to re-add it fresh", "member", m.ID, "readd_after", readdDelay)
		s.wipedRemovedAt[m.ID] = time.Now()
		return s.raft.RemoveServer(id, 0, membershipChangeTimeout).Error()
	}
	if !hasRecord {
		if err := s.recordDataID(m.ID, m.DataID); err != nil {
			return err
		}
	}
	if srv.Suffrage != raft.Voter && s.replView.caughtUp(id, s.raft.CurrentTerm(), s.raft.LastIndex(), caughtUpLag, caughtUpRecent) {
		s.logger.Info("promoting caught-up member to voter", "member", m.ID)
		if err := s.raft.AddVoter(id, addr, 0, membershipChangeTimeout).Error(); err != nil {
			return fmt.Errorf("promote: %w", err)
		}
	}
	return nil
}

// provesMembership reports whether m may be acted on as the node it claims to be. With mutual TLS on
// the node port, that is a call to m's address that completes only if the node there holds a node
// certificate for m.ID from the cluster CA; without TLS nothing can be proven, and gossip is trusted as
// before (docs/security.md says what that exposes).
func (s *Store) provesMembership(ctx context.Context, m transport.Member) bool {
	if !s.mux.TLS() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addr := transport.TargetAddr(m.ID, m.RaftAddr)
	if _, err := s.rpc.Call(ctx, addr, rpcApplied, nil); err != nil {
		if s.netLogThrottle.Allow("prove:" + m.ID + "@" + m.RaftAddr) {
			s.logger.Warn("gossip member does not prove its identity on the node port (no certificate for its id from the cluster CA); not adding it",
				"member", m.ID, "raft_addr", m.RaftAddr, "gossip_addr", m.GossipAddr, "err", err)
		}
		return false
	}
	return true
}

// recordDataID replicates which data dir a member runs on (or, via removedRecord, that it was removed).
func (s *Store) recordDataID(id, record string) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	cmd := fsm.Command{Op: fsm.OpSetMember, Key: id, Value: []byte(record)}
	if _, err := s.proposer.apply(ctx, cmd.Encode()); err != nil {
		return fmt.Errorf("record data id of %s: %w", id, err)
	}
	return nil
}

// removedRecord marks a member's data dir as removed by an operator.
func removedRecord(dataID string) string { return "removed:" + dataID }

// memberDataID is the data dir id of member id, from gossip or else from the replicated record.
func (s *Store) memberDataID(id string) string {
	for _, m := range s.gossip.Members() {
		if m.ID == id && m.DataID != "" {
			return m.DataID
		}
	}
	recorded, _ := s.fsm.MemberDataID(id)
	return recorded
}
