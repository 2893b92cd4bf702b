package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/transport"
)

var errNoLeaderKnown = errors.New("no leader known to this node")

func (s *Store) isLeader() bool { return s.raft.State() == raft.Leader }

// leaderTarget is the known leader's address for the node port, naming the leader's id so that a
// node now holding that address refuses the traffic; "" when no leader is known.
func (s *Store) leaderTarget() string {
	addr, id := s.raft.LeaderWithID()
	if addr == "" {
		return ""
	}
	return transport.TargetAddr(string(id), string(addr))
}

// withLeader runs op against the leader: locally when this node leads, otherwise with the leader's
// raft address. Errors that mean "the request had no effect, try again" (retry returns true) are
// retried with backoff until ctx ends; the wait for a leader is bounded by ctx, never open-ended.
func (s *Store) withLeader(ctx context.Context, retry func(error) bool, op func(local bool, addr string) error) error {
	backoff := 10 * time.Millisecond
	var lastErr error
	for {
		if s.ctx.Err() != nil {
			return ErrShuttingDown
		}
		var err error
		if s.isLeader() {
			err = op(true, "")
		} else if addr := s.leaderTarget(); addr != "" {
			err = op(false, addr)
		} else {
			err = errNoLeaderKnown
		}
		if err == nil || !retry(err) {
			return err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if leaderMissing(lastErr) {
				return fmt.Errorf("%w within %s (last attempt: %v)", ErrNoLeader, s.cfg.RequestTimeout, lastErr)
			}
			// A leader was there and answering, just not in time: a client should hear that, not
			// that the cluster has no leader.
			return fmt.Errorf("%w: the leader did not answer in time (last attempt: %v)", ErrTimeout, lastErr)
		case <-s.ctx.Done():
			return ErrShuttingDown
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// leaderMissing: the attempt failed for want of a leader that could serve it (none known, the one
// asked was not the leader any more, unreachable, or newly elected and not ready yet).
func leaderMissing(err error) bool {
	return errors.Is(err, errNoLeaderKnown) || errors.Is(err, errNotLeader) ||
		errors.Is(err, transport.ErrUnreachable) || errors.Is(err, errLeaderNotReady)
}

// retryWrite: only outcomes that certainly left the log untouched may be retried.
func retryWrite(err error) bool {
	return errors.Is(err, errNotLeader) || errors.Is(err, transport.ErrUnreachable) ||
		errors.Is(err, errNoLeaderKnown) || errors.Is(err, errLeaderNotReady)
}

// retryRead: reads have no effect, so any failure to reach a ready leader is worth another try.
func retryRead(err error) bool {
	return !errors.Is(err, ErrShuttingDown) && !errors.Is(err, context.Canceled)
}
