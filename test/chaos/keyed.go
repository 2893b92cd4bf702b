package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/harness"
	"github.com/raftkv/raftkv/test/lincheck"
)

// Issue 16's proof, run inside every scenario's workload:
//
//   - keyed writers: clients of the real client package (every node an endpoint, failover, backoff)
//     whose every write carries an Idempotency-Key and is retried aggressively, with a short per-attempt
//     timeout, so that a retry often reaches another node while the first attempt is still in flight.
//     Half their writes go to the linearizability keys and are recorded as one operation per call
//     (the retries inside it included); half write ledger keys that must be written exactly once, in
//     three shapes that each make a second application visible: a blind put (a second put of the key
//     shows as create_index != mod_index, as a second watch event, and as an index other than the
//     acknowledged one), a blind two-key transaction (the same, twice), and a transaction guarded by
//     "key absent" (a second application would answer succeeded=false, which the writer reports).
//   - monotonic readers: clients with RoundRobin (each call on the next node) that read with
//     consistency=stale and the Client's min_index, and check that no answer reflects an index older
//     than one they had seen, that no key's modify index goes back, and that a ledger write they know
//     was applied at or below the index they had seen is there.

// keyedEndpoint is the fake address of node i: the client's endpoints must not change when a node
// restarts on another published port, so the dialer maps "127.0.0.1:<i+1>" onto node i's current
// address (127.0.0.1, so the nodes' certificates verify with TLS on).
func keyedEndpoint(i int) string { return "127.0.0.1:" + strconv.Itoa(i+1) }

// keyedState is the keyed writers' and monotonic readers' share of a Workload.
type keyedState struct {
	nodes []*Node // the endpoints, in order

	mu       sync.Mutex
	acked    []ledgerWrite // the keyed writers' acknowledged ledger writes (for the readers)
	ackedKey []string
	problems []string
	refusals []string // samples of the errors of writes that had no effect

	// Writers.
	calls, ackedCalls, indeterminate, noEffect atomic.Int64
	attempts                                   atomic.Int64 // HTTP attempts of keyed writes
	retried                                    atomic.Int64 // calls that took more than one attempt
	raced                                      atomic.Int64 // retried after an attempt that may have reached a node
	// Readers.
	reads, readFailures, readHops, readRetried atomic.Int64
	hosts                                      sync.Map // endpoint -> *atomic.Int64 of reads answered
}

func (k *keyedState) problem(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.problems) < 100 {
		k.problems = append(k.problems, fmt.Sprintf(format, args...))
	}
}

func (k *keyedState) refused(err error) {
	k.noEffect.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.refusals) < 3 {
		k.refusals = append(k.refusals, err.Error())
	}
}

// keyedTransport dials node i for endpoint i and counts attempts per idempotency key.
type keyedTransport struct {
	k  *keyedState
	rt http.RoundTripper

	attempts atomic.Int64 // of keyed writes through this transport (one writer's)
	// deadline, when set, picks each attempt's own deadline (doubled per earlier attempt, so a call
	// ends even when every commit is slow): an attempt abandoned while the node is still proposing it
	// makes the retry race the original.
	deadline func() time.Duration

	mu   sync.Mutex
	sent map[string]int // idempotency key -> attempts that may have reached a node
}

func (kt *keyedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.Header.Get("Idempotency-Key")
	if key != "" {
		kt.k.attempts.Add(1)
		kt.mu.Lock()
		if kt.sent[key] == 1 {
			kt.k.raced.Add(1) // the call's first retry after an attempt that may have reached a node
		}
		kt.mu.Unlock()
	}
	cancel := context.CancelFunc(func() {})
	if key != "" {
		kt.attempts.Add(1)
		if kt.deadline != nil {
			kt.mu.Lock()
			n := min(kt.sent[key], 8)
			kt.mu.Unlock()
			var ctx context.Context
			ctx, cancel = context.WithTimeout(req.Context(), kt.deadline()<<n)
			req = req.WithContext(ctx)
		}
	}
	resp, err := kt.rt.RoundTrip(req)
	if err != nil {
		cancel()
	} else {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	}
	if key != "" && (err == nil || !isDial(err)) {
		kt.mu.Lock()
		kt.sent[key]++
		kt.mu.Unlock()
	}
	if err == nil && key == "" && req.Method == http.MethodGet {
		v, _ := kt.k.hosts.LoadOrStore(req.URL.Host, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	return resp, err
}

// cancelBody ends an attempt's own deadline once its answer has been read.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// newKeyedClient is a client.Client over every node of the cluster, with attempt as the per-attempt
// timeout (http.Client.Timeout: a slow attempt is abandoned and the call moves to the next node).
func (w *Workload) newKeyedClient(attempt time.Duration, roundRobin bool) (*client.Client, *keyedTransport, error) {
	k := w.keyed
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			i, _ := strconv.Atoi(port)
			if i < 1 || i > len(k.nodes) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("no node for %s", addr)}
			}
			n := k.nodes[i-1]
			cl := n.Client()
			if s := n.State(); cl == nil || (s != Running && s != Paused) {
				// Stopped, removed or still starting (see Starting): nobody would accept, as a
				// refused connection says.
				return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%s is %s", n.ID, s)}
			}
			_, hostport, _ := strings.Cut(cl.BaseURL, "://")
			return dialer.DialContext(ctx, network, hostport)
		},
	}
	w.c.mu.Lock()
	token, sec := w.c.token, w.c.sec
	w.c.mu.Unlock()
	if sec != nil {
		tr.TLSClientConfig = sec.client.Clone()
	}
	kt := &keyedTransport{k: k, rt: tr, sent: map[string]int{}}
	var tlsCfg = tr.TLSClientConfig
	endpoints := make([]string, len(k.nodes))
	for i := range k.nodes {
		endpoints[i] = keyedEndpoint(i)
	}
	c, err := client.New(client.Config{
		Endpoints: endpoints,
		// Long enough to outlast any fault of the short pass: a call ends acknowledged or refused,
		// rarely of unknown outcome.
		Timeout:    30 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		HTTPClient: &http.Client{Transport: kt, Timeout: attempt,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		TLS:                tlsCfg,
		Token:              token,
		RequireIdempotency: true,
		RoundRobin:         roundRobin,
	})
	return c, kt, err
}

// startKeyed starts cfg.KeyedWriters writers and cfg.MonoReaders readers.
func (w *Workload) startKeyed() {
	if w.cfg.KeyedWriters == 0 && w.cfg.MonoReaders == 0 {
		return
	}
	w.keyed = &keyedState{nodes: w.c.Members()}
	// Stop lets a call in flight finish (on a healthy cluster, within its budget) rather than cancel
	// it: every keyed write must settle, none is left of unknown outcome.
	ctx := context.Background()
	for id := 0; id < w.cfg.KeyedWriters; id++ {
		// Aggressive: the first writer gives its first attempt 1-40 ms (about a commit's time, so its
		// retries race their originals all the time, faults or not), the next ones 1.2 s and more (a
		// retry after a node stopped answering).
		attempt := 5 * time.Second // the first writer's attempts end by kt.deadline
		if id > 0 {
			attempt = time.Duration(1200*id) * time.Millisecond
		}
		c, kt, err := w.newKeyedClient(attempt, false)
		if err != nil {
			w.keyed.problem("keyed writer %d: %v", id, err)
			continue
		}
		if id == 0 {
			rng := rand.New(rand.NewPCG(w.cfg.Seed, 3100))
			var mu sync.Mutex
			kt.deadline = func() time.Duration {
				mu.Lock()
				defer mu.Unlock()
				return time.Duration(1+rng.IntN(40)) * time.Millisecond
			}
		}
		kw := &keyedWriter{w: w, id: id, c: c, kt: kt, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(3000+id))),
			lastMod: map[string]uint64{}}
		w.loop(func() bool { return kw.step(ctx) })
	}
	for id := 0; id < w.cfg.MonoReaders; id++ {
		c, _, err := w.newKeyedClient(time.Second, true)
		if err != nil {
			w.keyed.problem("monotonic reader %d: %v", id, err)
			continue
		}
		mr := &monoReader{w: w, id: id, c: c, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(4000+id))),
			maxMod: map[string]uint64{}}
		w.loop(func() bool { return mr.step(ctx) })
	}
}

type keyedWriter struct {
	w       *Workload
	id      int
	c       *client.Client
	kt      *keyedTransport
	rng     *rand.Rand
	seq     int
	lastMod map[string]uint64
}

// outcome classifies a write call's error: nil is applied; ErrIndeterminate unknown; anything else
// (refused, unavailable with no attempt that may have applied, cancelled before sending) no effect.
func (kw *keyedWriter) outcome(err error) (applied, unknown bool) {
	switch {
	case err == nil:
		return true, false
	case errors.Is(err, client.ErrIndeterminate):
		return false, true
	}
	return false, false
}

func (kw *keyedWriter) step(ctx context.Context) bool {
	k := kw.w.keyed
	kw.seq++
	k.calls.Add(1)
	attempts := kw.kt.attempts.Load()
	var definite bool
	if kw.rng.IntN(2) == 0 {
		definite = kw.ledgerStep(ctx)
	} else {
		definite = kw.linStep(ctx)
	}
	if kw.kt.attempts.Load()-attempts > 1 {
		k.retried.Add(1)
	}
	return definite
}

// ledgerStep writes one or two fresh ledger keys, exactly once.
func (kw *keyedWriter) ledgerStep(ctx context.Context) bool {
	w, k := kw.w, kw.w.keyed
	key := fmt.Sprintf("ledger/keyed/%d/%07d", kw.id, kw.seq)
	value := fmt.Sprintf("%s#%d", key, kw.rng.Uint32())
	keys := []string{key}
	var index uint64
	var err error
	switch kw.rng.IntN(3) {
	case 0:
		index, err = kw.c.Put(ctx, key, []byte(value))
	case 1:
		keys = append(keys, key+"/b")
		var res client.TxnResponse
		res, err = kw.c.Txn(ctx, client.Txn{Success: []client.TxnOp{
			client.OpPut(key, []byte(value)), client.OpPut(key+"/b", []byte(value))}})
		index = res.Index
	default:
		var res client.TxnResponse
		res, err = kw.c.Txn(ctx, client.Txn{
			Compare: []client.Compare{client.Absent(key)},
			Success: []client.TxnOp{client.OpPut(key, []byte(value))},
			Failure: []client.TxnOp{client.OpGet(key)},
		})
		index = res.Index
		if err == nil && !res.Succeeded {
			// Only this call ever writes key: it found its own earlier application.
			k.problem("writer %d: %s guarded by absent answered succeeded=false at %d: a second application", kw.id, key, res.Index)
		}
	}
	applied, unknown := kw.outcome(err)
	w.mu.Lock()
	for _, key := range keys {
		switch {
		case applied:
			w.acked[key] = ledgerWrite{value, index}
		case unknown:
			w.maybe[key] = value
		}
	}
	w.mu.Unlock()
	switch {
	case applied:
		k.ackedCalls.Add(1)
		k.mu.Lock()
		for _, key := range keys {
			k.acked = append(k.acked, ledgerWrite{value, index})
			k.ackedKey = append(k.ackedKey, key)
		}
		k.mu.Unlock()
	case unknown:
		k.indeterminate.Add(1)
	default:
		k.refused(err)
	}
	return applied
}

// linStep runs one write on a linearizability key, recorded as one operation from the call to its
// answer, however many attempts it took.
func (kw *keyedWriter) linStep(ctx context.Context) bool {
	w, k := kw.w, kw.w.keyed
	keys := w.keys()
	key := keys[kw.rng.IntN(len(keys))]
	value := fmt.Sprintf("k%d-%d", kw.id, kw.seq)
	expected := kw.lastMod[key]
	var in lincheck.Input
	var run func() (lincheck.Output, error)
	switch p := kw.rng.IntN(100); {
	case p < 40:
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value}
		run = func() (lincheck.Output, error) {
			i, err := kw.c.Put(ctx, key, []byte(value))
			return lincheck.Output{Status: lincheck.OK, Index: i}, err
		}
	case p < 65:
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value, CAS: true, Expected: expected}
		run = func() (lincheck.Output, error) {
			i, err := kw.c.CAS(ctx, key, expected, []byte(value))
			return lincheck.Output{Status: lincheck.OK, Index: i}, err
		}
	case p < 85:
		// The same cas as a transaction: a retry of one that applied must answer succeeded=true.
		in = lincheck.Input{Kind: lincheck.Put, Key: key, Value: value, CAS: true, Expected: expected}
		run = func() (lincheck.Output, error) {
			res, err := kw.c.Txn(ctx, client.Txn{
				Compare: []client.Compare{client.Unchanged(key, expected)},
				Success: []client.TxnOp{client.OpPut(key, []byte(value))},
				Failure: []client.TxnOp{client.OpGet(key)},
			})
			if err != nil {
				return lincheck.Output{}, err
			}
			if !res.Succeeded {
				var cur uint64
				if len(res.Results) == 1 && res.Results[0].Found {
					cur = res.Results[0].Entries[0].ModIndex
				}
				return lincheck.Output{Status: lincheck.Mismatch, Current: cur}, nil
			}
			return lincheck.Output{Status: lincheck.OK, Index: res.Index}, nil
		}
	default:
		if expected != 0 && kw.rng.IntN(2) == 0 {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key, CAS: true, Expected: expected}
			run = func() (lincheck.Output, error) {
				i, d, err := kw.c.DeleteCAS(ctx, key, expected)
				return lincheck.Output{Status: lincheck.OK, Index: i, Deleted: d}, err
			}
		} else {
			in = lincheck.Input{Kind: lincheck.Delete, Key: key}
			run = func() (lincheck.Output, error) {
				i, d, err := kw.c.Delete(ctx, key)
				return lincheck.Output{Status: lincheck.OK, Index: i, Deleted: d}, err
			}
		}
	}
	call := w.rec.Begin(100+kw.id, in, "keyed")
	out, err := run()
	var cas *client.CASMismatchError
	switch applied, unknown := kw.outcome(err); {
	case applied:
		call.Return(out)
		kw.lastMod[key] = out.Index
		if out.Status == lincheck.Mismatch {
			kw.lastMod[key] = out.Current
		} else {
			k.ackedCalls.Add(1)
			if in.Kind == lincheck.Delete {
				kw.lastMod[key] = 0
			}
		}
		return true
	case errors.As(err, &cas):
		call.Return(lincheck.Output{Status: lincheck.Mismatch, Current: cas.Current})
		kw.lastMod[key] = cas.Current
		return true
	case unknown:
		call.Indeterminate()
		k.indeterminate.Add(1)
	default:
		k.refused(err) // left out of the history: it certainly changed nothing
	}
	return false
}

type monoReader struct {
	w      *Workload
	id     int
	c      *client.Client
	rng    *rand.Rand
	seq    int
	maxMod map[string]uint64 // the highest modify index seen per key
}

// step reads once, through the next node, and checks the answer against what this reader has seen.
func (mr *monoReader) step(ctx context.Context) bool {
	k := mr.w.keyed
	before := mr.c.LastIndex()
	checkIndex := func(what string, index uint64) {
		if index < before {
			k.problem("reader %d: %s answered at index %d after it had seen %d", mr.id, what, index, before)
		}
	}
	checkMod := func(key string, mod uint64) {
		if mod < mr.maxMod[key] {
			k.problem("reader %d: %s at modify index %d after it had seen %d", mr.id, key, mod, mr.maxMod[key])
		}
		mr.maxMod[key] = max(mr.maxMod[key], mod)
	}
	k.reads.Add(1)
	switch p := mr.rng.IntN(100); {
	case p < 10:
		// Read your own write on whichever node comes next.
		mr.seq++
		key := fmt.Sprintf("mono/%d", mr.id)
		value := strconv.Itoa(mr.seq)
		index, err := mr.c.Put(ctx, key, []byte(value))
		if err != nil {
			k.readFailures.Add(1)
			return false
		}
		e, err := mr.c.Get(ctx, key, client.Stale())
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, client.ErrNotFound):
			k.problem("reader %d: its own write %s@%d not found by the next stale read", mr.id, key, index)
		case err != nil:
			k.readFailures.Add(1)
			return false
		case e.ModIndex != index || string(e.Value) != value:
			k.problem("reader %d: wrote %s=%s@%d, the next stale read got %q@%d", mr.id, key, value, index, e.Value, e.ModIndex)
		}
		return true
	case p < 40:
		// A ledger write this reader must see: acknowledged at an index it has seen.
		k.mu.Lock()
		var key string
		var want ledgerWrite
		for try := 0; try < 5 && len(k.acked) > 0; try++ {
			i := mr.rng.IntN(len(k.acked))
			if k.acked[i].index <= before {
				key, want = k.ackedKey[i], k.acked[i]
				break
			}
		}
		k.mu.Unlock()
		if key == "" {
			return true
		}
		e, err := mr.c.Get(ctx, key, client.Stale())
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && errors.Is(err, client.ErrNotFound):
			k.problem("reader %d: %s (written at %d) not found at index %d, after it had seen %d", mr.id, key, want.index, ae.Index, before)
		case err != nil:
			k.readFailures.Add(1)
			return false
		case string(e.Value) != want.value || e.ModIndex != want.index:
			k.problem("reader %d: %s = %q@%d, written %q@%d", mr.id, key, e.Value, e.ModIndex, want.value, want.index)
		default:
			checkIndex(key, e.Index)
		}
		return true
	case p < 55:
		// A page of the current window's keys.
		keys := mr.w.keys()
		prefix := keys[0][:strings.LastIndex(keys[0], "/")+1]
		page, err := mr.c.List(ctx, client.ListOptions{Prefix: prefix, Stale: true})
		if err != nil {
			k.readFailures.Add(1)
			return false
		}
		checkIndex("list "+prefix, page.Index)
		for _, e := range page.Entries {
			checkMod(e.Key, e.ModIndex)
		}
		return true
	default:
		keys := mr.w.keys()
		key := keys[mr.rng.IntN(len(keys))]
		e, err := mr.c.Get(ctx, key, client.Stale())
		var ae *client.APIError
		switch {
		case err == nil:
			checkIndex(key, e.Index)
			checkMod(key, e.ModIndex)
		case errors.As(err, &ae) && errors.Is(err, client.ErrNotFound):
			checkIndex(key, ae.Index)
		default:
			k.readFailures.Add(1)
			return false
		}
		return true
	}
}

// KeyedResult is what the keyed writers and monotonic readers did and found.
type KeyedResult struct {
	Calls, Acked, Indeterminate, NoEffect, Attempts, Retried, Raced int64
	Reads, ReadFailures                                             int64
	ReadsPerNode                                                    []string
	Refusals, Problems                                              []string
}

func (r KeyedResult) String() string {
	return fmt.Sprintf("keyed writes: %d calls, %d acknowledged, %d indeterminate, %d no effect; %d attempts, %d calls retried, %d retries after an attempt that may have applied; "+
		"monotonic reads: %d (%d failed) by node %s; %d problems; refusals e.g. %q",
		r.Calls, r.Acked, r.Indeterminate, r.NoEffect, r.Attempts, r.Retried, r.Raced, r.Reads, r.ReadFailures,
		strings.Join(r.ReadsPerNode, " "), len(r.Problems), r.Refusals)
}

// VerifyKeyed runs after VerifyLedger and VerifyWatchers (on a healthy cluster, the workload stopped):
// the writers' and readers' own findings, then every ledger key written once, by the final state
// (create index = modify index) and by every watcher's events (one put per key).
func (w *Workload) VerifyKeyed(timeout time.Duration) KeyedResult {
	k := w.keyed
	if k == nil {
		return KeyedResult{}
	}
	res := KeyedResult{
		Calls: k.calls.Load(), Acked: k.ackedCalls.Load(), Indeterminate: k.indeterminate.Load(), NoEffect: k.noEffect.Load(),
		Attempts: k.attempts.Load(), Retried: k.retried.Load(), Raced: k.raced.Load(),
		Reads: k.reads.Load(), ReadFailures: k.readFailures.Load(),
	}
	k.hosts.Range(func(host, n any) bool {
		_, port, _ := net.SplitHostPort(host.(string))
		i, _ := strconv.Atoi(port)
		name := host.(string)
		if i >= 1 && i <= len(k.nodes) {
			name = k.nodes[i-1].ID
		}
		res.ReadsPerNode = append(res.ReadsPerNode, fmt.Sprintf("%s=%d", name, n.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(res.ReadsPerNode)
	k.mu.Lock()
	res.Problems = append(res.Problems, k.problems...)
	res.Refusals = append(res.Refusals, k.refusals...)
	k.mu.Unlock()
	if w.cfg.KeyedWriters > 0 && res.Acked == 0 {
		res.Problems = append(res.Problems, "no keyed write was acknowledged")
	}
	if w.cfg.MonoReaders > 0 && len(res.ReadsPerNode) < 2 {
		res.Problems = append(res.Problems, fmt.Sprintf("the monotonic readers did not hop between nodes: %v", res.ReadsPerNode))
	}

	var entries []harness.ListEntry
	err := harness.Poll(max(timeout, time.Second), func() error {
		var errs []string
		for _, n := range w.c.Members() {
			if cl := n.Client(); cl != nil {
				var err error
				if entries, _, err = listAt(cl, watchPrefix); err == nil {
					return nil
				}
				errs = append(errs, fmt.Sprintf("%s: %v", n, err))
			}
		}
		return fmt.Errorf("listing the ledger: %s", strings.Join(errs, "; "))
	})
	if err != nil {
		return res
	}
	for _, e := range entries {
		if e.CreateIndex != e.ModIndex {
			res.Problems = append(res.Problems, fmt.Sprintf("%s written twice: created at %d, modified at %d", e.Key, e.CreateIndex, e.ModIndex))
		}
	}
	for _, lw := range w.watchers {
		lw.mu.Lock()
		putAt := map[string]uint64{}
		for _, ev := range lw.events {
			for _, ch := range ev.Changes {
				if at, ok := putAt[ch.Key]; ok && at != ev.Index {
					res.Problems = append(res.Problems, fmt.Sprintf("watcher %d: %s put at %d and again at %d", lw.id, ch.Key, at, ev.Index))
				}
				putAt[ch.Key] = ev.Index
			}
		}
		lw.mu.Unlock()
	}
	return res
}
