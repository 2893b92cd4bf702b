package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/store"
)

type txnAnswer struct {
	Succeeded bool
	Index     uint64
	Results   []map[string]any
}

func TestTxnDecodesRunsAndAnswersPerOp(t *testing.T) {
	hs := newHarness(t, Options{})
	var put struct{ Index uint64 }
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/acct/a", body("100")), &put)

	var ans txnAnswer
	rec := hs.do(t, http.MethodPost, "/v1/txn", body(`{
		"compare":[{"key":"acct/a","target":"mod_index","op":"=","value":`+jsonNum(put.Index)+`},
		           {"key":"acct/b","target":"exists","op":"=","value":false}],
		"success":[{"op":"put","key":"acct/a","value":"NjA="},{"op":"put","key":"acct/b","value":"NDA="},
		           {"op":"list","prefix":"acct/"}],
		"failure":[{"op":"get","key":"acct/a"}]}`))
	requireJSON(t, rec, &ans)
	assert.True(t, ans.Succeeded)
	assert.Equal(t, put.Index+1, ans.Index)
	require.Len(t, ans.Results, 3)
	assert.Equal(t, "put", ans.Results[0]["op"])
	entries := ans.Results[2]["entries"].([]any)
	assert.Len(t, entries, 2)
	assert.Equal(t, "NjA=", entries[0].(map[string]any)["value"])
	assert.Equal(t, jsonNum(ans.Index), rec.Header().Get("X-Kv-Index"))

	require.Len(t, hs.store.lastTxn.Compare, 2)
	assert.Equal(t, fsm.Compare{Target: fsm.TargetExists, Op: fsm.CmpEqual, Key: "acct/b"}, hs.store.lastTxn.Compare[1])
	assert.Equal(t, uint64(DefaultDefaultListLimit), hs.store.lastTxn.Success[2].Limit)

	// The same guard again fails and runs the failure branch.
	rec = hs.do(t, http.MethodPost, "/v1/txn", body(`{"compare":[{"key":"acct/a","target":"mod_index","op":"=","value":`+jsonNum(put.Index)+`}],
		"failure":[{"op":"get","key":"acct/a"}]}`))
	requireJSON(t, rec, &ans)
	assert.False(t, ans.Succeeded)
	assert.Equal(t, true, ans.Results[0]["found"])
	assert.Equal(t, "NjA=", ans.Results[0]["value"])

	// A read-only transaction may be stale; one that writes may not.
	requireJSON(t, hs.do(t, http.MethodPost, "/v1/txn?consistency=stale", body(`{"success":[{"op":"get","key":"x"}]}`)), &ans)
	assert.Equal(t, store.Stale, hs.store.lastCons)
	requireError(t, hs.do(t, http.MethodPost, "/v1/txn?consistency=stale", body(`{"success":[{"op":"delete","key":"x"}]}`)),
		http.StatusBadRequest, "invalid_txn")
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestBadTxnIs400NamingTheOp(t *testing.T) {
	hs := newHarness(t, Options{MaxTxnOps: 3, MaxValueSize: 4})
	for _, tc := range []struct {
		body, branch string
		index        float64
	}{
		{`{"success":[{"op":"get","key":"a"},{"op":"upsert","key":"a"}]}`, "success", 1},
		{`{"success":[{"op":"put","key":"a"}]}`, "success", 0},
		{`{"success":[{"op":"put","key":"a","value":"not base64"}]}`, "success", 0},
		{`{"success":[{"op":"put","key":"a","value":"AAAAAAAA"}]}`, "success", 0},
		{`{"failure":[{"op":"list","key":"a"}]}`, "failure", 0},
		{`{"failure":[{"op":"get","key":""}]}`, "failure", 0},
		{`{"failure":[{"op":"list","prefix":"a","limit":0}]}`, "failure", 0},
		{`{"compare":[{"key":"a","target":"mod_index","op":"~","value":1}]}`, "compare", 0},
		{`{"compare":[{"key":"a","target":"count","op":"=","value":1}]}`, "compare", 0},
		{`{"compare":[{"key":"a","target":"mod_index","op":"=","value":-1}]}`, "compare", 0},
		{`{"compare":[{"key":"a","target":"mod_index","op":"="}]}`, "compare", 0},
	} {
		b := requireError(t, hs.do(t, http.MethodPost, "/v1/txn", body(tc.body)), http.StatusBadRequest, "invalid_txn")
		assert.Equal(t, tc.branch, b["branch"], tc.body)
		assert.Equal(t, tc.index, b["op_index"], tc.body)
	}
	for _, bad := range []string{`[]`, `{"success":[]}{}`, `{"bogus":1}`, `{"success":[{"op":"get","key":"a"},{"op":"get","key":"a"},{"op":"get","key":"a"},{"op":"get","key":"a"}]}`} {
		requireError(t, hs.do(t, http.MethodPost, "/v1/txn", body(bad)), http.StatusBadRequest, "invalid_txn")
	}
	assert.Nil(t, hs.store.lastTxn, "nothing invalid reaches the store")

	big := `{"success":[{"op":"put","key":"a","value":"` + strings.Repeat("A", DefaultMaxTxnBytes) + `"}]}`
	requireError(t, newHarness(t, Options{}).do(t, http.MethodPost, "/v1/txn", body(big)), http.StatusRequestEntityTooLarge, "value_too_large")
	requireError(t, hs.do(t, http.MethodGet, "/v1/txn", nil), http.StatusMethodNotAllowed, "method_not_allowed")
}

// A transaction's writes reach a watcher as one message at one index.
func TestTxnWritesArriveTogetherOnAWatch(t *testing.T) {
	rg := newWatchRig(t, Options{})
	c := rg.watch(t, "prefix=t/&index=1", nil)
	resp, err := http.Post(rg.srv.URL+"/v1/txn", "application/json", strings.NewReader(
		`{"success":[{"op":"put","key":"t/a","value":"MQ=="},{"op":"put","key":"other","value":"MQ=="},{"op":"put","key":"t/b","value":"Mg=="}]}`))
	require.NoError(t, err)
	resp.Body.Close()
	ev := c.nextChange(t)
	require.Len(t, ev.Changes, 2)
	assert.Equal(t, "t/a", ev.Changes[0].Key)
	assert.Equal(t, "t/b", ev.Changes[1].Key)
}

// A transaction's Idempotency-Key reaches the store like a put's; a malformed one is refused, never
// dropped, and a key recorded for another request is 422.
func TestTxnCarriesItsIdempotencyKey(t *testing.T) {
	hs := newHarness(t, Options{})
	txn := func(keys ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/txn", body(`{"success":[{"op":"put","key":"a","value":"eA=="}]}`))
		for _, k := range keys {
			r.Header.Add("Idempotency-Key", k)
		}
		return hs.serve(r)
	}
	resp := txn("t-1")
	require.Equal(t, http.StatusOK, resp.Code)
	require.Equal(t, []string{"t-1"}, hs.store.idemKeys)

	requireError(t, txn("a", "b"), http.StatusBadRequest, "invalid_parameter")
	requireError(t, txn("has space"), http.StatusBadRequest, "invalid_parameter")
	require.Len(t, hs.store.idemKeys, 1, "a refused key never reaches the store")

	hs.store.errs["Txn"] = fmt.Errorf("txn: %w: key %q", store.ErrIdempotencyKeyReused, "t-1")
	requireError(t, txn("t-1"), http.StatusUnprocessableEntity, "idempotency_key_reused")
	hs.store.errs["Txn"] = fmt.Errorf("txn: %w: the leader applies format 3", store.ErrIdempotencyUnsupported)
	requireError(t, txn("t-2"), http.StatusServiceUnavailable, "idempotency_unsupported")
}

// min_index on a transaction: waited for before it runs, refused when malformed.
func TestTxnWaitsForMinIndex(t *testing.T) {
	hs := newHarness(t, Options{})
	get := `{"success":[{"op":"get","key":"a"}]}`
	requireError(t, hs.do(t, http.MethodPost, "/v1/txn?consistency=stale&min_index=7", body(get)), http.StatusServiceUnavailable, "timeout")
	require.Equal(t, []uint64{7}, hs.store.waited)
	requireError(t, hs.do(t, http.MethodPost, "/v1/txn?min_index=x", body(get)), http.StatusBadRequest, "invalid_parameter")
	requireError(t, hs.do(t, http.MethodPost, "/v1/txn?consistency=stale&consistency=stale", body(get)), http.StatusBadRequest, "invalid_parameter")
	require.Equal(t, http.StatusOK, hs.do(t, http.MethodPost, "/v1/txn?min_index=0", body(get)).Code)
}
