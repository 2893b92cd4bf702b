package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestServesThePageWithItsAssetsAndHeaders(t *testing.T) {
	h := Handler()
	for path, ctype := range map[string]string{
		"/ui/":            "text/html",
		"/ui/app.js":      "javascript",
		"/ui/style.css":   "text/css",
		"/ui/favicon.svg": "image/svg+xml",
	} {
		rec := get(t, h, http.MethodGet, path)
		require.Equal(t, http.StatusOK, rec.Code, path)
		assert.Contains(t, rec.Header().Get("Content-Type"), ctype, path)
		assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "default-src 'none'", path)
		assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"), path)
		assert.NotEmpty(t, rec.Body.String(), path)
	}
	rec := get(t, h, http.MethodGet, "/ui/")
	body, _ := io.ReadAll(rec.Body)
	for _, ref := range []string{`src="app.js"`, `href="style.css"`, `href="favicon.svg"`} {
		assert.Contains(t, string(body), ref, "the page loads its assets relative to /ui/")
	}
}

func TestRedirectsAndRefuses(t *testing.T) {
	h := Handler()
	rec := get(t, h, http.MethodGet, "/ui")
	assert.Equal(t, http.StatusMovedPermanently, rec.Code)
	assert.Equal(t, "/ui/", rec.Header().Get("Location"))
	assert.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/ui/nope.js").Code)
	assert.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/ui/../go.mod").Code)
	rec = get(t, h, http.MethodPost, "/ui/")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
	assert.Equal(t, http.StatusOK, get(t, h, http.MethodHead, "/ui/app.js").Code)
}

// The console must work offline and leak nothing: no file may load or call anything but its own origin.
func TestLoadsNothingFromElsewhere(t *testing.T) {
	remote := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|<iframe`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(path)
		require.NoError(t, err)
		text := string(b)
		if strings.HasSuffix(path, ".svg") { // the SVG namespace is an identifier, never fetched
			text = strings.ReplaceAll(text, "http://www.w3.org/2000/svg", "")
		}
		assert.Empty(t, remote.FindAllString(text, -1), "%s refers to another origin", path)
		return nil
	})
	require.NoError(t, err)
}
