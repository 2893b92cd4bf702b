package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

// ErrQuorumAlive: recovery was refused because a quorum of the old configuration still answers; the
// cluster can still decide, and forcing a new configuration beside it would split the brain.
var ErrQuorumAlive = errors.New("a quorum of the old configuration still answers")

// RecoverPeer is one server of the configuration a recovery writes. Every peer is a voter.
type RecoverPeer struct {
	ID       string
	RaftAddr string
}

// RecoverConfig is an offline recovery of one stopped node.
type RecoverConfig struct {
	DataDir string
	NodeID  string
	Peers   []RecoverPeer
	// ProbeTimeout bounds the check of each old server (default 2 s).
	ProbeTimeout time.Duration
	Logger       *slog.Logger
}

// RecoverReport says what a recovery found and did: what the operator needs to judge what may be lost.
type RecoverReport struct {
	OldServers []raft.Server
	Answering  []string // old servers that answered the probe
	LastIndex  uint64   // this node's last log index before the recovery
	LastTerm   uint64
	WriteIndex uint64 // the last write this node's state holds
	Keys       int
}

// Recover rewrites a stopped node's Raft configuration to cfg.Peers, with hashicorp/raft's
// RecoverCluster, after losing a quorum for good (Consul's peers.json, etcd's --force-new-cluster). It
// refuses (ErrQuorumAlive) when a quorum of the old configuration's voters still answers on its node
// port: that cluster can still commit, and a second one beside it would split the brain (etcd#14009).
// Run it on every survivor with the same peers, then start them.
func Recover(ctx context.Context, cfg RecoverConfig) (RecoverReport, error) {
	var rep RecoverReport
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2 * time.Second
	}
	conf, err := recoverConfiguration(cfg)
	if err != nil {
		return rep, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, identityFile)); err != nil {
		return rep, fmt.Errorf("%w: %s is not a raftkv node's data dir (no %s): %v", ErrInvalid, cfg.DataDir, identityFile, err)
	}
	ident, _, err := readIdentity(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return rep, err
	}
	if hasLog, err := fileExists(filepath.Join(cfg.DataDir, raftDBFile)); err != nil || !hasLog {
		// Opening the log would create an empty one: recovering "from" it would found a cluster on nothing.
		return rep, errPartialWipe(cfg.DataDir, ident)
	}
	bolt, err := openBolt(cfg.DataDir)
	if err != nil {
		return rep, err
	}
	defer bolt.Close()
	raftLog := newHclog(cfg.Logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetain, raftLog)
	if err != nil {
		return rep, fmt.Errorf("data dir %s: open snapshot store: %w", cfg.DataDir, err)
	}
	_, trans := raft.NewInmemTransport("")
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = raftLog

	old, err := raft.GetConfiguration(rc, fsm.New(), bolt, bolt, snaps, trans)
	if err != nil {
		return rep, fmt.Errorf("read the node's raft configuration: %w", err)
	}
	rep.OldServers = old.Servers
	if rep.LastIndex, err = bolt.LastIndex(); err != nil {
		return rep, fmt.Errorf("read the raft log: %w", err)
	}
	if rep.LastIndex > 0 {
		var l raft.Log
		if err := bolt.GetLog(rep.LastIndex, &l); err == nil {
			rep.LastTerm = l.Term
		}
	}
	if snapsList, err := snaps.List(); err == nil && len(snapsList) > 0 && snapsList[0].Index > rep.LastIndex {
		rep.LastIndex, rep.LastTerm = snapsList[0].Index, snapsList[0].Term
	}

	voters := 0
	for _, srv := range old.Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	rep.Answering, err = probeServers(ctx, old.Servers, cfg.NodeID, cfg.ProbeTimeout, cfg.Logger)
	if err != nil {
		return rep, err
	}
	if quorum := voters/2 + 1; len(rep.Answering) >= quorum {
		return rep, fmt.Errorf("%w: %d of the %d voters answer (%v) and %d make a quorum; use `raftkv cluster remove` on that cluster instead",
			ErrQuorumAlive, len(rep.Answering), voters, rep.Answering, quorum)
	}

	f := fsm.New()
	if err := raft.RecoverCluster(rc, f, bolt, bolt, snaps, trans, conf); err != nil {
		return rep, fmt.Errorf("recover: %w", err)
	}
	if ident.Pending {
		// The operator names this node a voter of the recovered cluster: it must vote in it, even if
		// it had not been admitted under this data dir before the quorum was lost.
		ident.Pending = false
		b, _ := json.Marshal(ident)
		if err := writeFileSync(filepath.Join(cfg.DataDir, identityFile), b); err != nil {
			return rep, fmt.Errorf("write %s: %w", identityFile, err)
		}
	}
	rep.WriteIndex = f.LastWriteIndex()
	rep.Keys = f.Len()
	return rep, nil
}

func recoverConfiguration(cfg RecoverConfig) (raft.Configuration, error) {
	var conf raft.Configuration
	seen := map[string]bool{}
	self := false
	for _, p := range cfg.Peers {
		if p.ID == "" || seen[p.ID] {
			return conf, fmt.Errorf("%w: peer ids must be unique and non-empty (got %q twice or empty)", ErrInvalid, p.ID)
		}
		seen[p.ID] = true
		if _, _, err := net.SplitHostPort(p.RaftAddr); err != nil {
			return conf, fmt.Errorf("%w: peer %s: raft address %q: %v", ErrInvalid, p.ID, p.RaftAddr, err)
		}
		self = self || p.ID == cfg.NodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	if !self {
		return conf, fmt.Errorf("%w: the peers must include this node, %s", ErrInvalid, cfg.NodeID)
	}
	return conf, nil
}

// speaksTLS reports whether a TLS server answers at addr within timeout. The certificate is not
// checked: the question is only whether a live process is there.
func speaksTLS(addr string, timeout time.Duration) bool {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// probeServers asks every old voter but this node for its health over the internal RPC and returns the
// ids of those that answered.
func probeServers(ctx context.Context, servers []raft.Server, self string, timeout time.Duration, logger *slog.Logger) ([]string, error) {
	mux, err := transport.Listen("127.0.0.1:0", "", logger)
	if err != nil {
		return nil, fmt.Errorf("probe the old servers: %w", err)
	}
	defer mux.Close()
	rpc := transport.NewRPCClient(mux, timeout)
	defer rpc.Close()
	var mu sync.Mutex
	var answering []string
	var wg sync.WaitGroup
	for _, srv := range servers {
		if string(srv.ID) == self || srv.Suffrage != raft.Voter {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			_, err := rpc.Call(ctx, transport.TargetAddr(string(srv.ID), string(srv.Address)), rpcHealth, nil)
			if err != nil && speaksTLS(string(srv.Address), timeout) {
				// A node whose port runs mutual TLS does not answer this plain probe (it has no
				// certificate), but it completes a TLS handshake, which a dead or hung node does not.
				// Counting it as down could let recovery split a cluster that still has its quorum.
				logger.Warn("old voter's node port answers TLS (mutual TLS is on); counting it as alive",
					"server", srv.ID, "addr", srv.Address)
				err = nil
			}
			if err == nil {
				mu.Lock()
				answering = append(answering, string(srv.ID))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(answering)
	return answering, ctx.Err()
}
