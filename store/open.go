package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/session"
	"github.com/raftkv/raftkv/transport"
)

const (
	raftDBFile       = "raft.db"
	snapshotsRetain  = 2
	logCacheSize     = 1024
	raftDialTimeout  = 10 * time.Second
	rpcDialTimeout   = 2 * time.Second
	raftShutdownWait = 10 * time.Second
	// gossipReconnectInterval: how often members believed dead are tried again.
	gossipReconnectInterval = 5 * time.Second
)

// Store is one node's replicated key-value store.
type Store struct {
	cfg    Config
	logger *slog.Logger
	obs    Observer
	ident  identity

	fsm    *fsm.FSM
	raft   *raft.Raft
	bolt   *raftboltdb.BoltStore
	disk   *diskGuard // between Raft and bolt: names storage faults, fails the node on fatal ones
	mux    *transport.Mux
	rpcSrv *transport.RPCServer
	rpc    *transport.RPCClient
	gossip *transport.Gossip
	reads  *readBatcher // read index rounds while leading
	// remoteReads batches the read index requests a follower sends to the leader.
	remoteReads *readBatcher
	forwarder   *forwarder // batches writes a follower sends to the leader
	logSizes    *logSizes  // the size of every log entry, to bound the log by bytes (logbytes.go)
	proposer    *proposer  // batches the writes this node, as leader, hands to Raft
	// sessions counts session TTLs down on this node's clock (the FSM's session sink); the leader loop
	// runs its expiry and checkpoints.
	sessions *session.Tracker
	progress *progress // the leader's applied index over time, as this node follows it
	// netLogThrottle rate-limits the warnings of Raft's network transport (hclog.go).
	netLogThrottle *transport.LogThrottle

	// readyTerm is the term in which this node, as leader, has committed and applied an entry of its
	// own. Until then its commit index may lag entries committed by the previous leader, so it must
	// not hand out read indexes (Raft §6.4; consul #2644).
	readyTerm atomic.Uint64

	restoring restoreGate // one restore at a time

	// heartbeatsMuted: this leader's disk has stalled; its transport sends no AppendEntries (stall.go).
	heartbeatsMuted atomic.Bool
	// replView: what each follower acknowledged to this node as leader; promotion reads it.
	replView *replicationView
	// divergedFlag: the corruption check found this node's state (or the members') to differ.
	divergedFlag atomic.Bool

	// failErr is set once, when the node stops serving for good (see fail); failCh is closed then.
	failOnce sync.Once
	failErr  atomic.Pointer[error]
	failCh   chan struct{}

	// admittedFlag: this node may vote (admission.go); admitMu serializes admitting it.
	admittedFlag atomic.Bool
	admitMu      sync.Mutex
	// keyringMu serializes gossip keyring changes with saving them (keyring.go).
	keyringMu sync.Mutex

	// wipedRemovedAt: when reconcile removed a member that came back wiped (leader loop only).
	wipedRemovedAt map[string]time.Time

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the node's data dir, starts Raft, the node-to-node port and gossip, and
// begins joining or bootstrapping a cluster in the background. It returns once the node is running,
// not once it is part of a cluster: Ready says that.
func Open(cfg Config) (_ *Store, err error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, startupStorageError("create data dir", cfg.DataDir, err)
	}
	hadLog, err := fileExists(filepath.Join(cfg.DataDir, raftDBFile))
	if err != nil {
		return nil, startupStorageError("look for the raft log", cfg.DataDir, err)
	}
	ident, hasIdent, err := readIdentity(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if hasIdent && !hadLog {
		return nil, errPartialWipe(cfg.DataDir, ident)
	}

	s := &Store{cfg: cfg, logger: cfg.Logger, obs: cfg.Observer, fsm: fsm.New(), wipedRemovedAt: map[string]time.Time{},
		failCh: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var undo []func()
	defer func() {
		if err != nil {
			s.cancel()
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if s.bolt, err = openBolt(cfg.DataDir); err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.bolt.Close() })
	s.disk = &diskGuard{dir: cfg.DataDir, logger: s.logger.With("component", "storage"), fail: s.fail,
		failed: s.failCh, closed: s.ctx.Done()}
	var disk raft.LogStore = timedLogStore{LogStore: s.bolt, obs: s.obs}
	if cfg.wrapLogStore != nil {
		disk = cfg.wrapLogStore(disk)
	}
	var logs raft.LogStore
	s.logSizes = &logSizes{LogStore: guardedLogs{LogStore: disk, g: s.disk}}
	if logs, err = newLogCache(s.logSizes, logCacheSize, cfg.LogCacheBytes); err != nil {
		return nil, fmt.Errorf("log cache: %w", err)
	}
	var stableDisk raft.StableStore = s.bolt
	if cfg.wrapStableStore != nil {
		stableDisk = cfg.wrapStableStore(stableDisk)
	}
	stable := guardedStable{StableStore: stableDisk, g: s.disk}
	raftLog := newHclog(s.logger, "raft")
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetain, raftLog)
	if err != nil {
		return nil, startupStorageError("open snapshot store", cfg.DataDir, err)
	}
	snaps := timedSnapshots{SnapshotStore: fileSnaps, obs: s.obs}

	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, startupStorageError("read raft state", cfg.DataDir, err)
	}
	if !hasIdent {
		if hasState {
			return nil, fmt.Errorf("%w: %w: data dir %s has a raft log but no %s; restore it or wipe the directory to rejoin as a new member",
				ErrDataDir, ErrCorrupt, cfg.DataDir, identityFile)
		}
		if ident, err = newIdentity(cfg.DataDir, cfg.NodeID); err != nil {
			return nil, err
		}
	}
	s.ident = ident
	s.admittedFlag.Store(!ident.Pending)

	if s.mux, err = transport.ListenTLS(cfg.RaftAddr, cfg.RaftAdvertise, cfg.PeerTLS, s.logger.With("component", "mux")); err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.mux.Close() })
	s.mux.SetLocalID(cfg.NodeID)
	addrs := &gossipAddresses{}
	s.netLogThrottle = transport.NewLogThrottle(s.logger.With("component", "raft"))
	netLog := &hclogAdapter{logger: s.logger.With("component", "raft"), name: "raft", throttle: s.netLogThrottle}
	netTrans := transport.NewRaftTransport(s.mux, raft.NetworkTransportConfig{
		ServerAddressProvider: addrs,
		MaxPool:               3,
		Timeout:               raftDialTimeout,
		Logger:                netLog,
		// Pipelining off: on a LAN it does not pay (raft #541), and a failed AppendEntries can wedge a
		// pipelined follower until the leader restarts (raft #611/#612).
		MaxRPCsInFlight: 1,
	}, s.logger.With("component", "raft-transport"))
	s.replView = newReplicationView()
	trans := muteGate{votingGate: newVotingGate(netTrans, cfg.NodeID, s.admitted, s.logger.With("component", "raft-transport")),
		muted: s.heartbeatsMuted.Load, seen: s.replView}
	undo = append(undo, func() { trans.Close() })

	notify := make(chan bool, 1)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = raftLog
	rc.NotifyCh = notify
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}
	if cfg.Changes != nil {
		s.fsm.SetChangeSink(cfg.Changes)
	}
	s.sessions = session.New(session.Config{CheckpointInterval: cfg.SessionCheckpointInterval,
		Logger: s.logger.With("component", "sessions")})
	s.fsm.SetSessionSink(s.sessions)
	if s.raft, err = newRaft(rc, s.fsm, logs, stable, snaps, trans); err != nil {
		return nil, startupStorageError("start raft on the data dir", cfg.DataDir, err)
	}
	undo = append(undo, func() { s.raft.Shutdown().Error() })
	s.reads = newReadBatcher(s.confirmReadIndex, s.obs)
	s.remoteReads = newReadBatcher(s.confirmReadIndexViaLeader, s.obs)
	s.forwarder = newForwarder(s)
	s.proposer = newProposer(s)
	s.progress = newProgress(cfg.progressInterval, cfg.readyLagWindow)

	s.rpc = transport.NewRPCClient(s.mux, rpcDialTimeout)
	s.rpcSrv = transport.ServeRPC(s.mux, s.handleRPC, s.logger.With("component", "rpc"))
	undo = append(undo, func() { s.rpcSrv.Close(context.Background()); s.rpc.Close() })

	gossipKeys, fromFile, err := loadKeyring(cfg.DataDir, cfg.GossipKeys)
	if err != nil {
		return nil, err
	}
	if fromFile && len(cfg.GossipKeys) > 0 && !hasKey(gossipKeys, cfg.GossipKeys[0]) {
		s.logger.Warn("--gossip-key is not in the keyring saved in the data dir; the saved keyring wins (it holds what rotations installed)",
			"keyring", filepath.Join(cfg.DataDir, keyringFile))
	}
	s.gossip, err = transport.StartGossip(transport.GossipConfig{
		Keys:          gossipKeys,
		PlaintextIn:   cfg.GossipPlaintextIn,
		PlaintextOut:  cfg.GossipPlaintextOut,
		BindAddr:      cfg.GossipAddr,
		AdvertiseAddr: cfg.GossipAdvertise,
		Meta: transport.Meta{
			ID:        cfg.NodeID,
			RaftAddr:  s.mux.Addr().String(),
			HTTPAddr:  concreteHost(cfg.HTTPAdvertise, s.mux.Addr()),
			DataID:    ident.DataID,
			HasState:  hasState,
			LogFormat: fsm.LogFormat,
		},
		Logger:        s.logger.With("component", "gossip"),
		ProbeInterval: cfg.GossipProbeInterval,
	})
	if err != nil {
		return nil, err
	}
	addrs.gossip.Store(s.gossip)

	s.logger.Info("node started", "id", cfg.NodeID, "raft_addr", s.mux.Addr().String(),
		"gossip_addr", s.gossip.LocalAddr(), "data_dir", cfg.DataDir, "existing_state", hasState, "peer_tls", cfg.PeerTLS != nil,
		"gossip_encrypted", len(gossipKeys) > 0)

	s.goRun(s.watchIntegrity)
	s.goRun(s.watchDiskStall)
	s.goRun(func() { s.watchLeadership(notify) })
	s.goRun(s.observeLeaders)
	s.goRun(s.reads.run(s.ctx))
	s.goRun(s.remoteReads.run(s.ctx))
	s.goRun(s.forwarder.run)
	s.goRun(s.publishStateLoop)
	s.goRun(s.trackLeaderProgress)
	s.goRun(s.boundLogBytes)
	s.goRun(func() { s.gossip.ReconnectLoop(s.ctx, gossipReconnectInterval) })
	if len(cfg.Join) > 0 {
		s.goRun(func() {
			if err := s.gossip.JoinWithRetry(s.ctx, cfg.Join); err != nil && s.ctx.Err() == nil {
				s.logger.Error("gossip join gave up", "err", err)
			}
		})
	}
	if !hasState && cfg.BootstrapExpect > 0 {
		s.goRun(s.bootstrapLoop)
	}
	return s, nil
}

// openBolt checks and opens the data dir's BoltDB file. A damaged file makes BoltDB panic, on open
// (rebuilding the free list walks every page: "freepages: failed to get all reachable pages") or on
// a later read; both are turned into a start-up error here, at the boundary, instead of a trace.
func openBolt(dir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dir, raftDBFile)
	if err := checkBolt(path); err != nil {
		return nil, boltOpenError(dir, path, err)
	}
	store, err := newBoltStore(path)
	if err != nil {
		return nil, boltOpenError(dir, path, err)
	}
	return store, nil
}

func boltOpenError(dir, path string, err error) error {
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("%w: data dir %s is in use by another process (the lock on %s is held)", ErrDataDir, dir, path)
	}
	return startupStorageError("open raft log "+path, dir, err)
}

func newBoltStore(path string) (_ *raftboltdb.BoltStore, err error) {
	defer panicOnFault()()
	defer recoverCorrupt(&err)
	return raftboltdb.New(raftboltdb.Options{
		Path: path,
		BoltOptions: &bbolt.Options{
			Timeout: time.Second,
			// The free list is rebuilt on open instead of written on every commit: cheaper commits
			// on a log that grows and is truncated all the time.
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
}

// checkBolt reads every page of an existing BoltDB file, read-only, in this goroutine: a damaged page
// then panics (or faults) where it can be recovered and reported, before Raft's goroutines, which
// nobody can recover, read it. It costs one pass over the file at start-up; the log is bounded by
// snapshots, so that is milliseconds for a typical data dir.
func checkBolt(path string) (err error) {
	switch fi, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Size() == 0:
		return nil // created and not yet initialized (a crash right after): the read-write open does that
	}
	defer panicOnFault()()
	defer recoverCorrupt(&err)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return readBucket(b) })
	})
}

// readBucket touches every key and value of b and its nested buckets.
func readBucket(b *bbolt.Bucket) error {
	var sink byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if err := readBucket(nb); err != nil {
					return err
				}
			}
			continue
		}
		sink ^= k[0] ^ k[len(k)-1]
		if len(v) > 0 {
			sink ^= v[0] ^ v[len(v)-1]
		}
	}
	_ = sink
	return nil
}

// newRaft turns a panic while reading a damaged log into an error, so that a corrupt data dir is
// reported at start-up instead of crashing the process with a stack trace.
func newRaft(rc *raft.Config, f raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer panicOnFault()()
	defer recoverCorrupt(&err)
	return raft.NewRaft(rc, f, logs, stable, snaps, trans)
}

func (s *Store) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// publishStateLoop keeps the HasState flag in gossip metadata true to fact, so bootstrapping nodes can
// tell whether a cluster already exists.
func (s *Store) publishStateLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.admitted() // admits (and records it) as soon as the member record arrives, before any vote needs it
		has := s.raft.LastIndex() > 0
		if m := s.gossip.LocalMeta(); m.HasState != has {
			m.HasState = has
			if err := s.gossip.SetMeta(m); err != nil {
				s.logger.Warn("publish gossip metadata", "err", err)
			}
		}
	}
}

// Close stops the node: background work first, then gossip (leaving gracefully if configured),
// Raft, the node-to-node port, and finally the BoltDB file. Safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.cfg.LeaveOnTerminate {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			if err := s.Leave(ctx, false); err != nil {
				s.logger.Warn("graceful leave failed; the node will be seen as failed", "err", err)
			}
			cancel()
		}
		s.cancel()
		s.wg.Wait()
		var errs []error
		if err := s.gossip.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("stop raft: %w", err))
		}
		ctx, cancel := context.WithTimeout(context.Background(), raftShutdownWait)
		s.rpcSrv.Close(ctx)
		cancel()
		s.rpc.Close()
		s.mux.Close()
		s.netLogThrottle.Flush()
		if err := s.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		s.closeErr = errors.Join(errs...)
		s.logger.Info("node stopped", "id", s.cfg.NodeID)
	})
	return s.closeErr
}

// concreteHost replaces a wildcard host in addr ("0.0.0.0:7000") with the host of the advertised
// node-to-node address, the one address of this node we know others reach.
func concreteHost(addr string, advertised net.Addr) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	if tcp, ok := advertised.(*net.TCPAddr); ok {
		return net.JoinHostPort(tcp.IP.String(), port)
	}
	return addr
}

// gossipAddresses tells Raft's transport where each server is now, from gossip, rather than where the
// Raft configuration last recorded it. When every node of a cluster restarts on a new IP (containers),
// no leader can be elected to update the configuration, but gossip already knows the new addresses.
type gossipAddresses struct {
	gossip atomic.Pointer[transport.Gossip]
}

var errAddressUnknown = errors.New("not known to gossip")

func (a *gossipAddresses) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if g := a.gossip.Load(); g != nil {
		if addr, ok := g.RaftAddr(string(id)); ok {
			// Gossip's address may since have gone to another node (reused container IPs): the
			// node port there refuses a connection meant for id.
			return raft.ServerAddress(transport.TargetAddr(string(id), addr)), nil
		}
	}
	return "", errAddressUnknown
}
