package store

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/tlsutil"
)

// Config is everything a node needs to open its store. Zero values take the defaults below.
type Config struct {
	NodeID  string
	DataDir string

	RaftAddr          string // bind address of the node-to-node port (Raft and internal RPC)
	RaftAdvertise     string // address other nodes dial; empty = RaftAddr
	GossipAddr        string // bind address for gossip (UDP and TCP)
	GossipAdvertise   string
	HTTPAdvertise     string   // published by gossip so that status can show every node's API address
	Join              []string // gossip addresses of existing members
	BootstrapExpect   int      // form a new cluster once this many nodes see each other (0: never)
	LeaveOnTerminate  bool     // leave the cluster gracefully on Close (otherwise Close looks like a failure and the node stays a voter)
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotBytes and TrailingBytes bound the log by bytes as SnapshotThreshold and TrailingLogs do
	// by entries (logbytes.go): a snapshot once the entries since the last one exceed SnapshotBytes, and
	// at most TrailingBytes of entries (but at least one) kept after it.
	SnapshotBytes int64
	TrailingBytes int64
	// LogCacheBytes bounds the recent log entries kept in memory for replication (logcache.go).
	LogCacheBytes       int64
	RequestTimeout      time.Duration // bound on any request, including the wait for a leader
	ReconcileInterval   time.Duration
	GossipProbeInterval time.Duration // tests shorten failure detection; 0 keeps memberlist's default
	// MaxKeySize and MaxValueSize bound the writes this node accepts from followers, as leader (the
	// HTTP API checks its own clients' writes); give every node the same values.
	MaxKeySize   int
	MaxValueSize int64
	// MaxSessions bounds the live sessions: a create is refused (ErrTooManySessions) while this node's
	// state holds that many. Checked by the node that receives the create, against its own applied
	// state, so creates in flight at once can overshoot it by their number; give every node the same.
	MaxSessions int
	// DedupWindow and DedupMaxKeys bound the idempotency records: a retry with the same key is answered
	// from the record for at least DedupWindow after the first application (by the leaders' clocks),
	// unless more than DedupMaxKeys newer keys pushed it out. The leader stamps its values into every
	// idempotent write, so the FSM expires the same records everywhere even if nodes disagree.
	DedupWindow  time.Duration
	DedupMaxKeys int
	// SessionCheckpointInterval: how often the leader records the remaining TTL of sessions not renewed
	// since the last time, so that a node that restarts counts down from it (0: the default).
	SessionCheckpointInterval time.Duration
	// DiskStallTimeout: a raft log write running longer than this is a stalled disk: the node reports
	// not ready, and a leader stops sending heartbeats so that the others elect another (stall.go).
	DiskStallTimeout time.Duration
	// CorruptCheckInterval: how often the leader compares the members' state hashes (corruptcheck.go);
	// 0 takes the default, a negative value turns the check off.
	CorruptCheckInterval time.Duration

	// PeerTLS, when set, runs the node port over mutual TLS with this node certificate and cluster CA:
	// only nodes with a certificate from the CA connect, a dialer checks that the node it reached holds
	// the id it dialed, and the leader adds a gossip member to Raft only once it proved its id that way.
	PeerTLS *tlsutil.Source
	// GossipKeys encrypt gossip (the first one encrypts, all decrypt) when the data dir holds no
	// keyring yet; afterwards the keyring saved there (keyring.go) is used. GossipPlaintextIn and
	// GossipPlaintextOut relax encryption for turning it on in a running cluster.
	GossipKeys                            [][]byte
	GossipPlaintextIn, GossipPlaintextOut bool

	Logger *slog.Logger
	// Observer is told about events metrics count; nil observes nothing.
	Observer Observer
	// Changes, if set, receives every write's changes from the FSM (watch.Hub): what watches serve.
	Changes fsm.ChangeSink

	// wrapLogStore, when set, wraps Raft's log store (tests inject slow or failing disks with it).
	wrapLogStore func(raft.LogStore) raft.LogStore
	// wrapStableStore, when set, wraps Raft's stable store (term and vote), for the same purpose.
	wrapStableStore func(raft.StableStore) raft.StableStore
	// reportApplied, when set, changes what this node answers when asked its applied index (tests
	// make a member lie with it).
	reportApplied func(applied uint64) uint64
	// progressInterval and readyLagWindow: see progress.go (tests shorten them).
	progressInterval, readyLagWindow time.Duration
	// logBoundInterval: how often boundLogBytes looks (tests shorten it).
	logBoundInterval time.Duration
}

// Defaults for a single node on loopback.
const (
	DefaultRaftAddr          = "127.0.0.1:7001"
	DefaultGossipAddr        = "127.0.0.1:7002"
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 30 * time.Second
	DefaultTrailingLogs      = 10240
	// DefaultSnapshotBytes and DefaultTrailingBytes: the log holds at most ~192 MiB of entries (plus
	// what arrives while a snapshot is taken), where 10240 entries of 1 MiB values were 10 GiB.
	DefaultSnapshotBytes = 128 << 20
	DefaultTrailingBytes = 64 << 20
	// DefaultLogCacheBytes: recent entries in memory for replication; a follower further behind is
	// served from BoltDB.
	DefaultLogCacheBytes     = 32 << 20
	logBoundInterval         = time.Second
	DefaultRequestTimeout    = 5 * time.Second
	DefaultReconcileInterval = 2 * time.Second
	DefaultMaxKeySize        = 1024
	DefaultMaxValueSize      = 1 << 20
	// DefaultMaxSessions: ten times what `make bench` keeps alive; ~300 B of state each on every node.
	DefaultMaxSessions = 100000
	DefaultDedupWindow = 10 * time.Minute
	// DefaultDiskStallTimeout: a healthy fsync takes milliseconds and a slow one well under a second;
	// five seconds of one write is a disk that has stopped, not a busy one.
	DefaultDiskStallTimeout = 5 * time.Second
	// DefaultDedupMaxKeys: a record costs about its key plus 100 bytes, so ~30 MB at 64-byte keys.
	DefaultDedupMaxKeys = 1 << 18
	// MaxIdempotencyKeySize bounds an Idempotency-Key, which the FSM keeps for the whole window.
	MaxIdempotencyKeySize = 128
)

func (c *Config) applyDefaults() {
	if c.RaftAddr == "" {
		c.RaftAddr = DefaultRaftAddr
	}
	if c.GossipAddr == "" {
		c.GossipAddr = DefaultGossipAddr
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.TrailingBytes == 0 {
		c.TrailingBytes = DefaultTrailingBytes
	}
	if c.LogCacheBytes == 0 {
		c.LogCacheBytes = DefaultLogCacheBytes
	}
	if c.logBoundInterval <= 0 {
		c.logBoundInterval = logBoundInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.CorruptCheckInterval == 0 {
		c.CorruptCheckInterval = DefaultCorruptCheckInterval
	}
	if c.DiskStallTimeout == 0 {
		c.DiskStallTimeout = DefaultDiskStallTimeout
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.progressInterval <= 0 {
		c.progressInterval = progressInterval
	}
	if c.readyLagWindow <= 0 {
		c.readyLagWindow = readyLagWindow
	}
	if c.MaxKeySize <= 0 {
		c.MaxKeySize = DefaultMaxKeySize
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = DefaultMaxValueSize
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.DedupMaxKeys == 0 {
		c.DedupMaxKeys = DefaultDedupMaxKeys
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id is empty"))
	} else if len(c.NodeID) > 128 {
		errs = append(errs, fmt.Errorf("node id %q is longer than 128 bytes", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	for name, addr := range map[string]string{
		"raft address": c.RaftAddr, "gossip address": c.GossipAddr,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if c.PeerTLS != nil {
		if cert := c.PeerTLS.Certificate(); cert == nil || c.PeerTLS.Pool() == nil {
			errs = append(errs, errors.New("peer TLS needs a node certificate and the cluster CA"))
		} else if id, ok := tlsutil.NodeID(cert.Leaf); !ok || id != c.NodeID {
			// Its peers check the id in the certificate against the id they dial: a node whose
			// certificate names another id would be refused by all of them.
			errs = append(errs, fmt.Errorf("the peer certificate is for node %q, not for this node (%q): issue one with \"raftkv tls cert create --node %s\"", id, c.NodeID, c.NodeID))
		}
	}
	for _, k := range c.GossipKeys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			errs = append(errs, fmt.Errorf("a gossip key is 16, 24 or 32 bytes, got %d", n))
		}
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("bootstrap-expect must be >= 0, got %d", c.BootstrapExpect))
	}
	if c.TrailingLogs < 1 {
		errs = append(errs, errors.New("trailing logs must be >= 1"))
	}
	if c.SnapshotBytes < 0 || c.TrailingBytes < 0 || c.LogCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("snapshot bytes, trailing bytes and log cache bytes must be positive, got %d, %d and %d",
			c.SnapshotBytes, c.TrailingBytes, c.LogCacheBytes))
	}
	if c.SnapshotInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("snapshot interval %s is too short (min 100ms)", c.SnapshotInterval))
	}
	if c.DiskStallTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("disk stall timeout %s is too short (min 100ms)", c.DiskStallTimeout))
	}
	if c.RequestTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("request timeout %s is too short (min 100ms)", c.RequestTimeout))
	}
	if c.DedupWindow < time.Second {
		errs = append(errs, fmt.Errorf("dedup window %s is too short (min 1s)", c.DedupWindow))
	}
	if c.DedupMaxKeys < 1 {
		errs = append(errs, fmt.Errorf("dedup max keys must be >= 1, got %d", c.DedupMaxKeys))
	}
	return errors.Join(errs...)
}
