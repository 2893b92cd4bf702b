package store

// corruptcheck.go: the leader's periodic comparison of every member's state (etcd's corruption check,
// server/etcdserver/corrupt.go). Checksummed log entries catch a byte changed on disk before it is
// applied; they cannot catch a state that went wrong another way (a bit flip in memory, a bug that
// applied differently on one node, a data dir patched by hand). So every CorruptCheckInterval the
// leader takes its newest write index X and the hash of its keyspace there (fsm.HashAt), asks every
// other server for its hash at X, and takes the hash a majority of the members that answered agree on
// as the truth. A member whose hash differs has diverged: it is told so, logs an ERROR, stops serving
// (Failed, exit 4: its state is wrong, and the remedy is the one for a damaged log: move the data dir
// aside and restart it empty) and raftkv_server_state_diverged is 1. When no majority agrees, nobody
// can tell which is right: the leader logs an ERROR and raises the alarm on itself.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

const (
	// DefaultCorruptCheckInterval: the check costs one small RPC per member, so it can run often.
	DefaultCorruptCheckInterval = time.Minute
	// hashWaitTimeout bounds how long a member waits to apply X before it answers "not yet".
	hashWaitTimeout = 2 * time.Second
)

// ErrDiverged: this node's state differs from what a majority of the members hold at the same index.
var ErrDiverged = errors.New("state diverged from the other members'")

// stateHashAt answers the leader: this node's hash at write index x, waiting briefly to apply it.
// The payload is 1 and the hash, or 0 when this node does not have it (not applied in time, or too
// long ago).
func (s *Store) stateHashAt(ctx context.Context, x uint64) []byte {
	ctx, cancel := context.WithTimeout(ctx, hashWaitTimeout)
	defer cancel()
	if s.fsm.WaitWriteIndex(ctx, x) != nil {
		return []byte{0}
	}
	h, ok := s.fsm.HashAt(x)
	if !ok {
		return []byte{0}
	}
	return binary.BigEndian.AppendUint64([]byte{1}, h)
}

// diverged takes this node out of service: its state at index differs from the majority's.
func (s *Store) diverged(index, mine, majority uint64) {
	s.divergedFlag.Store(true)
	s.logger.Error("this node's state differs from the other members' at the same index: it stops serving",
		"index", index, "state_hash", fmt.Sprintf("%016x", mine), "majority_hash", fmt.Sprintf("%016x", majority))
	s.fail(fmt.Errorf("%w at write index %d (hash %016x, a majority of the members have %016x); move the data dir %s "+
		"aside (keep it for inspection) and restart the node empty: it rejoins and copies the state from the others",
		ErrDiverged, index, mine, majority, s.cfg.DataDir))
}

// corruptCheckLoop runs the check every CorruptCheckInterval while this node leads.
func (s *Store) corruptCheckLoop(ctx context.Context) {
	if s.cfg.CorruptCheckInterval <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.CorruptCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkStates(ctx)
	}
}

// checkStates runs one round of the check.
func (s *Store) checkStates(ctx context.Context) {
	x := s.fsm.LastWriteIndex()
	mine, ok := s.fsm.HashAt(x)
	if !ok {
		return
	}
	servers, err := s.configuration()
	if err != nil {
		return
	}
	hashes := map[string]uint64{s.cfg.NodeID: mine}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		if string(id) == s.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h, ok := s.remoteHash(ctx, id, srv, x); ok {
				mu.Lock()
				hashes[string(id)] = h
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(hashes) < 2 || ctx.Err() != nil {
		return
	}
	votes := map[uint64]int{}
	for _, h := range hashes {
		votes[h]++
	}
	if len(votes) == 1 {
		return // all agree
	}
	majority, found := uint64(0), false
	for h, n := range votes {
		if 2*n > len(hashes) {
			majority, found = h, true
		}
	}
	if !found {
		s.logger.Error("members' states differ at the same index and no majority agrees: cannot tell which is right; "+
			"compare the members' data by hand", "index", x, "hashes", fmt.Sprint(hashes))
		s.divergedFlag.Store(true)
		return
	}
	for id, h := range hashes {
		if h == majority {
			continue
		}
		s.logger.Error("a member's state differs from the majority's at the same index", "member", id, "index", x,
			"state_hash", fmt.Sprintf("%016x", h), "majority_hash", fmt.Sprintf("%016x", majority))
		if id == s.cfg.NodeID {
			s.diverged(x, h, majority)
			continue
		}
		s.tellDiverged(ctx, raft.ServerID(id), servers[raft.ServerID(id)], x, h, majority)
	}
}

func (s *Store) serverAddr(id raft.ServerID, srv raft.Server) string {
	addr := string(srv.Address)
	if a, ok := s.gossip.RaftAddr(string(id)); ok {
		addr = a
	}
	return transport.TargetAddr(string(id), addr)
}

func (s *Store) remoteHash(ctx context.Context, id raft.ServerID, srv raft.Server, x uint64) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, hashWaitTimeout+time.Second)
	defer cancel()
	addr := s.serverAddr(id, srv)
	resp, err := s.rpc.Call(ctx, addr, rpcStateHash, binary.AppendUvarint(nil, x))
	if err != nil {
		return 0, false // down, or a build without the check
	}
	payload, err := decodeResponse(addr, resp)
	if err != nil || len(payload) != 9 || payload[0] != 1 {
		return 0, false
	}
	return binary.BigEndian.Uint64(payload[1:]), true
}

func (s *Store) tellDiverged(ctx context.Context, id raft.ServerID, srv raft.Server, x, theirs, majority uint64) {
	ctx, cancel := context.WithTimeout(ctx, healthRPCTimeout)
	defer cancel()
	req := binary.BigEndian.AppendUint64(nil, x)
	req = binary.BigEndian.AppendUint64(req, theirs)
	req = binary.BigEndian.AppendUint64(req, majority)
	if _, err := s.rpc.Call(ctx, s.serverAddr(id, srv), rpcDiverged, req); err != nil {
		s.logger.Warn("could not tell a diverged member", "member", id, "err", err)
	}
}

// handleDiverged is a member told by the leader that its state differs from the majority's. It checks
// its own hash again, so that only a member whose state really is what the leader saw stops.
func (s *Store) handleDiverged(req []byte) error {
	if len(req) != 24 {
		return fmt.Errorf("%w: bad diverged payload", ErrInvalid)
	}
	x := binary.BigEndian.Uint64(req)
	theirs, majority := binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:])
	if mine, ok := s.fsm.HashAt(x); ok && mine == theirs && mine != majority {
		s.diverged(x, mine, majority)
	}
	return nil
}
