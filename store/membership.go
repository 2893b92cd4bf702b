package store

// membership.go: the operator's membership changes (join, leave, remove) and the Raft configuration.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// membershipChangeTimeout bounds one Raft configuration change (add, promote, remove).
const membershipChangeTimeout = 10 * time.Second

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
