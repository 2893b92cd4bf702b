package test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// The watch checker (issue 12): concurrent writers and bank transfers (transactions) through random
// nodes, watchers on several prefixes that list, then watch from the list's index + 1 and reconnect to
// a different random node whenever their stream ends (and now and then on purpose), across a kill -9 of
// the leader and its restart. At the end, for every watcher: its events are in strictly increasing index
// order (no duplicate), replaying them onto its starting list gives exactly the final list (no gap, no
// invented change), every acknowledged write of its prefix is among them at its index, every event is an
// acknowledged or indeterminate write, a transfer's two writes arrive in one event, and the bank's total
// is the same after every event.
func TestWatchersSeeExactlyTheCommittedSequenceAcrossALeaderKill(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info", ExtraArgs: []string{"--watch-progress-interval", "1s"}})
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	node := func() *harness.Node { return c.Node(c.Live()[rng.IntN(len(c.Live()))]) }

	const accounts, startBalance = 5, 100
	for i := 0; i < accounts; i++ {
		c.MustPut(t, 0, fmt.Sprintf("bank/%d", i), []byte(strconv.Itoa(startBalance)))
	}

	h := &history{writes: map[uint64]ackedWrite{}, maybe: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	prefixes := []string{"w/a/", "w/b/", "bank/"}
	var watchers []*sseWatcher
	for _, p := range prefixes {
		for j := 0; j < 2; j++ {
			w := &sseWatcher{prefix: p, c: c, seed: uint64(len(watchers))}
			w.start(t)
			watchers = append(watchers, w)
		}
	}
	var wwg sync.WaitGroup
	for _, w := range watchers {
		wwg.Add(1)
		go func() { defer wwg.Done(); w.run(ctx) }()
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for wr := 0; wr < 3; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(wr), 7))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				n := c.Node(c.Live()[r.IntN(len(c.Live()))])
				key := fmt.Sprintf("w/%s/k%02d", []string{"a", "b", "c"}[r.IntN(3)], r.IntN(8))
				if r.IntN(4) == 0 {
					resp := n.Delete(key)
					h.record(resp, ackedWrite{key: key, delete: true}, resp.Deleted)
				} else {
					value := fmt.Sprintf("v%d-%d", wr, seq)
					h.record(n.Put(key, []byte(value)), ackedWrite{key: key, value: value}, true)
				}
			}
		}()
	}
	for tr := 0; tr < 2; tr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(tr), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				transfer(t, c.Node(c.Live()[r.IntN(len(c.Live()))]), r, accounts, h)
			}
		}()
	}

	// Each phase lasts until enough more writes and transfers have been acknowledged.
	progress := func(what string, writes, transfers int) {
		h.mu.Lock()
		w0, t0 := len(h.writes), h.transfers
		h.mu.Unlock()
		harness.WaitFor(t, 2*harness.LeaderTimeout, what, func() error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.writes)-w0 < writes || h.transfers-t0 < transfers {
				return fmt.Errorf("%d writes, %d transfers so far", len(h.writes)-w0, h.transfers-t0)
			}
			return nil
		})
	}
	progress("load before the fault", 300, 10)
	leader := c.Leader(t)
	c.Kill9(leader)
	c.Leader(t) // a new one among the survivors
	progress("load under the new leader", 200, 5)
	c.Restart(leader)
	c.WaitAllReady(t)
	progress("load after the restart", 200, 5)
	close(stop)
	wg.Wait()

	// The final state, at one index, per prefix; then every watcher must reach that index.
	finals := map[string]finalList{}
	for _, p := range prefixes {
		finals[p] = listAt(t, node(), p)
	}
	for _, w := range watchers {
		f := finals[w.prefix]
		harness.WaitFor(t, harness.LeaderTimeout, "watcher "+w.prefix+" reaches index "+strconv.FormatUint(f.index, 10), func() error {
			if n := w.nextIndex(); n <= f.index {
				return fmt.Errorf("at %d", n)
			}
			return nil
		})
	}
	cancel()
	wwg.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	total := 0
	for _, w := range watchers {
		w.mu.Lock()
		f := finals[w.prefix]
		state := map[string]string{}
		for k, v := range w.startList {
			state[k] = v
		}
		prev := w.startIndex
		for _, ev := range w.events {
			if ev.Index > f.index {
				break
			}
			require.Greater(t, ev.Index, prev, "watcher %s: index order, no repeat", w.prefix)
			prev = ev.Index
			for _, ch := range ev.Changes {
				require.True(t, strings.HasPrefix(ch.Key, w.prefix), "watcher %s got %s", w.prefix, ch.Key)
				if ch.Type == "delete" {
					delete(state, ch.Key)
				} else {
					state[ch.Key] = string(ch.Value)
				}
				ack, ok := h.writes[ev.Index]
				if !ok && !h.maybe[ch.Key+"="+string(ch.Value)] && !(ch.Type == "delete" && h.maybe["-"+ch.Key]) {
					t.Fatalf("watcher %s: change %+v at %d is no write anyone sent", w.prefix, ch, ev.Index)
				}
				if ok && !ack.txn {
					assert.Equal(t, ack.key, ch.Key, "at %d", ev.Index)
					assert.Equal(t, ack.delete, ch.Type == "delete", "at %d", ev.Index)
				}
			}
			if w.prefix == "bank/" {
				sum := 0
				for _, v := range state {
					n, _ := strconv.Atoi(v)
					sum += n
				}
				require.Equal(t, accounts*startBalance, sum, "bank total after index %d: a transfer applied in part", ev.Index)
			}
		}
		assert.Equal(t, f.entries, state, "watcher %s (from %d): replaying its events onto its list must give the final list at %d",
			w.prefix, w.startIndex, f.index)
		for idx, ack := range h.writes {
			if idx > w.startIndex && idx <= f.index && strings.HasPrefix(ack.key, w.prefix) && ack.changed {
				assert.True(t, w.saw(idx), "watcher %s missed the acknowledged write at %d (%s)", w.prefix, idx, ack.key)
			}
		}
		total += len(w.events)
		t.Logf("watcher %s: from %d to %d, %d events, %d reconnects", w.prefix, w.startIndex, f.index, len(w.events), w.reconnects)
		w.mu.Unlock()
	}
	assert.Greater(t, total, 100, "the watchers saw too little to prove anything")
	assert.Greater(t, h.transfers, 5, "too few transfers committed")
}

type ackedWrite struct {
	key, value string
	delete     bool
	changed    bool // a delete of an absent key changes nothing and sends no event
	txn        bool
}

type history struct {
	mu        sync.Mutex
	writes    map[uint64]ackedWrite // by index
	maybe     map[string]bool       // indeterminate writes: "key=value", "-key" for a delete
	transfers int
}

func (h *history) record(r *harness.Response, w ackedWrite, changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r.Outcome() {
	case harness.Applied:
		w.changed = changed
		h.writes[r.Index] = w
	case harness.Indeterminate:
		if w.delete {
			h.maybe["-"+w.key] = true
		} else {
			h.maybe[w.key+"="+w.value] = true
		}
	}
}

// transfer moves 1..10 between two accounts with a transaction guarded by both mod indexes.
func transfer(t *testing.T, n *harness.Node, r *rand.Rand, accounts int, h *history) {
	a, b := r.IntN(accounts), r.IntN(accounts)
	if a == b {
		return
	}
	ka, kb := fmt.Sprintf("bank/%d", a), fmt.Sprintf("bank/%d", b)
	read := n.Do(http.MethodPost, "/v1/txn", []byte(`{"success":[{"op":"get","key":"`+ka+`"},{"op":"get","key":"`+kb+`"}]}`))
	if !read.OK() {
		return
	}
	var got struct {
		Results []struct {
			Value    []byte `json:"value"`
			ModIndex uint64 `json:"mod_index"`
		}
	}
	if json.Unmarshal(read.Body, &got) != nil || len(got.Results) != 2 {
		t.Errorf("bad read txn answer %s", read.Body)
		return
	}
	va, _ := strconv.Atoi(string(got.Results[0].Value))
	vb, _ := strconv.Atoi(string(got.Results[1].Value))
	amount := 1 + r.IntN(10)
	nva, nvb := strconv.Itoa(va-amount), strconv.Itoa(vb+amount)
	body := fmt.Sprintf(`{"compare":[{"key":%q,"target":"mod_index","op":"=","value":%d},{"key":%q,"target":"mod_index","op":"=","value":%d}],
		"success":[{"op":"put","key":%q,"value":%q},{"op":"put","key":%q,"value":%q}]}`,
		ka, got.Results[0].ModIndex, kb, got.Results[1].ModIndex,
		ka, base64.StdEncoding.EncodeToString([]byte(nva)), kb, base64.StdEncoding.EncodeToString([]byte(nvb)))
	resp := n.Do(http.MethodPost, "/v1/txn", []byte(body))
	var ans struct {
		Succeeded bool `json:"succeeded"`
	}
	_ = json.Unmarshal(resp.Body, &ans)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch resp.Outcome() {
	case harness.Applied:
		if ans.Succeeded {
			h.writes[resp.Index] = ackedWrite{key: "bank/", txn: true, changed: true}
			h.transfers++
		}
	case harness.Indeterminate:
		h.maybe[ka+"="+nva], h.maybe[kb+"="+nvb] = true, true
	}
}

type finalList struct {
	index   uint64
	entries map[string]string
}

// listAt reads a whole prefix in one page, so that it is one view at one index.
func listAt(t *testing.T, n *harness.Node, prefix string) finalList {
	t.Helper()
	var out finalList
	harness.WaitFor(t, harness.LeaderTimeout, "list "+prefix, func() error {
		r := n.Do(http.MethodGet, "/v1/kv?limit=10000&prefix="+url.QueryEscape(prefix), nil)
		if !r.OK() {
			return fmt.Errorf("%v", r)
		}
		var entries []struct {
			Key   string `json:"key"`
			Value []byte `json:"value"`
		}
		if err := json.Unmarshal(r.Body, &entries); err != nil {
			return err
		}
		out = finalList{entries: map[string]string{}}
		out.index, _ = strconv.ParseUint(r.Header.Get("X-Kv-Index"), 10, 64)
		for _, e := range entries {
			out.entries[e.Key] = string(e.Value)
		}
		if out.index == 0 {
			return fmt.Errorf("no X-Kv-Index")
		}
		return nil
	})
	return out
}

type watchEvent struct {
	Index   uint64 `json:"index"`
	Changes []struct {
		Type  string `json:"type"`
		Key   string `json:"key"`
		Value []byte `json:"value"`
	} `json:"changes"`
}

// sseWatcher lists its prefix, then follows it from the list's index + 1 through random nodes.
type sseWatcher struct {
	prefix string
	c      *harness.Cluster
	seed   uint64

	mu         sync.Mutex
	startIndex uint64
	startList  map[string]string
	events     []watchEvent
	next       uint64
	reconnects int
}

func (w *sseWatcher) start(t *testing.T) {
	f := listAt(t, w.c.Node(int(w.seed)%w.c.Size()), w.prefix)
	w.startIndex, w.startList, w.next = f.index, f.entries, f.index+1
}

func (w *sseWatcher) nextIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

func (w *sseWatcher) saw(index uint64) bool {
	for _, ev := range w.events {
		if ev.Index == index {
			return true
		}
	}
	return false
}

func (w *sseWatcher) run(ctx context.Context) {
	r := rand.New(rand.NewPCG(w.seed, 3))
	hc := &http.Client{}
	for ctx.Err() == nil {
		live := w.c.Live()
		n := w.c.Node(live[r.IntN(len(live))])
		// End the stream on purpose now and then: resuming is the thing under test.
		sctx, cancel := context.WithTimeout(ctx, time.Duration(500+r.IntN(1500))*time.Millisecond)
		w.follow(sctx, hc, n)
		cancel()
		w.mu.Lock()
		w.reconnects++
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *sseWatcher) follow(ctx context.Context, hc *http.Client, n *harness.Node) {
	q := url.Values{"prefix": {w.prefix}, "index": {strconv.FormatUint(w.nextIndex(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.BaseURL+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	br := bufio.NewReader(resp.Body)
	var event, id, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			name, value, _ := strings.Cut(line, ": ")
			switch name {
			case "event":
				event = value
			case "id":
				id = value
			case "data":
				data = value
			}
			continue
		}
		idx, _ := strconv.ParseUint(id, 10, 64)
		w.mu.Lock()
		switch event {
		case "":
			var ev watchEvent
			if json.Unmarshal([]byte(data), &ev) == nil {
				w.events = append(w.events, ev) // checked later: order, no repeat
				w.next = max(w.next, ev.Index+1)
			}
		case "progress":
			w.next = max(w.next, idx+1)
		case "error":
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		event, id, data = "", "", ""
	}
}

// A node's history is its own and starts at what it restored: after a restart the node holds only the
// changes replayed after its latest snapshot, so a watch from before that is 410 compacted on it (with
// the indexes to go on from), while a node that kept running still serves it. Resuming from the
// compact index + 1 on the restarted node misses nothing it holds.
func TestWatchAfterARestartIsCompactedToTheSnapshotNotSkipped(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info", SnapshotThreshold: 64, TrailingLogs: 16,
		SnapshotInterval: 200 * time.Millisecond})
	putMany(t, c, 0, "snap/", 400, 8)
	restarted := 1
	harness.WaitFor(t, harness.LeaderTimeout, "a snapshot on the node to restart", func() error {
		snaps, _ := filepath.Glob(c.Node(restarted).DataDir + "/snapshots/*")
		if len(snaps) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	c.Stop(restarted)
	c.Restart(restarted)
	c.WaitAllReady(t)

	get := func(n *harness.Node, index uint64) (int, map[string]any) {
		resp, err := http.Get(n.BaseURL + "/v1/watch?prefix=snap/&index=" + strconv.FormatUint(index, 10))
		require.NoError(t, err)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var body map[string]any
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			return resp.StatusCode, body
		}
		return resp.StatusCode, nil
	}
	status, body := get(c.Node(restarted), 1)
	require.Equal(t, http.StatusGone, status, "%v", body)
	assert.Equal(t, "compacted", body["code"])
	compact := uint64(body["compact_index"].(float64))
	assert.Positive(t, compact)
	assert.GreaterOrEqual(t, uint64(body["current_index"].(float64)), compact)

	status, _ = get(c.Node(0), 1)
	assert.Equal(t, http.StatusOK, status, "a node that kept running still holds the whole window")

	// From compact+1 the restarted node serves every change it holds: the same ones the other node has.
	w := &sseWatcher{prefix: "snap/", c: c, next: compact + 1}
	other := &sseWatcher{prefix: "snap/", c: c, next: compact + 1}
	final := listAt(t, c.Node(0), "snap/")
	for _, x := range []struct {
		w *sseWatcher
		n int
	}{{w, restarted}, {other, 0}} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); x.w.follow(ctx, &http.Client{}, c.Node(x.n)) }()
		harness.WaitFor(t, harness.LeaderTimeout, "watch catches up", func() error {
			if x.w.nextIndex() <= final.index {
				return fmt.Errorf("at %d of %d", x.w.nextIndex(), final.index)
			}
			return nil
		})
		cancel()
		<-done
	}
	require.Equal(t, len(other.events), len(w.events))
	for i := range w.events {
		assert.Equal(t, other.events[i], w.events[i])
	}
}
