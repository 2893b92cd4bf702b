package store

import (
	"encoding/binary"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/tlsutil/tlstest"
	"github.com/raftkv/raftkv/transport"
)

// A member holds a certificate for its own id only: Raft traffic it sends claiming another member's id
// (here an AppendEntries as the leader, with a higher term and a forged write committed at once) is
// refused by the receiver before Raft sees it, and changes nothing.
func TestRaftRequestsClaimingAnotherSenderThanTheCertificateAreRefused(t *testing.T) {
	certs := tlstest.NodeCerts(t)
	c := newTestCluster(t)
	c.configure = func(id string, cfg *Config) { cfg.PeerTLS = certs(id) }
	c.startCluster(3)
	leader := c.leader()
	victim := c.follower()
	var forger string
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != leader && id != victim {
			forger = id
		}
	}
	v := c.nodes[victim].store

	// The forger's own node port, with its real certificate, sends through a Raft transport of its own.
	mux, err := transport.ListenTLS("127.0.0.1:0", "", certs(forger), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { mux.Close() })
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: mux.RaftLayer(), MaxPool: 1, Timeout: 5 * time.Second})
	t.Cleanup(func() { trans.Close() })

	stats := v.raft.Stats()
	lastTerm, err := strconv.ParseUint(stats["last_log_term"], 10, 64)
	require.NoError(t, err)
	last := v.raft.LastIndex()
	term := v.raft.CurrentTerm()
	put := fsm.Seal(fsm.Command{Op: fsm.OpPut, Key: "forged", Value: []byte("by " + forger)}.Encode())
	leaderAddr := transport.TargetAddr(leader, c.nodes[leader].raftAddr)
	req := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leader), Addr: []byte(leaderAddr)},
		Term:              term + 1,
		PrevLogEntry:      last,
		PrevLogTerm:       lastTerm,
		Entries:           []*raft.Log{{Index: last + 1, Term: term + 1, Type: raft.LogCommand, Data: put}},
		LeaderCommitIndex: last + 1,
	}
	var resp raft.AppendEntriesResponse
	err = trans.AppendEntries(raft.ServerID(victim), raft.ServerAddress(transport.TargetAddr(victim, c.nodes[victim].raftAddr)), req, &resp)
	require.Error(t, err, "an AppendEntries claiming to come from %s over %s's certificate was answered: %+v", leader, forger, resp)
	require.ErrorContains(t, err, "certificate")
	require.Never(t, func() bool { _, ok := v.fsm.Get("forged"); return ok }, time.Second, 20*time.Millisecond,
		"the forged write was applied")
	require.Less(t, v.raft.CurrentTerm(), term+1, "the forged term was adopted")

	// The same forger under its own id is a member like any other: Raft answers it (and refuses the
	// stale term), which shows the refusal above was the identity check, not the connection.
	req.RPCHeader.ID, req.RPCHeader.Addr = []byte(forger), []byte(transport.TargetAddr(forger, mux.Addr().String()))
	req.Term, req.Entries, req.LeaderCommitIndex = 1, nil, 0
	resp = raft.AppendEntriesResponse{}
	require.NoError(t, trans.AppendEntries(raft.ServerID(victim), raft.ServerAddress(transport.TargetAddr(victim, c.nodes[victim].raftAddr)), req, &resp))
	require.False(t, resp.Success)

	// Nor can a member that is not the leader tell another one that its state diverged (which stops it).
	rpc := transport.NewRPCClient(mux, 5*time.Second)
	t.Cleanup(func() { rpc.Close() })
	x, err := c.nodes[c.leader()].store.Put(ctxT(t), "k", []byte("v"), Precondition{})
	require.NoError(t, err)
	var hash uint64
	require.Eventually(t, func() (ok bool) { hash, ok = v.fsm.HashAt(x); return ok }, waitFor, 20*time.Millisecond)
	payload := binary.BigEndian.AppendUint64(nil, x)
	payload = binary.BigEndian.AppendUint64(payload, hash)
	payload = binary.BigEndian.AppendUint64(payload, hash+1)
	raw, err := rpc.Call(ctxT(t), transport.TargetAddr(victim, c.nodes[victim].raftAddr), rpcDiverged, payload)
	require.NoError(t, err)
	_, err = decodeResponse(victim, raw)
	require.ErrorContains(t, err, "not the leader")
	require.NoError(t, v.Ready(), "a member stopped serving on another member's word")
}
