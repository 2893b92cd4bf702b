package client

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// A transaction that writes travels with one idempotency key for all its attempts and is retried
// after an outcome-unknown answer; its body is the API's JSON; the answer decodes per op.
func TestTxnWithWritesIsRetriedUnderOneKey(t *testing.T) {
	answer := `{"succeeded":true,"index":9,"results":[{"op":"put","index":9},{"op":"delete","deleted":true},` +
		`{"op":"delete_prefix","deleted":3},{"op":"get","found":true,"key":"a","value":"eA==","create_index":2,"mod_index":5},` +
		`{"op":"list","more":true,"entries":[{"key":"p/1","value":"","create_index":1,"mod_index":1}]}]}`
	var bodies []string
	fake, url := newFake(t,
		hangUp,
		jsonReply(503, `{"error":"leadership lost","code":"indeterminate"}`),
		jsonReply(200, answer),
	)
	c := newTestClient(t, url)
	res, err := c.Txn(context.Background(), Txn{
		Compare: []Compare{Unchanged("a", 5), Absent("b"), Present("a"), ValueIs("a", []byte("x")), CountUnder("p/", "<", 10)},
		Success: []TxnOp{OpPut("a", []byte("x")), OpDelete("b"), OpDeletePrefix("q/"), OpGet("a"), OpList("p/", 1)},
		Failure: []TxnOp{OpGet("a")},
	})
	require.NoError(t, err)
	require.Equal(t, TxnResponse{Succeeded: true, Index: 9, Results: []TxnResult{
		{Kind: "put"}, {Kind: "delete", Deleted: 1}, {Kind: "delete_prefix", Deleted: 3},
		{Kind: "get", Found: true, Entries: []Entry{{Key: "a", Value: []byte("x"), CreateIndex: 2, ModIndex: 5}}},
		{Kind: "list", More: true, Entries: []Entry{{Key: "p/1", Value: []byte{}, CreateIndex: 1, ModIndex: 1}}},
	}}, res)
	require.Equal(t, uint64(9), c.LastIndex())

	reqs := fake.requests()
	require.Len(t, reqs, 3)
	key := reqs[0].Header.Get("Idempotency-Key")
	require.NotEmpty(t, key)
	for _, r := range reqs {
		require.Equal(t, key, r.Header.Get("Idempotency-Key"))
		require.Equal(t, "/v1/txn", r.URL.Path)
		require.Empty(t, r.URL.Query().Get("min_index"), "a write goes to the leader, which is current")
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		bodies = append(bodies, string(b))
	}
	var sent map[string]any
	require.NoError(t, json.Unmarshal([]byte(bodies[0]), &sent))
	require.Equal(t, map[string]any{
		"compare": []any{
			map[string]any{"key": "a", "target": "mod_index", "op": "=", "value": float64(5)},
			map[string]any{"key": "b", "target": "exists", "op": "=", "value": false},
			map[string]any{"key": "a", "target": "exists", "op": "=", "value": true},
			map[string]any{"key": "a", "target": "value", "op": "=", "value": "eA=="},
			map[string]any{"prefix": "p/", "target": "count", "op": "<", "value": float64(10)},
		},
		"success": []any{
			map[string]any{"op": "put", "key": "a", "value": "eA=="},
			map[string]any{"op": "delete", "key": "b"},
			map[string]any{"op": "delete_prefix", "prefix": "q/"},
			map[string]any{"op": "get", "key": "a"},
			map[string]any{"op": "list", "prefix": "p/", "limit": float64(1)},
		},
		"failure": []any{map[string]any{"op": "get", "key": "a"}},
	}, sent)
	require.Equal(t, bodies[0], bodies[2], "the retry is the same request")
}

// A transaction that only reads is a read: no key, stale on request, then with the Client's min_index.
func TestReadOnlyTxnIsARead(t *testing.T) {
	fake, url := newFake(t,
		jsonReply(200, `{"index":4}`),
		jsonReply(200, `{"succeeded":false,"index":12,"results":[{"op":"get","found":false}]}`),
	)
	c := newTestClient(t, url)
	_, err := c.Put(context.Background(), "k", nil)
	require.NoError(t, err)
	res, err := c.Txn(context.Background(), Txn{Compare: []Compare{Present("a")}, Failure: []TxnOp{OpGet("a")}}, StaleTxn())
	require.NoError(t, err)
	require.Equal(t, TxnResponse{Index: 12, Results: []TxnResult{{Kind: "get"}}}, res)
	r := fake.requests()[1]
	require.Empty(t, r.Header.Get("Idempotency-Key"))
	require.Equal(t, "4", r.URL.Query().Get("min_index"))
	require.Equal(t, "stale", r.URL.Query().Get("consistency"))
}

// During a rolling upgrade from a build without idempotency keys, a write is sent once more without
// its key (and then never retried once it may have applied), unless Config.RequireIdempotency.
func TestIdempotencyUnsupportedFallsBackToAPlainWriteOnce(t *testing.T) {
	unsupported := jsonReply(503, `{"error":"the leader applies log format 3","code":"idempotency_unsupported"}`)
	fake, url := newFake(t, unsupported, jsonReply(200, `{"index":3}`), unsupported, hangUp)
	c := newTestClient(t, url)
	idx, err := c.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(3), idx)
	reqs := fake.requests()
	require.NotEmpty(t, reqs[0].Header.Get("Idempotency-Key"))
	require.Empty(t, reqs[1].Header.Get("Idempotency-Key"), "the fallback carries no key")

	_, err = c.Txn(context.Background(), Txn{Success: []TxnOp{OpPut("k", nil)}})
	require.ErrorIs(t, err, ErrIndeterminate, "the keyless attempt is not retried once it may have applied")
	require.Len(t, fake.requests(), 4)

	_, url = newFake(t, unsupported)
	strict, err := New(Config{Endpoints: []string{url}, RequireIdempotency: true})
	require.NoError(t, err)
	_, err = strict.Put(context.Background(), "k", []byte("v"))
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "idempotency_unsupported", ae.Code)
}
