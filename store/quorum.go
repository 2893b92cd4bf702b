package store

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Removing a voter shrinks the configuration, and with a voter already down it can leave the rest
// short of a majority: three voters, one down, one removed, and the two left need both of theirs while
// only one answers. So a removal is checked against the voters that answer now, asked directly over
// the node port (gossip alone is not enough: it may still call a stopped node alive): the voters left
// after the removal must include a majority that answer in this term and heard from a leader recently.

// liveVoter reports whether the voter id answers now and follows a leader of term.
func (s *Store) liveVoter(ctx context.Context, id raft.ServerID, srv raft.Server, term uint64) bool {
	if string(id) == s.cfg.NodeID {
		return true
	}
	st := s.remoteStats(ctx, id, srv)
	return st.err == nil && st.term == term && st.lastContactMs >= 0 && st.lastContactMs <= readyMaxContactAge.Milliseconds()
}

// checkRemoval returns an error wrapping ErrWouldLoseQuorum when removing id from servers would leave
// fewer answering voters than a majority of the voters that remain. Removing a non-voter is always safe.
func (s *Store) checkRemoval(ctx context.Context, servers map[raft.ServerID]raft.Server, id raft.ServerID) error {
	if srv, ok := servers[id]; !ok || srv.Suffrage != raft.Voter {
		return nil
	}
	term := s.raft.CurrentTerm()
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		remaining int
		live      []string
	)
	for other, srv := range servers {
		if other == id || srv.Suffrage != raft.Voter {
			continue
		}
		remaining++
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.liveVoter(ctx, other, srv, term) {
				mu.Lock()
				live = append(live, string(other))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if quorum := remaining/2 + 1; len(live) < quorum {
		sort.Strings(live)
		return fmt.Errorf("%w: without %s the configuration has %d voters and needs %d of them, but only %d answer %v; "+
			"bring the missing voters back (or remove the dead ones first), or force the removal",
			ErrWouldLoseQuorum, id, remaining, quorum, len(live), live)
	}
	return nil
}
