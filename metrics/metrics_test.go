package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

type fakeSource struct{ m store.MetricsState }

func (f fakeSource) Metrics() store.MetricsState { return f.m }

func TestEventsAndStateAppearUnderTheirNames(t *testing.T) {
	n := New()
	n.Watch(fakeSource{store.MetricsState{
		HasLeader: true, Term: 7, CommitIndex: 42, Keys: 3, Bytes: 99, Sessions: 5, SessionsExpired: 2,
		RaftServers:   map[string]int{"voter": 3, "nonvoter": 1},
		GossipMembers: map[string]int{"alive": 3, "dead": 1},
	}})
	n.WatchDisk(t.TempDir())
	n.LeaderChanged()
	n.EntryCommitted(5, 2*time.Millisecond)
	n.EntryFailed(2)
	n.ForwardRPC(time.Millisecond, errors.New("boom"))
	n.ReadIndexBatch(4)
	n.LogStoreCommit(time.Millisecond)
	n.SnapshotPersisted(time.Second, 1234)
	n.ObserveRequest("/v1/kv/{key}", "PUT", 200, time.Millisecond)
	n.ObserveACLDenial("permission_denied")
	n.ObserveWatchStart()
	n.ObserveWatchStart()
	n.ObserveWatchEvents(3)
	n.ObserveWatchEnd("lagging")

	assert.Equal(t, 1.0, testutil.ToFloat64(n.leaderChanges))
	assert.Equal(t, 5.0, testutil.ToFloat64(n.committed))
	assert.Equal(t, 2.0, testutil.ToFloat64(n.failed))
	assert.Equal(t, 1234.0, testutil.ToFloat64(n.snapshotSize))
	assert.Equal(t, 1.0, testutil.ToFloat64(n.httpRequests.WithLabelValues("/v1/kv/{key}", "PUT", "200")))

	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		"raftkv_server_has_leader 1", "raftkv_server_is_leader 0", "raftkv_server_ready 0",
		"raftkv_server_integrity_failed 0", "raftkv_server_term 7",
		"raftkv_server_commit_index 42", "raftkv_store_keys 3", "raftkv_store_bytes 99",
		"raftkv_sessions_live 5", "raftkv_sessions_expired_total 2",
		`raftkv_cluster_raft_servers{suffrage="voter"} 3`, `raftkv_cluster_gossip_members{state="dead"} 1`,
		"raftkv_server_write_batch_size_count 1", `raftkv_network_forward_duration_seconds_count{result="error"} 1`,
		"raftkv_disk_data_dir_free_bytes ", "go_goroutines ", "process_cpu_seconds_total ",
		`raftkv_acl_denials_total{code="permission_denied"} 1`, `raftkv_acl_denials_total{code="unauthenticated"} 0`,
		"raftkv_watch_streams 1", `raftkv_watch_streams_ended_total{reason="lagging"} 1`,
		`raftkv_watch_streams_ended_total{reason="client"} 0`, "raftkv_watch_events_sent_total 3",
	} {
		assert.Contains(t, text, want)
	}
}

func TestBridgeCarriesRaftsOwnMetrics(t *testing.T) {
	n := New()
	require.NoError(t, BridgeGoMetrics(n.Registry()))
	// What hashicorp/raft and raft-boltdb call: the process-wide go-metrics functions.
	emitHashicorp([]string{"raft", "apply"}, 3)
	emitArmon([]string{"raft", "boltdb", "storeLogs"}, 1.5)
	names := map[string]bool{}
	mfs, err := n.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	assert.True(t, names["raftkv_raft_apply"], "bridged raft counter")
	assert.True(t, names["raftkv_raft_boltdb_storeLogs"], "bridged raft-boltdb sample")
	for name := range names {
		assert.False(t, strings.Contains(name, "hostname"), name)
	}
}
