package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// OpTxn carries a multi-key transaction (Txn) in Value. It applies atomically at one write index:
// the compares are evaluated, then the chosen branch's ops run in order, each seeing the earlier
// writes of the same transaction. It is only ever proposed when every member applies log format 3.
const OpTxn Op = 6

// CompareTarget is what a Compare looks at.
type CompareTarget uint8

// Compare targets. Their values are part of the log format.
const (
	TargetModIndex    CompareTarget = 1 // the key's ModIndex (0 when absent)
	TargetCreateIndex CompareTarget = 2 // the key's CreateIndex (0 when absent)
	TargetValue       CompareTarget = 3 // the key's value, bytewise (an absent key compares false)
	TargetExists      CompareTarget = 4 // 1 when the key exists, else 0
	TargetCount       CompareTarget = 5 // the number of keys under Key taken as a prefix
)

// CompareOp is how a Compare compares. Values are part of the log format.
type CompareOp uint8

const (
	CmpEqual    CompareOp = 1
	CmpNotEqual CompareOp = 2
	CmpLess     CompareOp = 3
	CmpGreater  CompareOp = 4
)

// Compare is one condition of a transaction.
type Compare struct {
	Target CompareTarget
	Op     CompareOp
	Key    string // the key, or for TargetCount the prefix
	Num    uint64 // the operand of every target but TargetValue
	Value  []byte // the operand of TargetValue
}

// TxnOpKind is what a transaction op does. Values are part of the log format.
type TxnOpKind uint8

const (
	TxnPut          TxnOpKind = 1
	TxnDelete       TxnOpKind = 2
	TxnDeletePrefix TxnOpKind = 3
	TxnGet          TxnOpKind = 4
	TxnList         TxnOpKind = 5
	// TxnPutSession is a put owned by a session (Session): refused, with the whole transaction, if the
	// session is not live or the key is held by another session. Proposed only on FormatSessions.
	TxnPutSession TxnOpKind = 6
)

func (k TxnOpKind) String() string {
	switch k {
	case TxnPut:
		return "put"
	case TxnDelete:
		return "delete"
	case TxnDeletePrefix:
		return "delete_prefix"
	case TxnGet:
		return "get"
	case TxnList:
		return "list"
	case TxnPutSession:
		return "put"
	}
	return fmt.Sprintf("TxnOpKind(%d)", uint8(k))
}

// Writes reports whether the op changes the key space.
func (k TxnOpKind) Writes() bool {
	return k == TxnPut || k == TxnDelete || k == TxnDeletePrefix || k == TxnPutSession
}

// TxnOp is one op of a transaction branch.
type TxnOp struct {
	Kind    TxnOpKind
	Key     string // the key, or the prefix of TxnDeletePrefix and TxnList
	Value   []byte // TxnPut, TxnPutSession
	Limit   uint64 // TxnList: most entries (0: no limit)
	Session string // TxnPutSession: the owning session
}

// Txn is a transaction: if every Compare holds, Success runs, else Failure.
type Txn struct {
	Compare []Compare
	Success []TxnOp
	Failure []TxnOp
}

// HasWrites reports whether either branch writes: a transaction that does not is served as a read.
func (t *Txn) HasWrites() bool {
	for _, ops := range [][]TxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Kind.Writes() {
				return true
			}
		}
	}
	return false
}

// TxnOpResult is what one op found or did.
type TxnOpResult struct {
	Kind    TxnOpKind
	Found   bool    // TxnGet: the key exists (Entries[0]); TxnDelete: the key existed
	Entries []Entry // TxnGet: 0 or 1; TxnList: the page
	More    bool    // TxnList: keys remain past the page
	Deleted uint64  // TxnDelete, TxnDeletePrefix: keys removed
}

// TxnResult is a transaction's outcome: which branch ran and a result per op of it.
type TxnResult struct {
	Succeeded bool
	Results   []TxnOpResult
}

// Encoding of a Txn (OpTxn's Value), version 1:
//
//	version   1 byte = 1
//	compares  uvarint count, each: target 1 byte, op 1 byte, key (uvarint length, bytes),
//	          then the value (length, bytes) for TargetValue or the number (uvarint) otherwise
//	success   uvarint count, each op: kind 1 byte, key (length, bytes), then the value (length,
//	          bytes) for TxnPut or the limit (uvarint) for TxnList; TxnPutSession: the value, then
//	          the session id (length, bytes)
//	failure   as success
//
// Strict like a Command: unknown kinds, non-minimal varints and trailing bytes are errors.
const txnVersion byte = 1

// Encode returns the encoding DecodeTxn reads.
func (t *Txn) Encode() []byte {
	b := []byte{txnVersion}
	b = binary.AppendUvarint(b, uint64(len(t.Compare)))
	for _, c := range t.Compare {
		b = append(b, byte(c.Target), byte(c.Op))
		b = appendBytes(b, []byte(c.Key))
		if c.Target == TargetValue {
			b = appendBytes(b, c.Value)
		} else {
			b = binary.AppendUvarint(b, c.Num)
		}
	}
	for _, ops := range [][]TxnOp{t.Success, t.Failure} {
		b = binary.AppendUvarint(b, uint64(len(ops)))
		for _, op := range ops {
			b = append(b, byte(op.Kind))
			b = appendBytes(b, []byte(op.Key))
			switch op.Kind {
			case TxnPut:
				b = appendBytes(b, op.Value)
			case TxnPutSession:
				b = appendBytes(b, op.Value)
				b = appendBytes(b, []byte(op.Session))
			case TxnList:
				b = binary.AppendUvarint(b, op.Limit)
			}
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// DecodeTxn parses an encoding made by Encode; errors wrap ErrInvalidCommand. Values alias b.
func DecodeTxn(b []byte) (*Txn, error) {
	if len(b) == 0 || b[0] != txnVersion {
		return nil, invalidCommand("unknown transaction version")
	}
	rest := b[1:]
	n, rest, err := readCount(rest, "compare count", 3)
	if err != nil {
		return nil, err
	}
	t := &Txn{}
	if n > 0 {
		t.Compare = make([]Compare, n)
	}
	for i := range t.Compare {
		c := &t.Compare[i]
		if len(rest) < 2 {
			return nil, invalidCommand("truncated compare %d", i)
		}
		c.Target, c.Op, rest = CompareTarget(rest[0]), CompareOp(rest[1]), rest[2:]
		if c.Target < TargetModIndex || c.Target > TargetCount {
			return nil, invalidCommand("compare %d: unknown target %d", i, c.Target)
		}
		if c.Op < CmpEqual || c.Op > CmpGreater {
			return nil, invalidCommand("compare %d: unknown op %d", i, c.Op)
		}
		var key []byte
		if key, rest, err = readBytes(rest, "compare key", "compare key length"); err != nil {
			return nil, err
		}
		c.Key = string(key)
		if c.Target == TargetValue {
			var v []byte
			if v, rest, err = readBytes(rest, "compare value", "compare value length"); err != nil {
				return nil, err
			}
			c.Value = v[:len(v):len(v)]
		} else if c.Num, rest, err = readUvarint(rest, "compare number"); err != nil {
			return nil, err
		}
	}
	for _, branch := range []*[]TxnOp{&t.Success, &t.Failure} {
		if n, rest, err = readCount(rest, "op count", 2); err != nil {
			return nil, err
		}
		if n > 0 {
			*branch = make([]TxnOp, n)
		}
		for i := range *branch {
			op := &(*branch)[i]
			if len(rest) < 1 {
				return nil, invalidCommand("truncated op %d", i)
			}
			op.Kind, rest = TxnOpKind(rest[0]), rest[1:]
			if op.Kind < TxnPut || op.Kind > TxnPutSession {
				return nil, invalidCommand("op %d: unknown kind %d", i, op.Kind)
			}
			var key []byte
			if key, rest, err = readBytes(rest, "op key", "op key length"); err != nil {
				return nil, err
			}
			op.Key = string(key)
			switch op.Kind {
			case TxnPut, TxnPutSession:
				var v []byte
				if v, rest, err = readBytes(rest, "op value", "op value length"); err != nil {
					return nil, err
				}
				op.Value = v[:len(v):len(v)]
				if op.Kind == TxnPutSession {
					var id []byte
					if id, rest, err = readBytes(rest, "op session", "op session length"); err != nil {
						return nil, err
					}
					if len(id) == 0 {
						return nil, invalidCommand("op %d: a session put without a session", i)
					}
					op.Session = string(id)
				}
			case TxnList:
				if op.Limit, rest, err = readUvarint(rest, "list limit"); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(rest) != 0 {
		return nil, invalidCommand("%d trailing bytes after a transaction", len(rest))
	}
	return t, nil
}

// readCount reads a count of items each at least minSize bytes long, so a corrupt count cannot
// make us allocate more than the input could describe.
func readCount(b []byte, field string, minSize int) (uint64, []byte, error) {
	n, rest, err := readUvarint(b, field)
	if err != nil {
		return 0, nil, err
	}
	if n > uint64(len(rest)/minSize) {
		return 0, nil, invalidCommand("%s %d does not fit %d bytes", field, n, len(rest))
	}
	return n, rest, nil
}

// ReadTxn evaluates a transaction without writes against the current state, and returns the write
// index of the view it read. Callers check HasWrites first; a write op here is refused.
func (f *FSM) ReadTxn(t *Txn) (TxnResult, uint64, error) {
	if t.HasWrites() {
		return TxnResult{}, 0, invalidCommand("ReadTxn given a transaction that writes")
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	res, _ := f.evalTxnLocked(t, 0)
	return res, f.lastWrite.Load(), nil
}

// evalTxnLocked runs t at write index index: compares, then the chosen branch in order. With write
// ops, f.mu is held for writing; for a read-only t a read lock is enough. It returns the changes made.
func (f *FSM) evalTxnLocked(t *Txn, index uint64) (TxnResult, []Change) {
	res := TxnResult{Succeeded: true}
	for i := range t.Compare {
		if !f.compareLocked(&t.Compare[i]) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	var changes []Change
	res.Results = make([]TxnOpResult, len(ops))
	for i := range ops {
		op := &ops[i]
		r := &res.Results[i]
		r.Kind = op.Kind
		switch op.Kind {
		case TxnPut:
			old, found := f.tree.Get(Entry{Key: op.Key})
			changes = append(changes, f.putLocked(op.Key, op.Value, index, old, found))
		case TxnPutSession: // txnRefusalLocked has checked the session and the key
			old, found := f.tree.Get(Entry{Key: op.Key})
			lock := &Lock{Session: op.Session, Index: old.LockIndex()}
			if found && old.Lock != nil && *old.Lock == *lock {
				lock = old.Lock
			}
			f.sess.byID[op.Session].keys[op.Key] = struct{}{}
			changes = append(changes, f.putEntryLocked(op.Key, op.Value, index, old, found, lock))
		case TxnDelete:
			if old, ok := f.tree.Get(Entry{Key: op.Key}); ok {
				changes = append(changes, f.deleteLocked(old, index))
				r.Found, r.Deleted = true, 1
			}
		case TxnDeletePrefix:
			victims, _ := f.listLocked(op.Key, "", 0)
			for _, old := range victims {
				changes = append(changes, f.deleteLocked(old, index))
			}
			r.Deleted = uint64(len(victims))
		case TxnGet:
			if e, ok := f.tree.Get(Entry{Key: op.Key}); ok {
				r.Found, r.Entries = true, []Entry{e}
			}
		case TxnList:
			r.Entries, r.More = f.listLocked(op.Key, "", int(min(op.Limit, 1<<31)))
		}
	}
	return res, changes
}

// txnRefusalLocked checks, before anything runs, that every session put of the branch t will run can
// take its key: the session is live and, at that point of the transaction, no other session holds the
// key (an earlier op of the same transaction may have deleted or taken it). A refused transaction
// changes nothing. f.mu is held.
func (f *FSM) txnRefusalLocked(t *Txn) Refusal {
	ops := t.Success
	for i := range t.Compare {
		if !f.compareLocked(&t.Compare[i]) {
			ops = t.Failure
			break
		}
	}
	holder := map[string]string{} // key → holder as the transaction has left it so far
	var cleared []string          // prefixes deleted so far
	for _, op := range ops {
		switch op.Kind {
		case TxnDelete:
			holder[op.Key] = ""
		case TxnDeletePrefix:
			cleared = append(cleared, op.Key)
			for k := range holder {
				if strings.HasPrefix(k, op.Key) {
					holder[k] = ""
				}
			}
		case TxnPutSession:
			if _, ok := f.sess.byID[op.Session]; !ok {
				return RefusedNoSession
			}
			h, seen := holder[op.Key]
			if !seen {
				e, found := f.tree.Get(Entry{Key: op.Key})
				gone := slices.ContainsFunc(cleared, func(p string) bool { return strings.HasPrefix(op.Key, p) })
				if found && !gone {
					h = e.Holder()
				}
				if !gone && !f.keyFree(Entry{Key: op.Key, Lock: e.Lock}, found, op.Session) {
					return RefusedHeld
				}
			}
			if h != "" && h != op.Session {
				return RefusedHeld
			}
			holder[op.Key] = op.Session
		}
	}
	return RefusedNone
}

func (f *FSM) compareLocked(c *Compare) bool {
	if c.Target == TargetCount {
		var n uint64
		f.tree.AscendGreaterOrEqual(Entry{Key: c.Key}, func(e Entry) bool {
			if !strings.HasPrefix(e.Key, c.Key) {
				return false
			}
			n++
			return true
		})
		return compareNum(n, c.Op, c.Num)
	}
	e, found := f.tree.Get(Entry{Key: c.Key})
	switch c.Target {
	case TargetModIndex:
		return compareNum(e.ModIndex, c.Op, c.Num) // an absent key's is 0
	case TargetCreateIndex:
		return compareNum(e.CreateIndex, c.Op, c.Num)
	case TargetExists:
		var exists uint64
		if found {
			exists = 1
		}
		return compareNum(exists, c.Op, c.Num)
	case TargetValue:
		if !found {
			return false
		}
		d := bytes.Compare(e.Value, c.Value)
		switch c.Op {
		case CmpEqual:
			return d == 0
		case CmpNotEqual:
			return d != 0
		case CmpLess:
			return d < 0
		case CmpGreater:
			return d > 0
		}
	}
	return false
}

func compareNum(a uint64, op CompareOp, b uint64) bool {
	switch op {
	case CmpEqual:
		return a == b
	case CmpNotEqual:
		return a != b
	case CmpLess:
		return a < b
	case CmpGreater:
		return a > b
	}
	return false
}

// AppendEncoded appends the encoding of r that DecodeTxnResult reads: how a leader hands a forwarded
// transaction's results back to the follower that forwarded it.
//
//	succeeded 1 byte, then a uvarint count of results, each: kind 1 byte, flags 1 byte (bit 0 found,
//	bit 1 more), deleted uvarint, entry count uvarint, each entry: key, value (length-prefixed),
//	create index, mod index (uvarints)
func (r *TxnResult) AppendEncoded(b []byte) []byte {
	var ok byte
	if r.Succeeded {
		ok = 1
	}
	b = append(b, ok)
	b = binary.AppendUvarint(b, uint64(len(r.Results)))
	for i := range r.Results {
		x := &r.Results[i]
		var flags byte
		if x.Found {
			flags |= 1
		}
		if x.More {
			flags |= 2
		}
		b = append(b, byte(x.Kind), flags)
		b = binary.AppendUvarint(b, x.Deleted)
		b = binary.AppendUvarint(b, uint64(len(x.Entries)))
		for _, e := range x.Entries {
			b = appendBytes(b, []byte(e.Key))
			b = appendBytes(b, e.Value)
			b = binary.AppendUvarint(b, e.CreateIndex)
			b = binary.AppendUvarint(b, e.ModIndex)
		}
	}
	return b
}

// DecodeTxnResult parses AppendEncoded's output; values alias b.
func DecodeTxnResult(b []byte) (*TxnResult, error) {
	if len(b) < 1 || b[0] > 1 {
		return nil, invalidCommand("bad transaction result")
	}
	r := &TxnResult{Succeeded: b[0] == 1}
	n, rest, err := readCount(b[1:], "result count", 4)
	if err != nil {
		return nil, err
	}
	r.Results = make([]TxnOpResult, n)
	for i := range r.Results {
		x := &r.Results[i]
		if len(rest) < 2 {
			return nil, invalidCommand("truncated result %d", i)
		}
		x.Kind, x.Found, x.More, rest = TxnOpKind(rest[0]), rest[1]&1 != 0, rest[1]&2 != 0, rest[2:]
		if x.Deleted, rest, err = readUvarint(rest, "deleted"); err != nil {
			return nil, err
		}
		var m uint64
		if m, rest, err = readCount(rest, "entry count", 4); err != nil {
			return nil, err
		}
		if m > 0 {
			x.Entries = make([]Entry, m)
		}
		for j := range x.Entries {
			e := &x.Entries[j]
			var k, v []byte
			if k, rest, err = readBytes(rest, "key", "key length"); err != nil {
				return nil, err
			}
			if v, rest, err = readBytes(rest, "value", "value length"); err != nil {
				return nil, err
			}
			e.Key, e.Value = string(k), append([]byte{}, v...)
			if e.CreateIndex, rest, err = readUvarint(rest, "create index"); err != nil {
				return nil, err
			}
			if e.ModIndex, rest, err = readUvarint(rest, "mod index"); err != nil {
				return nil, err
			}
		}
	}
	if len(rest) != 0 {
		return nil, invalidCommand("%d trailing bytes after a transaction result", len(rest))
	}
	return r, nil
}
