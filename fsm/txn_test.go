package fsm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func txnCommand(t *Txn) Command { return Command{Op: OpTxn, Value: t.Encode()} }

func TestTxnEncodingRoundTripsAndIsStrict(t *testing.T) {
	tx := &Txn{
		Compare: []Compare{
			{Target: TargetModIndex, Op: CmpEqual, Key: "a", Num: 3},
			{Target: TargetValue, Op: CmpGreater, Key: "b", Value: []byte("x")},
			{Target: TargetCount, Op: CmpLess, Key: "p/", Num: 10},
		},
		Success: []TxnOp{{Kind: TxnPut, Key: "a", Value: []byte("v")}, {Kind: TxnList, Key: "p/", Limit: 5}},
		Failure: []TxnOp{{Kind: TxnGet, Key: "a"}, {Kind: TxnDeletePrefix, Key: "q/"}},
	}
	b := tx.Encode()
	got, err := DecodeTxn(b)
	require.NoError(t, err)
	assert.Equal(t, tx, got)
	assert.Equal(t, b, got.Encode())

	c, err := DecodeCommand(txnCommand(tx).Encode())
	require.NoError(t, err)
	assert.Equal(t, tx, c.Txn)

	for i := range b {
		_, err := DecodeTxn(b[:i])
		assert.ErrorIs(t, err, ErrInvalidCommand, "truncated to %d bytes", i)
	}
	_, err = DecodeTxn(append(b, 0))
	assert.ErrorIs(t, err, ErrInvalidCommand)
	_, err = DecodeCommand(Command{Op: OpTxn, Key: "k", Value: b}.Encode())
	assert.ErrorIs(t, err, ErrInvalidCommand, "a txn command has no key")
}

// The bank invariant in one entry: a transfer guarded by both balances' mod indexes moves money
// atomically, at one index; a stale guard runs the failure branch and changes nothing.
func TestTxnAppliesItsBranchAtomicallyAtOneIndex(t *testing.T) {
	a := newApplier(t)
	sink := &recordingSink{}
	a.f.SetChangeSink(sink)
	ra := a.put("acct/a", "100")
	rb := a.put("acct/b", "0")

	transfer := &Txn{
		Compare: []Compare{
			{Target: TargetModIndex, Op: CmpEqual, Key: "acct/a", Num: ra.Index},
			{Target: TargetModIndex, Op: CmpEqual, Key: "acct/b", Num: rb.Index},
		},
		Success: []TxnOp{
			{Kind: TxnPut, Key: "acct/a", Value: []byte("60")},
			{Kind: TxnPut, Key: "acct/b", Value: []byte("40")},
			{Kind: TxnList, Key: "acct/"},
		},
		Failure: []TxnOp{{Kind: TxnGet, Key: "acct/a"}},
	}
	res := a.apply(txnCommand(transfer))
	require.NoError(t, res.Err)
	require.NotNil(t, res.Txn)
	assert.True(t, res.Txn.Succeeded)
	require.Len(t, res.Txn.Results, 3)
	list := res.Txn.Results[2]
	require.Len(t, list.Entries, 2, "ops see the earlier writes of their transaction")
	assert.Equal(t, "60", string(list.Entries[0].Value))
	assert.Equal(t, res.Index, list.Entries[0].ModIndex)
	assert.Equal(t, res.Index, list.Entries[1].ModIndex)
	assert.Equal(t, ra.Index, list.Entries[0].CreateIndex)

	last := len(sink.indexes) - 1
	assert.Equal(t, res.Index, sink.indexes[last])
	require.Len(t, sink.changes[last], 2, "both writes reach watchers together")

	again := a.apply(txnCommand(transfer)) // the guards are stale now
	require.NotNil(t, again.Txn)
	assert.False(t, again.Txn.Succeeded)
	require.Len(t, again.Txn.Results, 1)
	assert.True(t, again.Txn.Results[0].Found)
	assert.Equal(t, "60", string(again.Txn.Results[0].Entries[0].Value))
	assert.Empty(t, sink.changes[len(sink.changes)-1])
}

func TestTxnComparesAndRangeOps(t *testing.T) {
	a := newApplier(t)
	a.put("p/1", "a")
	a.put("p/2", "b")
	a.put("q", "z")
	check := func(c Compare) bool {
		res, _, err := a.f.ReadTxn(&Txn{Compare: []Compare{c}})
		require.NoError(t, err)
		return res.Succeeded
	}
	assert.True(t, check(Compare{Target: TargetCount, Op: CmpEqual, Key: "p/", Num: 2}))
	assert.True(t, check(Compare{Target: TargetCount, Op: CmpGreater, Key: "", Num: 2}))
	assert.True(t, check(Compare{Target: TargetExists, Op: CmpEqual, Key: "q", Num: 1}))
	assert.True(t, check(Compare{Target: TargetExists, Op: CmpEqual, Key: "nope", Num: 0}))
	assert.True(t, check(Compare{Target: TargetModIndex, Op: CmpEqual, Key: "nope", Num: 0}))
	assert.True(t, check(Compare{Target: TargetValue, Op: CmpLess, Key: "p/1", Value: []byte("b")}))
	assert.False(t, check(Compare{Target: TargetValue, Op: CmpNotEqual, Key: "nope", Value: []byte("b")}),
		"a value compare on an absent key is false")
	assert.True(t, check(Compare{Target: TargetCreateIndex, Op: CmpGreater, Key: "p/2", Num: 1}))

	res := a.apply(txnCommand(&Txn{Success: []TxnOp{
		{Kind: TxnDeletePrefix, Key: "p/"},
		{Kind: TxnDelete, Key: "q"},
		{Kind: TxnDelete, Key: "q"},
		{Kind: TxnList, Key: ""},
	}}))
	require.NotNil(t, res.Txn)
	assert.EqualValues(t, 2, res.Txn.Results[0].Deleted)
	assert.True(t, res.Txn.Results[1].Found)
	assert.False(t, res.Txn.Results[2].Found)
	assert.Empty(t, res.Txn.Results[3].Entries)
	assert.Zero(t, a.f.Len())

	_, _, err := a.f.ReadTxn(&Txn{Success: []TxnOp{{Kind: TxnPut, Key: "k"}}})
	assert.Error(t, err, "ReadTxn never writes")
}

func FuzzDecodeTxn(f *testing.F) {
	f.Add((&Txn{Compare: []Compare{{Target: TargetValue, Op: CmpEqual, Key: "k", Value: []byte("v")}},
		Success: []TxnOp{{Kind: TxnPut, Key: "k", Value: []byte("w")}}}).Encode())
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := DecodeTxn(b)
		if err != nil {
			return
		}
		if got := tx.Encode(); string(got) != string(b) {
			t.Fatalf("re-encoding differs: %x vs %x", got, b)
		}
		newApplier(t).apply(Command{Op: OpTxn, Value: b})
	})
}
