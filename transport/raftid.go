package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// raftid.go: with mutual TLS, Raft requests are taken only from the node their certificate names.
//
// Raft trusts the sender id in every request's header: the leader id of an AppendEntries, the
// candidate of a RequestVote. Mutual TLS proves which node is at the other end of a connection, but
// raft's NetworkTransport decodes requests without telling which connection they came on, so a node
// with a valid certificate for n3 could send AppendEntries as n1 (a higher term and a forged entry
// committed at once). So under mutual TLS the port hands the Raft connections of each proven node id to
// a NetworkTransport of their own, and the requests each one decodes are checked against that id
// before Raft sees them; a request claiming another sender is answered with an error.

// ErrSenderMismatch: a Raft request names another sender than the certificate of its connection.
var ErrSenderMismatch = errors.New("raft request names another sender than its connection's certificate")

// RaftTransport is raft's NetworkTransport on a Mux: it dials, and without mutual TLS it also
// accepts; with mutual TLS every proven peer id has its own accepting transport (above).
type RaftTransport struct {
	*raft.NetworkTransport
	mux    *Mux
	cfg    raft.NetworkTransportConfig
	logger *slog.Logger

	rpcs chan raft.RPC // with mutual TLS: the checked requests of every peer

	mu        sync.Mutex
	heartbeat func(raft.RPC)
	peers     map[string]*raft.NetworkTransport
	closed    bool
	done      chan struct{}
	wg        sync.WaitGroup
}

// NewRaftTransport is raft.NewNetworkTransportWithConfig on m (cfg.Stream is set here).
func NewRaftTransport(m *Mux, cfg raft.NetworkTransportConfig, logger *slog.Logger) *RaftTransport {
	cfg.Stream = m.RaftLayer()
	t := &RaftTransport{mux: m, cfg: cfg, logger: logger, rpcs: make(chan raft.RPC),
		peers: map[string]*raft.NetworkTransport{}, done: make(chan struct{})}
	t.NetworkTransport = raft.NewNetworkTransportWithConfig(&cfg)
	if m.TLS() {
		m.onRaftPeer(t.addPeer)
	}
	return t
}

// addPeer starts the accepting transport for the connections of peer id.
func (t *RaftTransport) addPeer(id string, ln *subListener) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.peers[id] != nil {
		return
	}
	cfg := t.cfg
	cfg.Stream = &raftLayer{subListener: ln, mux: t.mux}
	nt := raft.NewNetworkTransportWithConfig(&cfg)
	nt.SetHeartbeatHandler(func(rpc raft.RPC) { t.dispatch(id, rpc) })
	t.peers[id] = nt
	t.wg.Add(1)
	go t.pump(id, nt.Consumer())
}

func (t *RaftTransport) pump(id string, in <-chan raft.RPC) {
	defer t.wg.Done()
	for {
		select {
		case rpc := <-in:
			t.dispatch(id, rpc)
		case <-t.done:
			return
		}
	}
}

// dispatch hands rpc, received from a connection proven to be peer's, to Raft if it claims to come
// from peer, and refuses it otherwise.
func (t *RaftTransport) dispatch(peer string, rpc raft.RPC) {
	if claimed, ok := claimedSender(rpc.Command); !ok || !sameSender(claimed, peer) {
		if rpc.Reader != nil {
			io.Copy(io.Discard, rpc.Reader) // the snapshot's bytes, so the connection stays in step
		}
		if t.mux.throttle.Allow("sender:" + peer) {
			t.logger.Warn("refused a raft request that names another sender than its connection's certificate",
				"certificate_node", peer, "claimed_id", string(claimed.ID), "claimed_addr", string(claimed.Addr),
				"request", fmt.Sprintf("%T", rpc.Command))
		}
		rpc.Respond(nil, fmt.Errorf("%w: the certificate names %q, the request %q", ErrSenderMismatch, peer, claimed.ID))
		return
	}
	t.mu.Lock()
	hb := t.heartbeat
	t.mu.Unlock()
	if hb != nil && isHeartbeat(rpc.Command) {
		hb(rpc)
		return
	}
	select {
	case t.rpcs <- rpc:
	case <-t.done:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	}
}

func claimedSender(cmd any) (raft.RPCHeader, bool) {
	h, ok := cmd.(raft.WithRPCHeader)
	if !ok {
		return raft.RPCHeader{}, false
	}
	return h.GetRPCHeader(), true
}

// sameSender: the header's id is peer's, and its address, when it names a node (id@host:port, as this
// cluster's nodes encode themselves), names peer too: raft takes a leader's address from it.
func sameSender(h raft.RPCHeader, peer string) bool {
	if string(h.ID) != peer {
		return false
	}
	if i := bytes.LastIndexByte(h.Addr, '@'); i >= 0 && string(h.Addr[:i]) != peer {
		return false
	}
	return true
}

// isHeartbeat mirrors the NetworkTransport's test for its heartbeat fast path.
func isHeartbeat(cmd any) bool {
	req, ok := cmd.(*raft.AppendEntriesRequest)
	return ok && req.Term != 0 && (len(req.Addr) > 0 || len(req.Leader) > 0) &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 && len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// Consumer is where Raft takes its requests from.
func (t *RaftTransport) Consumer() <-chan raft.RPC {
	if t.mux.TLS() {
		return t.rpcs
	}
	return t.NetworkTransport.Consumer()
}

// SetHeartbeatHandler installs Raft's heartbeat fast path.
func (t *RaftTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.mu.Lock()
	t.heartbeat = cb
	t.mu.Unlock()
	t.NetworkTransport.SetHeartbeatHandler(cb)
}

// Close closes every transport and waits for the pumps.
func (t *RaftTransport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	peers := t.peers
	t.peers = map[string]*raft.NetworkTransport{}
	t.mu.Unlock()
	for _, nt := range peers {
		nt.Close()
	}
	err := t.NetworkTransport.Close()
	t.wg.Wait()
	return err
}

var (
	_ raft.Transport   = (*RaftTransport)(nil)
	_ raft.WithPreVote = (*RaftTransport)(nil)
	_ raft.WithClose   = (*RaftTransport)(nil)
)
