package lincheck

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Builders for hand-written histories: op(client, call, ret, input, output).

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func get(k string) Input    { return Input{Kind: Get, Key: k} }
func put(k, v string) Input { return Input{Kind: Put, Key: k, Value: v} }
func cas(k string, e uint64, v string) Input {
	return Input{Kind: Put, Key: k, Value: v, CAS: true, Expected: e}
}
func del(k string) Input              { return Input{Kind: Delete, Key: k} }
func delCAS(k string, e uint64) Input { return Input{Kind: Delete, Key: k, CAS: true, Expected: e} }

func found(v string, mod, create uint64) Output {
	return Output{Status: OK, Found: true, Value: v, ModIndex: mod, CreateIndex: create}
}
func notFound() Output               { return Output{Status: OK} }
func wrote(index uint64) Output      { return Output{Status: OK, Index: index} }
func deleted(index uint64) Output    { return Output{Status: OK, Index: index, Deleted: true} }
func mismatch(current uint64) Output { return Output{Status: Mismatch, Current: current} }
func unknown() Output                { return Output{Status: Unknown} }
func indeterminate(client int, call int64, in Input) porcupine.Operation {
	return op(client, call, Infinity, in, unknown())
}

func linearizable(t *testing.T, h []porcupine.Operation) bool {
	t.Helper()
	return porcupine.CheckOperationsTimeout(Model, h, 10*time.Second) == porcupine.Ok
}

func TestAcceptsLegalConcurrentHistory(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 5, get("x"), notFound()),
		op(1, 1, 20, put("x", "a"), wrote(10)),
		// Concurrent with the put: either answer is fine.
		op(2, 2, 15, get("x"), notFound()),
		op(3, 3, 25, get("x"), found("a", 10, 10)),
		op(0, 30, 40, cas("x", 10, "b"), wrote(12)),
		op(1, 31, 41, cas("x", 10, "c"), mismatch(12)),
		op(2, 45, 50, get("x"), found("b", 12, 10)),
		op(3, 51, 60, delCAS("x", 12), deleted(14)),
		op(0, 52, 61, get("x"), found("b", 12, 10)), // concurrent with the delete: linearized before it
		op(1, 62, 70, cas("x", 0, "d"), wrote(15)),
		op(2, 71, 80, get("x"), found("d", 15, 15)),
		op(3, 81, 90, del("x"), deleted(16)),
		op(0, 91, 95, del("x"), Output{Status: OK, Index: 17}),
		op(1, 96, 99, delCAS("x", 15), mismatch(0)),
		// Another key, interleaved in time: partitions are independent.
		op(4, 0, 100, put("y", "p"), wrote(11)),
		op(5, 30, 35, get("y"), notFound()),
		op(5, 101, 102, get("y"), found("p", 11, 11)),
	}
	assert.True(t, linearizable(t, h))
	assert.Empty(t, CheckIndexes(h))
}

func TestRejectsStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(0, 20, 30, put("x", "v2"), wrote(7)),
		// Starts after v2 was acknowledged, returns v1.
		op(1, 40, 50, get("x"), found("v1", 5, 5)),
	}
	assert.False(t, linearizable(t, h))
}

func TestRejectsValueNeverWritten(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(1, 5, 50, get("x"), found("ghost", 6, 6)),
	}
	assert.False(t, linearizable(t, h))
}

func TestRejectsWrongModIndex(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(1, 20, 30, get("x"), found("v1", 6, 5)),
	}
	assert.False(t, linearizable(t, h), "mod index differs from the put's index")

	h = []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(0, 11, 15, put("x", "v2"), wrote(8)),
		op(1, 20, 30, get("x"), found("v2", 8, 8)),
	}
	assert.False(t, linearizable(t, h), "create index must survive an overwrite")
}

func TestRejectsIndexGoingBackwardsOnAKey(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(9)),
		op(0, 20, 30, put("x", "v2"), wrote(7)),
	}
	assert.False(t, linearizable(t, h))
}

func TestRejectsWrongCASOutcome(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(1, 20, 30, cas("x", 5, "v2"), mismatch(5)),
	}
	assert.False(t, linearizable(t, h), "mismatch although the index matched")

	h = []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(1, 20, 30, cas("x", 4, "v2"), wrote(6)),
	}
	assert.False(t, linearizable(t, h), "cas succeeded against the wrong index")

	h = []porcupine.Operation{
		op(1, 20, 30, cas("x", 0, "v2"), mismatch(0)),
	}
	assert.False(t, linearizable(t, h), "create-only cas refused on an absent key")
}

func TestAcceptsIndeterminateWriteObservedLater(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		indeterminate(1, 20, put("x", "v2")),
		op(2, 30, 40, get("x"), found("v2", 9, 5)),
		op(2, 50, 60, get("x"), found("v2", 9, 5)),
		op(3, 61, 70, cas("x", 9, "v3"), wrote(11)),
	}
	assert.True(t, linearizable(t, h))

	// The unknown index, once seen, is fixed.
	bad := append(h[:4:4], op(3, 61, 70, get("x"), found("v2", 10, 5)))
	assert.False(t, linearizable(t, bad))

	// It cannot be below an index linearized before the write.
	bad = append(h[:2:2], op(2, 30, 40, get("x"), found("v2", 4, 5)))
	assert.False(t, linearizable(t, bad))

	// An unknown create teaches the create index too: create == mod.
	h = []porcupine.Operation{
		indeterminate(1, 0, put("y", "a")),
		op(2, 30, 40, get("y"), found("a", 9, 9)),
	}
	assert.True(t, linearizable(t, h))
	h[1] = op(2, 30, 40, get("y"), found("a", 9, 3))
	assert.False(t, linearizable(t, h))
}

func TestAcceptsIndeterminateWriteNeverObserved(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		indeterminate(1, 20, put("x", "v2")),
		op(2, 30, 40, get("x"), found("v1", 5, 5)),
		indeterminate(1, 41, del("x")),
		op(2, 50, 60, get("x"), found("v1", 5, 5)),
		op(3, 61, 70, cas("x", 5, "v3"), wrote(8)),
		indeterminate(0, 71, cas("x", 8, "v4")),
		op(3, 80, 90, get("x"), found("v3", 8, 5)),
	}
	assert.True(t, linearizable(t, h))

	// But once the unknown write was observed, the older value cannot come back.
	h = []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		indeterminate(1, 20, put("x", "v2")),
		op(2, 30, 40, get("x"), found("v2", 7, 5)),
		op(2, 50, 60, get("x"), found("v1", 5, 5)),
	}
	assert.False(t, linearizable(t, h))
}

func TestIndeterminateCASOnUnknownIndex(t *testing.T) {
	// An unknown write, then an unknown cas against a guessed index: a read may see either.
	base := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		indeterminate(1, 20, put("x", "v2")),
		indeterminate(2, 30, cas("x", 9, "v3")),
	}
	for _, tc := range []struct {
		out Output
		ok  bool
	}{
		{found("v1", 5, 5), true},
		{found("v2", 9, 5), true},
		{found("v3", 12, 5), true},
		{found("v3", 9, 5), false}, // the cas's own index must exceed the one it matched
	} {
		h := append(base[:3:3], op(3, 40, 50, get("x"), tc.out))
		assert.Equal(t, tc.ok, linearizable(t, h), "read %+v", tc.out)
	}
}

func TestIndexChecks(t *testing.T) {
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "a"), wrote(5)),
		op(1, 0, 10, put("y", "b"), wrote(5)),
	}
	assert.True(t, linearizable(t, h), "per key, each history is fine")
	problems := CheckIndexes(h)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0], "index 5 returned twice")

	h = []porcupine.Operation{
		op(0, 0, 10, put("x", "a"), wrote(8)),
		op(1, 20, 30, put("y", "b"), wrote(6)),
		op(2, 5, 30, put("z", "c"), wrote(7)), // concurrent with the first: may have a smaller index
		indeterminate(3, 0, put("w", "d")),
	}
	problems = CheckIndexes(h)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0], "index order")
}

func TestVerifyWritesVisualization(t *testing.T) {
	t.Setenv("RAFTKV_TEST_ARTIFACTS", t.TempDir())
	h := []porcupine.Operation{
		op(0, 0, 10, put("x", "v1"), wrote(5)),
		op(0, 20, 30, put("x", "v2"), wrote(7)),
		op(1, 40, 50, get("x"), found("v1", 5, 5)),
	}
	res := Check(h, 10*time.Second)
	require.Equal(t, porcupine.Illegal, res.Linearizable)
	path, err := WriteVisualization(t, res.Info)
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(path, ".html"))
	assert.Contains(t, string(data), "v2")
}

func TestRecorder(t *testing.T) {
	r := NewRecorder()
	c := r.Begin(0, put("x", "a"), "n1")
	c.Return(wrote(3))
	r.Begin(1, put("x", "b"), "n2").Indeterminate()
	r.Begin(2, get("x"), "n3").Return(found("a", 3, 3))
	h := r.History()
	require.Len(t, h, 3)
	assert.LessOrEqual(t, h[0].Call, h[0].Return)
	assert.Equal(t, Infinity, h[1].Return)
	assert.True(t, linearizable(t, h))
}
