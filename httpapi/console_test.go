package httpapi

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
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
