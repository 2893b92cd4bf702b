package store

import (
	"context"
	"fmt"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
)

// ACL is this node's view of the replicated ACL state: what it has applied, so a change reaches a node's
// decisions when the node applies its entry (a follower lagging behind decides on its older state).
func (s *Store) ACL() *acl.Live { return s.fsm.ACL() }

// ApplyACL replicates one ACL change and returns its write index. The state's refusal (already
// bootstrapped, not found, exists, invalid) comes back wrapping the acl sentinel; every node reached
// the same answer.
func (s *Store) ApplyACL(ctx context.Context, c acl.Command) (uint64, error) {
	res, err := s.write(ctx, fsm.Command{Op: fsm.OpACL, Value: c.Encode()})
	if err != nil {
		return 0, err
	}
	if res.ACLErr != nil {
		return 0, fmt.Errorf("acl change at index %d: %w", res.Index, res.ACLErr)
	}
	return res.Index, nil
}
