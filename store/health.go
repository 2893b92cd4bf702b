package store

import (
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

// healthRPCTimeout bounds how long Health waits for one member: a member that cannot answer in this
// time is reported unhealthy rather than holding up the whole answer.
const healthRPCTimeout = time.Second

// Health is the cluster's health as this node sees it after asking every server (Consul's autopilot
// health): whether each server is healthy and how far behind it is, and how many voters the cluster can
// lose and keep a quorum.
type Health struct {
	Healthy bool `json:"healthy"`
	// FailureTolerance is how many voters may fail before the cluster loses its quorum: healthy voters
	// minus a quorum of all voters, never below 0.
	FailureTolerance int            `json:"failure_tolerance"`
	Leader           string         `json:"leader"` // id; empty when no leader is known
	Servers          []ServerHealth `json:"servers"`
}

// ServerHealth is one server of the Raft configuration.
type ServerHealth struct {
	ID          string `json:"id"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
	Healthy     bool   `json:"healthy"`
	GossipState string `json:"gossip_state"`
	// LastContactMs: milliseconds since the server last heard from the leader (0 on the leader; -1
	// when it never did or did not answer).
	LastContactMs int64  `json:"last_contact_ms"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"last_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	// Behind is how many entries the server's applied index trails the newest last index reported.
	Behind uint64 `json:"behind"`
	// Reason says why the server is not healthy.
	Reason string `json:"reason,omitempty"`
}

type serverStats struct {
	term, lastIndex, applied uint64
	lastContactMs            int64 // -1: never
	err                      error
}

func (s *Store) localStats() serverStats {
	st := serverStats{term: s.raft.CurrentTerm(), lastIndex: s.raft.LastIndex(), applied: s.raft.AppliedIndex(), lastContactMs: -1}
	if s.isLeader() {
		st.lastContactMs = 0
	} else if lc := s.raft.LastContact(); !lc.IsZero() {
		st.lastContactMs = time.Since(lc).Milliseconds()
	}
	return st
}

func encodeStats(st serverStats) []byte {
	b := binary.AppendUvarint(nil, st.term)
	b = binary.AppendUvarint(b, st.lastIndex)
	b = binary.AppendUvarint(b, st.applied)
	return binary.AppendVarint(b, st.lastContactMs)
}

var errBadStats = errors.New("bad stats payload")

func decodeStats(b []byte) (serverStats, error) {
	var st serverStats
	for _, p := range []*uint64{&st.term, &st.lastIndex, &st.applied} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return st, errBadStats
		}
		*p, b = v, b[n:]
	}
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return st, errBadStats
	}
	st.lastContactMs = v
	return st, nil
}

// Health asks every server of the Raft configuration for its term, indexes and last contact with the
// leader, in parallel, each bounded by healthRPCTimeout.
func (s *Store) Health(ctx context.Context) (Health, error) {
	servers, err := s.configuration()
	if err != nil {
		return Health{}, err
	}
	_, leaderID := s.raft.LeaderWithID()
	gossipState := map[string]string{}
	for _, g := range s.gossip.Members() {
		gossipState[g.ID] = g.State
	}
	out := make([]ServerHealth, 0, len(servers))
	stats := make([]serverStats, 0, len(servers))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for id, srv := range servers {
		id, srv := id, srv
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st serverStats
			if string(id) == s.cfg.NodeID {
				st = s.localStats()
			} else {
				st = s.remoteStats(ctx, id, srv)
			}
			gs := gossipState[string(id)]
			if gs == "" {
				gs = "unknown"
			}
			mu.Lock()
			defer mu.Unlock()
			out = append(out, ServerHealth{ID: string(id), Suffrage: suffrageName(srv.Suffrage), Leader: id == leaderID, GossipState: gs})
			stats = append(stats, st)
		}()
	}
	wg.Wait()
	var newest, leaderTerm uint64
	for i, st := range stats {
		if st.err == nil {
			newest = max(newest, st.lastIndex)
			if out[i].Leader {
				leaderTerm = st.term
			}
		}
	}
	h := Health{Leader: string(leaderID), Healthy: leaderID != ""}
	voters, healthyVoters := 0, 0
	for i, st := range stats {
		sh := &out[i]
		sh.LastContactMs = -1
		if st.err == nil {
			sh.Term, sh.LastIndex, sh.AppliedIndex, sh.LastContactMs = st.term, st.lastIndex, st.applied, st.lastContactMs
			if newest > st.applied {
				sh.Behind = newest - st.applied
			}
		}
		switch {
		case st.err != nil:
			sh.Reason = "did not answer: " + st.err.Error()
		case sh.GossipState != "alive":
			sh.Reason = "gossip state " + sh.GossipState
		case leaderID == "":
			sh.Reason = "no leader"
		case leaderTerm != 0 && st.term != leaderTerm:
			sh.Reason = "term differs from the leader's"
		case !sh.Leader && (st.lastContactMs < 0 || st.lastContactMs > readyMaxContactAge.Milliseconds()):
			sh.Reason = "no recent contact with the leader"
		case sh.Behind > readyMaxLag:
			sh.Reason = "too far behind"
		default:
			sh.Healthy = true
		}
		if !sh.Healthy {
			h.Healthy = false
		}
		if srv := servers[raft.ServerID(sh.ID)]; srv.Suffrage == raft.Voter {
			voters++
			if sh.Healthy {
				healthyVoters++
			}
		}
	}
	h.FailureTolerance = max(0, healthyVoters-(voters/2+1))
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	h.Servers = out
	return h, nil
}

func (s *Store) remoteStats(ctx context.Context, id raft.ServerID, srv raft.Server) serverStats {
	addr := string(srv.Address)
	if a, ok := s.gossip.RaftAddr(string(id)); ok {
		addr = a
	}
	ctx, cancel := context.WithTimeout(ctx, healthRPCTimeout)
	defer cancel()
	addr = transport.TargetAddr(string(id), addr)
	resp, err := s.rpc.Call(ctx, addr, rpcHealth, nil)
	if err != nil {
		return serverStats{err: err}
	}
	payload, err := decodeResponse(addr, resp)
	if err != nil {
		return serverStats{err: err}
	}
	st, err := decodeStats(payload)
	if err != nil {
		return serverStats{err: err}
	}
	return st
}
