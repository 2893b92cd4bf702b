package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
)

func TestPutGetDelete(t *testing.T) {
	hs := newHarness(t, Options{})

	var put struct{ Index uint64 }
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/greeting", body("hello")), &put)
	assert.NotZero(t, put.Index)
	assert.Equal(t, store.Precondition{}, hs.store.lastPre)

	rec := hs.do(t, http.MethodGet, "/v1/kv/greeting", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "hello", rec.Body.String())
	assert.Equal(t, "application/octet-stream", rec.Header().Get("Content-Type"))
	assert.Equal(t, strconv.FormatUint(put.Index, 10), rec.Header().Get("X-Kv-Mod-Index"))
	assert.Equal(t, strconv.FormatUint(put.Index, 10), rec.Header().Get("X-Kv-Create-Index"))
	assert.Equal(t, store.Linearizable, hs.store.lastCons)
	assert.Empty(t, rec.Header().Get("X-Kv-Known-Leader"), "stale headers only on stale reads")

	// Overwrite: create index stays, mod index moves.
	var put2 struct{ Index uint64 }
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/greeting", body("")), &put2)
	rec = hs.do(t, http.MethodGet, "/v1/kv/greeting", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Body.String(), "empty values are values")
	assert.Equal(t, strconv.FormatUint(put2.Index, 10), rec.Header().Get("X-Kv-Mod-Index"))
	assert.Equal(t, strconv.FormatUint(put.Index, 10), rec.Header().Get("X-Kv-Create-Index"))

	// HEAD behaves like GET (net/http drops the body on the wire).
	rec = hs.do(t, http.MethodHead, "/v1/kv/greeting", nil)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, strconv.FormatUint(put2.Index, 10), rec.Header().Get("X-Kv-Mod-Index"))

	var del struct {
		Index   uint64
		Deleted bool
	}
	requireJSON(t, hs.do(t, http.MethodDelete, "/v1/kv/greeting", nil), &del)
	assert.True(t, del.Deleted)
	assert.Greater(t, del.Index, put2.Index)

	requireJSON(t, hs.do(t, http.MethodDelete, "/v1/kv/greeting", nil), &del)
	assert.False(t, del.Deleted)

	requireError(t, hs.do(t, http.MethodGet, "/v1/kv/greeting", nil), http.StatusNotFound, "key_not_found")
}

func TestSuccessBodiesAreExact(t *testing.T) {
	hs := newHarness(t, Options{})
	assert.Equal(t, `{"index":1}`, hs.do(t, http.MethodPut, "/v1/kv/a", body("x")).Body.String())
	assert.Equal(t, `{"index":2,"deleted":true}`, hs.do(t, http.MethodDelete, "/v1/kv/a", nil).Body.String())
	assert.Equal(t, `{"index":3,"deleted":false}`, hs.do(t, http.MethodDelete, "/v1/kv/a", nil).Body.String())
}

func TestCAS(t *testing.T) {
	hs := newHarness(t, Options{})

	var put struct{ Index uint64 }
	requireJSON(t, hs.do(t, http.MethodPut, "/v1/kv/k?cas=0", body("v1")), &put) // create-only
	assert.Equal(t, store.Precondition{Check: true, Index: 0}, hs.store.lastPre)

	requireError(t, hs.do(t, http.MethodPut, "/v1/kv/k?cas=0", body("v2")), http.StatusConflict, "cas_mismatch")

	target := fmt.Sprintf("/v1/kv/k?cas=%d", put.Index)
	requireJSON(t, hs.do(t, http.MethodPut, target, body("v2")), &put)
	requireError(t, hs.do(t, http.MethodDelete, target, nil), http.StatusConflict, "cas_mismatch")

	var del struct{ Deleted bool }
	requireJSON(t, hs.do(t, http.MethodDelete, fmt.Sprintf("/v1/kv/k?cas=%d", put.Index), nil), &del)
	assert.True(t, del.Deleted)
	assert.Equal(t, store.Precondition{Check: true, Index: put.Index}, hs.store.lastPre)
}

func TestWriteParamsAreValidatedBeforeTheStore(t *testing.T) {
	for _, q := range []string{
		"cas=", "cas", "cas=-1", "cas=abc", "cas=1.5", "cas=+1", "cas=0x10", "cas=1_000", "cas=%20",
		"cas=18446744073709551616", "cas=1&cas=1", "cass=1", "consistency=stale", "cas=%zz", "%zz=1",
	} {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			t.Run(method+" "+q, func(t *testing.T) {
				hs := newHarness(t, Options{})
				requireError(t, hs.do(t, method, "/v1/kv/k?"+q, body("v")), http.StatusBadRequest, "invalid_parameter")
				assert.Zero(t, hs.store.writeCount())
			})
		}
	}
	// Largest index and empty segments are fine.
	hs := newHarness(t, Options{})
	requireError(t, hs.do(t, http.MethodPut, "/v1/kv/k?&cas=18446744073709551615&", body("v")),
		http.StatusConflict, "cas_mismatch")
}

func TestReadConsistency(t *testing.T) {
	hs := newHarness(t, Options{})
	hs.store.put("k", "v")
	hs.store.stale = store.StaleInfo{KnownLeader: true, LastContact: 1500 * time.Millisecond, WriteIndex: 42}

	rec := hs.do(t, http.MethodGet, "/v1/kv/k?consistency=linearizable", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, store.Linearizable, hs.store.lastCons)
	assert.Empty(t, rec.Header().Values("X-Kv-Applied-Index"))

	rec = hs.do(t, http.MethodGet, "/v1/kv/k?consistency=stale", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, store.Stale, hs.store.lastCons)
	assert.Equal(t, "true", rec.Header().Get("X-Kv-Known-Leader"))
	assert.Equal(t, "1500", rec.Header().Get("X-Kv-Last-Contact-Ms"))
	assert.Equal(t, "42", rec.Header().Get("X-Kv-Applied-Index"))
	assert.Equal(t, "v", rec.Body.String())

	// A stale miss still says how stale it was.
	hs.store.stale = store.StaleInfo{}
	rec = hs.do(t, http.MethodGet, "/v1/kv/nope?consistency=stale", nil)
	requireError(t, rec, http.StatusNotFound, "key_not_found")
	assert.Equal(t, "false", rec.Header().Get("X-Kv-Known-Leader"))
	assert.Equal(t, "0", rec.Header().Get("X-Kv-Last-Contact-Ms"))
	assert.Equal(t, "0", rec.Header().Get("X-Kv-Applied-Index"))

	// A node that never heard from a leader does not claim a last contact of 0 ms ago.
	hs.store.stale = store.StaleInfo{NoContact: true, WriteIndex: 3}
	rec = hs.do(t, http.MethodGet, "/v1/kv/k?consistency=stale", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Header().Values("X-Kv-Last-Contact-Ms"))
	assert.Equal(t, "3", rec.Header().Get("X-Kv-Applied-Index"))

	for _, q := range []string{"consistency=", "consistency=Stale", "consistency=strong", "consistency",
		"consistency=stale&consistency=stale", "cas=1", "x=y"} {
		requireError(t, hs.do(t, http.MethodGet, "/v1/kv/k?"+q, nil), http.StatusBadRequest, "invalid_parameter")
	}
}

func TestKeys(t *testing.T) {
	long := strings.Repeat("k", 1024)
	for _, tc := range []struct {
		name, path, key string // key == "" means rejected with invalid_key
	}{
		{"plain", "/v1/kv/abc", "abc"},
		{"slashes", "/v1/kv/a/b/c", "a/b/c"},
		{"escaped slash", "/v1/kv/a%2Fb", "a/b"},
		{"lower escaped slash", "/v1/kv/a%2fb/c", "a/b/c"},
		{"double slash is kept", "/v1/kv/a//b", "a//b"},
		{"dot segments are kept", "/v1/kv/./a/..", "./a/.."},
		{"trailing slash is kept", "/v1/kv/dir/", "dir/"},
		{"space", "/v1/kv/a%20b", "a b"},
		{"plus is literal", "/v1/kv/a+b", "a+b"},
		{"unicode", "/v1/kv/%E6%97%A5%E6%9C%AC/%F0%9F%98%80", "日本/😀"},
		{"percent", "/v1/kv/100%25", "100%"},
		{"max size", "/v1/kv/" + long, long},
		{"empty", "/v1/kv/", ""},
		{"over max size", "/v1/kv/" + long + "k", ""},
		{"NUL", "/v1/kv/a%00b", ""},
		{"newline", "/v1/kv/a%0Ab", ""},
		{"tab", "/v1/kv/a%09", ""},
		{"DEL", "/v1/kv/a%7F", ""},
		{"invalid UTF-8", "/v1/kv/%ff", ""},
		{"truncated UTF-8", "/v1/kv/%E6%97", ""},
		{"overlong UTF-8", "/v1/kv/%C0%AF", ""},
		{"surrogate", "/v1/kv/%ED%A0%80", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(t, Options{})
			rec := hs.do(t, http.MethodPut, tc.path, body("v"))
			if tc.key == "" {
				requireError(t, rec, http.StatusBadRequest, "invalid_key")
				requireError(t, hs.do(t, http.MethodGet, tc.path, nil), http.StatusBadRequest, "invalid_key")
				requireError(t, hs.do(t, http.MethodDelete, tc.path, nil), http.StatusBadRequest, "invalid_key")
				assert.Zero(t, hs.store.writeCount())
				return
			}
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			_, ok := hs.store.data[tc.key]
			assert.True(t, ok, "stored under %q", tc.key)
			rec = hs.do(t, http.MethodGet, tc.path, nil)
			assert.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "v", rec.Body.String())
		})
	}
}

func TestKeyRespectsMaxKeySize(t *testing.T) {
	hs := newHarness(t, Options{MaxKeySize: 4})
	assert.Equal(t, http.StatusOK, hs.do(t, http.MethodPut, "/v1/kv/abcd", body("v")).Code)
	requireError(t, hs.do(t, http.MethodPut, "/v1/kv/abcde", body("v")), http.StatusBadRequest, "invalid_key")
	// The limit is in bytes, not runes: "日" is 3 bytes.
	requireError(t, hs.do(t, http.MethodPut, "/v1/kv/%E6%97%A5%E6%97%A5", body("v")), http.StatusBadRequest, "invalid_key")
}

func TestValueSize(t *testing.T) {
	const max = 64
	exact := strings.Repeat("x", max)
	over := exact + "x"

	t.Run("exactly the limit", func(t *testing.T) {
		hs := newHarness(t, Options{MaxValueSize: max})
		assert.Equal(t, http.StatusOK, hs.do(t, http.MethodPut, "/v1/kv/k", body(exact)).Code)
		assert.Equal(t, exact, string(hs.store.data["k"].Value))
	})
	t.Run("exactly the limit, chunked", func(t *testing.T) {
		hs := newHarness(t, Options{MaxValueSize: max})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", body(exact))
		req.ContentLength = -1
		assert.Equal(t, http.StatusOK, hs.serve(req).Code)
		assert.Equal(t, exact, string(hs.store.data["k"].Value))
	})
	t.Run("over the limit", func(t *testing.T) {
		hs := newHarness(t, Options{MaxValueSize: max})
		requireError(t, hs.do(t, http.MethodPut, "/v1/kv/k", body(over)), http.StatusRequestEntityTooLarge, "value_too_large")
		assert.Zero(t, hs.store.writeCount())
	})
	t.Run("over the limit, chunked", func(t *testing.T) {
		hs := newHarness(t, Options{MaxValueSize: max})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", body(over))
		req.ContentLength = -1
		requireError(t, hs.serve(req), http.StatusRequestEntityTooLarge, "value_too_large")
		assert.Zero(t, hs.store.writeCount())
	})
	t.Run("Content-Length over the limit, short body", func(t *testing.T) {
		hs := newHarness(t, Options{MaxValueSize: max})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", body("x"))
		req.ContentLength = max + 1
		requireError(t, hs.serve(req), http.StatusRequestEntityTooLarge, "value_too_large")
		assert.Zero(t, hs.store.writeCount())
	})
	t.Run("default limit is 1 MiB", func(t *testing.T) {
		hs := newHarness(t, Options{})
		assert.Equal(t, http.StatusOK, hs.do(t, http.MethodPut, "/v1/kv/k", bytes.NewReader(make([]byte, 1<<20))).Code)
		requireError(t, hs.do(t, http.MethodPut, "/v1/kv/k", bytes.NewReader(make([]byte, 1<<20+1))),
			http.StatusRequestEntityTooLarge, "value_too_large")
		assert.Equal(t, 1, hs.store.writeCount())
	})
}

func TestBrokenBodiesWriteNothing(t *testing.T) {
	t.Run("shorter than Content-Length", func(t *testing.T) {
		hs := newHarness(t, Options{})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", body("abc"))
		req.ContentLength = 10
		requireError(t, hs.serve(req), http.StatusBadRequest, "invalid_body")
		assert.Zero(t, hs.store.writeCount())
	})
	t.Run("empty but Content-Length says otherwise", func(t *testing.T) {
		hs := newHarness(t, Options{})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", nil)
		req.ContentLength = 3
		requireError(t, hs.serve(req), http.StatusBadRequest, "invalid_body")
		assert.Zero(t, hs.store.writeCount())
	})
	for _, cl := range []int64{5, -1} {
		t.Run("read error, Content-Length "+strconv.FormatInt(cl, 10), func(t *testing.T) {
			hs := newHarness(t, Options{})
			req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", &failingReader{data: "ab", err: errors.New("connection reset")})
			req.ContentLength = cl
			got := requireError(t, hs.serve(req), http.StatusBadRequest, "invalid_body")
			assert.Contains(t, got["error"], "connection reset")
			assert.Zero(t, hs.store.writeCount())
		})
	}
	t.Run("nil body is an empty value", func(t *testing.T) {
		hs := newHarness(t, Options{})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", nil)
		req.Body = nil
		assert.Equal(t, http.StatusOK, hs.serve(req).Code)
		assert.Equal(t, 1, hs.store.writeCount())
	})
}

// failingReader yields data, then err.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

type listed struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

func TestListEmptyIsArray(t *testing.T) {
	hs := newHarness(t, Options{})
	rec := hs.do(t, http.MethodGet, "/v1/kv", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "[]", rec.Body.String())
	assert.Empty(t, rec.Header().Get("X-Kv-More"))
	assert.Empty(t, rec.Header().Values("X-Kv-Next-After"))

	hs.store.put("b", "x")
	assert.Equal(t, "[]", hs.do(t, http.MethodGet, "/v1/kv?prefix=a", nil).Body.String())
}

func TestListEntries(t *testing.T) {
	hs := newHarness(t, Options{})
	i1 := hs.store.put("app/b", "\x00\xffbinary")
	i2 := hs.store.put("app/a", "one")
	hs.store.put("other", "no")
	i3 := hs.store.put("app/a", "two")

	var got []listed
	requireJSON(t, hs.do(t, http.MethodGet, "/v1/kv?prefix=app/", nil), &got)
	assert.Equal(t, []listed{
		{Key: "app/a", Value: []byte("two"), CreateIndex: i2, ModIndex: i3},
		{Key: "app/b", Value: []byte("\x00\xffbinary"), CreateIndex: i1, ModIndex: i1},
	}, got)
	assert.Equal(t, DefaultDefaultListLimit, hs.store.lastList.limit)
	assert.Equal(t, store.Linearizable, hs.store.lastCons)

	// The raw encoding is what the contract says: standard base64 with padding.
	assert.Contains(t, hs.do(t, http.MethodGet, "/v1/kv?prefix=app/a", nil).Body.String(),
		`{"key":"app/a","value":"dHdv","create_index":`)
}

func TestListParams(t *testing.T) {
	hs := newHarness(t, Options{DefaultListLimit: 5, MaxListLimit: 50})
	hs.store.stale = store.StaleInfo{KnownLeader: false, LastContact: 3 * time.Second, WriteIndex: 9}

	rec := hs.do(t, http.MethodGet, "/v1/kv?prefix=a%20b&after=a+b%2Fc&limit=50&consistency=stale", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "a b", hs.store.lastList.prefix)
	assert.Equal(t, "a b/c", hs.store.lastList.after)
	assert.Equal(t, 50, hs.store.lastList.limit)
	assert.Equal(t, store.Stale, hs.store.lastCons)
	assert.Equal(t, "false", rec.Header().Get("X-Kv-Known-Leader"))
	assert.Equal(t, "3000", rec.Header().Get("X-Kv-Last-Contact-Ms"))
	assert.Equal(t, "9", rec.Header().Get("X-Kv-Applied-Index"))

	require.Equal(t, http.StatusOK, hs.do(t, http.MethodGet, "/v1/kv?prefix=&after=", nil).Code)
	assert.Equal(t, 5, hs.store.lastList.limit)
	assert.Empty(t, hs.store.lastList.prefix)

	for _, q := range []string{
		"limit=0", "limit=51", "limit=-1", "limit=", "limit=ten", "limit=1e3", "limit=99999999999999999999",
		"consistency=", "consistency=eventual", "prefix=%00", "after=%ff", "prefix=a%7F",
		"prefix=" + strings.Repeat("p", 1025), "after=" + strings.Repeat("p", 1025),
		"prefix=a&prefix=b", "after=a&after=b", "limit=1&limit=1", "consistency=stale&consistency=stale",
		"cursor=x", "cas=1", "prefix=%zz",
	} {
		t.Run(q, func(t *testing.T) {
			requireError(t, hs.do(t, http.MethodGet, "/v1/kv?"+q, nil), http.StatusBadRequest, "invalid_parameter")
		})
	}
}

// A client that pages with X-Kv-Next-After sees every key exactly once, in order, whatever the keys are.
func TestListContinuation(t *testing.T) {
	hs := newHarness(t, Options{})
	keys := []string{
		"a", "a b", "a+b", "a/b", "a/b/c", "a%2Fb", "a&limit=1", "a=b", "a?x", "a#frag",
		"日本", "日本/語", "😀", "~tilde", "z" + strings.Repeat("!", 50),
	}
	for i, k := range keys {
		hs.store.put(k, strconv.Itoa(i))
	}
	want := append([]string(nil), keys...)
	slices.Sort(want)

	for _, limit := range []int{1, 2, 3, 7, len(keys), len(keys) + 1} {
		t.Run("limit "+strconv.Itoa(limit), func(t *testing.T) {
			var seen []string
			after := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, len(keys)+2, "paging does not terminate")
				target := "/v1/kv?limit=" + strconv.Itoa(limit)
				if after != "" {
					target += "&after=" + after // verbatim: the header is already query-escaped
				}
				rec := hs.do(t, http.MethodGet, target, nil)
				var page []listed
				requireJSON(t, rec, &page)
				require.LessOrEqual(t, len(page), limit)
				for _, e := range page {
					seen = append(seen, e.Key)
				}
				if rec.Header().Get("X-Kv-More") != "true" {
					assert.Empty(t, rec.Header().Values("X-Kv-Next-After"))
					break
				}
				after = rec.Header().Get("X-Kv-Next-After")
				require.NotEmpty(t, after)
				unescaped, err := url.QueryUnescape(after)
				require.NoError(t, err)
				assert.Equal(t, page[len(page)-1].Key, unescaped)
			}
			assert.Equal(t, want, seen)
		})
	}
}

// Pages bigger than the flush size stream out intact.
func TestListLargePage(t *testing.T) {
	hs := newHarness(t, Options{})
	value := strings.Repeat("v", 10_000)
	for i := range 100 {
		hs.store.put(fmt.Sprintf("k%03d", i), value)
	}
	var got []listed
	requireJSON(t, hs.do(t, http.MethodGet, "/v1/kv", nil), &got)
	require.Len(t, got, 100)
	for i, e := range got {
		assert.Equal(t, fmt.Sprintf("k%03d", i), e.Key)
		assert.Equal(t, value, string(e.Value))
	}
}

func TestMinIndexWaitsBeforeReading(t *testing.T) {
	hs := newHarness(t, Options{})
	idx := hs.store.put("k", "v") // index 1
	hs.store.stale = store.StaleInfo{KnownLeader: true, WriteIndex: idx}

	for _, path := range []string{
		"/v1/kv/k?consistency=stale&min_index=1",
		"/v1/kv/k?min_index=1",
		"/v1/kv?prefix=k&consistency=stale&min_index=1",
	} {
		rec := hs.do(t, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, rec.Code, path)
	}
	assert.Equal(t, []uint64{1, 1, 1}, hs.store.waited)

	// min_index=0 asks for nothing; no wait at all.
	require.Equal(t, http.StatusOK, hs.do(t, http.MethodGet, "/v1/kv/k?consistency=stale&min_index=0", nil).Code)
	assert.Len(t, hs.store.waited, 3)

	// Too far behind: 503 timeout with Retry-After, and the read never reaches the store.
	hs.store.lastCons = -1
	for _, path := range []string{"/v1/kv/k?consistency=stale&min_index=2", "/v1/kv?consistency=stale&min_index=2"} {
		rec := hs.do(t, http.MethodGet, path, nil)
		requireError(t, rec, http.StatusServiceUnavailable, "timeout")
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		assert.Equal(t, store.Consistency(-1), hs.store.lastCons, "no read after a failed wait")
	}

	for _, q := range []string{"min_index=", "min_index=-1", "min_index=x", "min_index=1.5",
		"min_index=18446744073709551616", "min_index=1&min_index=1"} {
		requireError(t, hs.do(t, http.MethodGet, "/v1/kv/k?"+q, nil), http.StatusBadRequest, "invalid_parameter")
		requireError(t, hs.do(t, http.MethodGet, "/v1/kv?"+q, nil), http.StatusBadRequest, "invalid_parameter")
	}
	assert.Len(t, hs.store.waited, 5, "a bad min_index is refused before any wait")
}

func TestPutAllocatesItsContentLengthBeforeTheBodyArrives(t *testing.T) {
	hs := newHarness(t, Options{MaxValueSize: 8 << 20})
	r := httptest.NewRequest(http.MethodPut, "/v1/kv/k", strings.NewReader("a few bytes"))
	r.ContentLength = 8 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rec := hs.serve(r)
	runtime.ReadMemStats(&after)
	requireError(t, rec, http.StatusBadRequest, codeInvalidBody)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "allocated for bytes never sent")

	value := strings.Repeat("v", 300<<10) // several doublings of the buffer
	rec = hs.do(t, http.MethodPut, "/v1/kv/k", strings.NewReader(value))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, value, string(hs.store.data["k"].Value))
}

func TestIdempotencyKeyReachesTheStoreOnEveryWrite(t *testing.T) {
	hs := newHarness(t, Options{})
	req := func(method, target, key string, b io.Reader) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, b)
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		hs.h.ServeHTTP(rec, r)
		return rec
	}
	require.Equal(t, http.StatusOK, req(http.MethodPut, "/v1/kv/k", "put-1", body("v")).Code)
	require.Equal(t, http.StatusOK, req(http.MethodPut, "/v1/kv/k?cas=1", "cas-1", body("w")).Code)
	require.Equal(t, http.StatusOK, req(http.MethodDelete, "/v1/kv/k", "del-1", nil).Code)
	require.Equal(t, http.StatusOK, req(http.MethodPut, "/v1/kv/k", "", body("v")).Code)
	assert.Equal(t, []string{"put-1", "cas-1", "del-1", ""}, hs.store.idemKeys)

	for _, bad := range []string{strings.Repeat("k", 129), "has space", "tab\tkey", "é"} {
		rec := req(http.MethodPut, "/v1/kv/k", bad, body("v"))
		requireError(t, rec, http.StatusBadRequest, "invalid_parameter")
	}
	r := httptest.NewRequest(http.MethodDelete, "/v1/kv/k", nil)
	r.Header.Add("Idempotency-Key", "a")
	r.Header.Add("Idempotency-Key", "b")
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, r)
	requireError(t, rec, http.StatusBadRequest, "invalid_parameter")
	assert.Len(t, hs.store.idemKeys, 4, "a refused key never reaches the store")

	hs.store.errs["Put"] = fmt.Errorf("put: %w: key %q", store.ErrIdempotencyKeyReused, "put-1")
	requireError(t, req(http.MethodPut, "/v1/kv/k", "put-1", body("other")), http.StatusUnprocessableEntity, "idempotency_key_reused")
}
