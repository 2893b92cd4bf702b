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
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

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
