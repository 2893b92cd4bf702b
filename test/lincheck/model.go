// Package lincheck checks recorded histories of raftkv key-value operations for linearizability.
//
// It owns the sequential specification of the KV API (single-key reads and writes, and multi-key
// transactions) as a porcupine model, partitioned by the keys operations couple (txn.go), and the
// checks porcupine cannot express per partition: every acknowledged write has a unique index, and a
// write that finished before another started has the smaller index. It never talks to a server:
// callers record operations (see Recorder) and hand the history over.
//
// The model checks values and indexes. Per key it keeps whether the key exists, its value, its
// modify and create indexes, and a floor: the largest index known to be linearized before the
// current point, which every later write to the key must exceed (indexes increase in commit order).
// A write whose outcome is unknown (503 indeterminate, a timeout, a broken connection) is recorded
// with an unknown output and an infinite return time; the model lets it either take effect, with an
// index nobody has seen yet, or not take effect at all. The next observation of the key (a read's
// X-Kv-Mod-Index, a cas mismatch's current_index) fixes the unknown index.
package lincheck

import (
	"fmt"
	"math"
	"strconv"
)

// Infinity is the return timestamp of an operation whose outcome is unknown: porcupine may
// linearize it anywhere after its call, including after everything else (i.e. never observed).
const Infinity int64 = math.MaxInt64

// Kind is the operation type.
type Kind uint8

// Operation kinds.
const (
	Get Kind = iota + 1
	Put
	Delete
	// Txn is a transaction (POST /v1/txn): Compare, then Success or Failure, atomically at one index.
	Txn
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case Delete:
		return "delete"
	case Txn:
		return "txn"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Input is one request. Values must be unique across a history: the model identifies writes by value.
type Input struct {
	Kind  Kind
	Key   string // not Txn
	Value string // Put only
	// CAS makes a Put or Delete conditional on the key's modify index being Expected (0: key absent).
	CAS      bool
	Expected uint64
	// Txn only: if every compare holds, Success runs, else Failure; ops see the earlier writes.
	Compare          []Compare
	Success, Failure []TxnOp
}

// Status is the kind of answer a request got.
type Status uint8

// Answer kinds. Requests that certainly had no effect are not recorded at all.
const (
	// OK: 200. For Get, Found tells 200 from 404.
	OK Status = iota + 1
	// Mismatch: 409 cas_mismatch; Current is the key's modify index then (0: absent).
	Mismatch
	// Unknown: the write may or may not have happened. Return time must be Infinity.
	Unknown
)

// Output is one answer.
type Output struct {
	Status Status
	// Get.
	Found       bool
	Value       string
	ModIndex    uint64
	CreateIndex uint64
	// Put and Delete: the write's index. Delete also says whether a key was removed.
	Index   uint64
	Deleted bool
	// Mismatch.
	Current uint64
	// Txn (and Index: its write index, or for a transaction without writes the index of the view it
	// read): which branch ran, and a result per op of that branch.
	Succeeded bool
	Results   []TxnResult
}

// keyState is the model's view of one key. All fields are comparable so == is state equality.
type keyState struct {
	Exists bool
	Value  string
	// Mod and Create are 0 while unknown (the write that set them had an unknown outcome).
	Mod    uint64
	Create uint64
	// CreateIsMod: the key was created by the write whose index is the still-unknown Mod.
	CreateIsMod bool
	// Floor: every write linearized after this point has an index above Floor.
	Floor uint64
}

func (s keyState) String() string {
	idx := func(v uint64) string {
		if v == 0 {
			return "?"
		}
		return strconv.FormatUint(v, 10)
	}
	if !s.Exists {
		return fmt.Sprintf("absent (floor %d)", s.Floor)
	}
	create := idx(s.Create)
	if s.CreateIsMod {
		create = "=mod"
	}
	return fmt.Sprintf("%q mod=%s create=%s (floor %d)", s.Value, idx(s.Mod), create, s.Floor)
}

// observeMod records that the key's current modify index is m. It fails when that contradicts
// what is known.
func observeMod(s keyState, m uint64) (keyState, bool) {
	if !s.Exists || m == 0 {
		return s, false
	}
	if s.Mod != 0 {
		return s, s.Mod == m
	}
	// Unknown index: it belongs to a write linearized after everything below the floor.
	if m <= s.Floor {
		return s, false
	}
	s.Mod = m
	if s.CreateIsMod {
		s.Create = m
		s.CreateIsMod = false
	}
	s.Floor = m
	return s, true
}

// written is the state after a write of v with a known index.
func written(s keyState, v string, index uint64) keyState {
	ns := keyState{Exists: true, Value: v, Mod: index, Floor: index}
	switch {
	case !s.Exists:
		ns.Create = index
	case s.CreateIsMod:
		ns.Create = 0 // the creating index was never observed and no longer can be
	default:
		ns.Create = s.Create
	}
	return ns
}

// writtenUnknown is the state after a write of v whose index is unknown.
func writtenUnknown(s keyState, v string) keyState {
	ns := keyState{Exists: true, Value: v, Floor: s.Floor}
	if s.Exists {
		if !s.CreateIsMod {
			ns.Create = s.Create
		}
	} else {
		ns.CreateIsMod = true
	}
	return ns
}

// casHolds reports whether a cas on `expected` may succeed in s, and the state with what that
// success teaches (the unknown modify index was `expected`).
func casHolds(s keyState, expected uint64) (keyState, bool) {
	if expected == 0 {
		return s, !s.Exists
	}
	return observeMod(s, expected)
}

// mismatchHolds reports whether a cas on `expected` may fail with current index `current` in s.
func mismatchHolds(s keyState, expected, current uint64) (keyState, bool) {
	if current == expected {
		return s, false
	}
	if current == 0 {
		return s, !s.Exists
	}
	return observeMod(s, current)
}

// stepKey is the nondeterministic sequential specification of one key's single-key operations.
func stepKey(s keyState, in Input, out Output) []keyState {
	switch in.Kind {
	case Get:
		return stepGet(s, out)
	case Put:
		return stepPut(s, in, out)
	case Delete:
		return stepDelete(s, in, out)
	}
	return nil
}

func stepGet(s keyState, out Output) []keyState {
	switch {
	case out.Status == Unknown:
		return []keyState{s} // a failed read says nothing; callers normally drop them
	case out.Status != OK:
		return nil
	case !out.Found:
		if s.Exists {
			return nil
		}
		return []keyState{s}
	}
	if !s.Exists || s.Value != out.Value {
		return nil
	}
	ns, ok := observeMod(s, out.ModIndex)
	if !ok || out.CreateIndex == 0 || out.CreateIndex > out.ModIndex {
		return nil
	}
	if ns.Create == 0 {
		ns.Create = out.CreateIndex
	} else if ns.Create != out.CreateIndex {
		return nil
	}
	return []keyState{ns}
}

func stepPut(s keyState, in Input, out Output) []keyState {
	switch out.Status {
	case OK:
		pre, ok := s, true
		if in.CAS {
			pre, ok = casHolds(s, in.Expected)
		}
		if !ok || out.Index <= pre.Floor {
			return nil
		}
		return []keyState{written(pre, in.Value, out.Index)}
	case Mismatch:
		if !in.CAS {
			return nil
		}
		ns, ok := mismatchHolds(s, in.Expected, out.Current)
		if !ok {
			return nil
		}
		return []keyState{ns}
	case Unknown:
		next := []keyState{s} // it did not happen
		pre, ok := s, true
		if in.CAS {
			pre, ok = casHolds(s, in.Expected)
		}
		if ok {
			next = append(next, writtenUnknown(pre, in.Value)) // it happened
		}
		return next
	}
	return nil
}

func stepDelete(s keyState, in Input, out Output) []keyState {
	switch out.Status {
	case OK:
		if !out.Deleted {
			// Nothing to delete. A cas delete of an absent key may answer this instead of a mismatch.
			if s.Exists {
				return nil
			}
			return []keyState{s}
		}
		pre, ok := s, s.Exists
		if ok && in.CAS {
			pre, ok = casHolds(s, in.Expected)
		}
		if !ok || out.Index <= pre.Floor {
			return nil
		}
		return []keyState{{Floor: out.Index}}
	case Mismatch:
		if !in.CAS {
			return nil
		}
		ns, ok := mismatchHolds(s, in.Expected, out.Current)
		if !ok {
			return nil
		}
		return []keyState{ns}
	case Unknown:
		next := []keyState{s}
		pre, ok := s, s.Exists
		if ok && in.CAS {
			pre, ok = casHolds(s, in.Expected)
		}
		if ok {
			next = append(next, keyState{Floor: pre.Floor})
		}
		return next
	}
	return nil
}

func describeOperation(input, output interface{}) string {
	in, out := input.(Input), output.(Output)
	if in.Kind == Txn {
		return describeTxn(in, out)
	}
	var call string
	switch {
	case in.Kind == Get:
		call = fmt.Sprintf("get(%q)", in.Key)
	case in.Kind == Put && in.CAS:
		call = fmt.Sprintf("cas(%q, %d, %q)", in.Key, in.Expected, in.Value)
	case in.Kind == Put:
		call = fmt.Sprintf("put(%q, %q)", in.Key, in.Value)
	case in.Kind == Delete && in.CAS:
		call = fmt.Sprintf("delete(%q, cas=%d)", in.Key, in.Expected)
	default:
		call = fmt.Sprintf("delete(%q)", in.Key)
	}
	var ret string
	switch {
	case out.Status == Unknown:
		ret = "unknown"
	case out.Status == Mismatch:
		ret = fmt.Sprintf("mismatch(current=%d)", out.Current)
	case in.Kind == Get && !out.Found:
		ret = "not found"
	case in.Kind == Get:
		ret = fmt.Sprintf("%q mod=%d create=%d", out.Value, out.ModIndex, out.CreateIndex)
	case in.Kind == Delete:
		ret = fmt.Sprintf("deleted=%t index=%d", out.Deleted, out.Index)
	default:
		ret = fmt.Sprintf("index=%d", out.Index)
	}
	return call + " -> " + ret
}
