// Package ui is raftkv's web console: static HTML, CSS and JavaScript embedded in the binary and served
// under /ui/. The page is a client of the public HTTP API only (/v1/cluster, /v1/cluster/health,
// /readyz, /v1/kv): it has no endpoints of its own, reads no store state and loads nothing from
// anywhere but the node that served it, so it works offline and shows exactly what any API client sees.
//
// It never imports the store or httpapi: cmd hands Handler to httpapi, which routes /ui/ to it.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// contentSecurityPolicy allows the page to load and call only its own origin: no inline script, no
// third-party code, nothing a stored key or value could smuggle in even if the page had a bug.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's files for paths under Prefix; "/ui" redirects to "/ui/". The files are
// small and change with the binary, so they are revalidated on every load (no-cache) rather than cached
// across an upgrade.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time: it cannot be missing
	}
	files := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		if !strings.HasPrefix(r.URL.Path, Prefix) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
