package fsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/acl"
)

// btreeDegree gives nodes of up to 63 items: wide enough that the per-node overhead is spread thin
// and lookups stay shallow, small enough that copy-on-write after a Clone copies little.
const btreeDegree = 32

// Result is what Apply returns for a log entry holding one command, and, in a []Result, for each
// command of a batch entry; store finds it in ApplyFuture.Response().
type Result struct {
	Index     uint64     // this write's index (see FSM.LastWriteIndex); 0 for a no-op or an invalid command
	Deleted   bool       // OpDelete found the key
	CASFailed bool       // precondition failed; nothing changed
	Current   uint64     // on CASFailed: the key's current ModIndex (0 if absent)
	Txn       *TxnResult // OpTxn: which branch ran and each op's result
	Err       error      // command could not be decoded (wraps ErrInvalidCommand); nothing changed
	// Replayed: an OpIdempotent whose key was already recorded for the same request; the other fields
	// are the first application's outcome, and nothing changed now.
	Replayed bool
	// KeyReused: an OpIdempotent whose key was recorded for a different request; nothing changed.
	KeyReused bool
	// OK: an acquire took (or already held) the lock, a release gave it back, a session put owns the key.
	OK bool
	// SessionID: a session create's session id (a replayed create's is the first attempt's).
	SessionID string
	// Refused: a session command that changed nothing, and why (see Refusal).
	Refused Refusal
	// ACLErr: an OpACL the ACL state refused (acl.ErrBootstrapped, ErrNotFound, ErrExists, ErrInvalid);
	// nothing changed. Every node reaches the same answer.
	ACLErr error
}

// FSM is the replicated state machine. Raft calls Apply, Snapshot, Restore and StoreConfiguration
// from its single FSM goroutine; the read methods may be called from any goroutine at any time.
type FSM struct {
	mu      sync.RWMutex // guards tree and members, and orders writes to lastWrite
	tree    *btree.BTreeG[Entry]
	members map[string]string // member id → data-dir id
	dedup   dedupTable        // idempotency key → outcome
	sess    sessionState      // sessions and lock delays (session.go)
	// acl holds the ACL state; Apply stores a new one under mu, readers load it without a lock.
	acl *acl.Live
	// lastWrite is the index of the last write applied. Write indexes are unique across the store and
	// increase in log order: a command gets max(lastWrite+1, its entry's raft index), so the only
	// command of an entry gets the entry's raft index, and the commands of a batch consecutive ones.
	// It is stored under mu, after the write it names, and read without it.
	lastWrite atomic.Uint64

	// applied is written after the state it describes, so a reader that sees index i through
	// AppliedIndex or WaitApplied also sees every write up to i.
	applied atomic.Uint64

	// bytes (of keys and values) and writes (commands applied since New) are for metrics; both are
	// written under mu.
	bytes  atomic.Int64
	writes atomic.Uint64

	// stateHash is the running hash of the keyspace and marks its value at recent write indexes
	// (statehash.go); both under mu.
	stateHash uint64
	marks     [hashHistory]hashMark

	waitMu sync.Mutex
	waitCh chan struct{} // closed when applied advances; nil while nobody waits

	sink     ChangeSink  // nil: nobody watches
	sessSink SessionSink // nil: nobody counts session TTLs down
	one      [1]Change   // the change of a single put or delete, handed to sink without an allocation

	// halt is set, once, when an entry fails its checksum; haltCh is closed then. From that point the
	// FSM applies nothing: skipping the entry would make this node's state silently differ from the
	// others', and applying it would serve the changed bytes as data.
	halt   atomic.Pointer[CorruptEntryError]
	haltCh chan struct{}
}

// CorruptEntryError says which log entry failed its checksum. It wraps ErrChecksum.
type CorruptEntryError struct {
	Index, Term uint64
	Err         error
}

func (e *CorruptEntryError) Error() string {
	return fmt.Sprintf("log entry %d (term %d) is corrupt: %v", e.Index, e.Term, e.Err)
}

func (e *CorruptEntryError) Unwrap() error { return e.Err }

// ErrHalted is wrapped by the result of every entry offered to an FSM that has halted.
var ErrHalted = errors.New("fsm: halted after a corrupt log entry")

var (
	_ raft.FSM                = (*FSM)(nil)
	_ raft.ConfigurationStore = (*FSM)(nil)
)

// New returns an empty FSM at applied index 0.
func New() *FSM {
	return &FSM{tree: newTree(), members: make(map[string]string), haltCh: make(chan struct{}), dedup: newDedupTable(),
		sess: newSessionState(), acl: acl.NewLive()}
}

// ACL is the node's view of the replicated ACL state, as of the last entry applied.
func (f *FSM) ACL() *acl.Live { return f.acl }

// Halted is closed when the FSM stops applying because an entry failed its checksum; Corrupt says which.
func (f *FSM) Halted() <-chan struct{} { return f.haltCh }

// Corrupt returns the entry that halted the FSM, or nil.
func (f *FSM) Corrupt() *CorruptEntryError { return f.halt.Load() }

func newTree() *btree.BTreeG[Entry] {
	return btree.NewG(btreeDegree, func(a, b Entry) bool { return a.Key < b.Key })
}

// Apply applies one committed log entry. It returns a Result (as a value) for an entry holding one
// command and a []Result, one per command in order, for a batch; a batch whose framing is corrupt
// changes nothing and returns a single Result with Err set. It is deterministic and never panics: an
// undecodable command is reported in its Result.Err and changes nothing, and every entry advances the
// applied index.
//
// The one exception is a sealed entry (format 3) whose checksum does not match: the bytes are not what
// the leader wrote, so nothing can be decided from them. The FSM halts (see Halted): it returns a
// Result whose Err wraps ErrChecksum, and from then on applies nothing and advances nothing.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if c := f.halt.Load(); c != nil {
		return Result{Err: fmt.Errorf("apply log index %d: %w (%v)", l.Index, ErrHalted, c)}
	}
	data := l.Data
	if l.Type == raft.LogCommand && IsSealed(data) {
		payload, err := Unseal(data)
		if errors.Is(err, ErrChecksum) {
			c := &CorruptEntryError{Index: l.Index, Term: l.Term, Err: err}
			f.halt.Store(c)
			close(f.haltCh)
			return Result{Err: c}
		}
		if err != nil {
			f.advance(l.Index)
			return Result{Err: fmt.Errorf("apply log index %d: %w", l.Index, err)}
		}
		data = payload
	}
	f.sess.curTerm = l.Term
	var res interface{}
	if l.Type == raft.LogCommand && IsBatch(data) {
		res = f.applyBatch(l.Index, data)
	} else {
		res = f.apply(l.Index, l.Type, data)
	}
	f.advance(l.Index)
	return res
}

func (f *FSM) apply(index uint64, typ raft.LogType, data []byte) Result {
	if typ != raft.LogCommand {
		// Raft sends only commands here; anything else carries no write for us.
		return Result{}
	}
	cmd, err := DecodeCommand(data)
	if err != nil {
		return Result{Err: fmt.Errorf("apply log index %d: %w", index, err)}
	}
	if cmd.Op == OpNoop {
		return Result{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyLocked(index, cmd)
}

func (f *FSM) applyBatch(index uint64, data []byte) interface{} {
	cmds, err := DecodeBatch(data)
	if err != nil {
		return Result{Err: fmt.Errorf("apply log index %d: %w", index, err)}
	}
	results := make([]Result, len(cmds))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range cmds {
		cmd, err := DecodeCommand(b)
		switch {
		case err != nil:
			results[i] = Result{Err: fmt.Errorf("apply log index %d, command %d: %w", index, i+1, err)}
		case cmd.Op == OpNoop:
		default:
			results[i] = f.applyLocked(index, cmd)
		}
	}
	return results
}

// applyLocked applies a decoded command other than OpNoop, carried by the entry at raft index
// logIndex. f.mu is held.
func (f *FSM) applyLocked(logIndex uint64, cmd Command) Result {
	if cmd.Op == OpIdempotent {
		return f.applyIdempotentLocked(logIndex, cmd)
	}
	return f.applyWriteLocked(logIndex, cmd)
}

// applyWriteLocked applies a put, delete or set-member and gives it the next write index. f.mu is held.
func (f *FSM) applyWriteLocked(logIndex uint64, cmd Command) Result {
	index := max(f.lastWrite.Load()+1, logIndex)
	res := Result{Index: index}
	var changes []Change
	defer func() {
		if f.sink != nil {
			f.sink.Changed(index, changes)
		}
		f.markLocked(index)
		f.lastWrite.Store(index)
	}()
	f.writes.Add(1)
	if cmd.Op == OpSetMember {
		f.members[cmd.Key] = string(cmd.Value)
		return res
	}
	if cmd.Op == OpTxn {
		if refused := f.txnRefusalLocked(cmd.Txn); refused != RefusedNone {
			res.Refused = refused
			return res
		}
		tr, ch := f.evalTxnLocked(cmd.Txn, index)
		res.Txn, changes = &tr, ch
		return res
	}
	if cmd.Op == OpSession {
		res, changes = f.applySessionLocked(cmd.Session, index)
		return res
	}
	if cmd.Op == OpACL {
		res.ACLErr = f.applyACLLocked(cmd.Value, index)
		return res
	}

	old, found := f.tree.Get(Entry{Key: cmd.Key})
	if cmd.CAS {
		var current uint64 // an absent key has ModIndex 0, which is what CASIndex 0 asks for
		if found {
			current = old.ModIndex
		}
		if current != cmd.CASIndex {
			res.CASFailed, res.Current = true, current
			return res
		}
	}

	switch cmd.Op {
	case OpPut:
		c := f.putLocked(cmd.Key, cmd.Value, index, old, found)
		if f.sink != nil {
			f.one[0] = c
			changes = f.one[:]
		}
	case OpDelete:
		if found {
			c := f.deleteLocked(old, index)
			res.Deleted = true
			if f.sink != nil {
				f.one[0] = c
				changes = f.one[:]
			}
		}
	}
	return res
}

// applyACLLocked applies an encoded acl.Command at write index index. The command carries everything
// (the proposer made the token's secret and hashed it), so this is as deterministic as a put. f.mu is held.
func (f *FSM) applyACLLocked(value []byte, index uint64) error {
	c, err := acl.DecodeCommand(value)
	if err != nil {
		return err
	}
	next, err := f.acl.Load().Apply(c, index)
	if err != nil {
		return err
	}
	f.acl.Store(next)
	return nil
}

// putLocked writes key = value at write index index and returns the change; old and found are the
// key's entry before it (the caller has looked it up already). f.mu is held.
func (f *FSM) putLocked(key string, value []byte, index uint64, old Entry, found bool) Change {
	return f.putEntryLocked(key, value, index, old, found, old.Lock)
}

// putEntryLocked is putLocked with the key's new lock (nil: none). A plain put keeps the key's holder.
func (f *FSM) putEntryLocked(key string, value []byte, index uint64, old Entry, found bool, lock *Lock) Change {
	e := Entry{
		Lock: lock,
		Key:  key,
		// Copy: the log's buffer may be reused once Apply returns. make, unlike
		// bytes.Clone, keeps an empty value non-nil so it reads back as "" and not null.
		Value:       make([]byte, len(value)),
		CreateIndex: index,
		ModIndex:    index,
	}
	copy(e.Value, value)
	if found {
		e.CreateIndex = old.CreateIndex
		f.bytes.Add(-entrySize(old))
		f.stateHash -= entryHash(old)
	}
	f.tree.ReplaceOrInsert(e)
	f.bytes.Add(entrySize(e))
	f.stateHash += entryHash(e)
	return putChange(e, old, found)
}

// deleteLocked removes old (an entry of the tree) at write index index. f.mu is held.
func (f *FSM) deleteLocked(old Entry, index uint64) Change {
	f.forgetOwnerLocked(old)
	f.tree.Delete(old)
	f.bytes.Add(-entrySize(old))
	f.stateHash -= entryHash(old)
	return deleteChange(old, index)
}

func putChange(e, old Entry, found bool) Change {
	c := Change{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
	if found {
		c.Prev, c.HadPrev = old.Value, true
	}
	return c
}

func deleteChange(old Entry, index uint64) Change {
	return Change{Delete: true, Key: old.Key, CreateIndex: old.CreateIndex, ModIndex: index, Prev: old.Value, HadPrev: true}
}

// StoreConfiguration implements raft.ConfigurationStore. Configuration entries change no data here,
// but they are log entries a linearizable read may wait for, so they advance the applied index.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	if f.halt.Load() != nil {
		return
	}
	f.advance(index)
}

// advance raises the applied index to index (never lowers it) and wakes every WaitApplied.
func (f *FSM) advance(index uint64) {
	for {
		cur := f.applied.Load()
		if index <= cur || f.applied.CompareAndSwap(cur, index) {
			break
		}
	}
	f.wake()
}

// setApplied sets the applied index even if that lowers it: after Restore the state is exactly the
// snapshot's, and claiming a later index would let a reader wait for a write that is not there.
func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.wake()
}

func (f *FSM) wake() {
	f.waitMu.Lock()
	if f.waitCh != nil {
		close(f.waitCh)
		f.waitCh = nil
	}
	f.waitMu.Unlock()
}

// LastWriteIndex is the index of the last write applied: every write with an index up to it is
// reflected in this FSM's state, none after it.
func (f *FSM) LastWriteIndex() uint64 {
	return f.lastWrite.Load()
}

// AppliedIndex is the highest log index the FSM has seen: through Apply, StoreConfiguration, or as
// the index recorded in a restored snapshot.
func (f *FSM) AppliedIndex() uint64 {
	return f.applied.Load()
}

// WaitApplied returns nil once AppliedIndex() >= index, or ctx's error (wrapped) if ctx ends first.
// It does not allocate when the index is already reached.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	return f.wait(ctx, &f.applied, index, "applied index")
}

// WaitWriteIndex returns nil once LastWriteIndex() >= index, or ctx's error (wrapped) if ctx ends
// first. Write indexes are what clients see (a write's X-Kv-Index, an entry's ModIndex, a stale read's
// X-Kv-Applied-Index), so a reader that has seen index N waits on this one, not on the Raft index: a
// batch gives its writes indexes beyond its entry's Raft index.
func (f *FSM) WaitWriteIndex(ctx context.Context, index uint64) error {
	return f.wait(ctx, &f.lastWrite, index, "write index")
}

// wait blocks until v >= index. Both counters it is used on are stored before advance or setApplied
// wakes the waiters, so a wake-up always finds the new value.
func (f *FSM) wait(ctx context.Context, v *atomic.Uint64, index uint64, what string) error {
	for {
		if v.Load() >= index {
			return nil
		}
		f.waitMu.Lock()
		// Check again under waitMu: advance stores the index before it takes waitMu, so either we
		// see the new index now or advance sees (and closes) the channel we are about to wait on.
		if v.Load() >= index {
			f.waitMu.Unlock()
			return nil
		}
		if f.waitCh == nil {
			f.waitCh = make(chan struct{})
		}
		ch := f.waitCh
		f.waitMu.Unlock()

		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: wait for %s %d (at %d): %w", what, index, v.Load(), ctx.Err())
		}
	}
}

// Get returns the entry for key. Its Value is shared with the FSM and must not be modified.
func (f *FSM) Get(key string) (Entry, bool) {
	e, ok, _ := f.GetAt(key)
	return e, ok
}

// GetAt is Get, plus the write index the answer reflects: read under the same lock as the key, so
// every write up to it is in the answer and none after it (a watch from index+1 misses nothing).
func (f *FSM) GetAt(key string) (Entry, bool, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.tree.Get(Entry{Key: key})
	return e, ok, f.lastWrite.Load()
}

// List returns, in byte order, the entries whose keys start with prefix and are strictly greater
// than after (when after is non-empty), at most limit of them; limit <= 0 means no limit. more
// reports whether further matching keys exist beyond those returned; pass the last returned key
// as the next call's after to continue.
func (f *FSM) List(prefix, after string, limit int) (entries []Entry, more bool) {
	entries, more, _ = f.ListAt(prefix, after, limit)
	return entries, more
}

// ListAt is List, plus the write index of the one consistent view the page was read from.
func (f *FSM) ListAt(prefix, after string, limit int) (entries []Entry, more bool, index uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	entries, more = f.listLocked(prefix, after, limit)
	return entries, more, f.lastWrite.Load()
}

// listLocked is List with f.mu held.
func (f *FSM) listLocked(prefix, after string, limit int) (entries []Entry, more bool) {
	start := prefix
	if after != "" {
		// after+"\x00" is the smallest key strictly greater than after.
		if next := after + "\x00"; next > start {
			start = next
		}
	}
	f.tree.AscendGreaterOrEqual(Entry{Key: start}, func(e Entry) bool {
		// Keys with a common prefix are contiguous in byte order: the first miss ends the range.
		if !strings.HasPrefix(e.Key, prefix) {
			return false
		}
		if limit > 0 && len(entries) == limit {
			more = true
			return false
		}
		entries = append(entries, e)
		return true
	})
	return entries, more
}

// MemberDataID returns the data-dir id last recorded for member id by an OpSetMember command.
func (f *FSM) MemberDataID(id string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	dataID, ok := f.members[id]
	return dataID, ok
}

// Len is the number of keys.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tree.Len()
}
