// Package session counts session TTLs down. The replicated half of a session (that it exists, its
// TTL, the generation of its last renew, its remaining TTL as of the last renew or checkpoint) lives in
// the FSM; this package is the half that needs a clock, which the FSM must never read.
//
// Every node runs a Tracker as the FSM's session sink: whenever an applied entry sets a session's
// remaining TTL (create, renew, checkpoint), the tracker notes the deadline "now + remaining" on this
// node's monotonic clock. Only the leader acts on the deadlines (Run): it proposes an expire entry for
// the sessions past theirs, and every CheckpointInterval a checkpoint entry with the remaining TTL of
// those not renewed since the last one, so that a restarted node starts from a recent remaining TTL
// rather than the full one.
//
// A new leader continues from the deadlines it noted as a follower: its clock kept running while the
// old leader was lost and the election went on, so that time is counted, not granted again (etcd
// resets leases to their full TTL, or extends them by an election timeout, on every leader change).
// A deadline is never earlier than "TTL after the renew was sent": a node applies an entry only after
// the client sent it. It is late by how long after the leader a node applied the entry that set it.
//
// The tracker owns no Raft state: it proposes through the Proposer it is given, and the FSM decides.
package session

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// Defaults and bounds.
const (
	DefaultTick               = 200 * time.Millisecond
	DefaultCheckpointInterval = 2 * time.Second
	// maxPerEntry bounds the sessions one expire or checkpoint entry names (as etcd batches 1000).
	maxPerEntry = 1000
)

// Proposer commits the tracker's entries; store implements it on the leader. Each call returns once
// the entry is applied (or failed).
type Proposer interface {
	ProposeSession(ctx context.Context, sc *fsm.SessionCmd) error
}

// Tracker is one node's countdown of every live session.
type Tracker struct {
	tick, checkpointEvery time.Duration
	now                   func() time.Time // monotonic; tests pass their own
	log                   *slog.Logger

	mu       sync.Mutex
	sessions map[string]*countdown
}

type countdown struct {
	gen      uint64
	deadline time.Time // on this node's monotonic clock
	noted    time.Time // when the entry that set it was applied here
	expiring bool      // an expire entry naming this generation is in flight
}

// Config of a Tracker; zero values take the defaults.
type Config struct {
	Tick               time.Duration // how often the leader looks for expired sessions
	CheckpointInterval time.Duration
	Now                func() time.Time
	Logger             *slog.Logger
}

// New returns a tracker with no sessions.
func New(cfg Config) *Tracker {
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{tick: cfg.Tick, checkpointEvery: cfg.CheckpointInterval, now: cfg.Now, log: cfg.Logger,
		sessions: make(map[string]*countdown)}
}

var _ fsm.SessionSink = (*Tracker)(nil)

// SessionTouched implements fsm.SessionSink. A checkpoint (same generation) never moves a deadline
// later: its remaining TTL was measured when the leader proposed it, and counting it from now, after
// the commit, would add the commit's latency on every checkpoint. Both estimates are never early, so
// the smaller one is the better.
func (t *Tracker) SessionTouched(id string, gen uint64, remaining time.Duration) {
	now := t.now()
	deadline := now.Add(remaining)
	t.mu.Lock()
	if c, ok := t.sessions[id]; ok && c.gen == gen {
		if deadline.Before(c.deadline) {
			c.deadline = deadline
		}
		c.noted = now
	} else {
		t.sessions[id] = &countdown{gen: gen, deadline: deadline, noted: now}
	}
	t.mu.Unlock()
}

// SessionsEnded implements fsm.SessionSink.
func (t *Tracker) SessionsEnded(ids []string) {
	t.mu.Lock()
	for _, id := range ids {
		delete(t.sessions, id)
	}
	t.mu.Unlock()
}

// SessionsRestored implements fsm.SessionSink.
func (t *Tracker) SessionsRestored(all []fsm.SessionCheckpointItem) {
	now := t.now()
	t.mu.Lock()
	t.sessions = make(map[string]*countdown, len(all))
	for _, s := range all {
		t.sessions[s.ID] = &countdown{gen: s.Gen, deadline: now.Add(s.Remaining), noted: now}
	}
	t.mu.Unlock()
}

// Remaining is the TTL this node counts as left for session id (false if it knows no such session):
// exact on the leader, an upper bound on a follower (it applies a renew after the leader does).
func (t *Tracker) Remaining(id string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.sessions[id]
	if !ok {
		return 0, false
	}
	return max(c.deadline.Sub(t.now()), 0), true
}

// Len is the number of sessions counted down.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// Run acts on the deadlines while this node leads in term: it returns when ctx ends (leadership lost).
// The term goes into every expire entry, so the FSM voids it if it is appended in another term.
func (t *Tracker) Run(ctx context.Context, term uint64, p Proposer) {
	ticker := time.NewTicker(t.tick)
	defer ticker.Stop()
	lastCheckpoint := t.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		t.expire(ctx, term, p)
		if t.now().Sub(lastCheckpoint) >= t.checkpointEvery {
			lastCheckpoint = t.now()
			t.checkpoint(ctx, p)
		}
	}
}

// expire proposes the end of every session past its deadline, at the generation it counted.
func (t *Tracker) expire(ctx context.Context, term uint64, p Proposer) {
	now := t.now()
	var due []fsm.SessionGen
	var marked []*countdown
	t.mu.Lock()
	for id, c := range t.sessions {
		if !c.expiring && !now.Before(c.deadline) {
			c.expiring = true
			due = append(due, fsm.SessionGen{ID: id, Gen: c.gen})
			marked = append(marked, c)
		}
	}
	t.mu.Unlock()
	for len(due) > 0 {
		n := min(len(due), maxPerEntry)
		err := p.ProposeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionExpire, Term: term, Sessions: due[:n]})
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn("session expiry not committed; will retry", "sessions", n, "err", err)
			}
			break
		}
		due = due[n:]
	}
	// Whatever is still here was not ended (a renew got in first, or the proposal failed): look again.
	t.mu.Lock()
	for _, c := range marked {
		c.expiring = false
	}
	t.mu.Unlock()
}

// checkpoint records the remaining TTL of every session whose last recorded one is older than a
// checkpoint interval.
func (t *Tracker) checkpoint(ctx context.Context, p Proposer) {
	now := t.now()
	var items []fsm.SessionCheckpointItem
	t.mu.Lock()
	for id, c := range t.sessions {
		if now.Sub(c.noted) >= t.checkpointEvery && now.Before(c.deadline) {
			items = append(items, fsm.SessionCheckpointItem{ID: id, Gen: c.gen, Remaining: c.deadline.Sub(now)})
		}
	}
	t.mu.Unlock()
	for len(items) > 0 {
		n := min(len(items), maxPerEntry)
		if err := p.ProposeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionCheckpoint, Checkpoints: items[:n]}); err != nil {
			if ctx.Err() == nil {
				t.log.Warn("session checkpoint not committed", "sessions", n, "err", err)
			}
			return
		}
		items = items[n:]
	}
}
