package test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// The web console in a real browser (Debian's headless Chromium, driven over the DevTools protocol by
// chromedp) against a real 3-node cluster: it shows three members and the leader, browses keys by
// folder, creates a key that the API then reads, refuses an edit whose key changed meanwhile (cas),
// saves and deletes, tails the changes under a prefix, and shows a stopped node as failed.
//
// Without Chromium the test skips, unless RAFTKV_REQUIRE_DOCKER=1 (set by CI, which installs it in
// .ci/run): then it fails. RAFTKV_UI_SCREENSHOTS=DIR saves a PNG of each view there (docs/img for the
// README).
func TestConsoleShowsTheClusterEditsKeysAndAFailedNode(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	chromium := lookChromium(t)
	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info"})
	for _, kv := range [][2]string{
		{"app/config", `{"replicas": 3, "region": "eu-west"}`},
		{"app/feature-flags", "dark-mode=on,beta=off"},
		{"users/alice", "admin"},
		{"users/bob", "reader"},
		{"readme", "keys under app/ and users/"},
	} {
		c.MustPut(t, 0, kv[0], []byte(kv[1]))
	}
	leaderID := c.Node(c.Leader(t)).ID

	b := startBrowser(t, chromium)
	console := "http://" + c.Node(0).HTTPAddr + "/ui/"
	b.do(chromedp.Navigate(console + "#/cluster"))

	// Cluster: three healthy members, the leader marked as such in the table and the summary.
	b.waitFor("three healthy members and leader "+leaderID, fmt.Sprintf(`(() => {
		const rows = document.querySelectorAll('#members tbody tr');
		const healthy = document.querySelectorAll('#members tbody tr[data-status="healthy"]');
		const leader = document.querySelector('#members tbody tr[data-role="leader"]');
		return rows.length === 3 && healthy.length === 3 && leader && leader.dataset.member === %[1]q &&
			document.getElementById('c-leader').textContent === %[1]q;
	})()`, leaderID))
	b.screenshot("console-cluster.png")

	// Keys: the root lists folders and keys; a folder opens one level down.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/keys/"`))
	b.waitFor("the root listing", `document.querySelector('#k-list tr[data-folder="app/"]') !== null &&
		document.querySelector('#k-list tr[data-folder="users/"]') !== null &&
		document.querySelector('#k-list tr[data-key="readme"]') !== null &&
		document.querySelectorAll('#k-list tbody tr').length === 3`)
	b.screenshot("console-keys.png")
	b.do(chromedp.Click(chromedp.CSS(`#k-list tr[data-folder="app/"] a`)))
	b.waitFor("the app/ folder", `location.hash === "#/keys/app%2F" &&
		document.querySelector('#k-list tr[data-key="app/config"]') !== null &&
		document.querySelector('#k-list tr[data-key="app/feature-flags"]') !== null &&
		document.querySelectorAll('#k-list tbody tr').length === 2`)

	// Create a key in the page, then read it through the API of another node.
	const key = "app/greeting"
	b.do(chromedp.Click(chromedp.ID("k-new")),
		chromedp.WaitVisible(chromedp.ID("k-create")),
		chromedp.SetValue(chromedp.ID("k-create-key"), key),
		chromedp.SetValue(chromedp.ID("k-create-value"), "hello from the browser"),
		chromedp.Click(chromedp.ID("k-create-submit")))
	b.waitFor("the created key's page", `location.hash === "#/key/app%2Fgreeting" &&
		/^\d+$/.test(document.getElementById('v-mod').textContent) &&
		document.getElementById('v-value').value === "hello from the browser"`)
	got := c.Node(1).Get(key)
	require.Equal(t, http.StatusOK, got.Status, "%v", got)
	require.Equal(t, "hello from the browser", string(got.Body))
	require.Equal(t, strconv.FormatUint(got.ModIndex, 10), b.text("v-mod"), "the page shows the key's modify index")

	// Creating it again is refused: the form creates only (cas=0).
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/keys/app%2F"`),
		chromedp.WaitVisible(chromedp.CSS(`#k-list tr[data-key="app/greeting"]`)),
		chromedp.Click(chromedp.ID("k-new")),
		chromedp.SetValue(chromedp.ID("k-create-key"), key),
		chromedp.Click(chromedp.ID("k-create-submit")))
	b.waitFor("create of an existing key refused", `document.getElementById('k-create-msg').textContent.includes("already exists")`)

	// Edit with cas: a change made behind the page's back is not overwritten; after a reload it saves.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/key/app%2Fgreeting"`))
	b.waitFor("the key's page", `document.getElementById('v-value').value === "hello from the browser"`)
	c.MustPut(t, 2, key, []byte("changed behind its back"))
	b.do(chromedp.SetValue(chromedp.ID("v-value"), "edited in the browser"),
		chromedp.Click(chromedp.ID("v-save")))
	b.waitFor("a refused save", `document.getElementById('v-msg').textContent.includes("refused")`)
	require.Equal(t, "changed behind its back", string(c.Node(1).Get(key).Body), "a stale save must not overwrite")
	b.do(chromedp.Click(chromedp.ID("v-reload")))
	b.waitFor("the reloaded value", `document.getElementById('v-value').value === "changed behind its back"`)
	b.do(chromedp.SetValue(chromedp.ID("v-value"), "edited in the browser"),
		chromedp.Click(chromedp.ID("v-save")))
	b.waitFor("a saved edit", `document.getElementById('v-msg').textContent.startsWith("Saved at index") &&
		document.getElementById('v-value').value === "edited in the browser"`)
	got = c.Node(2).Get(key)
	require.Equal(t, "edited in the browser", string(got.Body))
	require.Equal(t, strconv.FormatUint(got.ModIndex, 10), b.text("v-mod"))
	b.screenshot("console-key.png")

	// Delete (the page asks first; the browser accepts).
	b.acceptDialogs()
	b.do(chromedp.Click(chromedp.ID("v-delete")))
	b.waitFor("a deleted key", `document.getElementById('v-msg').textContent.startsWith("Deleted at index")`)
	require.Equal(t, http.StatusNotFound, c.Node(1).Get(key).Status)

	// The live tail of a prefix (GET /v1/watch): changes made through the API appear, newest first.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/keys/app%2F"`),
		chromedp.WaitVisible(chromedp.CSS(`#k-list tr[data-key="app/config"]`)),
		chromedp.Click(chromedp.ID("k-watch")))
	b.waitFor("a running watch of app/", `location.hash === "#/watch/app%2F" &&
		document.getElementById('w-state').textContent.includes("complete up to index")`)
	put := c.MustPut(t, 1, "app/config", []byte(`{"replicas": 5, "region": "eu-west"}`))
	require.Equal(t, http.StatusOK, c.Node(2).Delete("app/feature-flags").Status)
	c.MustPut(t, 0, "users/carol", []byte("not under app/"))
	c.MustPut(t, 2, "app/new-setting", []byte("on"))
	b.waitFor("three changes under app/ in the tail", fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#w-list tbody tr')].map((r) => r.dataset.type + " " + r.dataset.key);
		return rows.join(",") === "put app/new-setting,delete app/feature-flags,put app/config" &&
			document.querySelector('#w-list tr[data-key="app/config"]').dataset.index === "%d";
	})()`, put.Index))
	b.screenshot("console-watch.png")

	// CSRF: a page of another site, open in the same browser, fires the requests a browser lets any page
	// send to any address (no-cors POSTs: a node leaving the cluster, a transaction). The nodes refuse
	// them (Sec-Fetch-Site / Origin), so nothing changes.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>evil</title><script>
			const node = "http://%s";
			Promise.allSettled([
				fetch(node + "/v1/cluster/leave", {method: "POST", mode: "no-cors"}),
				fetch(node + "/v1/txn", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
					body: JSON.stringify({success: [{op: "put", key: "csrf", value: btoa("pwned")}]})}),
			]).then(() => { document.title = "sent"; });
		</script>`, c.Node(0).HTTPAddr)
	}))
	defer evil.Close()
	b.do(chromedp.Navigate(strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)))
	b.waitFor("the other site's requests sent", `document.title === "sent"`)
	require.Equal(t, http.StatusNotFound, c.Node(1).Get("csrf").Status, "a cross-site transaction must not apply")
	st, err := c.Node(0).Status()
	require.NoError(t, err)
	require.Len(t, st.Members, 3, "a cross-site leave must not apply")
	b.do(chromedp.Navigate(console + "#/cluster"))

	// A stopped node: neither the one serving the page nor the leader, so both stay.
	victim := -1
	for i := 1; i < c.Size(); i++ {
		if c.Node(i).ID != leaderID {
			victim = i
			break
		}
	}
	victimID := c.Node(victim).ID
	c.Stop(victim)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/cluster"`))
	b.waitFor(victimID+" shown as failed", fmt.Sprintf(`(() => {
		const row = document.querySelector('#members tbody tr[data-member=%q]');
		return row && row.dataset.status === "failed" &&
			document.querySelectorAll('#members tbody tr[data-status="healthy"]').length === 2 &&
			document.getElementById('c-health').textContent === "unhealthy";
	})()`, victimID))
	b.screenshot("console-cluster-failed.png")
	b.noExceptions()
}

// The console of a cluster with ACLs on, over API TLS, in a real browser: it asks for a token, says so
// clearly when the cluster refuses one, shows what a token without the right may not do (403) without
// losing the token, and with a management token shows the cluster, creates a key and tails changes
// (the live tail sends the token too). The token never becomes a cookie.
func TestConsoleAsksForATokenWithACLsOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	chromium := lookChromium(t)
	pki := harness.NewPKI(t, "n1", "n2", "n3")
	c := harness.StartCluster(t, 3, harness.Options{
		LogLevel:  "info",
		ExtraArgs: []string{"--acl-enabled"},
		ClientTLS: pki.ClientTLS(),
		NodeArgs:  func(id string) []string { return pki.APIArgs(id, false) },
	})
	n1 := c.Node(0)
	var root aclToken
	harness.WaitFor(t, 2*time.Minute, "bootstrap", func() error {
		r := as(n1, "", "POST", "/v1/acl/bootstrap", "")
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		root = mustToken(t, r)
		return nil
	})
	c.SetToken(root.SecretID)
	leaderID := c.Node(c.Leader(t)).ID
	require.Equal(t, http.StatusOK, as(n1, root.SecretID, "POST", "/v1/acl/policies",
		`{"name":"app-read","keys":[{"prefix":"app/","access":"list"}]}`).Status)
	reader := mustToken(t, as(n1, root.SecretID, "POST", "/v1/acl/tokens", `{"description":"app reader","policies":["app-read"]}`))
	admin := mustToken(t, as(n1, root.SecretID, "POST", "/v1/acl/tokens", `{"description":"console admin","management":true}`))
	c.MustPut(t, 0, "app/config", []byte("replicas=3"))
	harness.WaitFor(t, 30*time.Second, "n1 knows the tokens", func() error {
		if r := as(n1, admin.SecretID, "GET", "/v1/acl/token/self", ""); r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		if r := as(n1, reader.SecretID, "GET", "/v1/kv/app/config", ""); r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		return nil
	})

	// The browser trusts the test CA's certificates as a user who installed the CA would.
	b := startBrowser(t, chromium, chromedp.Flag("ignore-certificate-errors", true))
	console := "https://" + n1.HTTPAddr + "/ui/"
	b.do(chromedp.Navigate(console + "#/cluster"))
	b.waitFor("the token form", `!document.getElementById('view-login').hidden &&
		document.getElementById('t-msg').textContent.includes("ACLs enabled") &&
		getComputedStyle(document.getElementById('who')).display === "none" &&
		document.getElementById('conn').textContent === "token needed"`)
	b.screenshot("console-token.png")

	// A wrong token: refused, said so, not kept.
	b.do(chromedp.SetValue(chromedp.ID("t-secret"), "rkv_not-a-real-token"), chromedp.Click(chromedp.ID("t-submit")))
	b.waitFor("a refused token", `!document.getElementById('view-login').hidden &&
		document.getElementById('t-msg').textContent.startsWith("The cluster refused the token") &&
		sessionStorage.getItem("raftkv.token") === null`)

	// A token that may list app/ only: keys work, the cluster view and writes say what is refused.
	b.do(chromedp.SetValue(chromedp.ID("t-secret"), reader.SecretID), chromedp.Click(chromedp.ID("t-submit")))
	b.waitFor("the cluster view refused for this token", `document.getElementById('view-login').hidden &&
		!document.getElementById('view-cluster').hidden &&
		document.getElementById('banner').textContent.includes("refused for this token: permission denied") &&
		document.getElementById('who-name').textContent === "app reader"`)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/keys/app%2F"`))
	b.waitFor("app/ listed with the reader token", `document.querySelector('#k-list tr[data-key="app/config"]') !== null`)
	b.do(chromedp.Click(chromedp.ID("k-new")),
		chromedp.WaitVisible(chromedp.ID("k-create")),
		chromedp.SetValue(chromedp.ID("k-create-key"), "app/new"),
		chromedp.Click(chromedp.ID("k-create-submit")))
	b.waitFor("a create refused for this token", `document.getElementById('k-create-msg').textContent.includes("refused for this token: permission denied: write")`)
	require.Equal(t, http.StatusNotFound, c.Node(1).Get("app/new").Status)

	// Sign out, then the management token: the cluster, a key created in the page, the live tail.
	b.do(chromedp.Click(chromedp.ID("who-out")))
	b.waitFor("the token form after signing out", `!document.getElementById('view-login').hidden && sessionStorage.getItem("raftkv.token") === null`)
	b.do(chromedp.SetValue(chromedp.ID("t-secret"), admin.SecretID), chromedp.Click(chromedp.ID("t-submit")))
	b.waitFor("the view shown before signing out, again", `document.getElementById('view-login').hidden &&
		document.querySelector('#k-list tr[data-key="app/config"]') !== null`)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/cluster"`))
	b.waitFor("three healthy members and leader "+leaderID, fmt.Sprintf(`(() => {
		const healthy = document.querySelectorAll('#members tbody tr[data-status="healthy"]');
		return !document.getElementById('view-cluster').hidden && healthy.length === 3 &&
			document.getElementById('c-leader').textContent === %q &&
			document.getElementById('who-name').textContent.includes("(management)");
	})()`, leaderID))
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/keys/app%2F"`),
		chromedp.WaitVisible(chromedp.CSS(`#k-list tr[data-key="app/config"]`)),
		chromedp.Click(chromedp.ID("k-new")),
		chromedp.WaitVisible(chromedp.ID("k-create")),
		chromedp.SetValue(chromedp.ID("k-create-key"), "app/new"),
		chromedp.SetValue(chromedp.ID("k-create-value"), "made with a token"),
		chromedp.Click(chromedp.ID("k-create-submit")))
	b.waitFor("the created key's page", `document.getElementById('v-value').value === "made with a token"`)
	require.Equal(t, "made with a token", string(c.Node(2).Get("app/new").Body))

	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/watch/app%2F"`))
	b.waitFor("a running watch of app/", `document.getElementById('w-state').textContent.includes("complete up to index")`)
	put := c.MustPut(t, 1, "app/config", []byte("replicas=5"))
	b.waitFor("the change in the tail", fmt.Sprintf(`(() => {
		const row = document.querySelector('#w-list tbody tr[data-key="app/config"]');
		return row && row.dataset.index === "%d";
	})()`, put.Index))

	// A token deleted while the page uses it: the next call is refused and the form asks again.
	require.Equal(t, http.StatusOK, as(n1, root.SecretID, "DELETE", "/v1/acl/tokens/"+admin.AccessorID, "").Status)
	b.waitFor("the token form after the token was deleted", `!document.getElementById('view-login').hidden &&
		document.getElementById('t-msg').textContent.startsWith("The cluster refused the token")`)
	cookies, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.cookie`))
	require.NoError(t, err)
	require.Empty(t, cookies, "the token must never be a cookie")
	b.noExceptions()
}

// lookChromium finds Debian's chromium; without it the test skips, or fails where CI requires it.
func lookChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("RAFTKV_REQUIRE_DOCKER") != "" {
		t.Fatal("chromium is required (RAFTKV_REQUIRE_DOCKER is set): apt-get install chromium")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// browser is one headless Chromium with one tab, closed (and its processes killed) in t.Cleanup.
type browser struct {
	t   *testing.T
	ctx context.Context // every action's deadline: the whole test's bound on the browser

	mu         sync.Mutex
	exceptions []string // uncaught exceptions of the page
}

// browserTimeout bounds everything the test does in the browser; each wait has its own, shorter bound.
const (
	browserTimeout = 90 * time.Second
	waitTimeout    = 20 * time.Second
)

func startBrowser(t *testing.T, path string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(append(chromedp.DefaultExecAllocatorOptions[:], extra...),
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI; Chromium's sandbox refuses root
		chromedp.WindowSize(1280, 720),
		chromedp.Flag("lang", "en-US"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // kills the browser and removes its profile directory
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first action starts the browser and ties its life to the context it gets: give it one
	// without a deadline, then bound every later action.
	require.NoError(t, chromedp.Do(ctx), "starting chromium")
	b := &browser{t: t}
	var cancelActions context.CancelFunc
	b.ctx, cancelActions = context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(cancelActions)

	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() {
				b.mu.Lock()
				b.exceptions = append(b.exceptions, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.fail("browser action: %v", err)
	}
}

// waitFor polls a JavaScript expression in the page until it is true.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(waitTimeout), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		b.fail("waiting for %s: %v", what, err)
	}
}

func (b *browser) text(id string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.getElementById(%q).textContent`, id)))
	if err != nil {
		b.fail("reading #%s: %v", id, err)
	}
	return s
}

// acceptDialogs answers every confirm() with OK from now on.
func (b *browser) acceptDialogs() {
	dialogs := chromedp.Events(b.ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
}

// screenshot saves the viewport as name under $RAFTKV_UI_SCREENSHOTS, if set.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("RAFTKV_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	require.NoError(b.t, err)
	require.NoError(b.t, os.MkdirAll(dir, 0o755))
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}

func (b *browser) noExceptions() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Empty(b.t, b.exceptions, "uncaught exceptions in the page")
}

// fail records what the page showed (its text and a screenshot in the test's artifact directory) and
// stops the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 5*time.Second)
	defer cancel()
	if body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`)); err == nil {
		b.t.Logf("the page:\n%s", body)
	}
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		if dir, err := harness.ArtifactDir(b.t); err == nil {
			path := filepath.Join(dir, "console.png")
			if os.WriteFile(path, png, 0o644) == nil {
				b.t.Logf("screenshot: %s", path)
			}
		}
	}
	b.mu.Lock()
	if len(b.exceptions) > 0 {
		b.t.Logf("uncaught exceptions in the page:\n%s", strings.Join(b.exceptions, "\n"))
	}
	b.mu.Unlock()
	b.t.Fatalf(format, args...)
}
