package fsm

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A reference evaluator of transactions, as simple as it can be (a map, sorted on demand), that the
// FSM's must agree with on every transaction a fuzzer makes up: which branch runs, every op's result,
// the index every write gets, and the state after.

type refEntry struct {
	value       []byte
	create, mod uint64
}

type refStore map[string]refEntry

func (s refStore) sortedKeys(prefix string) []string {
	var keys []string
	for k := range s {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (s refStore) holds(c Compare) bool {
	num := func(a uint64) bool {
		switch c.Op {
		case CmpEqual:
			return a == c.Num
		case CmpNotEqual:
			return a != c.Num
		case CmpLess:
			return a < c.Num
		case CmpGreater:
			return a > c.Num
		}
		return false
	}
	e, ok := s[c.Key]
	switch c.Target {
	case TargetCount:
		return num(uint64(len(s.sortedKeys(c.Key))))
	case TargetModIndex:
		return num(e.mod)
	case TargetCreateIndex:
		return num(e.create)
	case TargetExists:
		if ok {
			return num(1)
		}
		return num(0)
	case TargetValue:
		if !ok {
			return false
		}
		d := bytes.Compare(e.value, c.Value)
		return c.Op == CmpEqual && d == 0 || c.Op == CmpNotEqual && d != 0 || c.Op == CmpLess && d < 0 || c.Op == CmpGreater && d > 0
	}
	return false
}

func (s refStore) entry(k string) Entry {
	e := s[k]
	return Entry{Key: k, Value: e.value, CreateIndex: e.create, ModIndex: e.mod}
}

// run evaluates t at index (0: a read) and returns its result.
func (s refStore) run(t *Txn, index uint64) TxnResult {
	res := TxnResult{Succeeded: true}
	for _, c := range t.Compare {
		if !s.holds(c) {
			res.Succeeded = false
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	res.Results = make([]TxnOpResult, len(ops))
	for i, op := range ops {
		r := &res.Results[i]
		r.Kind = op.Kind
		switch op.Kind {
		case TxnPut:
			create := index
			if old, ok := s[op.Key]; ok {
				create = old.create
			}
			s[op.Key] = refEntry{value: bytes.Clone(op.Value), create: create, mod: index}
		case TxnDelete:
			if _, ok := s[op.Key]; ok {
				delete(s, op.Key)
				r.Found, r.Deleted = true, 1
			}
		case TxnDeletePrefix:
			for _, k := range s.sortedKeys(op.Key) {
				delete(s, k)
				r.Deleted++
			}
		case TxnGet:
			if _, ok := s[op.Key]; ok {
				r.Found, r.Entries = true, []Entry{s.entry(op.Key)}
			}
		case TxnList:
			keys := s.sortedKeys(op.Key)
			if op.Limit > 0 && uint64(len(keys)) > op.Limit {
				keys, r.More = keys[:op.Limit], true
			}
			for _, k := range keys {
				r.Entries = append(r.Entries, s.entry(k))
			}
		}
	}
	return res
}

// fuzzTxn makes a transaction out of fuzz bytes, over a handful of keys so that ops collide.
func fuzzTxn(b []byte) (*Txn, []byte) {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	keys := []string{"a", "b", "p/a", "p/b", "p/c"}
	prefixes := []string{"", "p/", "p/a", "q"}
	values := [][]byte{[]byte("0"), []byte("1"), []byte("10"), {}}
	t := &Txn{}
	for n := next() % 4; n > 0; n-- {
		c := Compare{Target: CompareTarget(1 + next()%5), Op: CompareOp(1 + next()%4), Num: uint64(next() % 12)}
		if c.Target == TargetCount {
			c.Key = prefixes[next()%byte(len(prefixes))]
			c.Num %= 5
		} else {
			c.Key = keys[next()%byte(len(keys))]
		}
		if c.Target == TargetValue {
			c.Value, c.Num = values[next()%byte(len(values))], 0
		}
		if c.Target == TargetExists {
			c.Num %= 2
		}
		t.Compare = append(t.Compare, c)
	}
	for _, branch := range []*[]TxnOp{&t.Success, &t.Failure} {
		for n := next() % 5; n > 0; n-- {
			op := TxnOp{Kind: TxnOpKind(1 + next()%5)}
			switch op.Kind {
			case TxnDeletePrefix, TxnList:
				op.Key = prefixes[next()%byte(len(prefixes))]
			default:
				op.Key = keys[next()%byte(len(keys))]
			}
			switch op.Kind {
			case TxnPut:
				op.Value = values[next()%byte(len(values))]
			case TxnList:
				op.Limit = uint64(next() % 4)
			}
			*branch = append(*branch, op)
		}
	}
	return t, b
}

func FuzzTxnEvaluationMatchesAReference(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 3, 0, 3, 1, 1, 0, 2, 4, 2, 0, 0, 3, 0, 1, 1, 1, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(bytes.Repeat([]byte{1, 3, 2, 1, 4, 1, 2, 0, 3, 1, 1}, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := newApplier(t)
		ref := refStore{}
		for step := 0; len(b) > 0 && step < 32; step++ {
			var tx *Txn
			tx, b = fuzzTxn(b)
			// Through the log encoding, as a leader would propose it.
			dec, err := DecodeTxn(tx.Encode())
			require.NoError(t, err)
			if !tx.HasWrites() {
				got, index, err := a.f.ReadTxn(dec)
				require.NoError(t, err)
				require.Equal(t, a.f.lastWrite.Load(), index, "a read answers the index of the view it read")
				require.Equal(t, normalizeResult(ref.run(tx, 0)), normalizeResult(got), "read-only transaction %+v", tx)
				continue
			}
			res := a.apply(Command{Op: OpTxn, Value: tx.Encode()})
			require.NoError(t, res.Err)
			require.NotNil(t, res.Txn)
			want := ref.run(tx, res.Index)
			require.Equal(t, normalizeResult(want), normalizeResult(*res.Txn), "transaction %+v at %d", tx, res.Index)
			// The forwarding encoding of the result carries it whole.
			back, err := DecodeTxnResult(res.Txn.AppendEncoded(nil))
			require.NoError(t, err)
			require.Equal(t, normalizeResult(*res.Txn), normalizeResult(*back))

			all, _ := a.f.List("", "", 0)
			var wantAll []Entry
			for _, k := range ref.sortedKeys("") {
				wantAll = append(wantAll, ref.entry(k))
			}
			require.Equal(t, normalizeEntries(wantAll), normalizeEntries(all), "state after %+v", tx)
		}
	})
}

// normalize* make nil and empty slices compare equal (encodings do not tell them apart).
func normalizeEntries(es []Entry) []Entry {
	out := []Entry{}
	for _, e := range es {
		if len(e.Value) == 0 {
			e.Value = nil
		}
		out = append(out, e)
	}
	return out
}

func normalizeResult(r TxnResult) TxnResult {
	out := TxnResult{Succeeded: r.Succeeded, Results: []TxnOpResult{}}
	for _, x := range r.Results {
		x.Entries = normalizeEntries(x.Entries)
		out.Results = append(out.Results, x)
	}
	return out
}

func FuzzDecodeTxnResult(f *testing.F) {
	f.Add((&TxnResult{Succeeded: true, Results: []TxnOpResult{
		{Kind: TxnGet, Found: true, Entries: []Entry{{Key: "k", Value: []byte("v"), CreateIndex: 1, ModIndex: 2}}},
		{Kind: TxnList, More: true}, {Kind: TxnDeletePrefix, Deleted: 3},
	}}).AppendEncoded(nil))
	f.Add([]byte{1, 1, 4, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeTxnResult(b)
		if err != nil {
			return
		}
		again, err := DecodeTxnResult(r.AppendEncoded(nil))
		require.NoError(t, err, "a decoded result re-encodes to something decodable")
		require.Equal(t, normalizeResult(*r), normalizeResult(*again))
	})
}
