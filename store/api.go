package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// Sentinel errors name every outcome a caller must treat differently.
// httpapi maps them to status codes in one place; wrap them with %w on the way up.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrCASMismatch: a cas precondition failed. The concrete error is *CASMismatchError.
	ErrCASMismatch = errors.New("cas mismatch")
	// ErrNoLeader: no leader could be reached within the request's bounded wait (retry later).
	ErrNoLeader = errors.New("no leader")
	// ErrIndeterminate: the write may or may not have been applied (leadership lost or timeout after
	// the entry was handed to Raft). Clients must treat the outcome as unknown.
	ErrIndeterminate = errors.New("write outcome unknown")
	// ErrTimeout: the request did not complete in its bounded time and nothing was applied.
	ErrTimeout = errors.New("timed out")
	// ErrUnknownMember: no member with that id.
	ErrUnknownMember = errors.New("unknown member")
	// ErrShuttingDown: the node is stopping.
	ErrShuttingDown = errors.New("node is shutting down")
	// ErrNotReady: the node is not (yet) a caught-up member of a cluster with a leader.
	ErrNotReady = errors.New("node not ready")
	// ErrDataDir: the node cannot start on its data dir as it is (another node's, corrupt, in use, or
	// partly wiped); an operator must act, and the error says how. Restarting unchanged will not help.
	ErrDataDir = errors.New("data dir needs operator action")
	// ErrWouldLoseQuorum: removing that voter would leave fewer answering voters than a majority of
	// the rest; the removal was refused (operators may force it).
	ErrWouldLoseQuorum = errors.New("removal would lose the quorum")
	// ErrIdempotencyKeyReused: the write's idempotency key was recorded for a different request within
	// the dedup window; nothing was applied.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrIdempotencyUnsupported: the write carries an idempotency key, but some member (or the leader
	// it would be forwarded to) runs a build that cannot apply it, as during a rolling upgrade from one;
	// nothing was proposed. Retry later, or send the write without a key (and without safe retries).
	ErrIdempotencyUnsupported = errors.New("idempotency keys not supported by every member yet")
	// ErrInvalid: the request is malformed in a way only the store can see (e.g. bad join address).
	ErrInvalid = errors.New("invalid request")
)

// CASMismatchError carries the key's current modify index (0 when the key is absent).
type CASMismatchError struct {
	Key     string
	Current uint64
}

func (e *CASMismatchError) Error() string {
	return fmt.Sprintf("cas mismatch on key %q: current index is %d", e.Key, e.Current)
}

func (e *CASMismatchError) Is(target error) bool { return target == ErrCASMismatch }

// Entry is one key with its value and indexes.
type Entry = fsm.Entry

// Consistency selects how a read is served.
type Consistency int

const (
	// Linearizable reads reflect every write acknowledged before the read began.
	Linearizable Consistency = iota
	// Stale reads are served from the local node's state, whatever it is; they never block on the leader.
	Stale
)

// Precondition is an optional cas check on a write. The zero value means unconditional.
type Precondition struct {
	Check bool
	// Index the key's modify index must equal; 0 means "the key must be absent".
	Index uint64
}

// StaleInfo tells a stale reader how far behind this node may be.
type StaleInfo struct {
	KnownLeader bool
	// LastContact is how long ago this node was last known to be as fresh as the leader: since the last
	// contact with it, or longer when this node has not applied what the leader had applied then. 0 on
	// the leader itself.
	LastContact time.Duration
	// NoContact: this node is not the leader and has never heard from one (LastContact means nothing).
	NoContact bool
	// WriteIndex is the index of the last write this node has applied: the answer reflects every
	// write with an index up to it.
	WriteIndex uint64
}

// Status is the cluster view from one node.
type Status struct {
	NodeID       string   `json:"node_id"`
	State        string   `json:"state"`  // Leader, Follower, Candidate, Shutdown
	Leader       *Member  `json:"leader"` // nil when no leader is known
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_log_index"`
	Members      []Member `json:"members"`
}

// Member is one node as seen by Raft's configuration and by gossip.
type Member struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	// Suffrage is "voter", "nonvoter" or "none" (seen by gossip, not in the Raft configuration).
	Suffrage string `json:"suffrage"`
	// GossipState is "alive", "dead", "left" or "unknown" (in Raft but not seen by gossip).
	GossipState string `json:"gossip_state"`
	Leader      bool   `json:"leader"`
}

// idempotencyKeyCtx is the context key of WithIdempotencyKey.
type idempotencyKeyCtx struct{}

// WithIdempotencyKey returns a context under which every write (Put, Delete, and any later write
// method: they all go through the same apply path) is exactly-once under retries with the same key:
// the first application's outcome is recorded in the replicated state, and a retry within the dedup
// window gets it back, on any node, instead of applying again. The same key with a different request
// fails with ErrIdempotencyKeyReused. A context carries it because it is request-scoped metadata that
// every write method takes alike; the key must be 1–MaxIdempotencyKeySize bytes (httpapi checks).
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyCtx{}, key)
}

// IdempotencyKey is the key WithIdempotencyKey put in ctx, or "".
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKeyCtx{}).(string)
	return k
}
