package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/store"
	"github.com/raftkv/raftkv/watch"
)

// watchRig is a real HTTP server (streams need one) over a fake store whose writes feed a hub.
type watchRig struct {
	fs  *fakeStore
	hub *watch.Hub
	srv *httptest.Server
	api *server
}

func newWatchRig(t *testing.T, opts Options) *watchRig {
	t.Helper()
	fs := newFakeStore()
	hub := watch.New(watch.Config{})
	fs.sink = hub
	opts.Watch = hub
	h := New(fs, opts, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &watchRig{fs: fs, hub: hub, srv: srv, api: h.(*server)}
}

func (rg *watchRig) put(t *testing.T, key, value string) uint64 {
	t.Helper()
	idx, err := rg.fs.Put(context.Background(), key, []byte(value), store.Precondition{})
	require.NoError(t, err)
	return idx
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	event, id, data string
}

type sseClient struct {
	resp *http.Response
	r    *bufio.Reader
}

func (rg *watchRig) watch(t *testing.T, query string, header http.Header) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rg.srv.URL+"/v1/watch?"+query, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return &sseClient{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads the next event (io.EOF at the end of the stream).
func (c *sseClient) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if ev.data != "" || ev.event != "" {
				return ev, nil
			}
			continue
		}
		name, value, _ := strings.Cut(line, ": ")
		switch name {
		case "event":
			ev.event = value
		case "id":
			ev.id = value
		case "data":
			ev.data = value
		}
	}
}

type wireChange struct {
	Type        string `json:"type"`
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	PrevValue   []byte `json:"prev_value"`
}

type wireEvent struct {
	Index   uint64       `json:"index"`
	Changes []wireChange `json:"changes"`
}

// nextChange skips progress events and returns the next message with changes.
func (c *sseClient) nextChange(t *testing.T) wireEvent {
	t.Helper()
	for {
		ev, err := c.next()
		require.NoError(t, err)
		if ev.event == "progress" {
			continue
		}
		require.Empty(t, ev.event, "unexpected event %+v", ev)
		var we wireEvent
		require.NoError(t, json.Unmarshal([]byte(ev.data), &we))
		require.Equal(t, strconv.FormatUint(we.Index, 10), ev.id)
		return we
	}
}

func (c *sseClient) nextOf(t *testing.T, kind string) map[string]any {
	t.Helper()
	for {
		ev, err := c.next()
		require.NoError(t, err)
		if ev.event == kind {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(ev.data), &m))
			return m
		}
	}
}

func TestWatchStreamsEveryMatchingChangeOnceInOrder(t *testing.T) {
	rg := newWatchRig(t, Options{})
	i1 := rg.put(t, "a/1", "x")
	rg.put(t, "b", "y")
	c := rg.watch(t, "prefix=a/&index=1&prev=true", nil)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	assert.Equal(t, "text/event-stream", c.resp.Header.Get("Content-Type"))

	ev := c.nextChange(t)
	assert.Equal(t, i1, ev.Index)
	assert.Equal(t, []wireChange{{Type: "put", Key: "a/1", Value: []byte("x"), CreateIndex: i1, ModIndex: i1}}, ev.Changes)

	rg.put(t, "c", "unrelated")
	i2 := rg.put(t, "a/1", "x2")
	_, _, err := rg.fs.Delete(context.Background(), "a/1", store.Precondition{})
	require.NoError(t, err)
	ev = c.nextChange(t)
	assert.Equal(t, i2, ev.Index)
	assert.Equal(t, []byte("x"), ev.Changes[0].PrevValue)
	ev = c.nextChange(t)
	assert.Equal(t, "delete", ev.Changes[0].Type)
	assert.Equal(t, i2+1, ev.Index)
}

func TestWatchFromNowStartsAfterTheReadIndexAndSaysWhere(t *testing.T) {
	rg := newWatchRig(t, Options{})
	rg.put(t, "k", "old")
	c := rg.watch(t, "key=k", nil)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	assert.Equal(t, "1", c.resp.Header.Get("X-Kv-Index"))
	p := c.nextOf(t, "progress")
	assert.EqualValues(t, 1, p["index"])
	i := rg.put(t, "k", "new")
	assert.Equal(t, i, c.nextChange(t).Index)
}

func TestWatchResumesFromLastEventID(t *testing.T) {
	rg := newWatchRig(t, Options{})
	rg.put(t, "k", "1")
	i2 := rg.put(t, "k", "2")
	c := rg.watch(t, "key=k&index=1", http.Header{"Last-Event-Id": {"1"}})
	assert.Equal(t, i2, c.nextChange(t).Index)
}

func TestWatchTypesFilter(t *testing.T) {
	rg := newWatchRig(t, Options{})
	rg.put(t, "k", "1")
	_, _, err := rg.fs.Delete(context.Background(), "k", store.Precondition{})
	require.NoError(t, err)
	c := rg.watch(t, "prefix=&index=1&types=delete", nil)
	ev := c.nextChange(t)
	assert.Equal(t, uint64(2), ev.Index)
	assert.Equal(t, "delete", ev.Changes[0].Type)
}

func TestWatchOfACompactedIndexIs410(t *testing.T) {
	rg := newWatchRig(t, Options{})
	rg.put(t, "k", "1")
	rg.hub.Restored(5) // a snapshot install: everything up to 5 is unknown here
	resp, err := http.Get(rg.srv.URL + "/v1/watch?key=k&index=2")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusGone, resp.StatusCode)
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, "compacted", body["code"])
	assert.EqualValues(t, 5, body["compact_index"])
	assert.EqualValues(t, 5, body["current_index"])
}

func TestWatchParamsAreValidated(t *testing.T) {
	hs := newHarness(t, Options{Watch: watch.New(watch.Config{})})
	for _, q := range []string{"", "key=a&prefix=b", "key=", "prefix=a&index=x", "prefix=a&types=upsert", "prefix=a&bogus=1", "prefix=a&prev=maybe"} {
		requireError(t, hs.do(t, http.MethodGet, "/v1/watch?"+q, nil), http.StatusBadRequest, "invalid_parameter")
	}
	requireError(t, newHarness(t, Options{}).do(t, http.MethodGet, "/v1/watch?prefix=a", nil), http.StatusNotFound, "not_found")
}

func TestTooManyWatchesIs503(t *testing.T) {
	rg := newWatchRig(t, Options{MaxWatches: 1})
	c := rg.watch(t, "prefix=", nil)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	resp, err := http.Get(rg.srv.URL + "/v1/watch?prefix=")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(b), "too_many_watches")
}

// A node that lost its leader ends its streams so that their clients reconnect elsewhere, instead of
// serving a history that has silently stopped (etcd#9872).
func TestWatchOnANodeWithoutALeaderEndsWithNoLeader(t *testing.T) {
	rg := newWatchRig(t, Options{NoLeaderTimeout: 100 * time.Millisecond})
	rg.put(t, "k", "1")
	c := rg.watch(t, "key=k&index=1", nil)
	c.nextChange(t)
	rg.fs.mu.Lock()
	rg.fs.stale = store.StaleInfo{KnownLeader: false}
	rg.fs.mu.Unlock()
	e := c.nextOf(t, "error")
	assert.Equal(t, "no_leader", e["code"])
	assert.EqualValues(t, 2, e["resume_index"])
	_, err := c.next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestWatchSendsProgressWhileIdle(t *testing.T) {
	rg := newWatchRig(t, Options{WatchProgressInterval: 50 * time.Millisecond})
	c := rg.watch(t, "key=k&index=1", nil)
	rg.put(t, "other", "x")
	require.Eventually(t, func() bool {
		p := c.nextOf(t, "progress")
		return p["index"] == float64(1)
	}, 10*time.Second, time.Millisecond)
}

// A client that stops reading is ended (lagging, then cut) while writes and another watcher go on at
// full speed: nothing it does reaches apply or the other streams.
func TestALaggingWatcherIsCutWithoutSlowingWritesOrOtherWatchers(t *testing.T) {
	// The lag timeout must exceed any pause the reading watcher's goroutine can suffer on a loaded
	// machine under -race (500 ms cut it there), or the test cuts the wrong watcher.
	rg := newWatchRig(t, Options{WatchBufferBytes: 4 << 10, WatchLagTimeout: 3 * time.Second})
	good := rg.watch(t, "prefix=&index=1", nil)

	// The stalled client sends its request and never reads a byte.
	conn, err := net.Dial("tcp", rg.srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /v1/watch?prefix=&index=1 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rg.api.watches.Load() == 2 }, 10*time.Second, time.Millisecond)

	value := strings.Repeat("v", 32<<10)
	const n = 400 // ~13 MiB, far past any socket buffer
	got := make(chan uint64, n)
	go func() {
		defer close(got)
		for i := 0; i < n; i++ {
			ev, err := good.next()
			if err != nil {
				return
			}
			if ev.event == "" {
				idx, _ := strconv.ParseUint(ev.id, 10, 64)
				got <- idx
			} else if ev.event != "progress" {
				return
			} else {
				i--
			}
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		rg.put(t, fmt.Sprintf("k%03d", i), value)
	}
	assert.Less(t, time.Since(start), 15*time.Second, "writes must not wait for watchers")
	for i := 0; i < n; i++ {
		assert.Equal(t, uint64(i+1), <-got, "the reading watcher gets every change, in order")
	}
	require.Eventually(t, func() bool { return rg.api.watches.Load() == 1 }, 20*time.Second, 10*time.Millisecond,
		"the stalled stream must end")
}

func TestLongPollAnswersOnAChangeOfItsKeyOnly(t *testing.T) {
	rg := newWatchRig(t, Options{})
	i1 := rg.put(t, "k", "1")
	type answer struct {
		status int
		index  string
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Get(rg.srv.URL + "/v1/kv/k?index=" + strconv.FormatUint(i1, 10) + "&wait=20s")
		if err != nil {
			done <- answer{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, resp.Header.Get("X-Kv-Index"), string(b)}
	}()
	rg.put(t, "other", "x") // must not wake it
	select {
	case a := <-done:
		t.Fatalf("answered without a change of its key: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}
	i3 := rg.put(t, "k", "3")
	a := <-done
	assert.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, "3", a.body)
	assert.Equal(t, strconv.FormatUint(i3, 10), a.index)

	// A list long-poll at the current index times out with the same view.
	resp, err := http.Get(rg.srv.URL + "/v1/kv?prefix=k&index=" + strconv.FormatUint(i3, 10) + "&wait=100ms")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, strconv.FormatUint(i3, 10), resp.Header.Get("X-Kv-Index"))

	hs := newHarness(t, Options{})
	requireError(t, hs.do(t, http.MethodGet, "/v1/kv/k?wait=1s", nil), http.StatusBadRequest, "invalid_parameter")
	requireError(t, hs.do(t, http.MethodGet, "/v1/kv/k?index=1&wait=11m", nil), http.StatusBadRequest, "invalid_parameter")
}

// A long-poll on a node without a leader does not wait out its wait=: it answers (here the fake's read
// succeeds; a real linearizable read then says no_leader) so that the client moves on.
func TestLongPollOnANodeWithoutALeaderStopsWaiting(t *testing.T) {
	rg := newWatchRig(t, Options{NoLeaderTimeout: 100 * time.Millisecond})
	i := rg.put(t, "k", "1")
	rg.fs.mu.Lock()
	rg.fs.stale = store.StaleInfo{KnownLeader: false}
	rg.fs.mu.Unlock()
	start := time.Now()
	resp, err := http.Get(rg.srv.URL + "/v1/kv/k?index=" + strconv.FormatUint(i, 10) + "&wait=1m")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Less(t, time.Since(start), 30*time.Second)
}

// Once a stream has caught up it says how far it is complete right away, not at the next progress
// interval: a watcher of a quiet prefix that reconnects often would otherwise never move past its last
// change (found by the chaos watchers, which reconnect every few seconds).
func TestAStreamThatCatchesUpSaysHowFarItIsCompleteAtOnce(t *testing.T) {
	rg := newWatchRig(t, Options{WatchProgressInterval: time.Hour})
	i := rg.put(t, "k", "1")
	last := rg.put(t, "other", "x")
	c := rg.watch(t, "key=k&index="+strconv.FormatUint(i, 10), nil)
	assert.Equal(t, i, c.nextChange(t).Index)
	p := c.nextOf(t, "progress")
	assert.EqualValues(t, last, p["index"])
}

// min_index on a watch and a long-poll: a node that has not applied the index the client has seen
// does not stream (or poll) from behind it; it answers 503 timeout, before any of the stream, so the
// client asks a node that is current. One that has applied it serves as usual.
func TestWatchAndLongPollWaitForMinIndexFirst(t *testing.T) {
	rg := newWatchRig(t, Options{})
	i := rg.put(t, "k", "1")
	ahead := strconv.FormatUint(i+5, 10)
	for _, path := range []string{
		"/v1/watch?key=k&min_index=" + ahead,
		"/v1/watch?key=k&index=1&min_index=" + ahead,
		"/v1/kv/k?index=" + strconv.FormatUint(i, 10) + "&wait=1m&min_index=" + ahead,
		"/v1/kv?prefix=k&index=" + strconv.FormatUint(i, 10) + "&wait=1m&min_index=" + ahead,
	} {
		start := time.Now()
		resp, err := http.Get(rg.srv.URL + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
		assert.Contains(t, string(b), `"timeout"`, path)
		assert.Less(t, time.Since(start), 30*time.Second, "%s: not held for its wait=", path)
	}
	rg.fs.mu.Lock()
	waited := append([]uint64(nil), rg.fs.waited...)
	rg.fs.mu.Unlock()
	assert.Equal(t, []uint64{i + 5, i + 5, i + 5, i + 5}, waited)

	c := rg.watch(t, "key=k&index=1&min_index="+strconv.FormatUint(i, 10), nil)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	assert.Equal(t, i, c.nextChange(t).Index)
	for _, q := range []string{"key=k&min_index=x", "key=k&min_index=1&min_index=2"} {
		resp, err := http.Get(rg.srv.URL + "/v1/watch?" + q)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
}

// watchCounter records what a WatchObserver sees.
type watchCounter struct {
	mu      sync.Mutex
	live    int
	ended   map[string]int
	changes int
}

func (w *watchCounter) ObserveRequest(string, string, int, time.Duration) {}
func (w *watchCounter) ObserveWatchStart()                                { w.mu.Lock(); w.live++; w.mu.Unlock() }
func (w *watchCounter) ObserveWatchEvents(n int)                          { w.mu.Lock(); w.changes += n; w.mu.Unlock() }
func (w *watchCounter) ObserveWatchEnd(reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.live--
	w.ended[reason]++
}

func (w *watchCounter) snapshot() (int, map[string]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live, maps.Clone(w.ended), w.changes
}

// The metrics see every stream start and end once, with why it ended, and the changes sent.
func TestWatchStreamsAreCountedWithWhyTheyEnded(t *testing.T) {
	wc := &watchCounter{ended: map[string]int{}}
	rg := newWatchRig(t, Options{Observer: wc})
	rg.put(t, "k", "1")
	c := rg.watch(t, "key=k&index=1", nil)
	c.nextChange(t)
	rg.put(t, "k", "2")
	c.nextChange(t)
	live, _, changes := wc.snapshot()
	assert.Equal(t, 1, live)
	assert.Equal(t, 2, changes)

	gone := rg.watch(t, "key=k", nil)
	gone.nextOf(t, "progress")
	gone.resp.Body.Close() // the client goes away
	require.Eventually(t, func() bool { _, ended, _ := wc.snapshot(); return ended["client"] == 1 }, 5*time.Second, 10*time.Millisecond)

	rg.hub.Restored(10) // a snapshot install overtakes the stream: it ends "compacted"
	require.Eventually(t, func() bool { _, ended, _ := wc.snapshot(); return ended["compacted"] == 1 }, 5*time.Second, 10*time.Millisecond)
	resp, err := http.Get(rg.srv.URL + "/v1/watch?key=k&index=2") // 410 before streaming
	require.NoError(t, err)
	resp.Body.Close()
	live, ended, _ := wc.snapshot()
	assert.Equal(t, 0, live)
	assert.Equal(t, map[string]int{"compacted": 1, "refused": 1, "client": 1}, ended)
}
