package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func threeNodeStatus() clusterStatus {
	leader := clusterMember{ID: "node1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:7000",
		GossipAddr: "127.0.0.1:7002", Suffrage: "voter", GossipState: "alive", Leader: true}
	return clusterStatus{
		NodeID: "node2", State: "Follower", Leader: &leader, Term: 3,
		CommitIndex: 42, AppliedIndex: 41, LastIndex: 43,
		Members: []clusterMember{
			{ID: "node3", RaftAddr: "127.0.0.1:7021", Suffrage: "nonvoter", GossipState: "unknown"},
			leader,
			{ID: "node2", RaftAddr: "127.0.0.1:7011", HTTPAddr: "127.0.0.1:7010", Suffrage: "voter", GossipState: "alive"},
			{ID: "node4", HTTPAddr: "127.0.0.1:7030", Suffrage: "none", GossipState: "alive"},
		},
	}
}

func TestRenderStatus(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	renderStatus(&b, threeNodeStatus())
	assert.Equal(t, ""+
		"Node:     node2 (follower)\n"+
		"Leader:   node1 (http 127.0.0.1:7000, raft 127.0.0.1:7001)\n"+
		"Term:     3\n"+
		"Indexes:  commit 42, applied 41, last log 43\n"+
		"\n"+
		"ID     STATE     SUFFRAGE  GOSSIP   RAFT ADDR       HTTP ADDR\n"+
		"node1  leader    voter     alive    127.0.0.1:7001  127.0.0.1:7000\n"+
		"node2  follower  voter     alive    127.0.0.1:7011  127.0.0.1:7010\n"+
		"node3  follower  nonvoter  unknown  127.0.0.1:7021  -\n"+
		"node4  -         none      alive    -               127.0.0.1:7030\n",
		b.String())

	b.Reset()
	renderStatus(&b, clusterStatus{NodeID: "solo", State: "Candidate"})
	assert.Contains(t, b.String(), "Leader:   none known\n")
	assert.Contains(t, b.String(), "Node:     solo (candidate)\n")
}

func TestClusterStatusCommand(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setStatus(threeNodeStatus())

	code, out, errOut := cli(t, "", "cluster", "status", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Leader:   node1 (http 127.0.0.1:7000, raft 127.0.0.1:7001)\n")
	assert.Contains(t, out, "node1  leader    voter")

	code, out, errOut = cli(t, "", "cluster", "status", "--json", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	var got clusterStatus
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, threeNodeStatus(), got)
	assert.Contains(t, out, `"last_log_index":43`)
}

func TestClusterStatusRetriesNotReady(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setStatus(threeNodeStatus())
	f.setInject(failFirst(1, 503, "not_ready"))
	code, _, errOut := cli(t, "", "cluster", "status", "--addr", deadAddr(t)+","+addr)
	require.Equal(t, 0, code, errOut)
}

func TestClusterJoin(t *testing.T) {
	t.Parallel()
	f1, addr1 := newFakeAPI(t)
	f2, addr2 := newFakeAPI(t)
	// node 1 cannot reach the first gossip address; it gets the second.
	f1.setInject(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 1 {
			writeFakeError(w, 400, "invalid_request", "join 10.0.0.1:7002: no route", nil)
			return true
		}
		return false
	})
	code, out, errOut := cli(t, "", "cluster", "join", "10.0.0.1:7002,127.0.0.1:7002", "--addr", addr1+","+addr2)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, addr1+": joined the cluster via 127.0.0.1:7002\n"+addr2+": joined the cluster via 10.0.0.1:7002\n", out)
	joins1, _, _ := f1.calls()
	joins2, _, _ := f2.calls()
	assert.Equal(t, []string{"127.0.0.1:7002"}, joins1)
	assert.Equal(t, []string{"10.0.0.1:7002"}, joins2)
}

func TestClusterJoinFailure(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setInject(failFirst(10, 400, "invalid_request"))
	code, _, errOut := cli(t, "", "cluster", "join", "h:1", "--addr", addr)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "raftkv: cluster join on "+addr)
	assert.Contains(t, errOut, "code invalid_request")
}

func TestClusterLeave(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	code, out, errOut := cli(t, "", "cluster", "leave", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, addr+": left the cluster\n", out)
	_, leaves, _ := f.calls()
	assert.Equal(t, 1, leaves)
}

func TestClusterRemove(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setStatus(threeNodeStatus())
	code, out, errOut := cli(t, "", "cluster", "remove", "node3", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "removed node3\n", out)
	_, _, removed := f.calls()
	assert.Equal(t, []string{"node3"}, removed)

	code, _, errOut = cli(t, "", "cluster", "remove", "node9", "--addr", addr)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "code unknown_member")
}

func TestClusterRemoveRefusedForTheQuorumUnlessForced(t *testing.T) {
	t.Parallel()
	f, addr := newFakeAPI(t)
	f.setStatus(threeNodeStatus())
	code, _, errOut := cli(t, "", "cluster", "remove", "node2", "--addr", addr)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "code would_lose_quorum")
	code, out, errOut := cli(t, "", "cluster", "remove", "--force", "node2", "--addr", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "removed node2\n", out)
}
