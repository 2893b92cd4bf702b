package main

// clientrows.go: issue 16's rows. The Go client (github.com/raftkv/raftkv/client) against the same
// requests through bare net/http, both over one shared *http.Client, so that the difference is the
// client library's own work (idempotency key, min_index, header parsing, error decoding); put with an
// Idempotency-Key on every write against without (the server's cost of recording the outcome); stale
// reads with min_index against without. etcd runs its ordinary rows (clientv3; it has no idempotency
// keys, and its serializable reads take no minimum revision). clientComparisons prints the ratios that
// carry the bars.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/raftkv/raftkv/client"
)

// Client kinds of a workload row (workload.client).
const (
	clientGo       = "go"       // the Go client: keyed writes, reads with the Client's min_index
	clientKeyed    = "keyed"    // net/http, a fresh Idempotency-Key on every put
	clientMinIndex = "minindex" // net/http, stale reads with min_index = the highest X-Kv-Index seen
)

var clientWorkloads = []workload{
	{label: "put (Go client)", op: loadgen.OpPut, concurrency: 128, client: clientGo},
	{label: "put (net/http, Idempotency-Key)", op: loadgen.OpPut, concurrency: 128, client: clientKeyed},
	{label: "get linearizable (Go client)", op: loadgen.OpGet, concurrency: 128, client: clientGo},
	{label: "get stale (net/http client)", op: loadgen.OpGet, concurrency: 128, stale: true, nethttp: true},
	{label: "get stale + min_index (net/http)", op: loadgen.OpGet, concurrency: 128, stale: true, client: clientMinIndex},
	{label: "get stale (Go client, min_index)", op: loadgen.OpGet, concurrency: 128, stale: true, client: clientGo},
}

// The rows run after the others (an init append keeps them out of main.go's table, which other rows
// change often).
func init() { workloads = append(workloads, clientWorkloads...) }

// clientTargets are the targets of a client row for an HTTP system (raftkv or the ceiling).
func clientTargets(addrs []string, w workload, p loadgen.Placement) (loadgen.TargetFactory, func(), error) {
	hc := newHTTPClient(2 * w.concurrency)
	nodeTargets := make([]loadgen.Target, len(addrs))
	var seen atomic.Uint64 // minindex: one client's highest index, shared by its workers
	var closers []func() error
	for i, a := range addrs {
		switch w.client {
		case clientGo:
			c, err := client.New(client.Config{Endpoints: []string{a}, HTTPClient: hc})
			if err != nil {
				return nil, nil, err
			}
			closers = append(closers, c.Close)
			nodeTargets[i] = &goClientTarget{c: c, stale: w.stale}
		case clientKeyed:
			nodeTargets[i] = &keyedTarget{nethttpTarget{hc: hc, base: "http://" + a}}
		case clientMinIndex:
			nodeTargets[i] = &minIndexTarget{nethttpTarget: nethttpTarget{hc: hc, base: "http://" + a}, seen: &seen}
		default:
			return nil, nil, fmt.Errorf("unknown client kind %q", w.client)
		}
	}
	f, err := loadgen.Place(p, len(addrs), func(i int) (loadgen.Target, error) { return nodeTargets[i], nil })
	if err != nil {
		return nil, nil, err
	}
	return f, func() {
		for _, c := range closers {
			_ = c()
		}
		hc.CloseIdleConnections()
	}, nil
}

// goClientTarget: Put is client.Put (an Idempotency-Key per call), Get is client.Get (min_index = the
// Client's highest seen index; stale rows with client.Stale()).
type goClientTarget struct {
	c     *client.Client
	stale bool
}

func (t *goClientTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := t.c.Put(ctx, key, value)
	return err
}

func (t *goClientTarget) Get(ctx context.Context, key string) error {
	var err error
	if t.stale {
		_, err = t.c.Get(ctx, key, client.Stale())
	} else {
		_, err = t.c.Get(ctx, key)
	}
	return err
}

// keyedTarget: PUT with a fresh 128-bit Idempotency-Key, made as the client makes it.
type keyedTarget struct{ nethttpTarget }

func (t *keyedTarget) Put(ctx context.Context, key string, value []byte) error {
	var b [16]byte
	_, _ = rand.Read(b[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.base+"/v1/kv/"+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", hex.EncodeToString(b[:]))
	return t.send(req, nil)
}

// minIndexTarget: stale GET with min_index = the highest X-Kv-Index any answer carried.
type minIndexTarget struct {
	nethttpTarget
	seen *atomic.Uint64
}

func (t *minIndexTarget) Get(ctx context.Context, key string) error {
	url := t.base + "/v1/kv/" + key + "?consistency=stale"
	if s := t.seen.Load(); s > 0 {
		url += "&min_index=" + strconv.FormatUint(s, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return t.send(req, t.seen)
}

// send runs req; with seen, it raises seen to the answer's X-Kv-Index.
func (t *nethttpTarget) send(req *http.Request, seen *atomic.Uint64) error {
	resp, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return statusError(resp.StatusCode)
	}
	if seen != nil {
		if v, err := strconv.ParseUint(resp.Header.Get("X-Kv-Index"), 10, 64); err == nil {
			for cur := seen.Load(); v > cur && !seen.CompareAndSwap(cur, v); cur = seen.Load() {
			}
		}
	}
	return nil
}

// clientComparison is one ratio with a bar: row over base, raftkv's throughput.
type clientComparison struct {
	what, row, base string
	// minRatio: the bar, row/base throughput at least this (0: no bar, shown for information).
	minRatio float64
}

var clientComparisons = []clientComparison{
	{"Go client overhead on put (both with Idempotency-Key)", "put (Go client)", "put (net/http, Idempotency-Key)", 0.95},
	{"Go client overhead on linearizable get", "get linearizable (Go client)", "get linearizable (net/http client)", 0.95},
	{"Go client overhead on stale get (both with min_index)", "get stale (Go client, min_index)", "get stale + min_index (net/http)", 0.95},
	{"put with Idempotency-Key vs without (net/http)", "put (net/http, Idempotency-Key)", "put (net/http client)", 0.90},
	{"Go client put (keyed) vs net/http put without key", "put (Go client)", "put (net/http client)", 0},
	{"stale get with min_index vs without (net/http)", "get stale + min_index (net/http)", "get stale (net/http client)", 0},
}

// writeClientComparisons prints the issue-16 ratios of raftkv's rows (and the ceiling's, where the
// server does nothing: the client library's cost alone), with server CPU per op.
func (r *report) writeClientComparisons(w io.Writer, markdown bool) {
	byLabel := map[string]*row{}
	for _, rw := range r.Rows {
		if rw.Concurrency == 128 {
			byLabel[rw.Workload] = rw
		}
	}
	var lines []string
	for _, c := range clientComparisons {
		a, b := byLabel[c.row], byLabel[c.base]
		if a == nil || b == nil {
			continue
		}
		rk, rb := a.throughput("raftkv"), b.throughput("raftkv")
		if rk == 0 || rb == 0 {
			continue
		}
		ratio := rk / rb
		verdict := ""
		if c.minRatio > 0 {
			verdict = fmt.Sprintf(" (bar ≥ %.2f: %s)", c.minRatio, map[bool]string{true: "met", false: "NOT met"}[ratio >= c.minRatio])
		}
		cpu := ""
		if ja, jb := a.Results["raftkv"], b.Results["raftkv"]; ja != nil && jb != nil && ja.ServerCPUPerOpUs != nil && jb.ServerCPUPerOpUs != nil {
			cpu = fmt.Sprintf("; server CPU/op %.0f vs %.0f µs", *ja.ServerCPUPerOpUs, *jb.ServerCPUPerOpUs)
			// The load generator's CPU per op: the client library's own cost, which other work on the
			// machine moves far less than throughput.
			if ja.ClientCPUCores != nil && jb.ClientCPUCores != nil {
				cpu += fmt.Sprintf("; client CPU/op %.1f vs %.1f µs", 1e6**ja.ClientCPUCores/rk, 1e6**jb.ClientCPUCores/rb)
			}
		}
		ceil := ""
		if ck, cb := a.throughput("ceiling"), b.throughput("ceiling"); ck > 0 && cb > 0 {
			ceil = fmt.Sprintf("; against the ceiling %.3f", ck/cb)
		}
		lines = append(lines, fmt.Sprintf("%s: %.0f / %.0f ops/s = %.3f%s%s%s", c.what, rk, rb, ratio, verdict, cpu, ceil))
	}
	if len(lines) == 0 {
		return
	}
	if markdown {
		fmt.Fprintf(w, "\n## Go client, idempotency keys, min_index (issue 16; c=128, raftkv)\n\n")
		for _, l := range lines {
			fmt.Fprintf(w, "- %s\n", l)
		}
		return
	}
	fmt.Fprintln(w, "\nGo client, idempotency keys, min_index (c=128, raftkv):")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}

// clientPair is one issue-16 comparison measured in interleaved slices: on a shared machine the load
// moves a row's throughput by 2x between rows a minute apart, far more than the few percent under
// test, so the two sides take turns in short slices (A B B A ...) on one running cluster and the
// ratio is the median of the slices' pairwise ratios.
type clientPair struct {
	What     string  `json:"what"`
	Row      string  `json:"row"`
	Base     string  `json:"base"`
	MinRatio float64 `json:"min_ratio,omitempty"`
	Pairs    int     `json:"pairs"`
	// Median pairwise ratios row/base: throughput, server CPU per op, client (load generator) CPU per op.
	Throughput float64 `json:"throughput_ratio"`
	ServerCPU  float64 `json:"server_cpu_per_op_ratio,omitempty"`
	ClientCPU  float64 `json:"client_cpu_per_op_ratio,omitempty"`
	// Medians of each side's slices.
	RowOpsPerSec, BaseOpsPerSec     float64 `json:"-"`
	RowServerCPUUs, BaseServerCPUUs float64 `json:"-"`
	RowClientCPUUs, BaseClientCPUUs float64 `json:"-"`
	Err                             string  `json:"error,omitempty"`
}

func workloadByLabel(label string) (workload, bool) {
	for _, w := range workloads {
		if w.label == label && w.concurrency == 128 {
			return w, true
		}
	}
	return workload{}, false
}

// runClientPairs measures every clientComparison on raftkv in interleaved slices.
func runClientPairs(ctx context.Context, sys system, f compareFlags, placement loadgen.Placement) []*clientPair {
	if sys.name() != "raftkv" {
		return nil
	}
	// Slices of 3/10 of a row (1.5 s of the default 5 s) after 3/10 of its warmup.
	pairs, slice, warm := 6, max(f.duration*3/10, 100*time.Millisecond), max(f.warmup*3/10, 50*time.Millisecond)
	if f.quick {
		pairs = 2
	}
	sf := f
	sf.duration, sf.warmup = slice, warm
	var out []*clientPair
	for _, c := range clientComparisons {
		if f.rows != nil && !f.rows.MatchString(c.row) && !f.rows.MatchString(c.base) {
			continue
		}
		cp := &clientPair{What: c.what, Row: c.row, Base: c.base, MinRatio: c.minRatio}
		out = append(out, cp)
		a, okA := workloadByLabel(c.row)
		b, okB := workloadByLabel(c.base)
		if !okA || !okB {
			cp.Err = "unknown row"
			continue
		}
		var tr, sr, cr, aOps, bOps, aS, bS, aC, bC []float64
		for i := 0; i < pairs && ctx.Err() == nil; i++ {
			first, second := b, a // A B B A: a drift in the load hits both sides alike
			if i%2 == 1 {
				first, second = a, b
			}
			r1, err1 := runRow(ctx, sys, first, sf, placement)
			r2, err2 := runRow(ctx, sys, second, sf, placement)
			if err1 != nil || err2 != nil {
				cp.Err = fmt.Sprint(errors.Join(err1, err2))
				break
			}
			ra, rb := r2, r1
			if i%2 == 1 {
				ra, rb = r1, r2
			}
			if ra.res.Throughput == 0 || rb.res.Throughput == 0 {
				continue
			}
			tr = append(tr, ra.res.Throughput/rb.res.Throughput)
			aOps, bOps = append(aOps, ra.res.Throughput), append(bOps, rb.res.Throughput)
			if ra.cpuKnown && rb.cpuKnown && ra.res.Ops > 0 && rb.res.Ops > 0 {
				as, bs := perOpUs(ra.serverCPU, ra.res.Ops), perOpUs(rb.serverCPU, rb.res.Ops)
				ac, bc := perOpUs(ra.clientCPU, ra.res.Ops), perOpUs(rb.clientCPU, rb.res.Ops)
				sr, cr = append(sr, as/bs), append(cr, ac/bc)
				aS, bS, aC, bC = append(aS, as), append(bS, bs), append(aC, ac), append(bC, bc)
			}
		}
		cp.Pairs = len(tr)
		cp.Throughput, cp.ServerCPU, cp.ClientCPU = pairMedian(tr), pairMedian(sr), pairMedian(cr)
		cp.RowOpsPerSec, cp.BaseOpsPerSec = pairMedian(aOps), pairMedian(bOps)
		cp.RowServerCPUUs, cp.BaseServerCPUUs = pairMedian(aS), pairMedian(bS)
		cp.RowClientCPUUs, cp.BaseClientCPUUs = pairMedian(aC), pairMedian(bC)
		fmt.Printf("   pair: %s: throughput ×%.3f, server CPU/op ×%.3f, client CPU/op ×%.3f (%d pairs)\n",
			c.what, cp.Throughput, cp.ServerCPU, cp.ClientCPU, cp.Pairs)
	}
	return out
}

func perOpUs(d time.Duration, ops uint64) float64 { return float64(d.Microseconds()) / float64(ops) }

func pairMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeClientPairs prints the interleaved comparisons (every round's, in order).
func (r *report) writeClientPairs(w io.Writer, markdown bool) {
	if len(r.ClientPairs) == 0 {
		return
	}
	if markdown {
		fmt.Fprintf(w, "\n## Issue 16, measured in interleaved slices (raftkv, c=128; ratios are row/base, medians of pairs)\n\n")
		fmt.Fprintf(w, "| comparison | bar | pairs | throughput | ops/s row vs base | server CPU/op | µs row vs base | client CPU/op | µs row vs base |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	} else {
		fmt.Fprintln(w, "\nIssue 16, interleaved slices (raftkv, c=128; row/base, medians of pairs):")
	}
	for _, p := range r.ClientPairs {
		bar := "-"
		if p.MinRatio > 0 {
			bar = fmt.Sprintf("≥ %.2f", p.MinRatio)
		}
		if p.Err != "" {
			fmt.Fprintf(w, "  %s: failed: %s\n", p.What, p.Err)
			continue
		}
		if markdown {
			fmt.Fprintf(w, "| %s | %s | %d | %.3f | %.0f / %.0f | %.3f | %.0f / %.0f | %.3f | %.1f / %.1f |\n", p.What, bar, p.Pairs,
				p.Throughput, p.RowOpsPerSec, p.BaseOpsPerSec, p.ServerCPU, p.RowServerCPUUs, p.BaseServerCPUUs,
				p.ClientCPU, p.RowClientCPUUs, p.BaseClientCPUUs)
		} else {
			fmt.Fprintf(w, "  %s (bar %s): throughput %.3f (%.0f / %.0f ops/s), server CPU/op %.3f (%.0f / %.0f µs), client CPU/op %.3f (%.1f / %.1f µs), %d pairs\n",
				p.What, bar, p.Throughput, p.RowOpsPerSec, p.BaseOpsPerSec, p.ServerCPU, p.RowServerCPUUs, p.BaseServerCPUUs,
				p.ClientCPU, p.RowClientCPUUs, p.BaseClientCPUUs, p.Pairs)
		}
	}
}
