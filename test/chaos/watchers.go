package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/test/harness"
)

// ledgerWatcher lists the ledger, then watches it from the list's index + 1 through a random running
// node, and moves to another one (resuming from the last index it holds) whenever its stream ends: a
// node killed, paused, partitioned, without a leader, or on a 410 from a node whose history no longer
// reaches back. VerifyWatchers then checks that what it received is exactly the ledger's committed
// sequence: the issue-12 promise under every fault the suite has.
type ledgerWatcher struct {
	w    *Workload
	id   int
	rng  *rand.Rand
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	started    bool
	startIndex uint64
	startList  map[string]string
	events     []watchEvent
	next       uint64
	reconnects int
	compacted  int // 410s seen (a node's history did not reach back; another may)
	problems   []string
}

type watchEvent struct {
	Index   uint64 `json:"index"`
	Changes []struct {
		Type  string `json:"type"`
		Key   string `json:"key"`
		Value []byte `json:"value"`
	} `json:"changes"`
}

const watchPrefix = "ledger/"

func (lw *ledgerWatcher) run() {
	defer close(lw.done)
	hc := &http.Client{}
	backoff := 20 * time.Millisecond
	for {
		select {
		case <-lw.stop:
			return
		default:
		}
		node, cl := lw.w.target(lw.rng)
		if node == nil {
			lw.sleep(backoff)
			continue
		}
		if !lw.isStarted() {
			lw.list(cl)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-lw.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		// End the stream on purpose now and then too: resuming is what is under test.
		timer := time.AfterFunc(time.Duration(1000+lw.rng.IntN(4000))*time.Millisecond, cancel)
		progressed := lw.follow(ctx, hc, cl)
		timer.Stop()
		cancel()
		lw.mu.Lock()
		lw.reconnects++
		lw.mu.Unlock()
		if progressed {
			backoff = 20 * time.Millisecond
		} else {
			backoff = min(2*backoff, 500*time.Millisecond)
		}
		lw.sleep(backoff)
	}
}

func (lw *ledgerWatcher) sleep(d time.Duration) {
	select {
	case <-lw.stop:
	case <-time.After(d):
	}
}

func (lw *ledgerWatcher) isStarted() bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.started
}

// list reads the ledger in one consistent view (every page at the same index) and starts from it.
func (lw *ledgerWatcher) list(cl *harness.Client) {
	entries, index, err := listAt(cl, watchPrefix)
	if err != nil {
		return
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.started, lw.startIndex, lw.next = true, index, index+1
	lw.startList = map[string]string{}
	for _, e := range entries {
		lw.startList[e.Key] = string(e.Value)
	}
}

// listAt lists every key under prefix and the one index all its pages reflect (it retries while writes
// move the index between pages).
func listAt(cl *harness.Client, prefix string) ([]harness.ListEntry, uint64, error) {
	for attempt := 0; attempt < 10; attempt++ {
		var all []harness.ListEntry
		var index uint64
		after, consistent := "", true
		for pages := 0; ; pages++ {
			q := url.Values{"prefix": {prefix}, "limit": {"10000"}}
			if after != "" {
				q.Set("after", after)
			}
			r := cl.Do(http.MethodGet, "/v1/kv?"+q.Encode(), nil)
			if !r.OK() {
				return nil, 0, fmt.Errorf("%v", r)
			}
			var page []harness.ListEntry
			if err := json.Unmarshal(r.Body, &page); err != nil {
				return nil, 0, err
			}
			idx, _ := strconv.ParseUint(r.Header.Get("X-Kv-Index"), 10, 64)
			if pages > 0 && idx != index {
				consistent = false
				break
			}
			index = idx
			all = append(all, page...)
			if r.Header.Get("X-Kv-More") != "true" {
				break
			}
			if after, _ = url.QueryUnescape(r.Header.Get("X-Kv-Next-After")); after == "" {
				return nil, 0, fmt.Errorf("list: no X-Kv-Next-After")
			}
		}
		if consistent && index > 0 {
			return all, index, nil
		}
	}
	return nil, 0, fmt.Errorf("list %q: the index moved between pages every time", prefix)
}

// follow reads one stream; it reports whether it delivered anything.
func (lw *ledgerWatcher) follow(ctx context.Context, hc *http.Client, cl *harness.Client) bool {
	q := url.Values{"prefix": {watchPrefix}, "index": {strconv.FormatUint(lw.nextIndex(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.BaseURL+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return false
	}
	if cl.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.Token)
	}
	if strings.HasPrefix(cl.BaseURL, "https://") {
		hc = cl.HTTP // its transport has the cluster's TLS configuration
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		lw.mu.Lock()
		lw.compacted++
		lw.mu.Unlock()
		return false
	}
	if resp.StatusCode != http.StatusOK {
		return false
	}
	progressed := false
	br := bufio.NewReader(resp.Body)
	var event, id, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return progressed
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
		lw.mu.Lock()
		switch event {
		case "":
			var ev watchEvent
			if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Index != idx {
				lw.problems = append(lw.problems, fmt.Sprintf("bad message id %q data %q", id, data))
			} else {
				lw.events = append(lw.events, ev) // order and repeats are checked at the end
				lw.next = max(lw.next, ev.Index+1)
				progressed = true
			}
		case "progress":
			lw.next = max(lw.next, idx+1)
			progressed = true
		case "error":
			if strings.Contains(data, `"compacted"`) {
				lw.compacted++
			}
			lw.mu.Unlock()
			return progressed
		}
		lw.mu.Unlock()
		event, id, data = "", "", ""
	}
}

func (lw *ledgerWatcher) nextIndex() uint64 {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.next
}

// WatchResult is what the ledger watchers saw.
type WatchResult struct {
	Watchers, Events, Reconnects, Compacted int
	Problems                                []string
}

// VerifyWatchers reads the final ledger (after Stop and VerifyLedger, on a healthy cluster), waits for
// every watcher to reach its index, stops them, and checks each one's events: strictly increasing
// indexes, only ledger keys, every acknowledged ledger write after the watcher's start at its index, and
// its starting list plus its events equal to the final ledger. A watcher that could not reach the end
// because every node's history had moved past it is reported as a problem too: with the default window
// (10 minutes) no scenario is long enough for that to be legitimate.
func (w *Workload) VerifyWatchers(timeout time.Duration) WatchResult {
	res := WatchResult{Watchers: len(w.watchers)}
	defer w.StopWatchers()
	var final map[string]string
	var finalIndex uint64
	err := harness.Poll(max(timeout, time.Second), func() error {
		var errs []string
		for _, n := range w.c.Members() {
			cl := n.Client()
			if cl == nil {
				continue
			}
			entries, index, err := listAt(cl, watchPrefix)
			if err == nil {
				final, finalIndex = map[string]string{}, index
				for _, e := range entries {
					final[e.Key] = string(e.Value)
				}
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", n, err))
		}
		return fmt.Errorf("listing the ledger failed on every member: %s", strings.Join(errs, "; "))
	})
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	for _, lw := range w.watchers {
		if err := harness.Poll(max(timeout, time.Second), func() error {
			if n := lw.nextIndex(); n <= finalIndex {
				return fmt.Errorf("at %d", n)
			}
			return nil
		}); err != nil {
			lw.mu.Lock()
			res.Problems = append(res.Problems, fmt.Sprintf("watcher %d did not reach the final index %d (%v; %d compacted answers)",
				lw.id, finalIndex, err, lw.compacted))
			lw.mu.Unlock()
		}
	}
	w.StopWatchers()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, lw := range w.watchers {
		lw.mu.Lock()
		res.Events += len(lw.events)
		res.Reconnects += lw.reconnects
		res.Compacted += lw.compacted
		res.Problems = append(res.Problems, lw.problems...)
		if !lw.started {
			res.Problems = append(res.Problems, fmt.Sprintf("watcher %d never listed the ledger", lw.id))
			lw.mu.Unlock()
			continue
		}
		state := map[string]string{}
		for k, v := range lw.startList {
			state[k] = v
		}
		seen := map[uint64]bool{}
		prev := lw.startIndex
		for _, ev := range lw.events {
			if ev.Index > finalIndex {
				break
			}
			if ev.Index <= prev {
				res.Problems = append(res.Problems, fmt.Sprintf("watcher %d: index %d after %d (repeat or disorder)", lw.id, ev.Index, prev))
				break
			}
			prev = ev.Index
			seen[ev.Index] = true
			for _, ch := range ev.Changes {
				if !strings.HasPrefix(ch.Key, watchPrefix) || ch.Type != "put" {
					res.Problems = append(res.Problems, fmt.Sprintf("watcher %d: unexpected change %s %s at %d", lw.id, ch.Type, ch.Key, ev.Index))
				}
				state[ch.Key] = string(ch.Value)
			}
		}
		for key, a := range w.acked {
			if a.index > lw.startIndex && a.index <= finalIndex && !seen[a.index] {
				res.Problems = append(res.Problems, fmt.Sprintf("watcher %d missed the acknowledged write %s at %d", lw.id, key, a.index))
				break
			}
		}
		if len(state) != len(final) {
			res.Problems = append(res.Problems, fmt.Sprintf("watcher %d: its list plus its events hold %d keys, the ledger %d", lw.id, len(state), len(final)))
		} else {
			for k, v := range final {
				if state[k] != v {
					res.Problems = append(res.Problems, fmt.Sprintf("watcher %d: %s = %q by its events, %q in the ledger", lw.id, k, state[k], v))
					break
				}
			}
		}
		lw.mu.Unlock()
	}
	return res
}

// StopWatchers ends the watchers and waits for them. Safe to call more than once.
func (w *Workload) StopWatchers() {
	for _, lw := range w.watchers {
		select {
		case <-lw.stop:
		default:
			close(lw.stop)
		}
		<-lw.done
	}
}
