package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Heartbeats say a follower hears from the leader, not that its data keeps up: a follower whose disk
// is full keeps answering heartbeats (raft processes them apart from log writes) while its log stops.
// So a follower asks the leader for its applied index every progressInterval and checks its own
// progress against what the leader had applied: the commit index only grows, so a follower that has
// not applied by now what the leader had applied readyLagWindow ago is that far behind, whatever the
// write rate. Raft offers no view of the leader's commit index beyond the follower's own log.
const (
	progressInterval = time.Second
	readyLagWindow   = 5 * time.Second
	// maxProgressSamples bounds the samples a follower that stopped applying keeps; the oldest stays.
	maxProgressSamples = 64
)

type progressSample struct {
	at    time.Time
	index uint64 // the leader's applied index, seen at
}

// progress is a follower's record of the leader's applied index over time.
type progress struct {
	interval, window time.Duration

	mu sync.Mutex
	// samples this node has not yet reached (index above its applied index), oldest first.
	samples []progressSample
	// freshAt is when the newest sample this node has reached was taken: its state is at least as new
	// as the leader's was then. Zero until it reaches one.
	freshAt time.Time
}

func newProgress(interval, window time.Duration) *progress {
	return &progress{interval: interval, window: window}
}

// observe records the leader's applied index, seen at at.
func (p *progress) observe(at time.Time, leaderApplied, applied uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, progressSample{at: at, index: leaderApplied})
	if len(p.samples) > maxProgressSamples {
		p.samples = append(p.samples[:1], p.samples[2:]...)
	}
	p.reachedLocked(applied)
}

// reachedLocked drops the samples applied has reached, remembering when the newest of them was taken.
func (p *progress) reachedLocked(applied uint64) {
	n := 0
	for n < len(p.samples) && p.samples[n].index <= applied {
		p.freshAt = p.samples[n].at
		n++
	}
	p.samples = append(p.samples[:0], p.samples[n:]...)
}

// behind says how this node lags, or "" when it has applied everything the leader had applied window
// ago (or nothing is known yet).
func (p *progress) behind(now time.Time, applied uint64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reachedLocked(applied)
	if len(p.samples) == 0 || now.Sub(p.samples[0].at) <= p.window {
		return ""
	}
	s := p.samples[0]
	return fmt.Sprintf("applied index %d has not reached %d, which the leader had applied %s ago",
		applied, s.index, now.Sub(s.at).Round(time.Millisecond))
}

// staleness bounds how far this node's state may be behind the leader's: since the newest sample it
// has reached was taken. 0 while it has reached every sample older than one interval (a follower a few
// entries behind the latest sample is replicating normally).
func (p *progress) staleness(now time.Time, applied uint64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reachedLocked(applied)
	switch {
	case len(p.samples) == 0 || now.Sub(p.samples[0].at) <= p.interval:
		return 0
	case !p.freshAt.IsZero():
		return now.Sub(p.freshAt)
	default:
		return now.Sub(p.samples[0].at)
	}
}

// trackLeaderProgress samples the leader's applied index while this node follows.
func (s *Store) trackLeaderProgress() {
	t := time.NewTicker(s.progress.interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.isLeader() {
			continue
		}
		addr := s.leaderTarget()
		if addr == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.progress.interval)
		resp, err := s.rpc.Call(ctx, addr, rpcHealth, nil)
		cancel()
		if err != nil {
			continue // an unreachable leader shows in LastContact; samples already taken still count
		}
		payload, err := decodeResponse(string(addr), resp)
		if err != nil {
			continue
		}
		st, err := decodeStats(payload)
		if err != nil {
			continue
		}
		s.progress.observe(time.Now(), st.applied, s.raft.AppliedIndex())
	}
}
