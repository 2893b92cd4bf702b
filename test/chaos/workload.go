package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/test/lincheck"
)

// WorkloadConfig sizes the workload.
type WorkloadConfig struct {
	// Clients run get/put/cas/delete on a few keys, recorded for the linearizability check.
	Clients int
	// Keys per window; the keys change every Window. A key's history is what porcupine searches
	// (it checks keys independently), and writes of unknown outcome stay open until the end of the
	// history: fresh keys now and then keep each key's search small, whatever the run's length.
	Keys   int
	Window time.Duration
	// LedgerClients write unique keys once each; every acknowledged one must survive.
	LedgerClients int
	// LedgerWatchers watch the ledger through random nodes (VerifyWatchers checks what they saw).
	LedgerWatchers int
	// KeyedWriters write through the client package with idempotency keys and aggressive retries;
	// MonoReaders hop between nodes with stale reads and min_index (keyed.go, issue 16).
	KeyedWriters, MonoReaders int
	// BankTransferers and BankReaders run the bank (bank.go): transfers by transaction, and reads of
	// every account at one index whose total must never change.
	BankTransferers, BankReaders int
	Seed                         uint64
}

// Workload is the concurrent load the suite runs from the host against every running node.
type Workload struct {
	c     *Cluster
	cfg   WorkloadConfig
	rec   *lincheck.Recorder
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup

	// Counts of every request, workload and ledger alike.
	ok, failed, indeterminate atomic.Int64
	// Lincheck operations by kind of answer.
	reads, writes, mismatches atomic.Int64

	mu      sync.Mutex
	latency []time.Duration // of requests with a definite answer
	acked   map[string]ledgerWrite
	maybe   map[string]string // ledger writes of unknown outcome: key -> value

	watchers []*ledgerWatcher
	keyed    *keyedState
	bank     *harness.Bank
}

type ledgerWrite struct {
	value string
	index uint64
}

// StartWorkload starts the clients; Stop ends them.
func StartWorkload(c *Cluster, cfg WorkloadConfig) *Workload {
	w := &Workload{c: c, cfg: cfg, rec: lincheck.NewRecorder(), start: time.Now(), stop: make(chan struct{}),
		acked: map[string]ledgerWrite{}, maybe: map[string]string{}}
	for id := 0; id < cfg.Clients; id++ {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(id+1)))
		lc := &linClient{w: w, rng: rng, lin: harness.NewLinClient(id, rng, w.rec)}
		w.loop(lc.step)
	}
	for id := 0; id < cfg.LedgerWatchers; id++ {
		lw := &ledgerWatcher{w: w, id: id, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(2000+id))),
			stop: make(chan struct{}), done: make(chan struct{})}
		w.watchers = append(w.watchers, lw)
		go lw.run()
	}
	w.startBank()
	for id := 0; id < cfg.LedgerClients; id++ {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(1000+id)))
		seq := 0
		w.loop(func() bool {
			seq++
			return w.ledgerStep(rng, id, seq)
		})
	}
	w.startKeyed()
	return w
}

// loop runs step until Stop. After a request without a definite answer the client backs off (10 ms,
// doubling up to 500 ms), as a real client would: hammering an unavailable cluster only piles up
// writes of unknown outcome, each of which porcupine must consider taking effect at any later point.
func (w *Workload) loop(step func() (definite bool)) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		backoff := time.Duration(0)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(backoff):
			}
			if step() {
				backoff = 0
			} else {
				backoff = min(max(2*backoff, 10*time.Millisecond), 500*time.Millisecond)
			}
		}
	}()
}

// Stop ends the clients and waits for their last requests.
func (w *Workload) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// target picks a random node whose container runs (paused ones included: a request to a frozen node
// is part of the test). It returns nil when there is none.
func (w *Workload) target(rng *rand.Rand) (*Node, *harness.Client) {
	up := w.c.Up()
	for len(up) > 0 {
		i := rng.IntN(len(up))
		if cl := up[i].Client(); cl != nil {
			return up[i], cl
		}
		up = slices.Delete(up, i, i+1)
	}
	return nil, nil
}

func (w *Workload) observe(start time.Time, definite bool) {
	if !definite {
		return
	}
	d := time.Since(start)
	w.mu.Lock()
	w.latency = append(w.latency, d)
	w.mu.Unlock()
}

// keys returns the keys of the current window.
func (w *Workload) keys() []string {
	window := int(time.Since(w.start) / w.cfg.Window)
	keys := make([]string, w.cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("lin/%04d/%c", window, 'a'+i)
	}
	return keys
}

// linClient is one workload client: random operations on the current keys, each to a random node,
// recorded in the history (harness.LinClient, the same client as the process tests').
type linClient struct {
	w   *Workload
	rng *rand.Rand
	lin *harness.LinClient
}

func (lc *linClient) step() bool {
	w := lc.w
	node, cl := w.target(lc.rng)
	if node == nil {
		return false
	}
	start := time.Now()
	switch lc.lin.Step(cl, node.ID, w.keys()) {
	case harness.Read:
		w.ok.Add(1)
		w.reads.Add(1)
	case harness.Wrote:
		w.ok.Add(1)
		w.writes.Add(1)
	case harness.Mismatched:
		w.ok.Add(1)
		w.mismatches.Add(1)
	case harness.ReadFailed, harness.WriteNoEffect:
		w.failed.Add(1)
		return false
	case harness.WriteIndeterminate:
		w.indeterminate.Add(1)
		return false
	}
	w.observe(start, true)
	return true
}

// ledgerStep writes one unique key once.
func (w *Workload) ledgerStep(rng *rand.Rand, client, seq int) bool {
	node, cl := w.target(rng)
	if node == nil {
		return false
	}
	key := fmt.Sprintf("ledger/%d/%07d", client, seq)
	value := fmt.Sprintf("%s@%s", key, node.ID)
	start := time.Now()
	r := cl.Put(key, []byte(value))
	switch r.Outcome() {
	case harness.Applied:
		w.mu.Lock()
		w.acked[key] = ledgerWrite{value, r.Index}
		w.mu.Unlock()
		w.ok.Add(1)
		w.observe(start, true)
		return true
	case harness.Indeterminate:
		w.mu.Lock()
		w.maybe[key] = value
		w.mu.Unlock()
		w.indeterminate.Add(1)
	default:
		w.failed.Add(1)
	}
	return false
}

// History is the recorded lincheck history.
func (w *Workload) History() []porcupine.Operation { return w.rec.History() }

// LedgerResult is the outcome of reading the ledger back.
type LedgerResult struct {
	Acked, Indeterminate, IndeterminateFound int
	// Lost: acknowledged writes missing, or present with another value or index.
	Lost []string
	// Phantoms: keys present that no write could have created (never sent, or refused with no effect).
	Phantoms []string
}

// VerifyLedger lists the ledger keys through a ready member (a linearizable list, paged) and compares
// them with what the ledger clients were told. Call it after Stop, on a healthy cluster.
func (w *Workload) VerifyLedger(timeout time.Duration) (LedgerResult, error) {
	var entries []harness.ListEntry
	err := harness.Poll(timeout, func() error {
		var errs []string
		for _, n := range w.c.Members() {
			cl := n.Client()
			if cl == nil {
				continue
			}
			var err error
			if entries, err = listAll(cl, "ledger/"); err == nil {
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", n, err))
		}
		return fmt.Errorf("listing the ledger failed on every member: %s", strings.Join(errs, "; "))
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	res := LedgerResult{Acked: len(w.acked), Indeterminate: len(w.maybe)}
	if err != nil {
		return res, err
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.Key] = true
		if a, ok := w.acked[e.Key]; ok {
			if string(e.Value) != a.value || e.ModIndex != a.index {
				res.Lost = append(res.Lost, fmt.Sprintf("%s = %q@%d, acknowledged %q@%d", e.Key, e.Value, e.ModIndex, a.value, a.index))
			}
			continue
		}
		if v, ok := w.maybe[e.Key]; ok {
			res.IndeterminateFound++
			if string(e.Value) != v {
				res.Phantoms = append(res.Phantoms, fmt.Sprintf("%s = %q, the only write sent %q", e.Key, e.Value, v))
			}
			continue
		}
		res.Phantoms = append(res.Phantoms, fmt.Sprintf("%s = %q@%d, never written or refused", e.Key, e.Value, e.ModIndex))
	}
	for k, a := range w.acked {
		if !seen[k] {
			res.Lost = append(res.Lost, fmt.Sprintf("%s missing (acknowledged at index %d)", k, a.index))
		}
	}
	slices.Sort(res.Lost)
	slices.Sort(res.Phantoms)
	return res, nil
}

// listAll lists every key with prefix, linearizably, page by page. (harness.Client.ListAll passes
// X-Kv-Next-After back without unescaping it first, which breaks on keys with a '/'.)
func listAll(cl *harness.Client, prefix string) ([]harness.ListEntry, error) {
	var all []harness.ListEntry
	after := ""
	for pages := 0; pages < 10000; pages++ {
		q := url.Values{"prefix": {prefix}, "limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		r := cl.Do(http.MethodGet, "/v1/kv?"+q.Encode(), nil)
		if !r.OK() {
			return nil, fmt.Errorf("%v", r)
		}
		var page []harness.ListEntry
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return nil, fmt.Errorf("decoding a list page: %w", err)
		}
		all = append(all, page...)
		if r.Header.Get("X-Kv-More") != "true" {
			return all, nil
		}
		next, err := url.QueryUnescape(r.Header.Get("X-Kv-Next-After"))
		if err != nil || next <= after {
			return nil, fmt.Errorf("list: bad X-Kv-Next-After %q after %q (%v)", r.Header.Get("X-Kv-Next-After"), after, err)
		}
		after = next
	}
	return nil, fmt.Errorf("list %q: too many pages", prefix)
}

// Latency returns the 50th and 99th percentiles and the maximum of requests with a definite answer.
func (w *Workload) Latency() (p50, p99, max time.Duration) {
	w.mu.Lock()
	l := slices.Clone(w.latency)
	w.mu.Unlock()
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	at := func(q float64) time.Duration { return l[min(len(l)-1, int(q*float64(len(l))))] }
	return at(0.50), at(0.99), l[len(l)-1]
}
