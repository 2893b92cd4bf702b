package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

// Admission: whether this node may take part in elections.
//
// hashicorp/raft grants a vote, and a pre-vote, whenever its configuration is empty (it assumes a
// bootstrap). A node restarted with its old id and an empty data dir has an empty configuration and
// no memory of what it acknowledged or whom it voted for, yet the others may still count it as the
// voter it was: its vote can elect a node whose log lacks committed writes. So a data dir starts out
// pending, and a pending node neither grants nor asks for votes, nor starts an election when asked to
// take over leadership. It is admitted, for good (node.json records it), when it bootstraps a cluster
// or when the replicated member record for its id names its own data dir: the leader writes that
// record only after the node is in the configuration as this incarnation (reconcile removes the old
// one first). Data dirs of builds before admission have no pending flag and are admitted.

var errNotAdmitted = errors.New("this node is not yet admitted as a member under its current data dir; it does not vote")

// admitted reports whether this node may vote, admitting it first if the cluster has recorded this
// data dir as its incarnation. Cheap once admitted.
func (s *Store) admitted() bool {
	if s.admittedFlag.Load() {
		return true
	}
	if rec, ok := s.fsm.MemberDataID(s.cfg.NodeID); !ok || rec != s.ident.DataID {
		return false
	}
	if err := s.admit("the cluster recorded this data dir as the member's"); err != nil {
		s.logger.Error("cannot record the admission in the data dir; still not voting", "err", err)
		return false
	}
	return true
}

// admit clears the data dir's pending flag, durably, before the node acts on it: a restart must not
// make a node that voted pending again, or a cluster whose every member restarts could elect no one.
func (s *Store) admit(why string) error {
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	if s.admittedFlag.Load() {
		return nil
	}
	id := s.ident
	id.Pending = false
	b, _ := json.Marshal(id)
	path := filepath.Join(s.cfg.DataDir, identityFile)
	if err := writeFileSync(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	s.admittedFlag.Store(true)
	s.logger.Info("admitted: this node now votes", "reason", why, "data_id", id.DataID)
	return nil
}

// votingGate is Raft's transport with elections closed to a node that is not admitted: incoming
// RequestVote and RequestPreVote are refused before Raft sees them (nothing is updated: not the term,
// not the vote), TimeoutNow is refused, and the node sends no vote requests of its own.
type votingGate struct {
	*transport.RaftTransport
	admitted func() bool
	localID  []byte
	logger   *slog.Logger

	rpcs      chan raft.RPC
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func newVotingGate(inner *transport.RaftTransport, localID string, admitted func() bool, logger *slog.Logger) *votingGate {
	g := &votingGate{RaftTransport: inner, admitted: admitted, localID: []byte(localID), logger: logger, rpcs: make(chan raft.RPC), done: make(chan struct{})}
	g.wg.Add(1)
	go g.pump(inner.Consumer())
	return g
}

func (g *votingGate) Consumer() <-chan raft.RPC { return g.rpcs }

func (g *votingGate) pump(in <-chan raft.RPC) {
	defer g.wg.Done()
	for {
		var rpc raft.RPC
		select {
		case <-g.done:
			return
		case rpc = <-in:
		}
		if g.refused(rpc) {
			continue
		}
		select {
		case g.rpcs <- rpc:
		case <-g.done:
			return
		}
	}
}

// refused answers rpc itself when it is an election request this node must not take part in.
func (g *votingGate) refused(rpc raft.RPC) bool {
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest, *raft.RequestPreVoteRequest, *raft.TimeoutNowRequest:
		if g.admitted() {
			return false
		}
		var from []byte
		switch req := req.(type) {
		case *raft.RequestVoteRequest:
			from = req.ID
			// The candidate's own term: no reason for it to step down, and no grant.
			rpc.Respond(&raft.RequestVoteResponse{RPCHeader: g.header(), Term: req.Term}, nil)
		case *raft.RequestPreVoteRequest:
			from = req.ID
			rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: g.header(), Term: req.Term}, nil)
		case *raft.TimeoutNowRequest:
			from = req.ID
			rpc.Respond(nil, errNotAdmitted)
		}
		if rpc.Reader != nil {
			io.Copy(io.Discard, rpc.Reader)
		}
		g.logger.Warn("refused an election request: not admitted under this data dir yet", "from", string(from), "request", fmt.Sprintf("%T", req))
		return true
	}
	return false
}

func (g *votingGate) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: g.localID,
		Addr: g.EncodePeer(raft.ServerID(g.localID), g.LocalAddr())}
}

func (g *votingGate) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if !g.admitted() {
		return errNotAdmitted
	}
	return g.RaftTransport.RequestVote(id, target, args, resp)
}

func (g *votingGate) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if !g.admitted() {
		return errNotAdmitted
	}
	return g.RaftTransport.RequestPreVote(id, target, args, resp)
}

// Close stops the gate, then the transport. Raft calls it on shutdown; Open's undo may call it again.
func (g *votingGate) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	err := g.RaftTransport.Close()
	g.wg.Wait()
	return err
}

var (
	_ raft.Transport   = (*votingGate)(nil)
	_ raft.WithPreVote = (*votingGate)(nil)
	_ raft.WithClose   = (*votingGate)(nil)
)
