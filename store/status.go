package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

const (
	// A follower that has not heard from the leader for this long is not ready.
	readyMaxContactAge = 5 * time.Second
	// A node more than this many entries behind the commit index is still catching up.
	readyMaxLag = 1024
)

// Status is this node's view of the cluster: Raft's configuration merged with gossip's member list.
func (s *Store) Status(ctx context.Context) (Status, error) {
	servers, err := s.configuration()
	if err != nil {
		return Status{}, err
	}
	leaderAddr, leaderID := s.raft.LeaderWithID()
	st := Status{
		NodeID:       s.cfg.NodeID,
		State:        s.raft.State().String(),
		Term:         s.raft.CurrentTerm(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.fsm.AppliedIndex(),
		LastIndex:    s.raft.LastIndex(),
	}
	members := make(map[string]*Member)
	for id, srv := range servers {
		members[string(id)] = &Member{
			ID:          string(id),
			RaftAddr:    string(srv.Address),
			Suffrage:    suffrageName(srv.Suffrage),
			GossipState: "unknown",
		}
	}
	for _, g := range s.gossip.Members() {
		m, ok := members[g.ID]
		if !ok {
			m = &Member{ID: g.ID, RaftAddr: g.RaftAddr, Suffrage: "none"}
			members[g.ID] = m
		}
		m.HTTPAddr, m.GossipAddr, m.GossipState = g.HTTPAddr, g.GossipAddr, g.State
		if g.RaftAddr != "" {
			// Where the node is now: Raft dials what gossip says (gossipAddresses), and the address in
			// the Raft configuration is only where the node was when it joined.
			m.RaftAddr = g.RaftAddr
		}
	}
	for _, m := range members {
		if leaderID != "" && m.ID == string(leaderID) {
			m.Leader = true
			c := *m
			if c.RaftAddr == "" {
				c.RaftAddr = transport.HostPort(string(leaderAddr)) // raft's peer encoding names the id
			}
			st.Leader = &c
		}
		st.Members = append(st.Members, *m)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st, nil
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}

// Ready is nil when this node is a member of a cluster with a known, reachable leader and has applied
// (nearly) everything committed: a load balancer can send it traffic. A follower must also keep up
// with the leader: it has applied what the leader had applied readyLagWindow ago (progress.go).
func (s *Store) Ready() error {
	if s.ctx.Err() != nil {
		return ErrShuttingDown
	}
	if err := s.Failure(); err != nil {
		return err
	}
	now := time.Now()
	if err := s.diskStall(now); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	_, leaderID := s.raft.LeaderWithID()
	if leaderID == "" {
		return fmt.Errorf("%w: no known leader", ErrNotReady)
	}
	servers, err := s.configuration()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	if _, ok := servers[raft.ServerID(s.cfg.NodeID)]; !ok {
		return fmt.Errorf("%w: not a member of the raft configuration (yet)", ErrNotReady)
	}
	fault := s.disk.logFault(now)
	if s.isLeader() {
		if fault != nil {
			return fmt.Errorf("%w: %w", ErrNotReady, fault)
		}
		if s.readyTerm.Load() != s.raft.CurrentTerm() {
			return fmt.Errorf("%w: new leader has not committed in its term yet", ErrNotReady)
		}
		return nil
	}
	if age := time.Since(s.raft.LastContact()); age > readyMaxContactAge {
		return fmt.Errorf("%w: no contact with the leader for %s", ErrNotReady, age.Round(time.Millisecond))
	}
	if commit, applied := s.raft.CommitIndex(), s.raft.AppliedIndex(); commit > applied+readyMaxLag {
		return fmt.Errorf("%w: catching up (applied %d of %d)", ErrNotReady, applied, commit)
	}
	lag := s.progress.behind(now, s.raft.AppliedIndex())
	switch {
	case lag != "" && fault != nil:
		return fmt.Errorf("%w: behind the leader: %s: %w", ErrNotReady, lag, fault)
	case lag != "":
		return fmt.Errorf("%w: behind the leader: %s", ErrNotReady, lag)
	case fault != nil:
		return fmt.Errorf("%w: %w", ErrNotReady, fault)
	}
	return nil
}
