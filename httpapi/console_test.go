package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The console is routed to Options.Console (which answers for itself) and / points a browser at it;
// without one both are the API's ordinary 404, and keys never reach it.
func TestConsoleRoutes(t *testing.T) {
	var got []string
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	hs := newHarness(t, Options{Console: console})
	assert.Equal(t, http.StatusTeapot, hs.do(t, http.MethodGet, "/ui/", nil).Code)
	assert.Equal(t, http.StatusTeapot, hs.do(t, http.MethodGet, "/ui/app.js", nil).Code)
	assert.Equal(t, http.StatusTeapot, hs.do(t, http.MethodGet, "/ui", nil).Code)
	assert.Equal(t, []string{"/ui/", "/ui/app.js", "/ui"}, got)
	rec := hs.do(t, http.MethodGet, "/", nil)
	assert.Equal(t, http.StatusFound, rec.Code)
	assert.Equal(t, "/ui/", rec.Header().Get("Location"))
	requireError(t, hs.do(t, http.MethodPut, "/", nil), http.StatusNotFound, codeNotFound)
	requireError(t, hs.do(t, http.MethodGet, "/v1/kv/ui/x", nil), http.StatusNotFound, codeKeyNotFound)
	assert.Equal(t, "/ui/", (&server{opts: Options{Console: console}}).routeName("/ui/app.js"))

	plain := newHarness(t, Options{})
	requireError(t, plain.do(t, http.MethodGet, "/ui/", nil), http.StatusNotFound, codeNotFound)
	requireError(t, plain.do(t, http.MethodGet, "/", nil), http.StatusNotFound, codeNotFound)
}

// CSRF: a page of another site may make a logged-in (or, ACLs off, any) browser send requests to the
// cluster, but never one that changes it. A browser says where a request comes from (Sec-Fetch-Site,
// or Origin on older ones); a state-changing request from elsewhere is refused before it is decided or
// applied, while reads, the console's own same-origin calls and non-browser clients pass.
func TestCrossOriginBrowserWritesAreRefused(t *testing.T) {
	hs := newHarness(t, Options{})
	send := func(method, target string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, target, strings.NewReader("v"))
		r.Host = "127.0.0.1:8080"
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return hs.serve(r)
	}
	for name, hdr := range map[string]map[string]string{
		"cross-site":              {"Sec-Fetch-Site": "cross-site"},
		"same-site, other origin": {"Sec-Fetch-Site": "same-site"},
		"origin of another host":  {"Origin": "https://evil.example"},
		"origin of another port":  {"Origin": "http://127.0.0.1:9999"},
	} {
		for _, req := range [][2]string{{http.MethodPut, "/v1/kv/a"}, {http.MethodDelete, "/v1/kv/a"}, {http.MethodPost, "/v1/txn"},
			{http.MethodPost, "/v1/cluster/leave"}, {http.MethodPut, "/v1/snapshot"}, {http.MethodPost, "/v1/acl/bootstrap"}} {
			rec := send(req[0], req[1], hdr)
			requireError(t, rec, http.StatusForbidden, codeCrossOrigin)
			assert.Contains(t, rec.Body.String(), "another site", name)
		}
	}
	_, _, err := hs.store.GetAt(t.Context(), "a", 0)
	require.Error(t, err, "nothing was written")

	// The console's own calls, and clients that are not browsers, pass.
	for name, hdr := range map[string]map[string]string{
		"same-origin":   {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8080"},
		"typed URL":     {"Sec-Fetch-Site": "none"},
		"old browser":   {"Origin": "http://127.0.0.1:8080"},
		"not a browser": {},
	} {
		assert.Equal(t, http.StatusOK, send(http.MethodPut, "/v1/kv/a", hdr).Code, name)
	}
	// Reads from elsewhere are answered (a browser keeps the answer from the other site: no CORS headers).
	rec := send(http.MethodGet, "/v1/kv/a", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"))
}
