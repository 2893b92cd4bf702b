package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/store"
)

// Source is what the scrape-time collector reads; *store.Store satisfies it.
type Source interface {
	Metrics() store.MetricsState
}

// Buckets. Latencies on a LAN start well under a millisecond; a BoltDB commit with fsync takes from
// ~100 µs (NVMe) to tens of ms (cloud disks), and etcd alerts when its fsync p99 passes 0.5 s.
var (
	latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16) // 100 µs … 3.3 s
	batchBuckets   = prometheus.ExponentialBuckets(1, 2, 12)      // 1 … 2048
	snapBuckets    = prometheus.ExponentialBuckets(0.001, 4, 10)  // 1 ms … 4.4 min
)

// Node is one node's metrics. It implements store.Observer and the HTTP API's request observer.
type Node struct {
	reg *prometheus.Registry

	leaderChanges    prometheus.Counter
	committed        prometheus.Counter
	failed           prometheus.Counter
	batchSize        prometheus.Histogram
	applyDuration    prometheus.Histogram
	boltCommit       prometheus.Histogram
	snapshotDuration prometheus.Histogram
	snapshotSize     prometheus.Gauge
	forwardDuration  *prometheus.HistogramVec
	readIndexRPC     *prometheus.HistogramVec
	readIndexBatch   prometheus.Histogram
	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	aclDenials       *prometheus.CounterVec
	watchStreams     prometheus.Gauge
	watchEnded       *prometheus.CounterVec
	watchEvents      prometheus.Counter
}

var _ store.Observer = (*Node)(nil)

// New builds a node's registry with the Go runtime and process collectors and every raftkv_ metric
// that is pushed by an event. Watch adds the ones read from the store.
func New() *Node {
	n := &Node{reg: prometheus.NewRegistry()}
	n.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "raftkv_server_leader_changes_seen_total",
		Help: "Leader changes this node has seen (a new leader, this node included).",
	})
	n.committed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "raftkv_server_proposals_committed_total",
		Help: "Client writes this node, as leader, saw committed and applied.",
	})
	n.failed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "raftkv_server_proposals_failed_total",
		Help: "Client writes this node, as leader, proposed whose entry failed (not committed, or outcome unknown).",
	})
	n.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "raftkv_server_write_batch_size",
		Help:    "Client writes per log entry the leader proposed (group commit).",
		Buckets: batchBuckets,
	})
	n.applyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "raftkv_server_apply_duration_seconds",
		Help:    "Time from handing an entry of client writes to Raft until it was committed and applied on the leader.",
		Buckets: latencyBuckets,
	})
	n.boltCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "raftkv_disk_boltdb_commit_duration_seconds",
		Help:    "Duration of a BoltDB transaction storing log entries, including its fsync.",
		Buckets: latencyBuckets,
	})
	n.snapshotDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "raftkv_snapshot_save_duration_seconds",
		Help:    "Time to write a Raft snapshot to disk.",
		Buckets: snapBuckets,
	})
	n.snapshotSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "raftkv_snapshot_size_bytes",
		Help: "Size of the last Raft snapshot this node wrote.",
	})
	n.forwardDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "raftkv_network_forward_duration_seconds",
		Help:    "Latency of a follower's forwarded write batch RPC to the leader.",
		Buckets: latencyBuckets,
	}, []string{"result"})
	n.readIndexRPC = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "raftkv_network_read_index_duration_seconds",
		Help:    "Latency of a follower's read index RPC to the leader.",
		Buckets: latencyBuckets,
	}, []string{"result"})
	n.readIndexBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "raftkv_server_read_index_batch_size",
		Help:    "Linearizable reads served by one read index round.",
		Buckets: batchBuckets,
	})
	n.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "raftkv_http_requests_total",
		Help: "HTTP API requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	n.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "raftkv_http_request_duration_seconds",
		Help:    "HTTP API request latency by route, method and status code.",
		Buckets: latencyBuckets,
	}, []string{"route", "method", "code"})
	n.aclDenials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "raftkv_acl_denials_total",
		Help: "Requests the ACLs refused, by code: unauthenticated (no or unknown token), permission_denied (a right missing).",
	}, []string{"code"})
	// Watches, named after etcd's etcd_debugging_mvcc_watch_stream_total / slow_watcher_total / events_total.
	n.watchStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "raftkv_watch_streams",
		Help: "Watch streams (GET /v1/watch) this node is serving.",
	})
	n.watchEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "raftkv_watch_streams_ended_total",
		Help: "Watch streams ended, by reason: client (went away), lagging (read too slowly), compacted, no_leader, shutting_down, permission_denied, unauthenticated, internal, refused (an error answer before streaming).",
	}, []string{"reason"})
	n.watchEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "raftkv_watch_events_sent_total",
		Help: "Changes (one write index each) sent to watch streams, summed over the streams.",
	})
	n.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		n.leaderChanges, n.committed, n.failed, n.batchSize, n.applyDuration, n.boltCommit,
		n.snapshotDuration, n.snapshotSize, n.forwardDuration, n.readIndexRPC, n.readIndexBatch,
		n.httpRequests, n.httpDuration, n.aclDenials, n.watchStreams, n.watchEnded, n.watchEvents,
	)
	for _, r := range []string{"client", "lagging", "compacted", "no_leader"} {
		n.watchEnded.WithLabelValues(r)
	}
	for _, c := range []string{"unauthenticated", "permission_denied"} {
		n.aclDenials.WithLabelValues(c)
	}
	// Both results exist from the start, so a rate over them is 0 rather than absent.
	for _, r := range []string{"ok", "error"} {
		n.forwardDuration.WithLabelValues(r)
		n.readIndexRPC.WithLabelValues(r)
	}
	return n
}

// Registry is the node's registry, for bridges and tests.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Watch registers the metrics read from src at each scrape.
func (n *Node) Watch(src Source) { n.reg.MustRegister(newStateCollector(src)) }

// Handler serves the registry in the Prometheus exposition format. A collector that fails is left out
// of the answer rather than failing the whole scrape.
func (n *Node) Handler() http.Handler {
	return promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (n *Node) LeaderChanged() { n.leaderChanges.Inc() }

func (n *Node) EntryCommitted(commands int, took time.Duration) {
	n.committed.Add(float64(commands))
	n.batchSize.Observe(float64(commands))
	n.applyDuration.Observe(took.Seconds())
}

func (n *Node) EntryFailed(commands int) { n.failed.Add(float64(commands)) }

func (n *Node) ForwardRPC(took time.Duration, err error) {
	n.forwardDuration.WithLabelValues(result(err)).Observe(took.Seconds())
}

func (n *Node) ReadIndexRPC(took time.Duration, err error) {
	n.readIndexRPC.WithLabelValues(result(err)).Observe(took.Seconds())
}

func (n *Node) ReadIndexBatch(reads int) { n.readIndexBatch.Observe(float64(reads)) }

func (n *Node) LogStoreCommit(took time.Duration) { n.boltCommit.Observe(took.Seconds()) }

func (n *Node) SnapshotPersisted(took time.Duration, size int64) {
	n.snapshotDuration.Observe(took.Seconds())
	n.snapshotSize.Set(float64(size))
}

// ObserveRequest counts one HTTP request; route is the route's pattern, never the raw path, so the
// number of series stays bounded.
func (n *Node) ObserveRequest(route, method string, code int, took time.Duration) {
	c := strconv.Itoa(code)
	n.httpRequests.WithLabelValues(route, method, c).Inc()
	n.httpDuration.WithLabelValues(route, method, c).Observe(took.Seconds())
}

// ObserveWatchStart, ObserveWatchEnd and ObserveWatchEvents count watch streams (httpapi.WatchObserver).
func (n *Node) ObserveWatchStart() { n.watchStreams.Inc() }

func (n *Node) ObserveWatchEnd(reason string) {
	n.watchStreams.Dec()
	n.watchEnded.WithLabelValues(reason).Inc()
}

func (n *Node) ObserveWatchEvents(c int) { n.watchEvents.Add(float64(c)) }

// ObserveACLDenial counts one request the ACLs refused (httpapi.ACLObserver).
func (n *Node) ObserveACLDenial(code string) {
	n.aclDenials.WithLabelValues(code).Inc()
}

// stateCollector reads the store's state when scraped: gauges that are always current without the
// store pushing every change.
type stateCollector struct {
	src                                                       Source
	hasLeader, isLeader, term, commit, applied, last, writeIx *prometheus.Desc
	ready, integrity, diskStalled, diverged                   *prometheus.Desc
	appliedWrites, pending, keys, bytes, servers, members     *prometheus.Desc
	sessions, sessionsExpired                                 *prometheus.Desc
}

func newStateCollector(src Source) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		src:           src,
		hasLeader:     d("raftkv_server_has_leader", "1 if this node knows a leader, else 0."),
		isLeader:      d("raftkv_server_is_leader", "1 if this node is the leader, else 0."),
		ready:         d("raftkv_server_ready", "1 if /readyz answers 200 (a caught-up member with a leader), else 0."),
		integrity:     d("raftkv_server_integrity_failed", "1 if this node stopped serving on a fault it cannot serve through (a log entry that failed its checksum, a failed write of Raft's term or vote), else 0; its log says which."),
		diskStalled:   d("raftkv_server_disk_stalled", "1 while a write to this node's raft log has run longer than --disk-stall-timeout, else 0."),
		diverged:      d("raftkv_server_state_diverged", "1 if the leader's corruption check found this node's state to differ from the majority's at the same index (or, on the leader, found no majority), else 0."),
		term:          d("raftkv_server_term", "Current Raft term."),
		commit:        d("raftkv_server_commit_index", "Raft commit index as this node knows it."),
		applied:       d("raftkv_server_applied_index", "Raft index this node has applied."),
		last:          d("raftkv_server_last_index", "Last index in this node's Raft log."),
		writeIx:       d("raftkv_store_write_index", "Index of the last write this node's state reflects."),
		appliedWrites: d("raftkv_server_proposals_applied_total", "Client writes this node's state machine applied since it started."),
		pending:       d("raftkv_server_proposals_pending", "Client writes queued on this leader or in flight in Raft."),
		keys:          d("raftkv_store_keys", "Keys in this node's state."),
		bytes:         d("raftkv_store_bytes", "Bytes of keys and values in this node's state."),
		servers:       d("raftkv_cluster_raft_servers", "Servers in the Raft configuration by suffrage.", "suffrage"),
		members:       d("raftkv_cluster_gossip_members", "Gossip members by state.", "state"),
		sessions:      d("raftkv_sessions_live", "Live sessions in this node's state."),
		sessionsExpired: d("raftkv_sessions_expired_total",
			"Sessions this node's state machine ended because their TTL ran out, since it started (every node counts the same expiries)."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.ready, c.integrity, c.diskStalled, c.diverged, c.term, c.commit, c.applied, c.last,
		c.writeIx, c.appliedWrites, c.pending, c.keys, c.bytes, c.servers, c.members, c.sessions, c.sessionsExpired} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.src.Metrics()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(c.hasLeader, b2f(m.HasLeader))
	g(c.isLeader, b2f(m.IsLeader))
	g(c.ready, b2f(m.Ready))
	g(c.integrity, b2f(m.IntegrityFailed))
	g(c.diskStalled, b2f(m.DiskStalled))
	g(c.diverged, b2f(m.StateDiverged))
	g(c.term, float64(m.Term))
	g(c.commit, float64(m.CommitIndex))
	g(c.applied, float64(m.AppliedIndex))
	g(c.last, float64(m.LastIndex))
	g(c.writeIx, float64(m.WriteIndex))
	ch <- prometheus.MustNewConstMetric(c.appliedWrites, prometheus.CounterValue, float64(m.AppliedWrites))
	g(c.pending, float64(m.ProposalsPending))
	g(c.keys, float64(m.Keys))
	g(c.bytes, float64(m.Bytes))
	g(c.sessions, float64(m.Sessions))
	ch <- prometheus.MustNewConstMetric(c.sessionsExpired, prometheus.CounterValue, float64(m.SessionsExpired))
	for k, v := range m.RaftServers {
		g(c.servers, float64(v), k)
	}
	for k, v := range m.GossipMembers {
		g(c.members, float64(v), k)
	}
}
