package main

// watch.go: the watch and txn client commands.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	rkv "github.com/raftkv/raftkv/client"
)

// errCompacted: the index a watch needs is older than every node's history; exit status 1.
var errCompacted = errors.New("compacted")

func runWatch(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("watch", "watch [flags] PREFIX", `
Print every change of the keys starting with PREFIX (--exact: of the one key PREFIX), exactly once and in
index order, until interrupted: one "index<TAB>put|delete<TAB>key<TAB>value" line per change, or with
--json one JSON object per index holding all of its changes. Without --index the watch starts now.

When a node ends the stream (it lost its leader, is stopping, or this client fell behind) or cannot be
reached, the watch resumes on the next node of --addr from the last index it printed, without a gap or a
repeat. If that index is older than what every node keeps (--watch-history), the watch exits with status 1
and says so: list again and watch from the list's index + 1.`)
	var cf clientFlags
	cf.register(fs)
	var index uint64
	var asJSON, oneKey, prev bool
	fs.Uint64Var(&index, "index", 0, "print changes with an index from `N` on (default: from now)")
	fs.BoolVar(&asJSON, "json", false, "print each index's message as JSON")
	fs.BoolVar(&oneKey, "exact", false, "watch the one key PREFIX instead of a prefix")
	fs.BoolVar(&prev, "prev", false, "include each change's previous value (with --json)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return usageError(fs, stderr, "watch takes one PREFIX, got %d arguments", len(pos))
	}
	var prefix string
	if len(pos) == 1 {
		prefix = pos[0]
	}
	if oneKey && prefix == "" {
		return usageError(fs, stderr, "--exact needs a KEY")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	w := &watcher{c: c, out: bufio.NewWriter(stdout), asJSON: asJSON}
	opts := rkv.WatchOptions{Prefix: prefix, Index: index, Prev: prev,
		OnResume: func(err error, next uint64) {
			fmt.Fprintf(stderr, "raftkv: watch: %v; resuming from index %d on another node\n", err, next)
		}}
	if oneKey {
		opts.Prefix, opts.Key = "", prefix
	}
	err = w.run(ctx, opts)
	if ctx.Err() != nil {
		return exitOK // interrupted: the normal way to stop watching
	}
	return fail(stderr, fmt.Errorf("watch %q: %w", prefix, err))
}

type watcher struct {
	c      *client
	out    *bufio.Writer
	asJSON bool
}

// run follows the watch across nodes (the public client's Watcher: it resumes from the last index it
// delivered on the next node, without a gap or a repeat) until ctx ends or the history no longer
// reaches the next index.
func (w *watcher) run(ctx context.Context, opts rkv.WatchOptions) error {
	wt := w.c.pub.Watch(opts)
	defer wt.Close()
	for {
		ev, err := wt.Next(ctx)
		if errors.Is(err, rkv.ErrCompacted) {
			return fmt.Errorf("%w: %w; list again and watch from the list's index + 1", errCompacted, err)
		}
		if err != nil {
			return w.c.fromPublic(ctx, err)
		}
		if err := w.print(string(ev.Raw)); err != nil {
			return err
		}
	}
}

func (w *watcher) print(data string) error {
	if w.asJSON {
		w.out.WriteString(data)
		w.out.WriteByte('\n')
		return w.out.Flush()
	}
	var msg struct {
		Index   uint64 `json:"index"`
		Changes []struct {
			Type  string `json:"type"`
			Key   string `json:"key"`
			Value []byte `json:"value"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		return fmt.Errorf("unexpected event: %w", err)
	}
	for _, ch := range msg.Changes {
		fmt.Fprintf(w.out, "%d\t%s\t%s\t%s\n", msg.Index, ch.Type, ch.Key, displayValue(ch.Value))
	}
	return w.out.Flush()
}

func runTxn(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("txn", "txn [flags] [FILE|-]", `
Run a transaction read as JSON from FILE (stdin when omitted or "-"):

  {"compare":[{"key":"k","target":"mod_index","op":"=","value":7}],
   "success":[{"op":"put","key":"k","value":"<base64>"},{"op":"get","key":"other"}],
   "failure":[{"op":"get","key":"k"}]}

and print the answer, {"succeeded":...,"index":...,"results":[...]}. Exit status 1 when the compares
failed (the failure branch ran). A transaction that writes carries an Idempotency-Key, so one whose
outcome is unknown is retried safely on another node and applies once; exit status 3 means it stayed
unknown for --timeout (run it again only after reading what it would change).`)
	var cf clientFlags
	cf.register(fs)
	var stale bool
	fs.BoolVar(&stale, "stale", false, "serve a transaction without writes from the answering node's local state")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return usageError(fs, stderr, "txn takes one FILE, got %d arguments", len(pos))
	}
	var body []byte
	var err error
	if len(pos) == 1 && pos[0] != "-" {
		body, err = os.ReadFile(pos[0])
	} else {
		body, err = io.ReadAll(stdin)
	}
	if err != nil {
		return fail(stderr, fmt.Errorf("reading transaction: %w", err))
	}
	var shape struct {
		Success, Failure []struct{ Op string }
	}
	if err := json.Unmarshal(body, &shape); err != nil {
		return usageError(fs, stderr, "the transaction is not a JSON object: %v", err)
	}
	writes := false
	for _, op := range append(shape.Success, shape.Failure...) {
		writes = writes || op.Op == "put" || op.Op == "delete" || op.Op == "delete_prefix"
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()
	resp, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/txn", query: consistency(stale), body: body,
		ctype: "application/json", write: writes, idempotent: writes})
	if err != nil {
		return fail(stderr, fmt.Errorf("txn: %w", err))
	}
	var ans struct {
		Succeeded bool `json:"succeeded"`
	}
	if err := decodeBody(resp, &ans); err != nil {
		return fail(stderr, err)
	}
	stdout.Write(resp.body)
	fmt.Fprintln(stdout)
	if !ans.Succeeded {
		return exitNotFound
	}
	return exitOK
}

// pollQuery adds a long-poll's index= and wait= to q.
func pollQuery(q url.Values, index uint64, wait time.Duration) url.Values {
	if wait <= 0 {
		return q
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("index", strconv.FormatUint(index, 10))
	q.Set("wait", wait.String())
	return q
}
