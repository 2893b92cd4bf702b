package store

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

// bootstrap.go: forming a new cluster from --bootstrap-expect nodes that see each other by gossip.

// bootstrapStable is how long the same set of nodes must be seen before bootstrapping with it, so
// that nodes racing through start-up agree on one configuration.
const bootstrapStable = time.Second

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
