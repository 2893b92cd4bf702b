package lincheck

import (
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Builders for transactions.

func modIs(k string, n uint64) Compare  { return Compare{Key: k, Target: CmpModIndex, Num: n} }
func valueIs(k, v string) Compare       { return Compare{Key: k, Target: CmpValue, Value: v} }
func existsIs(k string, e bool) Compare { return Compare{Key: k, Target: CmpExists, Exists: e} }
func tget(k string) TxnOp               { return TxnOp{Kind: Get, Key: k} }
func tput(k, v string) TxnOp            { return TxnOp{Kind: Put, Key: k, Value: v} }
func tdel(k string) TxnOp               { return TxnOp{Kind: Delete, Key: k} }

func txn(cmp []Compare, success, failure []TxnOp) Input {
	return Input{Kind: Txn, Compare: cmp, Success: success, Failure: failure}
}

// readTxn reads keys in one read-only transaction.
func readTxn(keys ...string) Input {
	ops := make([]TxnOp, len(keys))
	for i, k := range keys {
		ops[i] = tget(k)
	}
	return txn(nil, ops, nil)
}

func ran(succeeded bool, index uint64, results ...TxnResult) Output {
	return Output{Status: OK, Succeeded: succeeded, Index: index, Results: results}
}
func rFound(v string, mod, create uint64) TxnResult {
	return TxnResult{Found: true, Value: v, ModIndex: mod, CreateIndex: create}
}

// rNone is a get that found nothing, or a put's result (its index is the transaction's).
func rNone() TxnResult    { return TxnResult{} }
func rDeleted() TxnResult { return TxnResult{Deleted: true} }

// transfer is {mod(x)=mx && mod(y)=my ? put x, put y : get x, get y}.
func transfer(mx, my uint64, vx, vy string) Input {
	return txn([]Compare{modIs("x", mx), modIs("y", my)},
		[]TxnOp{tput("x", vx), tput("y", vy)}, []TxnOp{tget("x"), tget("y")})
}

func TestTxnAcceptsLegalConcurrentHistory(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "x1"), wrote(5)),
		op(1, 0, 10, put("y", "y1"), wrote(6)),
		op(2, 11, 20, readTxn("x", "y"), ran(true, 6, rFound("x1", 5, 5), rFound("y1", 6, 6))),
		// Two transfers race on the same guards: one wins, the other sees what the winner wrote.
		op(0, 21, 40, transfer(5, 6, "x2", "y2"), ran(true, 9, rNone(), rNone())),
		op(1, 22, 41, transfer(5, 6, "x3", "y3"), ran(false, 10, rFound("x2", 9, 5), rFound("y2", 9, 6))),
		// Concurrent with the winner: either view, never half of it.
		op(2, 25, 35, readTxn("x", "y"), ran(true, 6, rFound("x1", 5, 5), rFound("y1", 6, 6))),
		op(3, 25, 45, readTxn("y", "x"), ran(true, 10, rFound("y2", 9, 6), rFound("x2", 9, 5))),
		// A single-key write between, then a transaction whose ops see its own earlier writes.
		op(0, 50, 60, cas("x", 9, "x4"), wrote(12)),
		op(1, 61, 70, txn([]Compare{valueIs("x", "x4"), existsIs("z", false)},
			[]TxnOp{tdel("x"), tget("x"), tput("z", "z1"), tget("z"), tdel("y")}, nil),
			ran(true, 13, rDeleted(), rNone(), rNone(), rFound("z1", 13, 13), rDeleted())),
		op(2, 71, 80, get("x"), notFound()),
		op(2, 81, 90, readTxn("z", "y"), ran(true, 13, rFound("z1", 13, 13), rNone())),
		// Uncoupled key: its own partition.
		op(4, 0, 100, put("w", "w1"), wrote(7)),
	}
	assert.True(t, linearizable(t, h))
	assert.Empty(t, CheckIndexes(h))
	assert.Len(t, partitionByKeys(h), 2, "x, y and z coupled by transactions; w alone")
}

// Each history here is linearizable in every respect but one; the model must reject it. (A checker
// that cannot fail proves nothing.)
func TestTxnRejectsNonLinearizableHistories(t *testing.T) {
	base := []porcupine.Operation{
		op(0, 0, 10, put("x", "x1"), wrote(5)),
		op(1, 0, 10, put("y", "y1"), wrote(6)),
		op(0, 20, 30, transfer(5, 6, "x2", "y2"), ran(true, 9, rNone(), rNone())),
	}
	require.True(t, linearizable(t, base))
	for name, last := range map[string]porcupine.Operation{
		"torn read: one key from after the transfer, one from before": op(2, 40, 50, readTxn("x", "y"),
			ran(true, 9, rFound("x2", 9, 5), rFound("y1", 6, 6))),
		"stale read: the transfer returned before the read began": op(2, 40, 50, readTxn("x", "y"),
			ran(true, 6, rFound("x1", 5, 5), rFound("y1", 6, 6))),
		"the view index is below a write it reflects": op(2, 40, 50, readTxn("x", "y"),
			ran(true, 8, rFound("x2", 9, 5), rFound("y2", 9, 6))),
		"a read's view below a write index that returned before it (other key)": op(2, 40, 50, readTxn("x"),
			ran(true, 7, rFound("x2", 9, 5))),
		"succeeded although a guard was stale": op(2, 40, 50, transfer(5, 6, "x3", "y3"), ran(true, 11, rNone(), rNone())),
		"failed although every guard held":     op(2, 40, 50, transfer(9, 9, "x3", "y3"), ran(false, 11, rFound("x2", 9, 5), rFound("y2", 9, 6))),
		"the failure branch read a value nobody wrote": op(2, 40, 50, transfer(5, 6, "x3", "y3"),
			ran(false, 11, rFound("x2", 9, 5), rFound("ghost", 9, 6))),
		"a transaction's index below an earlier write's": op(2, 40, 50, txn(nil, []TxnOp{tput("y", "y3")}, nil), ran(true, 8, rNone())),
		"the results do not match the branch":            op(2, 40, 50, transfer(5, 6, "x3", "y3"), ran(false, 11)),
		"a delete of an absent key said it deleted": op(2, 40, 50, txn(nil, []TxnOp{tdel("nope"), tget("x")}, nil),
			ran(true, 11, rDeleted(), rFound("x2", 9, 5))),
		"an op missed an earlier write of its own transaction": op(2, 40, 50, txn(nil, []TxnOp{tput("x", "x3"), tget("x")}, nil),
			ran(true, 11, rFound("x2", 9, 5))),
		"a single-key write's index below a transaction that returned before it": op(2, 40, 50, put("y", "y4"), wrote(8)),
	} {
		h := append(base[:len(base):len(base)], last)
		assert.False(t, linearizable(t, h), name)
	}
}

func TestTxnIndeterminateAppliesWholeOrNotAtAll(t *testing.T) {
	base := []porcupine.Operation{
		op(0, 0, 10, put("x", "x1"), wrote(5)),
		op(1, 0, 10, put("y", "y1"), wrote(6)),
		indeterminate(0, 20, transfer(5, 6, "x2", "y2")),
	}
	for _, tc := range []struct {
		name string
		read Output
		ok   bool
	}{
		{"not applied", ran(true, 6, rFound("x1", 5, 5), rFound("y1", 6, 6)), true},
		{"applied", ran(true, 9, rFound("x2", 9, 5), rFound("y2", 9, 6)), true},
		{"half applied", ran(true, 9, rFound("x2", 9, 5), rFound("y1", 6, 6)), false},
		{"applied, at an index not above what came before", ran(true, 6, rFound("x2", 6, 5), rFound("y2", 6, 6)), false},
	} {
		h := append(base[:3:3], op(2, 30, 40, readTxn("x", "y"), tc.read))
		assert.Equal(t, tc.ok, linearizable(t, h), tc.name)
	}

	// Once a reader saw it applied, it cannot be unapplied.
	h := append(base[:3:3],
		op(2, 30, 40, readTxn("x", "y"), ran(true, 9, rFound("x2", 9, 5), rFound("y2", 9, 6))),
		op(2, 41, 50, get("y"), found("y1", 6, 6)))
	assert.False(t, linearizable(t, h))

	// An indeterminate transaction whose guard cannot hold never applies.
	h = []porcupine.Operation{
		op(0, 0, 10, put("x", "x1"), wrote(5)),
		op(1, 0, 10, put("y", "y1"), wrote(6)),
		indeterminate(0, 20, transfer(4, 6, "x2", "y2")),
		op(2, 30, 40, readTxn("x", "y"), ran(true, 9, rFound("x2", 9, 5), rFound("y2", 9, 6))),
	}
	assert.False(t, linearizable(t, h))
}

// An indeterminate single-key write leaves an unknown index; a transaction's compare or get settles it.
func TestTxnOnAnUnknownIndex(t *testing.T) {
	base := []porcupine.Operation{
		op(0, 0, 10, put("x", "x1"), wrote(5)),
		op(1, 0, 10, put("y", "y1"), wrote(6)),
		indeterminate(0, 20, put("x", "x2")),
	}
	for _, tc := range []struct {
		name string
		last porcupine.Operation
		ok   bool
	}{
		{"guard on the unknown index holds", op(1, 30, 40, transfer(8, 6, "x3", "y3"), ran(true, 11, rNone(), rNone())), true},
		{"guard on the old index holds (write not applied)", op(1, 30, 40, transfer(5, 6, "x3", "y3"), ran(true, 11, rNone(), rNone())), true},
		{"guard fails, the failure branch shows the unknown write", op(1, 30, 40, transfer(5, 6, "x3", "y3"),
			ran(false, 11, rFound("x2", 8, 5), rFound("y1", 6, 6))), true},
		{"the unknown index cannot be below what came before it", op(1, 30, 40, transfer(5, 6, "x3", "y3"),
			ran(false, 11, rFound("x2", 4, 5), rFound("y1", 6, 6))), false},
		{"guard on an index the write cannot have had", op(1, 30, 40, transfer(3, 6, "x3", "y3"), ran(true, 11, rNone(), rNone())), false},
	} {
		h := append(base[:3:3], tc.last)
		assert.Equal(t, tc.ok, linearizable(t, h), tc.name)
	}
}

func TestTxnIndexChecks(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, transfer(0, 0, "a", "b"), ran(true, 5, rNone(), rNone())),
		op(1, 20, 30, readTxn("x", "y"), ran(true, 5, rFound("a", 5, 5), rFound("b", 5, 5))),
		op(2, 20, 30, readTxn("x"), ran(true, 5, rFound("a", 5, 5))),
	}
	assert.True(t, linearizable(t, h))
	assert.Empty(t, CheckIndexes(h), "reads share the index of the view they read")
	h = append(h, op(3, 40, 50, put("w", "c"), wrote(5)))
	problems := CheckIndexes(h)
	require.Len(t, problems, 2)
	assert.Contains(t, problems[0], "index 5 returned twice")
}

func TestPartitionCouplesKeysThroughChainsOfTransactions(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 1, get("a"), notFound()),
		op(0, 0, 1, get("c"), notFound()),
		op(0, 0, 1, get("e"), notFound()),
		op(0, 0, 1, readTxn("a", "b"), ran(true, 1, rNone(), rNone())),
		op(0, 0, 1, txn([]Compare{existsIs("c", false)}, []TxnOp{tget("b")}, nil), ran(true, 1, rNone())),
	}
	parts := partitionByKeys(h)
	require.Len(t, parts, 2)
	assert.Len(t, parts[0], 4, "a, b and c")
	assert.Len(t, parts[1], 1, "e")
}
