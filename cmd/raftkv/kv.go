package main

// kv.go: the key-value client commands: put, get, delete, list.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const keyHelp = `KEY is any UTF-8 string without control characters, up to 1024 bytes; "/" has no special meaning
but reads well as a separator. Put "--" before arguments that start with "-".`

func runPut(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("put", "put [flags] KEY [VALUE]", `
Set KEY to VALUE, read from stdin when VALUE is omitted or "-", and print the write's index.
With --cas N the write happens only if the key's modify index is N (0: only if the key is absent);
otherwise it fails with exit status 1 and the current index.

`+keyHelp)
	var cf clientFlags
	cf.register(fs)
	var cas casCond
	fs.Var(&cas, "cas", "write only if the key's modify index is `N` (0: only if absent)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(fs, stderr, "put takes KEY and an optional VALUE, got %d arguments", len(pos))
	}
	key := pos[0]
	if key == "" {
		return usageError(fs, stderr, "empty key")
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	var value []byte
	if len(pos) == 2 && pos[1] != "-" {
		value = []byte(pos[1])
	} else if value, err = io.ReadAll(stdin); err != nil {
		return fail(stderr, fmt.Errorf("reading value from stdin: %w", err))
	}
	index, err := c.put(ctx, key, value, cas)
	if err != nil {
		return fail(stderr, fmt.Errorf("put %q: %w", key, err))
	}
	fmt.Fprintln(stdout, index)
	return exitOK
}

func runGet(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("get", "get [flags] KEY", `
Print KEY's value to stdout, byte for byte (no newline is added). Reads are linearizable unless --stale.
A missing key is exit status 1.

`+keyHelp)
	var cf clientFlags
	cf.register(fs)
	var stale, verbose bool
	fs.BoolVar(&stale, "stale", false, "read the answering node's local state (faster; may be behind)")
	fs.BoolVar(&verbose, "verbose", false, "print the key's create and modify indexes to stderr")
	fs.BoolVar(&verbose, "v", false, "short for --verbose")
	var wait time.Duration
	var index uint64
	fs.DurationVar(&wait, "wait", 0, "long-poll: answer once the key has a change with an index above --index, or after `D` (at most 10m)")
	fs.Uint64Var(&index, "index", 0, "with --wait: the index `N` whose later changes to wait for (X-Kv-Index of a previous read)")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	key, err := onlyKey(pos, "get")
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if wait < 0 || wait > 10*time.Minute {
		return usageError(fs, stderr, "--wait must be from 0 to 10m")
	}
	cf.timeout = max(cf.timeout, wait+cf.timeout) // the wait is not a failure to retry
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	v, err := c.getPoll(ctx, key, stale, index, wait)
	if err != nil {
		return fail(stderr, fmt.Errorf("get %q: %w", key, err))
	}
	if verbose {
		if v.index != 0 {
			fmt.Fprintf(stderr, "create_index=%d mod_index=%d index=%d\n", v.createIndex, v.modIndex, v.index)
		} else {
			fmt.Fprintf(stderr, "create_index=%d mod_index=%d\n", v.createIndex, v.modIndex)
		}
	}
	if _, err := stdout.Write(v.value); err != nil {
		return fail(stderr, fmt.Errorf("writing value: %w", err))
	}
	return exitOK
}

func runDelete(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("delete", "delete [flags] KEY", `
Delete KEY and print the write's index. Deleting a missing key succeeds (a note goes to stderr).
With --cas N the delete happens only if the key's modify index is N; otherwise exit status 1.

`+keyHelp)
	var cf clientFlags
	cf.register(fs)
	var cas casCond
	fs.Var(&cas, "cas", "delete only if the key's modify index is `N`")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	key, err := onlyKey(pos, "delete")
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	index, deleted, err := c.delete(ctx, key, cas)
	if err != nil {
		return fail(stderr, fmt.Errorf("delete %q: %w", key, err))
	}
	fmt.Fprintln(stdout, index)
	if !deleted {
		fmt.Fprintf(stderr, "raftkv: note: key %q did not exist\n", key)
	}
	return exitOK
}

func runList(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("list", "list [flags] [PREFIX]", `
Print the keys starting with PREFIX (all keys when omitted), in key order, one "key<TAB>value" line each.
A value is printed as text when it is valid UTF-8 without control characters, otherwise as
"base64:" followed by its base64 encoding. Pages are fetched until the end (or --max entries);
each page is a separate read, so a listing is not a snapshot of one moment.`)
	var cf clientFlags
	cf.register(fs)
	var stale, asJSON bool
	var limit, maxEntries int
	fs.IntVar(&limit, "limit", 0, "fetch `N` entries per page (0: the server's default)")
	fs.IntVar(&maxEntries, "max", 0, "stop after `N` entries in total (0: no limit)")
	fs.BoolVar(&stale, "stale", false, "read the answering node's local state (faster; may be behind)")
	fs.BoolVar(&asJSON, "json", false, `print the entries as a JSON array of {"key", "value" (base64), "create_index", "mod_index"}`)
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return usageError(fs, stderr, "list takes at most one PREFIX, got %d arguments", len(pos))
	}
	if limit < 0 || maxEntries < 0 {
		return usageError(fs, stderr, "--limit and --max must not be negative")
	}
	q := listQuery{stale: stale}
	if len(pos) == 1 {
		q.prefix = pos[0]
	}
	c, err := cf.newClient(nil)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer c.close()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	n := 0
	if asJSON {
		out.WriteString("[")
	}
	for {
		q.limit = limit
		if maxEntries > 0 && (q.limit == 0 || q.limit > maxEntries-n) {
			q.limit = maxEntries - n
		}
		page, err := c.list(ctx, q)
		if err != nil {
			out.Flush()
			return fail(stderr, fmt.Errorf("list %q: %w", q.prefix, err))
		}
		for _, raw := range page.entries {
			if err := printEntry(out, raw, asJSON, n == 0); err != nil {
				out.Flush()
				return fail(stderr, fmt.Errorf("list %q: %w", q.prefix, err))
			}
			n++
			if maxEntries > 0 && n >= maxEntries {
				page.more = false
				break
			}
		}
		if err := out.Flush(); err != nil {
			return fail(stderr, fmt.Errorf("writing output: %w", err))
		}
		if !page.more {
			break
		}
		if page.nextAfter <= q.after {
			return fail(stderr, fmt.Errorf("list %q: server returned a continuation key %q that does not advance past %q",
				q.prefix, page.nextAfter, q.after))
		}
		q.after = page.nextAfter
	}
	if asJSON {
		if n > 0 {
			out.WriteString("\n")
		}
		out.WriteString("]\n")
	}
	return exitOK
}

// printEntry writes one list entry: "key<TAB>value\n", or as an element of the JSON array being written.
func printEntry(w *bufio.Writer, raw json.RawMessage, asJSON, first bool) error {
	var e listEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("unexpected list entry %s: %w", raw, err)
	}
	if asJSON {
		if !first {
			w.WriteString(",")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return err
		}
		w.WriteString("\n  ")
		w.Write(compact.Bytes())
		return nil
	}
	w.WriteString(e.Key)
	w.WriteByte('\t')
	w.WriteString(displayValue(e.Value))
	w.WriteByte('\n')
	return nil
}

// displayValue shows v as text when that is unambiguous on one line: valid UTF-8, no control characters
// (tabs and newlines included), and not itself starting with "base64:". Otherwise "base64:<base64>".
func displayValue(v []byte) string {
	const tag = "base64:"
	text := utf8.Valid(v) && !strings.HasPrefix(string(v), tag) &&
		strings.IndexFunc(string(v), unicode.IsControl) < 0
	if text {
		return string(v)
	}
	return tag + base64.StdEncoding.EncodeToString(v)
}

// onlyKey is the single, non-empty KEY argument of get and delete.
func onlyKey(pos []string, verb string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("%s takes exactly one KEY, got %d arguments", verb, len(pos))
	}
	if pos[0] == "" {
		return "", errors.New("empty key")
	}
	return pos[0], nil
}
