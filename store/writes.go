package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
)

// Put writes value under key, if pre holds. It returns the write's index.
func (s *Store) Put(ctx context.Context, key string, value []byte, pre Precondition) (uint64, error) {
	res, err := s.write(ctx, fsm.Command{Op: fsm.OpPut, Key: key, Value: value, CAS: pre.Check, CASIndex: pre.Index})
	if err != nil {
		return 0, fmt.Errorf("put %q: %w", key, err)
	}
	if res.CASFailed {
		return 0, &CASMismatchError{Key: key, Current: res.Current}
	}
	return res.Index, nil
}

// Delete removes key, if pre holds. deleted says whether the key existed.
func (s *Store) Delete(ctx context.Context, key string, pre Precondition) (uint64, bool, error) {
	res, err := s.write(ctx, fsm.Command{Op: fsm.OpDelete, Key: key, CAS: pre.Check, CASIndex: pre.Index})
	if err != nil {
		return 0, false, fmt.Errorf("delete %q: %w", key, err)
	}
	if res.CASFailed {
		return 0, false, &CASMismatchError{Key: key, Current: res.Current}
	}
	return res.Index, res.Deleted, nil
}

func (s *Store) write(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if err := s.Failure(); err != nil {
		return fsm.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	b := cmd.Encode()
	idempotent := IdempotencyKey(ctx) != ""
	if idempotent {
		b = fsm.Idempotent(IdempotencyKey(ctx), b).Encode() // the leader stamps it (proposer.commit)
	}
	var res fsm.Result
	err := s.withLeader(ctx, retryWrite, func(local bool, addr string) (err error) {
		if local {
			if cmd.Op == fsm.OpTxn || cmd.Op == fsm.OpSession || cmd.Op == fsm.OpACL { // put and delete were checked by httpapi; these need the format
				if err := s.checkClientCommand(cmd); err != nil {
					return err
				}
			}
			if idempotent {
				if err := s.checkIdempotentWrap(cmd); err != nil {
					return err
				}
			}
			res, err = s.proposer.apply(ctx, b)
		} else {
			if idempotent {
				if err := s.checkLeaderKnowsIdempotency(cmd.Op); err != nil {
					return err
				}
			}
			res, err = s.forwarder.apply(ctx, addr, b)
		}
		return err
	})
	if err != nil {
		return fsm.Result{}, err
	}
	if errors.Is(res.Err, fsm.ErrChecksum) || errors.Is(res.Err, fsm.ErrHalted) {
		// Committed, but this node could not apply it: whether it took effect is for the others to say.
		return fsm.Result{}, fmt.Errorf("%w: %v", ErrIndeterminate, res.Err)
	}
	if res.Err != nil {
		return fsm.Result{}, fmt.Errorf("%w: %v", ErrInvalid, res.Err)
	}
	if res.KeyReused {
		return fsm.Result{}, fmt.Errorf("%w: key %q", ErrIdempotencyKeyReused, IdempotencyKey(ctx))
	}
	if err := refusalError(res.Refused); err != nil {
		return fsm.Result{}, err
	}
	return res, nil
}

// checkLeaderKnowsIdempotency refuses to forward an idempotent write to a leader that advertises an
// older log format: a build from before FormatIdempotent answers the wrapper as an invalid command
// (or, knowing only wrapped puts and deletes, a wrapped transaction), which would reach the client as
// a 400 for a request that is fine. ErrIdempotencyUnsupported says what is really going on. A wrapped
// session command needs FormatIdempotentSessions.
func (s *Store) checkLeaderKnowsIdempotency(inner fsm.Op) error {
	need := fsm.FormatIdempotent
	if inner == fsm.OpSession {
		need = fsm.FormatIdempotentSessions
	}
	_, id := s.raft.LeaderWithID()
	if format, ok := s.gossip.LogFormat(string(id)); ok && format < need {
		return fmt.Errorf("%w: the leader %s applies log format %d, idempotency keys on %s need %d",
			ErrIdempotencyUnsupported, id, format, inner, need)
	}
	return nil
}

// classifyApplyError separates failures that left the log untouched (safe to retry elsewhere) from
// those after which the entry may still commit.
func classifyApplyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", errNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: raft did not accept the write in time", ErrTimeout)
	default: // ErrLeadershipLost, ErrRaftShutdown, ErrAbortedByRestore, …
		return fmt.Errorf("%w: %v", ErrIndeterminate, err)
	}
}
