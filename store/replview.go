package store

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// replview.go: what this node, as leader, saw each follower acknowledge. Promotion to voter is decided
// from it (reconcile.go), never from a member's own report of its progress: a member that says it has
// applied everything while its log stores nothing would otherwise become a voter that cannot
// acknowledge a single entry, and with enough of them the cluster loses its quorum. This is the
// leader's match index of the Raft paper (etcd promotes learners from the same), which hashicorp/raft
// keeps to itself, so it is observed on the way out through the transport.

// ackRecord is the newest acknowledgement one follower gave a leader of one term.
type ackRecord struct {
	term  uint64    // the leader's term the acknowledgement was for
	match uint64    // the follower's log holds every entry up to here, as the leader's has them
	at    time.Time // when the follower last answered the leader's AppendEntries with success
}

type replicationView struct {
	mu   sync.Mutex
	acks map[raft.ServerID]ackRecord
}

func newReplicationView() *replicationView {
	return &replicationView{acks: map[raft.ServerID]ackRecord{}}
}

// appendEntries records a successful AppendEntries: the follower's log matched the leader's at
// PrevLogEntry and now holds every entry sent after it. A heartbeat (no previous entry, no entries)
// says only that the follower is there.
func (v *replicationView) appendEntries(id raft.ServerID, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if !resp.Success || resp.Term != args.Term {
		return
	}
	match := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		match = args.Entries[n-1].Index
	}
	v.ack(id, args.Term, match)
}

// installSnapshot records a snapshot the follower installed: its state is the leader's at LastLogIndex.
func (v *replicationView) installSnapshot(id raft.ServerID, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse) {
	if !resp.Success || resp.Term != args.Term {
		return
	}
	v.ack(id, args.Term, args.LastLogIndex)
}

func (v *replicationView) ack(id raft.ServerID, term, match uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.acks[id]
	if r.term != term {
		r = ackRecord{term: term} // a new leadership: what an earlier one saw proves nothing now
	}
	r.match = max(r.match, match)
	r.at = time.Now()
	v.acks[id] = r
}

// caughtUp reports whether follower id acknowledged, to the leader of term, a log within lag entries of
// last, and answered within recent.
func (v *replicationView) caughtUp(id raft.ServerID, term, last, lag uint64, recent time.Duration) bool {
	v.mu.Lock()
	r, ok := v.acks[id]
	v.mu.Unlock()
	return ok && r.term == term && r.match+lag >= last && time.Since(r.at) <= recent
}

// forget drops what was seen of a server no longer in the configuration.
func (v *replicationView) forget(keep map[raft.ServerID]raft.Server) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id := range v.acks {
		if _, ok := keep[id]; !ok {
			delete(v.acks, id)
		}
	}
}
