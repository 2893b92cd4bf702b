package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

// Sessions (fsm/session.go holds the replicated state, package session the leader's countdown). Every
// session operation is a log entry, renews included: a renew acknowledged by any leader is in the log
// a later leader applies, so no leader change can forget it and expire the session early.

var (
	// ErrSessionNotFound: no such session (it never existed, or it expired or was revoked).
	ErrSessionNotFound = errors.New("session not found")
	// ErrKeyHeld: the key is held by another session, or in the lock delay after its holder ended.
	ErrKeyHeld = errors.New("key held by another session")
	// ErrTooManySessions: the cluster holds its maximum of live sessions (Config.MaxSessions).
	ErrTooManySessions = errors.New("too many sessions")
)

// Session TTL bounds. The minimum is twice raft's election timeout (1s): a shorter TTL could lapse
// during one ordinary election. The maximum is etcd's and Consul's day.
const (
	MinSessionTTL     = 2 * time.Second
	MaxSessionTTL     = 24 * time.Hour
	MaxLockDelay      = time.Minute // Consul's bound
	MaxSessionNameLen = 256
)

// Session is a live session as the FSM replicates it.
type Session = fsm.Session

// SessionOptions are what a client chooses when it creates a session.
type SessionOptions struct {
	Name      string
	TTL       time.Duration
	Behavior  fsm.Behavior // what happens to its keys when it ends; zero means release
	LockDelay time.Duration
}

// LockOutcome is the answer to an acquire or a release.
type LockOutcome struct {
	Index uint64 // the write's index
	// Token is the key's lock index after the write: the fencing token when OK on an acquire.
	Token uint64
	// OK: the acquire holds the lock, or the release gave it back.
	OK bool
}

// CreateSession creates a session with a fresh random id.
func (s *Store) CreateSession(ctx context.Context, o SessionOptions) (Session, error) {
	if o.Behavior == 0 {
		o.Behavior = fsm.BehaviorRelease
	}
	sc := &fsm.SessionCmd{Kind: fsm.SessionCreate, ID: newSessionID(), Name: o.Name, TTL: o.TTL,
		Behavior: o.Behavior, LockDelay: o.LockDelay}
	if err := checkSessionCreate(sc); err != nil {
		return Session{}, fmt.Errorf("create session: %w: %v", ErrInvalid, err)
	}
	if n := s.fsm.SessionCount(); n >= s.cfg.MaxSessions {
		return Session{}, fmt.Errorf("create session: %w: %d live, the maximum is %d; end unused sessions or raise --max-sessions",
			ErrTooManySessions, n, s.cfg.MaxSessions)
	}
	res, err := s.writeSession(ctx, sc)
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	if res.SessionID != "" { // a replayed create: the first attempt's session
		sc.ID = res.SessionID
	}
	return Session{ID: sc.ID, Name: sc.Name, TTL: sc.TTL, Behavior: sc.Behavior, LockDelay: sc.LockDelay,
		CreateIndex: res.Index, RenewIndex: res.Index, Remaining: sc.TTL}, nil
}

// RenewSession restarts the session's countdown from its full TTL, which it returns.
func (s *Store) RenewSession(ctx context.Context, id string) (time.Duration, error) {
	res, err := s.writeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionRenew, ID: id})
	if err != nil {
		return 0, fmt.Errorf("renew session %q: %w", id, err)
	}
	return time.Duration(res.Current) * time.Millisecond, nil // the FSM answers a renew with the TTL
}

// DestroySession ends the session now, as an expiry would; it returns the write's index.
func (s *Store) DestroySession(ctx context.Context, id string) (uint64, error) {
	res, err := s.writeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionDestroy, ID: id})
	if err != nil {
		return 0, fmt.Errorf("destroy session %q: %w", id, err)
	}
	return res.Index, nil
}

// PutOwned writes key = value owned by session id: the key is deleted or released when it ends.
func (s *Store) PutOwned(ctx context.Context, key string, value []byte, id string) (uint64, error) {
	res, err := s.writeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionPut, ID: id, Key: key, Value: value})
	if err != nil {
		return 0, fmt.Errorf("put %q with session %q: %w", key, id, err)
	}
	return res.Index, nil
}

// Acquire writes key = value and takes its lock for session id, if no other session holds it and its
// lock delay has passed; otherwise it changes nothing and says so (OK false).
func (s *Store) Acquire(ctx context.Context, key string, value []byte, id string) (LockOutcome, error) {
	res, err := s.writeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionAcquire, ID: id, Key: key, Value: value})
	if err != nil {
		return LockOutcome{}, fmt.Errorf("acquire %q for session %q: %w", key, id, err)
	}
	return LockOutcome{Index: res.Index, Token: res.Current, OK: res.OK}, nil
}

// Release writes key = value and gives its lock back, if session id holds it (OK false otherwise,
// and nothing changes).
func (s *Store) Release(ctx context.Context, key string, value []byte, id string) (LockOutcome, error) {
	res, err := s.writeSession(ctx, &fsm.SessionCmd{Kind: fsm.SessionRelease, ID: id, Key: key, Value: value})
	if err != nil {
		return LockOutcome{}, fmt.Errorf("release %q for session %q: %w", key, id, err)
	}
	return LockOutcome{Index: res.Index, OK: res.OK}, nil
}

// GetSession returns one live session, with its keys, and the write index the answer reflects.
func (s *Store) GetSession(ctx context.Context, id string, c Consistency) (Session, uint64, error) {
	if err := s.readReady(ctx, c); err != nil {
		return Session{}, 0, fmt.Errorf("get session %q: %w", id, err)
	}
	sess, ok, index := s.fsm.GetSession(id)
	if !ok {
		return Session{}, index, fmt.Errorf("get session %q: %w", id, ErrSessionNotFound)
	}
	return sess, index, nil
}

// Sessions returns every live session, in id order, and the write index the answer reflects.
func (s *Store) Sessions(ctx context.Context, c Consistency) ([]Session, uint64, error) {
	if err := s.readReady(ctx, c); err != nil {
		return nil, 0, fmt.Errorf("list sessions: %w", err)
	}
	all, index := s.fsm.Sessions()
	return all, index, nil
}

func (s *Store) readReady(ctx context.Context, c Consistency) error {
	if err := s.Failure(); err != nil {
		return err
	}
	if c == Linearizable {
		return s.waitLinearizable(ctx)
	}
	return nil
}

// writeSession proposes a client's session command and turns a refusal into its sentinel error. Under
// an idempotency key it is wrapped like any write (store.write): the record keeps its outcome (index,
// acquired/released, fencing token, renewed TTL, a create's session id), which a retry gets back.
func (s *Store) writeSession(ctx context.Context, sc *fsm.SessionCmd) (fsm.Result, error) {
	return s.write(ctx, sc.Command())
}

// checkIdempotentWrap: a wrapped session command only once every member applies
// FormatIdempotentSessions (an older member refuses the wrapper as an invalid command and would skip
// a write the others apply). Puts, deletes and transactions need only FormatIdempotent, which the
// proposer checks for every wrapper.
func (s *Store) checkIdempotentWrap(inner fsm.Command) error {
	if inner.Op != fsm.OpSession {
		return nil
	}
	switch format := s.proposer.format.Load(); {
	case format == 0:
		return fmt.Errorf("%w: the log format of every member is not known yet", errLeaderNotReady)
	case format < fsm.FormatIdempotentSessions:
		return fmt.Errorf("%w: idempotency keys on session operations need every member on log format %d, the oldest is on %d",
			ErrIdempotencyUnsupported, fsm.FormatIdempotentSessions, format)
	}
	return nil
}

// refusalError is the error for a session command the FSM refused, or nil.
func refusalError(r fsm.Refusal) error {
	switch r {
	case fsm.RefusedNone:
		return nil
	case fsm.RefusedNoSession:
		return ErrSessionNotFound
	case fsm.RefusedHeld:
		return ErrKeyHeld
	case fsm.RefusedExists:
		return fmt.Errorf("%w: a session with that id exists", ErrInvalid)
	}
	return fmt.Errorf("%w: refused (%d)", ErrInvalid, r)
}

func checkSessionCreate(sc *fsm.SessionCmd) error {
	switch {
	case sc.TTL < MinSessionTTL || sc.TTL > MaxSessionTTL:
		return fmt.Errorf("ttl %s is outside [%s, %s] (the minimum is twice the election timeout)", sc.TTL, MinSessionTTL, MaxSessionTTL)
	case sc.TTL%time.Millisecond != 0 || sc.LockDelay%time.Millisecond != 0:
		return errors.New("ttl and lock delay are whole milliseconds")
	case sc.LockDelay < 0 || sc.LockDelay > MaxLockDelay:
		return fmt.Errorf("lock delay %s is outside [0s, %s]", sc.LockDelay, MaxLockDelay)
	case sc.Behavior != fsm.BehaviorRelease && sc.Behavior != fsm.BehaviorDelete:
		return fmt.Errorf("unknown behavior %d", sc.Behavior)
	case len(sc.Name) > MaxSessionNameLen:
		return fmt.Errorf("name of %d bytes over the limit of %d", len(sc.Name), MaxSessionNameLen)
	}
	return checkSessionID(sc.ID)
}

// checkSessionID accepts what newSessionID makes and little else: ids travel in paths and headers.
func checkSessionID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("session id %q: 1 to 64 characters", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("session id %q: only letters, digits, '-' and '_'", id)
		}
	}
	return nil
}

// newSessionID is a random UUID (version 4): unguessable, so a session id is also its capability.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// checkSessionCommand is checkClientCommand's part for session commands.
func (s *Store) checkSessionCommand(sc *fsm.SessionCmd) error {
	if err := s.checkSessionFormat(); err != nil {
		return err
	}
	if !sc.Kind.FromClient() {
		return fmt.Errorf("session %s is not a client write", sc.Kind)
	}
	switch sc.Kind {
	case fsm.SessionCreate:
		return checkSessionCreate(sc)
	case fsm.SessionPut, fsm.SessionAcquire, fsm.SessionRelease:
		if err := checkSessionID(sc.ID); err != nil {
			return err
		}
		return s.checkKeyValue(sc.Key, sc.Value)
	}
	return checkSessionID(sc.ID)
}

// checkSessionFormat: session commands only once every member applies them.
func (s *Store) checkSessionFormat() error {
	switch format := s.proposer.format.Load(); {
	case format == 0:
		return fmt.Errorf("%w: the log format of every member is not known yet", errLeaderNotReady)
	case format < fsm.FormatSessions:
		return fmt.Errorf("%w: sessions need every member on log format %d, the oldest is on %d",
			ErrNotReady, fsm.FormatSessions, format)
	}
	return nil
}

// ProposeSession implements session.Proposer: the leader's own expire and checkpoint entries.
func (s *Store) ProposeSession(ctx context.Context, sc *fsm.SessionCmd) error {
	if err := s.checkSessionFormat(); err != nil {
		return err
	}
	res, err := s.proposer.apply(ctx, sc.Command().Encode())
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

// sessionProposer bounds each of the tracker's proposals by the request timeout.
type sessionProposer struct{ s *Store }

func (p sessionProposer) ProposeSession(ctx context.Context, sc *fsm.SessionCmd) error {
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.RequestTimeout)
	defer cancel()
	return p.s.ProposeSession(ctx, sc)
}
