package store

import (
	"context"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// leaderloop.go: the work that lives exactly as long as this node leads. On leadership the loop first
// commits its no-op, then reconciles membership (reconcile.go) on every gossip change and on a timer.

// watchLeadership runs leaderLoop for exactly as long as this node leads.
func (s *Store) watchLeadership(notify <-chan bool) {
	var stopLeading func()
	defer func() {
		if stopLeading != nil {
			stopLeading()
		}
	}()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leading := <-notify:
			switch {
			case leading && stopLeading == nil:
				stopLeading = s.startLeaderLoop()
			case !leading && stopLeading != nil:
				stopLeading()
				stopLeading = nil
				s.logger.Info("lost leadership")
			}
		}
	}
}

// startLeaderLoop starts leaderLoop and returns the function that stops it and waits for it.
func (s *Store) startLeaderLoop() func() {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.leaderLoop(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (s *Store) leaderLoop(ctx context.Context) {
	// What an earlier term saw of the members' log formats may be out of date: no batches until this
	// term's first reconcile has looked.
	s.proposer.format.Store(0)
	term := s.raft.CurrentTerm()
	s.logger.Info("became leader", "term", term)
	if !s.establishLeadership(ctx) {
		return
	}
	s.logger.Info("leader ready", "term", s.raft.CurrentTerm(), "commit_index", s.raft.CommitIndex())
	s.ensureClusterID()
	// The session countdown acts for exactly as long as this term's leadership: its expire entries
	// carry the term, and the FSM voids them if another term appends them.
	var sessionsDone sync.WaitGroup
	sessionsDone.Add(1)
	go func() {
		defer sessionsDone.Done()
		s.sessions.Run(ctx, s.readyTerm.Load(), sessionProposer{s})
	}()
	defer sessionsDone.Wait()
	checks := make(chan struct{})
	go func() {
		defer close(checks)
		s.corruptCheckLoop(ctx)
	}()
	defer func() { <-checks }()
	ticker := time.NewTicker(s.cfg.ReconcileInterval)
	defer ticker.Stop()
	for {
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("membership reconcile failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.gossip.Changes():
		case <-ticker.C:
		}
	}
}

// establishLeadership commits a no-op command in the new term. Once it is applied, this leader's
// commit index covers everything earlier leaders committed, and its FSM has applied it all. A command,
// not raft.Barrier: the read index is the commit index, and it must be an entry the FSM sees (a
// barrier is not passed to the FSM); TestReadIndexIsAnEntryNoFSMEverSees guards it.
func (s *Store) establishLeadership(ctx context.Context) bool {
	noop := fsm.Command{Op: fsm.OpNoop}.Encode()
	if s.sealFormat() {
		noop = fsm.Seal(noop)
	}
	for {
		term := s.raft.CurrentTerm()
		err := s.raft.Apply(noop, s.cfg.RequestTimeout).Error()
		if err == nil && s.isLeader() && s.raft.CurrentTerm() == term {
			s.readyTerm.Store(term)
			return true
		}
		if !s.isLeader() || ctx.Err() != nil {
			return false
		}
		s.logger.Warn("leadership no-op failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}
