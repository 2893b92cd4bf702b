package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Exactly-once writes. A client write may carry an idempotency key: it then travels wrapped in an
// OpIdempotent command, and the FSM records key → outcome (the write's index and result) in the
// replicated state, snapshots included. A retry with the same key and the same request, applied on any
// node, after any leader change or restart, gets the recorded outcome back (Result.Replayed) instead of
// applying again; the same key with a different request gets Result.KeyReused and changes nothing.
//
// Records expire by time carried in the log, never by a clock read here: the leader stamps each
// OpIdempotent command, as it puts it into an entry, with its wall clock, the dedup window and the size
// bound it is configured with (StampIdempotent). The FSM's dedup clock is the largest stamp applied so
// far, so it never runs backwards even if a new leader's clock is behind the old one's, and every node
// expires the same records at the same point of the log.
//
// Encoding of an OpIdempotent command (a version-1 Command):
//
//	Key    the idempotency key
//	Value  the wrapped command's encoding, then the stamp:
//	         time     8 bytes big-endian: the leader's wall clock, Unix milliseconds
//	         window   8 bytes big-endian: records older than this many milliseconds expire
//	         max keys 8 bytes big-endian: at most this many records are kept (oldest go first)
//
// The stamp is fixed-size at the very end of the command so that the leader can write it in place,
// without decoding and re-encoding the command.
const stampLen = 24

// Stamp is what the leader writes into an OpIdempotent command as it proposes it.
type Stamp struct {
	Time    int64  // leader's wall clock, Unix milliseconds
	Window  int64  // dedup window in milliseconds
	MaxKeys uint64 // size bound of the dedup table
}

// Idempotent wraps the encoded client write inner under idempotency key key, with a zero stamp for the
// leader to fill in.
func Idempotent(key string, inner []byte) Command {
	v := make([]byte, len(inner)+stampLen)
	copy(v, inner)
	return Command{Op: OpIdempotent, Key: key, Value: v}
}

// StampIdempotent writes st into cmd in place if cmd is an OpIdempotent command, and reports whether
// it did. Any other command is left alone; a malformed one is left for DecodeCommand to refuse.
func StampIdempotent(cmd []byte, st Stamp) bool {
	if len(cmd) < headerLen+stampLen || cmd[0] != commandVersion || Op(cmd[1]) != OpIdempotent {
		return false
	}
	b := cmd[len(cmd)-stampLen:]
	binary.BigEndian.PutUint64(b[0:], uint64(st.Time))
	binary.BigEndian.PutUint64(b[8:], uint64(st.Window))
	binary.BigEndian.PutUint64(b[16:], st.MaxKeys)
	return true
}

// IsIdempotent reports whether an encoded command claims to be an OpIdempotent wrapper, without
// decoding it.
func IsIdempotent(cmd []byte) bool {
	return len(cmd) >= 2 && cmd[0] == commandVersion && Op(cmd[1]) == OpIdempotent
}

// Unwrap splits an OpIdempotent command into the wrapped write (decoded, and its encoding, which
// aliases c.Value) and the stamp. Only puts, deletes, transactions and a client's session commands
// (FormatIdempotentSessions) may be wrapped; anything else, or a malformed value, is an error wrapping
// ErrInvalidCommand.
func (c Command) Unwrap() (inner Command, innerEnc []byte, st Stamp, err error) {
	if c.Op != OpIdempotent {
		return Command{}, nil, Stamp{}, invalidCommand("%s is not an idempotent wrapper", c.Op)
	}
	if c.Key == "" {
		return Command{}, nil, Stamp{}, invalidCommand("empty idempotency key")
	}
	if len(c.Value) < stampLen {
		return Command{}, nil, Stamp{}, invalidCommand("idempotent wrapper of %d bytes has no stamp", len(c.Value))
	}
	innerEnc = c.Value[:len(c.Value)-stampLen]
	b := c.Value[len(c.Value)-stampLen:]
	st = Stamp{
		Time:    int64(binary.BigEndian.Uint64(b[0:])),
		Window:  int64(binary.BigEndian.Uint64(b[8:])),
		MaxKeys: binary.BigEndian.Uint64(b[16:]),
	}
	if inner, err = DecodeCommand(innerEnc); err != nil {
		return Command{}, nil, Stamp{}, fmt.Errorf("wrapped command: %w", err)
	}
	switch inner.Op {
	case OpPut, OpDelete, OpTxn:
	case OpSession:
		if !inner.Session.Kind.FromClient() {
			return Command{}, nil, Stamp{}, invalidCommand("session %s cannot be wrapped with an idempotency key", inner.Session.Kind)
		}
		// A wrapped session command carries the wrapper's stamp, not its own (the proposer stamps
		// only the wrapper): the session clock advances by it as by an unwrapped command's.
		inner.Session.Time = st.Time
	default:
		return Command{}, nil, Stamp{}, invalidCommand("%s cannot be wrapped with an idempotency key", inner.Op)
	}
	return inner, innerEnc, st, nil
}

// dedupRecord is the recorded outcome of one idempotent write.
type dedupRecord struct {
	key string
	sum [16]byte // of the wrapped command's encoding: tells a retry from a reuse of the key
	at  int64    // the dedup clock when it was recorded
	// res: Index, Deleted, CASFailed, Current, OK, SessionID, and a transaction's Txn (which branch ran, each op's
	// result, the entries its reads returned: a retry gets the first answer whole). Its entries share
	// key strings and value bytes with the tree while they are current.
	res Result
}

// dedupTable holds the records, oldest first, which is also the order they expire in: records are
// added at the dedup clock, and the clock never goes back.
type dedupTable struct {
	clock int64
	byKey map[string]*dedupRecord
	order []*dedupRecord
}

func newDedupTable() dedupTable { return dedupTable{byKey: make(map[string]*dedupRecord)} }

// expire advances the clock to st.Time and drops the records older than st.Window.
func (d *dedupTable) expire(st Stamp) {
	d.clock = max(d.clock, st.Time)
	for len(d.order) > 0 && d.clock-d.order[0].at > st.Window {
		d.popOldest()
	}
}

func (d *dedupTable) popOldest() {
	delete(d.byKey, d.order[0].key)
	d.order[0] = nil
	d.order = d.order[1:]
}

// add records r, first dropping the oldest records while the table is at its size bound.
func (d *dedupTable) add(r *dedupRecord, maxKeys uint64) {
	for len(d.order) > 0 && uint64(len(d.order)) >= max(maxKeys, 1) {
		d.popOldest()
	}
	d.byKey[r.key] = r
	d.order = append(d.order, r)
}

// applyIdempotentLocked applies an OpIdempotent command: the recorded outcome for a known key, or the
// wrapped write, recorded. f.mu is held.
func (f *FSM) applyIdempotentLocked(logIndex uint64, cmd Command) Result {
	inner, innerEnc, st, err := cmd.Unwrap()
	if err != nil {
		return Result{Err: fmt.Errorf("apply log index %d: %w", logIndex, err)}
	}
	f.dedup.expire(st)
	sum := requestSum(inner, innerEnc)
	if r, ok := f.dedup.byKey[cmd.Key]; ok {
		if r.sum != sum {
			return Result{KeyReused: true}
		}
		res := r.res
		res.Replayed = true
		return res
	}
	res := f.applyWriteLocked(logIndex, inner)
	if res.Refused != RefusedNone {
		// Refused (a session put whose session is gone or whose key another holds) changed nothing:
		// not recorded, so a retry is decided afresh, like a first attempt that never arrived.
		return res
	}
	f.dedup.add(&dedupRecord{key: cmd.Key, sum: sum, at: f.dedup.clock, res: res}, st.MaxKeys)
	return res
}

// requestSum identifies the request a wrapped command carries, to tell a retry from a reuse of its key.
// For most commands it is their encoding. A session command's identity leaves out what the node that
// received the attempt, not the client, chose: its stamp (zero when proposed; the wrapper's stamp is
// the clock) and a create's session id (a random id per attempt: the record keeps the first one, which
// every retry gets back).
func requestSum(inner Command, innerEnc []byte) [16]byte {
	if inner.Op == OpSession {
		sc := *inner.Session
		sc.Time = 0
		if sc.Kind == SessionCreate {
			sc.ID = ""
		}
		innerEnc = sc.Encode()
	}
	full := sha256.Sum256(innerEnc)
	var sum [16]byte
	copy(sum[:], full[:])
	return sum
}

// DedupLen is the number of idempotency records held.
func (f *FSM) DedupLen() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.dedup.order)
}
