package store

import (
	"context"
	"fmt"

	"github.com/raftkv/raftkv/fsm"
)

// Txn runs a transaction (fsm.Txn): compares, then one branch's ops, atomically at one write index.
// A transaction that writes in neither branch is served as a read (c says how) and writes no log
// entry; one that writes goes to the leader like any write, and only once every member applies log
// format 3 (ErrNotReady before). It returns the outcome and the write index it reflects: the
// transaction's own index when it wrote, the index of the view it read otherwise.
func (s *Store) Txn(ctx context.Context, t *fsm.Txn, c Consistency) (*fsm.TxnResult, uint64, error) {
	if err := s.Failure(); err != nil {
		return nil, 0, fmt.Errorf("txn: %w", err)
	}
	if !t.HasWrites() {
		if c == Linearizable {
			if err := s.waitLinearizable(ctx); err != nil {
				return nil, 0, fmt.Errorf("txn: %w", err)
			}
		}
		res, index, err := s.fsm.ReadTxn(t)
		if err != nil {
			return nil, 0, fmt.Errorf("txn: %w: %v", ErrInvalid, err)
		}
		return &res, index, nil
	}
	res, err := s.write(ctx, fsm.Command{Op: fsm.OpTxn, Value: t.Encode(), Txn: t})
	if err != nil {
		return nil, 0, fmt.Errorf("txn: %w", err)
	}
	if res.Txn == nil {
		return nil, 0, fmt.Errorf("txn: %w: the leader answered without a transaction result", ErrIndeterminate)
	}
	return res.Txn, res.Index, nil
}
