package httpapi

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every read says which write index it reflects, so that a client can continue it with a watch from
// that index + 1 (issue 12); a 404 says it too, because "absent at index N" is also an answer.
func TestReadsCarryTheIndexTheyReflect(t *testing.T) {
	hs := newHarness(t, Options{})
	var put struct{ Index uint64 }
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/a/1", body("x")), &put)
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/b", body("y")), &put)
	want := strconv.FormatUint(put.Index, 10)

	rec := hs.do(t, http.MethodGet, "/v1/kv/a/1", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, want, rec.Header().Get("X-Kv-Index"))

	rec = hs.do(t, http.MethodGet, "/v1/kv/nope", nil)
	requireError(t, rec, http.StatusNotFound, "key_not_found")
	assert.Equal(t, want, rec.Header().Get("X-Kv-Index"))

	rec = hs.do(t, http.MethodGet, "/v1/kv?prefix=a/", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, want, rec.Header().Get("X-Kv-Index"))
}
