package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Sessions: a session is a lease a client keeps alive by renewing it; keys it owns (a put with a
// session, or an acquired lock) are deleted or released, all at one write index, when it ends.
//
// The FSM holds the replicated half: which sessions exist, their TTL, the generation of their last
// renew, and the remaining TTL as of their last renew or checkpoint. It never reads a clock. The
// countdown is the leader's (package session), on its monotonic clock; the leader ends a session by
// proposing an expire entry, which this FSM voids unless it was decided in the term of the entry that
// carries it and names the session's current generation (so a renew that got in first wins).
//
// Every session command carries, in its last 8 bytes, the proposing leader's wall clock (Unix ms),
// written in place by the proposer like an idempotency stamp. The session clock is the largest stamp
// applied so far: it only measures lock delays, and never runs backwards.

// OpSession carries a SessionCmd in Value. Proposed only once every member applies FormatSessions.
const OpSession Op = 20

// SessionKind is what a session command does. Values are part of the log format.
type SessionKind uint8

const (
	SessionCreate     SessionKind = 1
	SessionRenew      SessionKind = 2
	SessionDestroy    SessionKind = 3
	SessionExpire     SessionKind = 4 // the leader's own: never accepted from a client
	SessionCheckpoint SessionKind = 5 // the leader's own: never accepted from a client
	SessionPut        SessionKind = 6 // put a key owned by the session (?session=)
	SessionAcquire    SessionKind = 7 // put and take the key's lock if free (?acquire=)
	SessionRelease    SessionKind = 8 // put and give the key's lock back (?release=)
)

func (k SessionKind) String() string {
	switch k {
	case SessionCreate:
		return "create"
	case SessionRenew:
		return "renew"
	case SessionDestroy:
		return "destroy"
	case SessionExpire:
		return "expire"
	case SessionCheckpoint:
		return "checkpoint"
	case SessionPut:
		return "put"
	case SessionAcquire:
		return "acquire"
	case SessionRelease:
		return "release"
	}
	return fmt.Sprintf("SessionKind(%d)", uint8(k))
}

// FromClient reports whether a client may ask for this kind (the others are the leader's own).
func (k SessionKind) FromClient() bool { return k != SessionExpire && k != SessionCheckpoint }

// Behavior is what happens to a session's keys when it ends.
type Behavior uint8

const (
	BehaviorRelease Behavior = 1 // keys stay, without a holder
	BehaviorDelete  Behavior = 2 // keys are deleted
)

func (b Behavior) String() string {
	switch b {
	case BehaviorRelease:
		return "release"
	case BehaviorDelete:
		return "delete"
	}
	return fmt.Sprintf("Behavior(%d)", uint8(b))
}

// SessionGen names a session at a generation (the write index of its create or last renew).
type SessionGen struct {
	ID  string
	Gen uint64
}

// SessionCheckpoint records a session's remaining TTL, valid only at generation Gen.
type SessionCheckpointItem struct {
	ID        string
	Gen       uint64
	Remaining time.Duration
}

// SessionCmd is one session command.
type SessionCmd struct {
	Kind SessionKind
	ID   string // every kind but expire and checkpoint
	// Create.
	Name      string
	TTL       time.Duration // whole milliseconds
	Behavior  Behavior
	LockDelay time.Duration // whole milliseconds
	// Put, acquire, release.
	Key   string
	Value []byte
	// Expire: the term in which the leader decided it, and the sessions at the generation it counted.
	Term     uint64
	Sessions []SessionGen
	// Checkpoint.
	Checkpoints []SessionCheckpointItem
	// Time is the leader's stamp (Unix ms); zero until the proposer writes it.
	Time int64
}

// Encoding of a SessionCmd (OpSession's Value), version 1:
//
//	version 1 byte = 1
//	kind    1 byte
//	create:            id, name (length-prefixed), ttl ms, behavior 1 byte, lock delay ms
//	renew, destroy:    id
//	put/acquire/release: id, key, value (length-prefixed)
//	expire:            term, count, each: id, generation
//	checkpoint:        count, each: id, generation, remaining ms
//	time    8 bytes big-endian, always last (so the proposer can stamp it in place)
const (
	sessionCmdVersion byte = 1
	sessionStampLen        = 8
)

// Session returns the command that carries sc.
func (sc *SessionCmd) Command() Command {
	return Command{Op: OpSession, Value: sc.Encode(), Session: sc}
}

// Encode returns the encoding DecodeSessionCmd reads.
func (sc *SessionCmd) Encode() []byte {
	b := []byte{sessionCmdVersion, byte(sc.Kind)}
	switch sc.Kind {
	case SessionCreate:
		b = appendBytes(b, []byte(sc.ID))
		b = appendBytes(b, []byte(sc.Name))
		b = binary.AppendUvarint(b, uint64(sc.TTL.Milliseconds()))
		b = append(b, byte(sc.Behavior))
		b = binary.AppendUvarint(b, uint64(sc.LockDelay.Milliseconds()))
	case SessionRenew, SessionDestroy:
		b = appendBytes(b, []byte(sc.ID))
	case SessionPut, SessionAcquire, SessionRelease:
		b = appendBytes(b, []byte(sc.ID))
		b = appendBytes(b, []byte(sc.Key))
		b = appendBytes(b, sc.Value)
	case SessionExpire:
		b = binary.AppendUvarint(b, sc.Term)
		b = binary.AppendUvarint(b, uint64(len(sc.Sessions)))
		for _, s := range sc.Sessions {
			b = appendBytes(b, []byte(s.ID))
			b = binary.AppendUvarint(b, s.Gen)
		}
	case SessionCheckpoint:
		b = binary.AppendUvarint(b, uint64(len(sc.Checkpoints)))
		for _, c := range sc.Checkpoints {
			b = appendBytes(b, []byte(c.ID))
			b = binary.AppendUvarint(b, c.Gen)
			b = binary.AppendUvarint(b, uint64(max(c.Remaining.Milliseconds(), 0)))
		}
	}
	return binary.BigEndian.AppendUint64(b, uint64(sc.Time))
}

// DecodeSessionCmd parses Encode's output strictly; errors wrap ErrInvalidCommand. Value aliases b.
func DecodeSessionCmd(b []byte) (*SessionCmd, error) {
	if len(b) < 2+sessionStampLen || b[0] != sessionCmdVersion {
		return nil, invalidCommand("unknown or truncated session command")
	}
	sc := &SessionCmd{Kind: SessionKind(b[1])}
	sc.Time = int64(binary.BigEndian.Uint64(b[len(b)-sessionStampLen:]))
	rest := b[2 : len(b)-sessionStampLen]
	var err error
	str := func(field string) string {
		if err != nil {
			return ""
		}
		var v []byte
		v, rest, err = readBytes(rest, field, field+" length")
		return string(v)
	}
	num := func(field string) uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, rest, err = readUvarint(rest, field)
		return v
	}
	switch sc.Kind {
	case SessionCreate:
		sc.ID, sc.Name = str("session id"), str("session name")
		sc.TTL = time.Duration(num("ttl")) * time.Millisecond
		if err == nil {
			if len(rest) < 1 {
				return nil, invalidCommand("truncated session behavior")
			}
			sc.Behavior, rest = Behavior(rest[0]), rest[1:]
			if sc.Behavior != BehaviorRelease && sc.Behavior != BehaviorDelete {
				return nil, invalidCommand("unknown session behavior %d", sc.Behavior)
			}
		}
		sc.LockDelay = time.Duration(num("lock delay")) * time.Millisecond
	case SessionRenew, SessionDestroy:
		sc.ID = str("session id")
	case SessionPut, SessionAcquire, SessionRelease:
		sc.ID, sc.Key = str("session id"), str("key")
		if err == nil {
			var v []byte
			if v, rest, err = readBytes(rest, "value", "value length"); err == nil && len(v) > 0 {
				sc.Value = v[:len(v):len(v)]
			}
		}
	case SessionExpire:
		sc.Term = num("term")
		var n uint64
		if err == nil {
			n, rest, err = readCount(rest, "session count", 2)
		}
		for i := uint64(0); i < n && err == nil; i++ {
			sc.Sessions = append(sc.Sessions, SessionGen{ID: str("session id"), Gen: num("generation")})
		}
	case SessionCheckpoint:
		var n uint64
		n, rest, err = readCount(rest, "checkpoint count", 3)
		for i := uint64(0); i < n && err == nil; i++ {
			c := SessionCheckpointItem{ID: str("session id"), Gen: num("generation")}
			c.Remaining = time.Duration(num("remaining")) * time.Millisecond
			sc.Checkpoints = append(sc.Checkpoints, c)
		}
	default:
		return nil, invalidCommand("unknown session command kind %d", sc.Kind)
	}
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, invalidCommand("%d trailing bytes after a session %s", len(rest), sc.Kind)
	}
	if sc.Kind != SessionExpire && sc.Kind != SessionCheckpoint && sc.ID == "" {
		return nil, invalidCommand("session %s without a session id", sc.Kind)
	}
	return sc, nil
}

// StampSession writes the leader's wall clock (Unix ms) into an encoded OpSession command in place and
// reports whether cmd was one. Any other command is left alone.
func StampSession(cmd []byte, unixMs int64) bool {
	if len(cmd) < headerLen+sessionStampLen || cmd[0] != commandVersion || Op(cmd[1]) != OpSession {
		return false
	}
	binary.BigEndian.PutUint64(cmd[len(cmd)-sessionStampLen:], uint64(unixMs))
	return true
}

// Session is one live session, as replicated.
type Session struct {
	ID          string
	Name        string
	TTL         time.Duration
	Behavior    Behavior
	LockDelay   time.Duration
	CreateIndex uint64
	// RenewIndex is the session's generation: the write index of its create or last renew. An expire or
	// checkpoint decided at an older generation is void.
	RenewIndex uint64
	// Remaining is the TTL left as of the last renew (the full TTL) or the last checkpoint: what a new
	// leader counts down from, starting when it applied that entry.
	Remaining time.Duration
	// KeyCount is the number of keys it holds; HeldKeys lists them (GetSession only), sorted.
	KeyCount int
	HeldKeys []string
	keys     map[string]struct{} // the live session's keys; nil in the copies readers get
}

// SessionSink follows the sessions' countdown state: the leader's TTL tracker (package session). Its
// methods run on the apply path under the FSM's lock, on every node: they must be quick, never block,
// and never call back into the FSM.
type SessionSink interface {
	// SessionTouched: the entry just applied set the session's remaining TTL (create, renew, checkpoint).
	SessionTouched(id string, gen uint64, remaining time.Duration)
	// SessionsEnded: the sessions were revoked or expired.
	SessionsEnded(ids []string)
	// SessionsRestored: the whole state was replaced (a snapshot); these are every live session.
	SessionsRestored(sessions []SessionCheckpointItem)
}

// SetSessionSink installs the sink. Call it before the FSM is handed to Raft.
func (f *FSM) SetSessionSink(s SessionSink) { f.sessSink = s }

// Refusal says why a session command changed nothing. Values travel between nodes.
type Refusal uint8

const (
	RefusedNone      Refusal = 0
	RefusedNoSession Refusal = 1 // the session does not exist (never did, expired or revoked)
	RefusedHeld      Refusal = 2 // the key is held by another session, or in its lock delay
	RefusedExists    Refusal = 3 // a session with that id exists
)

// sessionState is the FSM's session bookkeeping; f.mu guards it.
type sessionState struct {
	clock   int64 // largest leader stamp applied (Unix ms)
	byID    map[string]*Session
	delays  map[string]int64 // key → session clock until which it cannot be acquired
	curTerm uint64           // term of the entry being applied (Apply runs on one goroutine)
	expired uint64           // sessions ended by expiry since this FSM was created (metrics; not in snapshots)
}

func newSessionState() sessionState {
	return sessionState{byID: make(map[string]*Session), delays: make(map[string]int64)}
}

// applySessionLocked applies a session command at write index index. f.mu is held.
func (f *FSM) applySessionLocked(sc *SessionCmd, index uint64) (Result, []Change) {
	st := &f.sess
	st.clock = max(st.clock, sc.Time)
	res := Result{Index: index}
	switch sc.Kind {
	case SessionCreate:
		if _, ok := st.byID[sc.ID]; ok {
			res.Refused = RefusedExists
			return res, nil
		}
		s := &Session{ID: sc.ID, Name: sc.Name, TTL: sc.TTL, Behavior: sc.Behavior, LockDelay: sc.LockDelay,
			CreateIndex: index, RenewIndex: index, Remaining: sc.TTL, keys: map[string]struct{}{}}
		st.byID[sc.ID] = s
		f.touched(s)
		res.SessionID = sc.ID
		return res, nil
	case SessionRenew:
		s, ok := st.byID[sc.ID]
		if !ok {
			res.Refused = RefusedNoSession
			return res, nil
		}
		s.RenewIndex, s.Remaining = index, s.TTL
		res.Current = uint64(s.TTL.Milliseconds())
		f.touched(s)
		return res, nil
	case SessionDestroy:
		s, ok := st.byID[sc.ID]
		if !ok {
			res.Refused = RefusedNoSession
			return res, nil
		}
		res.Deleted = true
		changes := f.endSessionLocked(s, index)
		f.ended([]string{s.ID})
		return res, changes
	case SessionExpire:
		if sc.Term != st.curTerm {
			// Decided in another term than the one that appended it: leadership moved in between, and
			// whoever decided may not have seen every renew. Void.
			return res, nil
		}
		var changes []Change
		var ids []string
		for _, g := range sc.Sessions {
			s, ok := st.byID[g.ID]
			if !ok || s.RenewIndex != g.Gen {
				continue // ended already, or renewed since the leader counted it out
			}
			changes = append(changes, f.endSessionLocked(s, index)...)
			ids = append(ids, s.ID)
		}
		if len(ids) > 0 {
			res.Deleted = true
			st.expired += uint64(len(ids))
			f.ended(ids)
		}
		return res, changes
	case SessionCheckpoint:
		// Lock delays that have run out are dropped here too (they are otherwise dropped only when their
		// key is next taken), so that keys never locked again do not keep theirs forever.
		for k, until := range st.delays {
			if until <= st.clock {
				delete(st.delays, k)
			}
		}
		for _, c := range sc.Checkpoints {
			if s, ok := st.byID[c.ID]; ok && s.RenewIndex == c.Gen {
				s.Remaining = min(c.Remaining, s.TTL)
				f.touched(s)
			}
		}
		return res, nil
	case SessionPut, SessionAcquire, SessionRelease:
		return f.applyLockLocked(sc, index)
	}
	return Result{Err: invalidCommand("unknown session command kind %d", sc.Kind)}, nil
}

func (f *FSM) touched(s *Session) {
	if f.sessSink != nil {
		f.sessSink.SessionTouched(s.ID, s.RenewIndex, s.Remaining)
	}
}

func (f *FSM) ended(ids []string) {
	if f.sessSink != nil {
		f.sessSink.SessionsEnded(ids)
	}
}

// keyFree reports whether key may be taken by session id: no other holder and no lock delay running.
func (f *FSM) keyFree(e Entry, found bool, id string) bool {
	if found && e.Holder() != "" && e.Holder() != id {
		return false
	}
	if until, ok := f.sess.delays[e.Key]; ok {
		if f.sess.clock < until && !(found && e.Holder() == id) {
			return false
		}
		delete(f.sess.delays, e.Key)
	}
	return true
}

// applyLockLocked applies a put owned by a session, an acquire or a release. f.mu is held.
func (f *FSM) applyLockLocked(sc *SessionCmd, index uint64) (Result, []Change) {
	res := Result{Index: index}
	s, live := f.sess.byID[sc.ID]
	old, found := f.tree.Get(Entry{Key: sc.Key})
	if !found {
		old = Entry{Key: sc.Key}
	}
	switch sc.Kind {
	case SessionRelease:
		if !live || old.Holder() != sc.ID {
			return res, nil // not held by it: nothing to give back, nothing changes
		}
		res.OK = true
		delete(s.keys, sc.Key)
		return res, []Change{f.putEntryLocked(sc.Key, sc.Value, index, old, found, &Lock{Index: old.LockIndex()})}
	case SessionPut, SessionAcquire:
		if !live {
			res.Refused = RefusedNoSession
			return res, nil
		}
		if !f.keyFree(old, found, sc.ID) {
			if sc.Kind == SessionPut {
				res.Refused = RefusedHeld
			}
			res.Current = old.LockIndex()
			return res, nil
		}
		lock := &Lock{Session: sc.ID, Index: old.LockIndex()}
		if sc.Kind == SessionAcquire && old.Holder() != sc.ID {
			lock.Index = index // a new holder: a new fencing token
		}
		if old.Lock != nil && *old.Lock == *lock {
			lock = old.Lock
		}
		s.keys[sc.Key] = struct{}{}
		res.OK, res.Current = true, lock.Index
		return res, []Change{f.putEntryLocked(sc.Key, sc.Value, index, old, found, lock)}
	}
	return res, nil
}

// endSessionLocked deletes or releases every key s holds, all at write index index, starts their lock
// delay, and forgets s. f.mu is held.
func (f *FSM) endSessionLocked(s *Session, index uint64) []Change {
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order is random; changes must come out the same on every node
	changes := make([]Change, 0, len(keys))
	for _, k := range keys {
		e, ok := f.tree.Get(Entry{Key: k})
		if !ok || e.Holder() != s.ID {
			continue
		}
		if s.LockDelay > 0 {
			f.sess.delays[k] = f.sess.clock + s.LockDelay.Milliseconds()
		}
		if s.Behavior == BehaviorDelete {
			changes = append(changes, f.deleteLocked(e, index))
		} else {
			changes = append(changes, f.putEntryLocked(k, e.Value, index, e, true, &Lock{Index: e.LockIndex()}))
		}
	}
	delete(f.sess.byID, s.ID)
	return changes
}

// forgetOwnerLocked drops e from its holder's keys (e is being deleted). f.mu is held.
func (f *FSM) forgetOwnerLocked(e Entry) {
	if h := e.Holder(); h != "" {
		if s, ok := f.sess.byID[h]; ok {
			delete(s.keys, e.Key)
		}
	}
}

// GetSession returns a copy of the live session id, and the write index of the view.
func (f *FSM) GetSession(id string) (Session, bool, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.sess.byID[id]
	if !ok {
		return Session{}, false, f.lastWrite.Load()
	}
	c := *s
	c.keys, c.KeyCount, c.HeldKeys = nil, len(s.keys), make([]string, 0, len(s.keys))
	for k := range s.keys {
		c.HeldKeys = append(c.HeldKeys, k)
	}
	slices.Sort(c.HeldKeys)
	return c, true, f.lastWrite.Load()
}

// Sessions returns every live session in id order (their Keys counts, not their keys), and the write
// index of the view.
func (f *FSM) Sessions() ([]Session, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Session, 0, len(f.sess.byID))
	for _, s := range f.sess.byID {
		c := *s
		c.keys, c.KeyCount = nil, len(s.keys)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Session) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, f.lastWrite.Load()
}

// SessionStats is the number of live sessions and of those expired since this FSM was created.
func (f *FSM) SessionStats() (live int, expired uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.sess.byID), f.sess.expired
}

// SessionCount is the number of live sessions.
func (f *FSM) SessionCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.sess.byID)
}
