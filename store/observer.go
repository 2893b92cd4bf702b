package store

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// Observer is told about the events a node's metrics count (metrics.Node implements it). The store
// calls it on hot paths: implementations must be cheap and must never block. Values that can be read
// at any time (term, indexes, members) are not pushed here; a collector asks Metrics when scraped.
type Observer interface {
	// LeaderChanged: this node saw a new leader (any node, itself included).
	LeaderChanged()
	// EntryCommitted: as leader, an entry carrying commands client writes was committed and applied
	// after took, counted from handing it to Raft.
	EntryCommitted(commands int, took time.Duration)
	// EntryFailed: as leader, an entry of commands client writes failed (not committed, or unknown).
	EntryFailed(commands int)
	// ForwardRPC and ReadIndexRPC: a follower's call to the leader ended after took.
	ForwardRPC(took time.Duration, err error)
	ReadIndexRPC(took time.Duration, err error)
	// ReadIndexBatch: one read index round (quorum round or RPC) served this many reads.
	ReadIndexBatch(reads int)
	// LogStoreCommit: one BoltDB transaction of log entries (and its fsync) took this long.
	LogStoreCommit(took time.Duration)
	// SnapshotPersisted: Raft wrote a snapshot of size bytes in took.
	SnapshotPersisted(took time.Duration, size int64)
}

type nopObserver struct{}

func (nopObserver) LeaderChanged()                         {}
func (nopObserver) EntryCommitted(int, time.Duration)      {}
func (nopObserver) EntryFailed(int)                        {}
func (nopObserver) ForwardRPC(time.Duration, error)        {}
func (nopObserver) ReadIndexRPC(time.Duration, error)      {}
func (nopObserver) ReadIndexBatch(int)                     {}
func (nopObserver) LogStoreCommit(time.Duration)           {}
func (nopObserver) SnapshotPersisted(time.Duration, int64) {}

// MetricsState is what a metrics collector reads from the node when it is scraped.
type MetricsState struct {
	HasLeader, IsLeader bool
	Ready               bool // what /readyz says
	IntegrityFailed     bool // the node stopped serving (Failure): a log entry that failed its checksum, a storage fault
	DiskStalled         bool // a raft log write has run longer than Config.DiskStallTimeout (stall.go)
	StateDiverged       bool // the corruption check found this node's state, or the members', to differ
	Term                uint64
	CommitIndex         uint64
	AppliedIndex        uint64 // raft's applied index
	LastIndex           uint64
	WriteIndex          uint64         // the last write index this node's state reflects
	AppliedWrites       uint64         // commands this node's state machine applied since it started
	ProposalsPending    int            // client writes waiting in this leader's queue or in flight in Raft
	Keys, Bytes         int64          // keys in the state, and the bytes of their keys and values
	Sessions            int            // live sessions
	SessionsExpired     uint64         // sessions this node's state machine ended by expiry since it started
	RaftServers         map[string]int // suffrage ("voter", "nonvoter", "staging") → servers
	GossipMembers       map[string]int // gossip state ("alive", "dead", "left") → members
}

// Metrics is the node's current state for a metrics scrape. It never blocks on other nodes.
func (s *Store) Metrics() MetricsState {
	_, leader := s.raft.LeaderWithID()
	keys, bytes, writes := s.fsm.Stats()
	sessions, expired := s.fsm.SessionStats()
	m := MetricsState{
		HasLeader:        leader != "",
		IsLeader:         s.isLeader(),
		Ready:            s.Ready() == nil,
		IntegrityFailed:  s.Failure() != nil,
		DiskStalled:      s.diskStall(time.Now()) != nil,
		StateDiverged:    s.divergedFlag.Load(),
		Term:             s.raft.CurrentTerm(),
		CommitIndex:      s.raft.CommitIndex(),
		AppliedIndex:     s.raft.AppliedIndex(),
		LastIndex:        s.raft.LastIndex(),
		WriteIndex:       s.fsm.LastWriteIndex(),
		AppliedWrites:    writes,
		ProposalsPending: int(s.proposer.pending.Load()),
		Keys:             int64(keys),
		Sessions:         sessions,
		SessionsExpired:  expired,
		Bytes:            bytes,
		RaftServers:      map[string]int{"voter": 0, "nonvoter": 0, "staging": 0},
		GossipMembers:    map[string]int{"alive": 0, "dead": 0, "left": 0},
	}
	if servers, err := s.configuration(); err == nil {
		for _, srv := range servers {
			m.RaftServers[suffrageName(srv.Suffrage)]++
		}
	}
	for _, g := range s.gossip.Members() {
		m.GossipMembers[g.State]++
	}
	return m
}

// observeLeaders counts leader changes from Raft's observations until the store closes.
func (s *Store) observeLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)
	var last raft.ServerID
	for {
		select {
		case <-s.ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID != "" && lo.LeaderID != last {
				last = lo.LeaderID
				s.obs.LeaderChanged()
			}
		}
	}
}

// timedLogStore times the log store's transactions: BoltDB commits, and their fsync, are what a slow
// disk slows first. IsMonotonic is passed on so Raft still sees raft-boltdb's promise.
type timedLogStore struct {
	raft.LogStore
	obs Observer
}

func (t timedLogStore) StoreLog(l *raft.Log) error {
	start := time.Now()
	err := t.LogStore.StoreLog(l)
	t.obs.LogStoreCommit(time.Since(start))
	return err
}

func (t timedLogStore) StoreLogs(ls []*raft.Log) error {
	start := time.Now()
	err := t.LogStore.StoreLogs(ls)
	t.obs.LogStoreCommit(time.Since(start))
	return err
}

func (t timedLogStore) IsMonotonic() bool {
	m, ok := t.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// timedSnapshots reports how long Raft took to write each snapshot and how large it was.
type timedSnapshots struct {
	raft.SnapshotStore
	obs Observer
}

func (t timedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, c raft.Configuration,
	ci uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := t.SnapshotStore.Create(version, index, term, c, ci, trans)
	if err != nil {
		return nil, err
	}
	return &timedSink{SnapshotSink: sink, obs: t.obs, start: time.Now()}, nil
}

type timedSink struct {
	raft.SnapshotSink
	obs   Observer
	start time.Time
	size  int64
}

func (t *timedSink) Write(p []byte) (int, error) {
	n, err := t.SnapshotSink.Write(p)
	t.size += int64(n)
	return n, err
}

func (t *timedSink) Close() error {
	err := t.SnapshotSink.Close()
	if err == nil {
		t.obs.SnapshotPersisted(time.Since(t.start), t.size)
	}
	return err
}

var _ io.Writer = (*timedSink)(nil)
