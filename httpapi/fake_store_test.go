package httpapi

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

// fakeStore is an in-memory Store with injectable errors. It follows the Store contract (cas semantics,
// List order and "more"), so handler tests exercise real outcomes, not just canned answers.
type fakeStore struct {
	mu sync.Mutex
	// restoreDeadline is the deadline of the last Restore's context (zero: none).
	restoreDeadline time.Time
	data            map[string]store.Entry
	index           uint64
	members         map[string]bool

	// errs injects an error per method name ("Put", "Get", ...); nil means behave normally.
	errs map[string]error
	// panics makes every method panic (the recover middleware's test).
	panics bool

	stale    store.StaleInfo
	readyErr error
	status   store.Status
	health   store.Health

	writes   int // Put and Delete calls that reached the store
	joined   [][]string
	left     int
	removed  []string
	forced   []bool // the force argument of every Leave and RemoveMember call
	lastPre  store.Precondition
	lastCons store.Consistency
	waited   []uint64 // WaitIndex calls
	idemKeys []string // the idempotency key of each Put, Delete and Txn ("" for none)
	lastList struct {
		prefix, after string
		limit         int
	}
	// sink, if set, hears every write's changes, as the FSM tells a watch.Hub.
	sink    fsm.ChangeSink
	lastTxn *fsm.Txn
	// sessions: the fake's sessions (session_test.go), by id.
	sessions map[string]*store.Session
	acl      *acl.Live
}

// ACL and ApplyACL apply ACL commands to an in-memory state, as the FSM does.
func (f *fakeStore) ACL() *acl.Live { return f.acl }

func (f *fakeStore) ApplyACL(_ context.Context, c acl.Command) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ApplyACL"); err != nil {
		return 0, err
	}
	f.index++
	next, err := f.acl.Load().Apply(c, f.index)
	if err != nil {
		return 0, err
	}
	f.acl.Store(next)
	return f.index, nil
}

// ReadIndex: every write the fake acknowledged is applied.
func (f *fakeStore) ReadIndex(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ReadIndex"); err != nil {
		return 0, err
	}
	return f.index, nil
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		data:    map[string]store.Entry{},
		members: map[string]bool{"n1": true, "n2": true, "n3": true},
		errs:    map[string]error{},
		acl:     acl.NewLive(),
		status: store.Status{
			NodeID: "n1", State: "Leader", Term: 2, CommitIndex: 10, AppliedIndex: 10, LastIndex: 10,
			Leader:  &store.Member{ID: "n1", RaftAddr: "127.0.0.1:7001", Suffrage: "voter", GossipState: "alive", Leader: true},
			Members: []store.Member{{ID: "n1", RaftAddr: "127.0.0.1:7001", Suffrage: "voter", GossipState: "alive", Leader: true}},
		},
	}
}

func (f *fakeStore) fail(method string) error {
	if f.panics {
		panic("fakeStore: injected panic in " + method)
	}
	return f.errs[method]
}

func (f *fakeStore) check(key string, pre store.Precondition) error {
	if !pre.Check {
		return nil
	}
	if cur := f.data[key].ModIndex; cur != pre.Index {
		return fmt.Errorf("fake apply: %w", &store.CASMismatchError{Key: key, Current: cur})
	}
	return nil
}

func (f *fakeStore) Put(ctx context.Context, key string, value []byte, pre store.Precondition) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Put"); err != nil {
		return 0, err
	}
	f.writes++
	f.lastPre = pre
	f.idemKeys = append(f.idemKeys, store.IdempotencyKey(ctx))
	if err := f.check(key, pre); err != nil {
		return 0, err
	}
	f.index++
	e, ok := f.data[key]
	if !ok {
		e = store.Entry{Key: key, CreateIndex: f.index}
	}
	old, had := f.data[key]
	e.Value, e.ModIndex = value, f.index
	f.data[key] = e
	if f.sink != nil {
		f.sink.Changed(f.index, []fsm.Change{{Key: key, Value: value, CreateIndex: e.CreateIndex, ModIndex: f.index, Prev: old.Value, HadPrev: had}})
	}
	return f.index, nil
}

func (f *fakeStore) Delete(ctx context.Context, key string, pre store.Precondition) (uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Delete"); err != nil {
		return 0, false, err
	}
	f.writes++
	f.lastPre = pre
	f.idemKeys = append(f.idemKeys, store.IdempotencyKey(ctx))
	if err := f.check(key, pre); err != nil {
		return 0, false, err
	}
	f.index++
	old, ok := f.data[key]
	delete(f.data, key)
	if f.sink != nil {
		var changes []fsm.Change
		if ok {
			changes = []fsm.Change{{Delete: true, Key: key, CreateIndex: old.CreateIndex, ModIndex: f.index, Prev: old.Value, HadPrev: true}}
		}
		f.sink.Changed(f.index, changes)
	}
	return f.index, ok, nil
}

func (f *fakeStore) GetAt(ctx context.Context, key string, c store.Consistency) (store.Entry, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Get"); err != nil {
		return store.Entry{}, 0, err
	}
	f.lastCons = c
	e, ok := f.data[key]
	if !ok {
		return store.Entry{}, f.index, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	return e, f.index, nil
}

func (f *fakeStore) ListAt(ctx context.Context, prefix, after string, limit int, c store.Consistency) ([]store.Entry, bool, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("List"); err != nil {
		return nil, false, 0, err
	}
	f.lastCons = c
	f.lastList.prefix, f.lastList.after, f.lastList.limit = prefix, after, limit
	var keys []string
	for k := range f.data {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	var out []store.Entry // nil when empty: the handler must still answer []
	for _, k := range keys {
		out = append(out, f.data[k])
	}
	return out, more, f.index, nil
}

func (f *fakeStore) StaleInfo() store.StaleInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		panic("fakeStore: injected panic in StaleInfo")
	}
	return f.stale
}

// WaitIndex answers at once when the fake has reached index and otherwise fails as the store does when
// it cannot catch up in time; waited records what the handler asked for.
func (f *fakeStore) WaitIndex(ctx context.Context, index uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("WaitIndex"); err != nil {
		return err
	}
	f.waited = append(f.waited, index)
	if f.index < index {
		return fmt.Errorf("%w: this node has not applied index %d", store.ErrTimeout, index)
	}
	return nil
}

func (f *fakeStore) Status(ctx context.Context) (store.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Status"); err != nil {
		return store.Status{}, err
	}
	return f.status, nil
}

func (f *fakeStore) Join(ctx context.Context, addrs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Join"); err != nil {
		return err
	}
	f.joined = append(f.joined, addrs)
	return nil
}

func (f *fakeStore) Leave(ctx context.Context, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forced = append(f.forced, force)
	if err := f.fail("Leave"); err != nil {
		return err
	}
	f.left++
	return nil
}

func (f *fakeStore) RemoveMember(ctx context.Context, id string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forced = append(f.forced, force)
	if err := f.fail("RemoveMember"); err != nil {
		return err
	}
	if !f.members[id] {
		return fmt.Errorf("remove %q: %w", id, store.ErrUnknownMember)
	}
	delete(f.members, id)
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeStore) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		panic("fakeStore: injected panic in Ready")
	}
	return f.readyErr
}

func (f *fakeStore) Health(ctx context.Context) (store.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health, nil
}

// Backup is not faked: a store.Backup writes a real state (the process tests cover it).
func (f *fakeStore) Backup(ctx context.Context) (*store.Backup, error) {
	if err := f.fail("Backup"); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: fakeStore has no backups", store.ErrNotReady)
}

func (f *fakeStore) Restore(ctx context.Context, r io.Reader) (store.RestoreResult, error) {
	if err := f.fail("Restore"); err != nil {
		return store.RestoreResult{}, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return store.RestoreResult{}, err
	}
	if d, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.restoreDeadline = d
		f.mu.Unlock()
	}
	return store.RestoreResult{Keys: len(b)}, nil
}

// put seeds the store directly.
func (f *fakeStore) put(key, value string) uint64 {
	idx, err := f.Put(context.Background(), key, []byte(value), store.Precondition{})
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.writes--
	f.mu.Unlock()
	return idx
}

func (f *fakeStore) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Txn evaluates a transaction over the fake's map with the FSM's rules, so handler tests see real
// outcomes; lastTxn keeps what the handler decoded.
func (f *fakeStore) Txn(ctx context.Context, t *fsm.Txn, c store.Consistency) (*fsm.TxnResult, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Txn"); err != nil {
		return nil, 0, err
	}
	f.lastTxn, f.lastCons = t, c
	f.idemKeys = append(f.idemKeys, store.IdempotencyKey(ctx))
	res := &fsm.TxnResult{Succeeded: true}
	for _, cmp := range t.Compare {
		e, ok := f.data[cmp.Key]
		var a uint64
		switch cmp.Target {
		case fsm.TargetModIndex:
			a = e.ModIndex
		case fsm.TargetCreateIndex:
			a = e.CreateIndex
		case fsm.TargetExists:
			if ok {
				a = 1
			}
		case fsm.TargetCount:
			for k := range f.data {
				if strings.HasPrefix(k, cmp.Key) {
					a++
				}
			}
		case fsm.TargetValue:
			if !ok || string(e.Value) != string(cmp.Value) || cmp.Op != fsm.CmpEqual {
				res.Succeeded = false
			}
			continue
		}
		if (cmp.Op == fsm.CmpEqual && a != cmp.Num) || (cmp.Op == fsm.CmpNotEqual && a == cmp.Num) ||
			(cmp.Op == fsm.CmpLess && a >= cmp.Num) || (cmp.Op == fsm.CmpGreater && a <= cmp.Num) {
			res.Succeeded = false
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	if t.HasWrites() {
		f.index++
	}
	var changes []fsm.Change
	for _, op := range ops {
		r := fsm.TxnOpResult{Kind: op.Kind}
		switch op.Kind {
		case fsm.TxnPut:
			e, ok := f.data[op.Key]
			if !ok {
				e = store.Entry{Key: op.Key, CreateIndex: f.index}
			}
			e.Value, e.ModIndex = op.Value, f.index
			f.data[op.Key] = e
			changes = append(changes, fsm.Change{Key: op.Key, Value: op.Value, CreateIndex: e.CreateIndex, ModIndex: f.index})
		case fsm.TxnDelete, fsm.TxnDeletePrefix:
			for k, e := range f.data {
				if k == op.Key || (op.Kind == fsm.TxnDeletePrefix && strings.HasPrefix(k, op.Key)) {
					delete(f.data, k)
					r.Found, r.Deleted = true, r.Deleted+1
					changes = append(changes, fsm.Change{Delete: true, Key: k, CreateIndex: e.CreateIndex, ModIndex: f.index})
				}
			}
		case fsm.TxnGet:
			if e, ok := f.data[op.Key]; ok {
				r.Found, r.Entries = true, []store.Entry{e}
			}
		case fsm.TxnList:
			var keys []string
			for k := range f.data {
				if strings.HasPrefix(k, op.Key) {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				r.Entries = append(r.Entries, f.data[k])
			}
		}
		res.Results = append(res.Results, r)
	}
	if f.sink != nil && t.HasWrites() {
		f.sink.Changed(f.index, changes)
	}
	return res, f.index, nil
}

func (*fakeStore) ACLResetRequested() (bool, error) { return false, nil }
func (*fakeStore) ACLResetDone() error              { return nil }
