package store

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/fsm"
)

// ErrFailed: the node hit a fault it cannot serve through (a log entry that failed its checksum, a
// storage error) and has stopped serving; the process should exit and an operator act. The concrete
// error says what happened and what to do. It comes wrapped with ErrNotReady, which is how HTTP
// clients see it (503 not_ready).
var ErrFailed = errors.New("node failed")

// fail takes the node out of service for good: Ready, reads and writes answer err from now on, and
// Failed is closed so that the owner of the process can stop it. Only the first failure is kept.
func (s *Store) fail(err error) {
	s.failOnce.Do(func() {
		err = fmt.Errorf("%w: %w: %w", ErrNotReady, ErrFailed, err)
		s.failErr.Store(&err)
		s.logger.Error("node stopped serving", "err", err)
		close(s.failCh)
	})
}

// Failed is closed when the node has stopped serving after a fault it cannot recover from in-process;
// Failure says why. The process should then close the store and exit.
func (s *Store) Failed() <-chan struct{} { return s.failCh }

// Failure is the fault that stopped the node, or nil.
func (s *Store) Failure() error {
	if p := s.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// watchIntegrity waits for the FSM to halt on a log entry that failed its checksum.
func (s *Store) watchIntegrity() {
	select {
	case <-s.ctx.Done():
		return
	case <-s.fsm.Halted():
	}
	c := s.fsm.Corrupt()
	s.logger.Error("log entry failed its checksum: not applying it or anything after it",
		"index", c.Index, "term", c.Term, "err", c.Err)
	s.fail(fmt.Errorf("%w: this node's copy of the raft log in %s is damaged; stop the node, move the data "+
		"dir aside (keep it for inspection) and restart it empty: it rejoins and copies the log from the others", c, s.cfg.DataDir))
}

// sealFormat reports whether entries written now must be sealed in a checksum: every server in the
// configuration has been seen to apply the sealed format.
func (s *Store) sealFormat() bool {
	servers, err := s.configuration()
	if err != nil {
		return false
	}
	return clusterFormat(servers, s.gossip.Members()) >= fsm.FormatSealed
}
