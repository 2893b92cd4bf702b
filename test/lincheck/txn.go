package lincheck

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Multi-key transactions in the model.
//
// A transaction couples the keys it touches: its compares and ops must be checked against one state of
// all of them. Porcupine checks each partition of a history on its own, so partitionByKeys puts every
// operation on a set of keys coupled by some transaction (directly or through a chain of them) in one
// partition, whose state is the keyState of each of its keys (groupState). Callers keep the search
// small by keeping transactions within small key groups (harness.LinClient couples pairs of keys):
// a partition's search grows with its writes of unknown outcome, which stay open to its end.
//
// Indexes across keys. Writes get indexes in commit order, whatever their keys, so within a partition
// an operation at a known index also orders the other keys: a write (or a transaction that wrote
// nothing but was committed) at index I linearized at some point needs I above every key's floor, and
// raises every key's floor to I; a read that reflects the view at index L (a read-only transaction)
// needs L at or above every floor and raises them to L. A key whose modify index is unknown (an
// indeterminate write, not yet observed) keeps its floor: that floor bounds the unknown index from
// below, and only what was linearized before that write may be in it.

// CompareTarget is what a Compare looks at.
type CompareTarget uint8

// Compare targets.
const (
	// CmpModIndex compares the key's modify index (0 when absent) with Num.
	CmpModIndex CompareTarget = iota + 1
	// CmpValue compares the key's value with Value; false whenever the key is absent.
	CmpValue
	// CmpExists compares whether the key exists with Exists.
	CmpExists
)

// Compare is one condition of a transaction: = (or != with NotEqual).
type Compare struct {
	Key      string
	Target   CompareTarget
	NotEqual bool
	Num      uint64
	Value    string
	Exists   bool
}

// TxnOp is one op of a transaction branch: Get, Put (Value) or Delete of Key.
type TxnOp struct {
	Kind  Kind
	Key   string
	Value string
}

// TxnResult is one op's answer: for Get, Found and the entry's fields; for Delete, Deleted.
type TxnResult struct {
	Found       bool
	Value       string
	ModIndex    uint64
	CreateIndex uint64
	Deleted     bool
}

// Keys lists the keys an operation touches, in order of first mention.
func (in Input) Keys() []string {
	if in.Kind != Txn {
		return []string{in.Key}
	}
	var keys []string
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, c := range in.Compare {
		add(c.Key)
	}
	for _, op := range in.Success {
		add(op.Key)
	}
	for _, op := range in.Failure {
		add(op.Key)
	}
	return keys
}

// Writes reports whether a transaction has a write in either branch: one that has none is served as
// a read and writes no log entry (its index is the view it read).
func (in Input) Writes() bool {
	for _, ops := range [][]TxnOp{in.Success, in.Failure} {
		for _, op := range ops {
			if op.Kind != Get {
				return true
			}
		}
	}
	return false
}

// groupState is the model's view of a partition: the state of each of its keys that differs from
// the initial one (absent, floor 0), sorted by key. It is never modified in place.
type groupState []keyEntry

type keyEntry struct {
	key string
	s   keyState
}

func (g groupState) get(key string) keyState {
	for _, e := range g {
		if e.key == key {
			return e.s
		}
	}
	return keyState{}
}

func (g groupState) with(key string, s keyState) groupState {
	out := make(groupState, 0, len(g)+1)
	placed := false
	for _, e := range g {
		if !placed && e.key >= key {
			placed = true
			if s != (keyState{}) {
				out = append(out, keyEntry{key, s})
			}
			if e.key == key {
				continue
			}
		}
		out = append(out, e)
	}
	if !placed && s != (keyState{}) {
		out = append(out, keyEntry{key, s})
	}
	return out
}

func (g groupState) equal(o groupState) bool {
	if len(g) != len(o) {
		return false
	}
	for i := range g {
		if g[i] != o[i] {
			return false
		}
	}
	return true
}

func (g groupState) String() string {
	if len(g) == 0 {
		return "all absent"
	}
	parts := make([]string, len(g))
	for i, e := range g {
		parts[i] = fmt.Sprintf("%q: %s", e.key, e.s)
	}
	return strings.Join(parts, "; ")
}

// unknownMod: the key exists with a modify index no one has seen yet.
func unknownMod(s keyState) bool { return s.Exists && s.Mod == 0 }

// floorsBelow reports whether every key's floor is below index (strict) or at most index.
func (g groupState) floorsBelow(index uint64, strict bool) bool {
	for _, e := range g {
		if e.s.Floor > index || strict && e.s.Floor == index {
			return false
		}
	}
	return true
}

// raise records that an operation at index was linearized here: every write after it has a larger
// index. Keys with an unknown modify index keep the floor that bounds that index.
func (g groupState) raise(index uint64) groupState {
	out := g
	copied := false
	for i, e := range g {
		if e.s.Floor >= index || unknownMod(e.s) {
			continue
		}
		if !copied {
			out, copied = slices.Clone(g), true
		}
		out[i].s.Floor = index
	}
	return out
}

// step is the nondeterministic sequential specification of a partition.
func step(g groupState, in Input, out Output) []groupState {
	if in.Kind == Txn {
		return stepTxn(g, in, out)
	}
	next := stepKey(g.get(in.Key), in, out)
	res := make([]groupState, 0, len(next))
	for _, s := range next {
		ng := g.with(in.Key, s)
		// A write at a known index, or a read of one, orders the other keys too.
		if out.Status == OK {
			switch {
			case in.Kind == Get && out.Found:
				ng = ng.raise(out.ModIndex)
			case in.Kind == Put || in.Kind == Delete && out.Deleted:
				if !g.floorsBelow(out.Index, true) {
					continue
				}
				ng = ng.raise(out.Index)
			}
		}
		res = append(res, ng)
	}
	return res
}

// compareCan reports whether c may hold (and the state with what holding teaches: an unknown modify
// index equal to the one compared) and whether it may fail.
func compareCan(s keyState, c Compare) (holds bool, learned keyState, fails bool) {
	var eq bool
	switch c.Target {
	case CmpModIndex:
		if unknownMod(s) {
			ns, ok := observeMod(s, c.Num)
			if c.NotEqual {
				// Unknown ≠ Num is possible unless Num is the only index it can be (never: it is
				// unbounded above); it cannot be Num unless observing Num is consistent.
				return true, s, ok
			}
			return ok, ns, true
		}
		var mod uint64
		if s.Exists {
			mod = s.Mod
		}
		eq = mod == c.Num
	case CmpValue:
		if !s.Exists {
			return false, s, true
		}
		eq = s.Value == c.Value
	case CmpExists:
		eq = s.Exists == c.Exists
	default:
		return false, s, false
	}
	if c.NotEqual {
		eq = !eq
	}
	return eq, s, !eq
}

// stepTxn is a transaction's specification: its compares decide the branch, the branch's ops run in
// order at one index, and each get answers the state the earlier ops left.
func stepTxn(g groupState, in Input, out Output) []groupState {
	// The branches that may run, with what running each teaches.
	var successPre groupState
	successOK, failureOK := true, false
	successPre = g
	for _, c := range in.Compare {
		if _, _, fails := compareCan(g.get(c.Key), c); fails {
			failureOK = true
		}
		holds, learned, _ := compareCan(successPre.get(c.Key), c)
		if !holds {
			successOK = false
		} else if successOK {
			successPre = successPre.with(c.Key, learned)
		}
	}
	writes := in.Writes()
	switch out.Status {
	case Unknown:
		if !writes {
			return []groupState{g} // a failed read says nothing; callers normally drop them
		}
		next := []groupState{g} // it did not happen
		if successOK {
			next = append(next, applyUnknown(successPre, in.Success))
		}
		if failureOK {
			next = append(next, applyUnknown(g, in.Failure))
		}
		return next
	case OK:
	default:
		return nil
	}
	pre, ops := successPre, in.Success
	if !out.Succeeded {
		pre, ops = g, in.Failure
	}
	if out.Succeeded && !successOK || !out.Succeeded && !failureOK || len(out.Results) != len(ops) || out.Index == 0 {
		return nil
	}
	// Committed at out.Index (after everything linearized so far), or read the view at out.Index.
	if !g.floorsBelow(out.Index, writes) {
		return nil
	}
	cur := pre
	for i, op := range ops {
		r := out.Results[i]
		s := cur.get(op.Key)
		switch op.Kind {
		case Get:
			ns, ok := txnGet(s, r, out.Index)
			if !ok {
				return nil
			}
			cur = cur.with(op.Key, ns)
		case Put:
			cur = cur.with(op.Key, written(s, op.Value, out.Index))
		case Delete:
			if r.Deleted != s.Exists {
				return nil
			}
			if s.Exists {
				cur = cur.with(op.Key, keyState{Floor: out.Index})
			}
		default:
			return nil
		}
	}
	return []groupState{cur.raise(out.Index)}
}

// txnGet checks a transaction's get of a key in state s, in a transaction at index (every index it
// sees is at most that), and returns the state with what it taught.
func txnGet(s keyState, r TxnResult, index uint64) (keyState, bool) {
	if !r.Found {
		return s, !s.Exists
	}
	if !s.Exists || s.Value != r.Value || r.ModIndex > index || r.CreateIndex == 0 || r.CreateIndex > r.ModIndex {
		return s, false
	}
	ns, ok := observeMod(s, r.ModIndex)
	if !ok {
		return s, false
	}
	if ns.Create == 0 {
		ns.Create = r.CreateIndex
	} else if ns.Create != r.CreateIndex {
		return s, false
	}
	return ns, true
}

// applyUnknown is the state after ops ran at an index nobody has seen.
func applyUnknown(g groupState, ops []TxnOp) groupState {
	for _, op := range ops {
		s := g.get(op.Key)
		switch op.Kind {
		case Put:
			g = g.with(op.Key, writtenUnknown(s, op.Value))
		case Delete:
			if s.Exists {
				g = g.with(op.Key, keyState{Floor: s.Floor})
			}
		}
	}
	return g
}

// Model is the porcupine model of the KV API, partitioned by the keys operations couple.
var Model = (&porcupine.NondeterministicModel{
	Partition: partitionByKeys,
	Init:      func() []interface{} { return []interface{}{groupState(nil)} },
	Step: func(state, input, output interface{}) []interface{} {
		next := step(state.(groupState), input.(Input), output.(Output))
		res := make([]interface{}, len(next))
		for i, s := range next {
			res[i] = s
		}
		return res
	},
	Equal: func(a, b interface{}) bool { return a.(groupState).equal(b.(groupState)) },
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		for _, e := range state.(groupState) {
			s := e.s
			fmt.Fprintf(h, "%s|%t|%s|%d|%d|%t|%d;", e.key, s.Exists, s.Value, s.Mod, s.Create, s.CreateIsMod, s.Floor)
		}
		return h.Sum64()
	},
	DescribeOperation: describeOperation,
	DescribeState:     func(state interface{}) string { return state.(groupState).String() },
}).ToModel()

// partitionByKeys splits a history into independent parts: the connected components of keys, two
// keys being connected when one operation touches both. Single-key operations alone give one part
// per key, as before transactions.
func partitionByKeys(history []porcupine.Operation) [][]porcupine.Operation {
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		p, ok := parent[k]
		if !ok {
			parent[k] = k
			return k
		}
		if p == k {
			return k
		}
		r := find(p)
		parent[k] = r
		return r
	}
	for _, op := range history {
		keys := op.Input.(Input).Keys()
		for i := 1; i < len(keys); i++ {
			k := keys[i]
			if a, b := find(keys[0]), find(k); a != b {
				parent[b] = a
			}
		}
	}
	byRoot := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		keys := op.Input.(Input).Keys()
		if len(keys) == 0 {
			continue // a transaction that touches nothing constrains nothing
		}
		r := find(keys[0])
		i, ok := byRoot[r]
		if !ok {
			i = len(parts)
			byRoot[r] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

func describeTxn(in Input, out Output) string {
	var b strings.Builder
	b.WriteString("txn(")
	for i, c := range in.Compare {
		if i > 0 {
			b.WriteString(" && ")
		}
		op := "="
		if c.NotEqual {
			op = "!="
		}
		switch c.Target {
		case CmpModIndex:
			fmt.Fprintf(&b, "mod(%q)%s%d", c.Key, op, c.Num)
		case CmpValue:
			fmt.Fprintf(&b, "value(%q)%s%q", c.Key, op, c.Value)
		case CmpExists:
			fmt.Fprintf(&b, "exists(%q)%s%t", c.Key, op, c.Exists)
		}
	}
	branch := func(ops []TxnOp) string {
		parts := make([]string, len(ops))
		for i, op := range ops {
			if op.Kind == Put {
				parts[i] = fmt.Sprintf("put(%q, %q)", op.Key, op.Value)
			} else {
				parts[i] = fmt.Sprintf("%s(%q)", op.Kind, op.Key)
			}
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	fmt.Fprintf(&b, " ? %s : %s) -> ", branch(in.Success), branch(in.Failure))
	if out.Status == Unknown {
		b.WriteString("unknown")
		return b.String()
	}
	fmt.Fprintf(&b, "succeeded=%t index=%d [", out.Succeeded, out.Index)
	for i, r := range out.Results {
		if i > 0 {
			b.WriteString(" ")
		}
		switch {
		case r.Found:
			fmt.Fprintf(&b, "%q mod=%d create=%d", r.Value, r.ModIndex, r.CreateIndex)
		case r.Deleted:
			b.WriteString("deleted")
		default:
			b.WriteString("-")
		}
	}
	b.WriteString("]")
	return b.String()
}
