package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Get returns key's entry, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string, c Consistency) (Entry, error) {
	e, _, err := s.GetAt(ctx, key, c)
	return e, err
}

// GetAt is Get, plus the write index the answer reflects (also with ErrNotFound: the key was absent at
// that index).
func (s *Store) GetAt(ctx context.Context, key string, c Consistency) (Entry, uint64, error) {
	if err := s.Failure(); err != nil {
		return Entry{}, 0, fmt.Errorf("get %q: %w", key, err)
	}
	if c == Linearizable {
		if err := s.waitLinearizable(ctx); err != nil {
			return Entry{}, 0, fmt.Errorf("get %q: %w", key, err)
		}
	}
	e, ok, index := s.fsm.GetAt(key)
	if !ok {
		return Entry{}, index, ErrNotFound
	}
	return e, index, nil
}

// List returns up to limit keys with prefix that sort after `after`, and whether more remain.
func (s *Store) List(ctx context.Context, prefix, after string, limit int, c Consistency) ([]Entry, bool, error) {
	entries, more, _, err := s.ListAt(ctx, prefix, after, limit, c)
	return entries, more, err
}

// ListAt is List, plus the write index of the one consistent view the page was read from.
func (s *Store) ListAt(ctx context.Context, prefix, after string, limit int, c Consistency) ([]Entry, bool, uint64, error) {
	if err := s.Failure(); err != nil {
		return nil, false, 0, fmt.Errorf("list %q: %w", prefix, err)
	}
	if c == Linearizable {
		if err := s.waitLinearizable(ctx); err != nil {
			return nil, false, 0, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	entries, more, index := s.fsm.ListAt(prefix, after, limit)
	return entries, more, index, nil
}

// WaitIndex returns once this node has applied every write up to index (a write index, as a write's
// answer or an entry's ModIndex gives it), so that a read served next reflects them: a client that
// sends the highest index it has seen reads its own writes and never goes backwards, from any node,
// without a quorum round. It waits at most the request timeout and then fails with ErrTimeout: the
// node is too far behind (or the index does not exist yet), and another node may answer.
func (s *Store) WaitIndex(ctx context.Context, index uint64) error {
	if s.fsm.LastWriteIndex() >= index {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.fsm.WaitWriteIndex(ctx, index); err != nil {
		if errors.Is(err, context.Canceled) {
			return err // the client went away
		}
		return fmt.Errorf("%w: this node has not applied index %d: %v", ErrTimeout, index, err)
	}
	return nil
}

// StaleInfo says how far behind a stale read from this node may be.
func (s *Store) StaleInfo() StaleInfo {
	addr, _ := s.raft.LeaderWithID()
	info := StaleInfo{KnownLeader: addr != "", WriteIndex: s.fsm.LastWriteIndex()}
	if !s.isLeader() {
		lc := s.raft.LastContact()
		if lc.IsZero() {
			info.NoContact = true
			return info
		}
		// Heartbeats alone would say "fresh" while this node's log has stopped: report the larger of
		// the time since contact and how far behind the leader's progress this node is known to be.
		info.LastContact = max(time.Since(lc), s.progress.staleness(time.Now(), s.raft.AppliedIndex()))
	}
	return info
}

// waitLinearizable returns once this node's state reflects every write acknowledged before the call:
// it gets a read index confirmed by a quorum (locally when leading, from the leader otherwise) and
// waits until its own FSM has applied it. Followers then serve from their own state.
func (s *Store) waitLinearizable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var idx uint64
	err := s.withLeader(ctx, retryRead, func(local bool, addr string) (err error) {
		if local {
			idx, err = s.reads.readIndex(ctx)
		} else {
			idx, err = s.remoteReads.readIndex(ctx)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := s.fsm.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w: applying up to read index %d: %v", ErrTimeout, idx, err)
	}
	return nil
}

// confirmReadIndexViaLeader is a follower's batched round: one RPC to the leader serves every read
// that queued on this node before it was sent, just as one quorum round does on the leader.
func (s *Store) confirmReadIndexViaLeader() (uint64, error) {
	addr := s.leaderTarget()
	if addr == "" {
		return 0, errNoLeaderKnown
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	return s.forwardReadIndex(ctx, addr)
}

func (s *Store) forwardReadIndex(ctx context.Context, addr string) (uint64, error) {
	start := time.Now()
	resp, err := s.rpc.Call(ctx, addr, rpcReadIndex, nil)
	s.obs.ReadIndexRPC(time.Since(start), err)
	if err != nil {
		return 0, err
	}
	payload, err := decodeResponse(addr, resp)
	if err != nil {
		return 0, err
	}
	return decodeUvarint(payload)
}

// confirmReadIndex is one ReadIndex round on the leader. The commit index recorded before a successful
// VerifyLeader, in an unchanged term that already has a committed entry of ours, covers every write
// acknowledged before the round began. That index is always one the FSM sees (our term's first FSM
// entry is the leadership no-op command, and everything after it is a command or a configuration), so
// followers can wait for it.
func (s *Store) confirmReadIndex() (uint64, error) {
	if !s.isLeader() {
		return 0, errNotLeader
	}
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() != term {
		return 0, errLeaderNotReady
	}
	idx := s.raft.CommitIndex()
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", errNotLeader, err)
	}
	if s.raft.CurrentTerm() != term || s.raft.State() != raft.Leader {
		return 0, fmt.Errorf("%w: term changed during read confirmation", errNotLeader)
	}
	return idx, nil
}

// readBatcher shares one leadership confirmation among every read that arrived before it started
// (etcd's linearizableReadLoop): a quorum round per batch, never per read. A read that arrives while a
// round is in flight waits for the next one, because the round in flight may have recorded its index
// before the read's preceding writes were acknowledged.
type readBatcher struct {
	confirm func() (uint64, error)
	obs     Observer
	mu      sync.Mutex
	pending *readBatch
	kick    chan struct{}
}

type readBatch struct {
	done    chan struct{}
	readers int // how many reads share this batch's round
	index   uint64
	err     error
}

func newReadBatcher(confirm func() (uint64, error), obs Observer) *readBatcher {
	return &readBatcher{confirm: confirm, obs: obs, kick: make(chan struct{}, 1)}
}

func (b *readBatcher) readIndex(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	if b.pending == nil {
		b.pending = &readBatch{done: make(chan struct{})}
	}
	batch := b.pending
	batch.readers++
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case <-batch.done:
		return batch.index, batch.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (b *readBatcher) run(ctx context.Context) func() {
	return func() {
		for {
			select {
			case <-ctx.Done():
				b.mu.Lock()
				if b.pending != nil {
					b.pending.err = ErrShuttingDown
					close(b.pending.done)
					b.pending = nil
				}
				b.mu.Unlock()
				return
			case <-b.kick:
			}
			b.mu.Lock()
			batch := b.pending
			b.pending = nil
			b.mu.Unlock()
			if batch == nil {
				continue
			}
			batch.index, batch.err = b.confirm()
			close(batch.done)
			b.obs.ReadIndexBatch(batch.readers)
		}
	}
}

// ReadIndex returns the write index a linearizable read started now would reflect: every write
// acknowledged before the call is at or below it, and this node has applied it. A watch "from now"
// starts after it, so it cannot miss a write its client saw acknowledged.
func (s *Store) ReadIndex(ctx context.Context) (uint64, error) {
	if err := s.Failure(); err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	if err := s.waitLinearizable(ctx); err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	return s.fsm.LastWriteIndex(), nil
}
