package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

const (
	membershipChangeTimeout = 10 * time.Second
	// A non-voter is promoted once its applied index is within this many entries of the leader's.
	caughtUpLag = 256
	// bootstrapStable is how long the same set of nodes must be seen before bootstrapping with it, so
	// that nodes racing through start-up agree on one configuration.
	bootstrapStable = time.Second
	// readdDelay keeps a wiped node out for a moment after its removal, so that what the leader was
	// still sending its old incarnation (a snapshot, above all) mostly drains before the new one is
	// replicated to. It is a courtesy, not the safety net: the FSM refuses a snapshot older than its
	// state (fsm.ErrStaleSnapshot), which is what once let a late snapshot crash a re-added member.
	readdDelay = 2 * time.Second
)

// watchLeadership runs leaderLoop for exactly as long as this node leads.
func (s *Store) watchLeadership(notify <-chan bool) {
	var stopLeading func()
	defer func() {
		if stopLeading != nil {
			stopLeading()
		}
	}()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leading := <-notify:
			switch {
			case leading && stopLeading == nil:
				stopLeading = s.startLeaderLoop()
			case !leading && stopLeading != nil:
				stopLeading()
				stopLeading = nil
				s.logger.Info("lost leadership")
			}
		}
	}
}

// startLeaderLoop starts leaderLoop and returns the function that stops it and waits for it.
func (s *Store) startLeaderLoop() func() {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.leaderLoop(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (s *Store) leaderLoop(ctx context.Context) {
	// What an earlier term saw of the members' log formats may be out of date: no batches until this
	// term's first reconcile has looked.
	s.proposer.format.Store(0)
	term := s.raft.CurrentTerm()
	s.logger.Info("became leader", "term", term)
	if !s.establishLeadership(ctx) {
		return
	}
	s.logger.Info("leader ready", "term", s.raft.CurrentTerm(), "commit_index", s.raft.CommitIndex())
	s.ensureClusterID()
	ticker := time.NewTicker(s.cfg.ReconcileInterval)
	defer ticker.Stop()
	for {
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("membership reconcile failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.gossip.Changes():
		case <-ticker.C:
		}
	}
}

// establishLeadership commits a no-op command in the new term. Once it is applied, this leader's
// commit index covers everything earlier leaders committed, and its FSM has applied it all. A command,
// not raft.Barrier: the read index is the commit index, and it must be an entry the FSM sees (a
// barrier is not passed to the FSM); TestReadIndexIsAnEntryNoFSMEverSees guards it.
func (s *Store) establishLeadership(ctx context.Context) bool {
	noop := fsm.Command{Op: fsm.OpNoop}.Encode()
	if s.sealFormat() {
		noop = fsm.Seal(noop)
	}
	for {
		term := s.raft.CurrentTerm()
		err := s.raft.Apply(noop, s.cfg.RequestTimeout).Error()
		if err == nil && s.isLeader() && s.raft.CurrentTerm() == term {
			s.readyTerm.Store(term)
			return true
		}
		if !s.isLeader() || ctx.Err() != nil {
			return false
		}
		s.logger.Warn("leadership no-op failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reconcile makes the Raft configuration follow gossip. It is idempotent: every pass compares the two
// views and fixes the first differences, so a lost event or a failed change is repaired on the next pass.
func (s *Store) reconcile(ctx context.Context) error {
	servers, err := s.configuration()
	if err != nil {
		return err
	}
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
	if srv.Suffrage != raft.Voter && s.caughtUp(ctx, transport.TargetAddr(m.ID, m.RaftAddr)) {
		s.logger.Info("promoting caught-up member to voter", "member", m.ID)
		if err := s.raft.AddVoter(id, addr, 0, membershipChangeTimeout).Error(); err != nil {
			return fmt.Errorf("promote: %w", err)
		}
	}
	return nil
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

func (s *Store) caughtUp(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := s.rpc.Call(ctx, addr, rpcApplied, nil)
	if err != nil {
		return false
	}
	payload, err := decodeResponse(addr, resp)
	if err != nil {
		return false
	}
	applied, err := decodeUvarint(payload)
	return err == nil && applied+caughtUpLag >= s.fsm.AppliedIndex()
}

func (s *Store) configuration() (map[raft.ServerID]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	servers := make(map[raft.ServerID]raft.Server)
	for _, srv := range f.Configuration().Servers {
		servers[srv.ID] = srv
	}
	return servers, nil
}

// bootstrapLoop forms a new cluster once exactly BootstrapExpect state-less nodes (this one included)
// have seen each other by gossip for bootstrapStable. Every one of them bootstraps with the same
// configuration (sorted ids), so it does not matter which goes first.
func (s *Store) bootstrapLoop() {
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	var (
		candidate string
		since     time.Time
		warned    bool
		// stateless: the last set of exactly BootstrapExpect nodes seen with no Raft state at all.
		stateless string
	)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		case <-s.gossip.Changes():
		}
		if s.raft.LastIndex() > 0 {
			return // we were added to an existing cluster
		}
		var servers []raft.Server
		existing := false
		for _, m := range s.gossip.Members() {
			if m.State != transport.StateAlive || m.RaftAddr == "" {
				continue
			}
			existing = existing || m.HasState
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
		key := fmt.Sprint(servers)
		// A peer that reached the stable point first bootstrapped the very set this node was watching:
		// this node is one of its founders and bootstraps with the same configuration. It must, now
		// that an empty node no longer votes before it is admitted: otherwise the first founder could
		// find no one to vote for it.
		founder := existing && len(servers) == s.cfg.BootstrapExpect && key == stateless
		if !founder && (existing || len(servers) != s.cfg.BootstrapExpect) {
			if !warned && (existing || len(servers) > s.cfg.BootstrapExpect) {
				s.logger.Warn("not bootstrapping: a cluster already exists or more nodes than --bootstrap-expect are up; waiting to be added",
					"seen", len(servers), "expect", s.cfg.BootstrapExpect, "existing_cluster", existing)
				warned = true
			}
			candidate = ""
			continue
		}
		if !founder {
			stateless = key
			if key != candidate {
				candidate, since = key, time.Now()
				continue
			}
			if time.Since(since) < bootstrapStable {
				continue
			}
		}
		// A founding member votes from the start; persisted first, so a restart keeps it voting.
		if err := s.admit("bootstrapping a new cluster"); err != nil {
			s.logger.Error("bootstrap postponed", "err", err)
			continue
		}
		err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			s.logger.Error("bootstrap failed", "err", err)
			continue
		}
		s.logger.Info("bootstrapped cluster", "servers", key)
		m := s.gossip.LocalMeta()
		m.HasState = true
		if err := s.gossip.SetMeta(m); err != nil {
			s.logger.Warn("publish gossip metadata", "err", err)
		}
		return
	}
}

// Join makes this node gossip-join the cluster at addrs; the cluster's leader then adds it to Raft.
func (s *Store) Join(ctx context.Context, addrs []string) error {
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: join address %q is not host:port", ErrInvalid, a)
		}
	}
	if _, err := s.gossip.Join(addrs); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Leave departs the cluster gracefully: leadership is handed over first if this node leads, then gossip
// announces the departure and the leader removes this node from Raft. The process keeps running until
// stopped, no longer a member.
//
// Unless force is set, a leave that would leave the other voters short of a majority that answers is
// refused with ErrWouldLoseQuorum. Forced, the node removes itself from the configuration through the
// leader before it leaves gossip, so that the removal happens even though it loses the quorum.
func (s *Store) Leave(ctx context.Context, force bool) error {
	if !force {
		servers, err := s.configuration()
		if err != nil {
			return err
		}
		if err := s.checkRemoval(ctx, servers, raft.ServerID(s.cfg.NodeID)); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
	}
	if s.isLeader() {
		servers, err := s.configuration()
		if err == nil && len(servers) > 1 {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				return fmt.Errorf("hand over leadership before leaving: %w", err)
			}
		}
	}
	if force {
		if err := s.RemoveMember(ctx, s.cfg.NodeID, true); err != nil && !errors.Is(err, ErrUnknownMember) {
			return fmt.Errorf("leave: %w", err)
		}
	}
	if err := s.gossip.Leave(5 * time.Second); err != nil {
		return err
	}
	s.logger.Info("left the cluster")
	return nil
}

// RemoveMember removes a node from the Raft configuration (the leader does it; followers forward).
// Unless force is set, a removal that would leave the remaining voters short of an answering majority
// is refused with ErrWouldLoseQuorum.
func (s *Store) RemoveMember(ctx context.Context, id string, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	err := s.withLeader(ctx, retryWrite, func(local bool, addr string) error {
		if local {
			return s.removeLocal(ctx, id, force)
		}
		method := rpcRemove
		if force {
			method = rpcRemoveForce
		}
		resp, err := s.rpc.Call(ctx, addr, method, []byte(id))
		if err != nil {
			if retryWrite(err) {
				return err
			}
			return fmt.Errorf("%w: forwarding removal to leader %s: %v", ErrIndeterminate, addr, err)
		}
		_, err = decodeResponse(addr, resp)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove member %q: %w", id, err)
	}
	return nil
}

func (s *Store) removeLocal(ctx context.Context, id string, force bool) error {
	if !s.isLeader() {
		return errNotLeader
	}
	servers, err := s.configuration()
	if err != nil {
		return err
	}
	if _, ok := servers[raft.ServerID(id)]; !ok {
		return fmt.Errorf("%w: %q is not in the raft configuration", ErrUnknownMember, id)
	}
	if !force {
		if err := s.checkRemoval(ctx, servers, raft.ServerID(id)); err != nil {
			return err
		}
	} else {
		s.logger.Warn("forced removal: not checking the quorum", "member", id)
	}
	if dataID := s.memberDataID(id); dataID != "" {
		if err := s.recordDataID(id, removedRecord(dataID)); err != nil {
			return err
		}
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, membershipChangeTimeout).Error(); err != nil {
		return classifyApplyError(err)
	}
	s.logger.Info("removed member", "member", id)
	return nil
}
