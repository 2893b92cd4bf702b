package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Entry is one key with its value and indexes.
type Entry struct {
	Key         string
	Value       []byte
	CreateIndex uint64
	ModIndex    uint64
	// Index is the write index the answer reflects (X-Kv-Index; Get only): the node had applied every
	// write up to it. Never below the Client's LastIndex when the call began.
	Index uint64
}

// ReadOption changes how a read is served.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

// Stale serves the read from whichever node answers, without a quorum round. With the Client's
// min_index it still reflects every write this Client has seen.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

func (c *Client) readQuery(opts []ReadOption) url.Values {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{}
	// min_index only on a stale read: a linearizable one already reflects every acknowledged write
	// (the node waits until it has applied the leader's read index, which covers every write the
	// leader had acknowledged), so the Client's highest seen index adds nothing but a wait.
	if o.stale {
		q.Set("consistency", "stale")
		if seen := c.seen.Load(); seen > 0 {
			q.Set("min_index", strconv.FormatUint(seen, 10))
		}
	}
	return q
}

// getQuery is readQuery already encoded, in one allocation: a Get runs it on every call.
func (c *Client) getQuery(opts []ReadOption) string {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	var buf [64]byte
	b := buf[:0]
	if o.stale {
		b = append(b, "consistency=stale"...)
		if seen := c.seen.Load(); seen > 0 {
			b = strconv.AppendUint(append(b, "&min_index="...), seen, 10)
		}
	}
	return string(b)
}

// Get returns key's entry, or an error that errors.Is ErrNotFound.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (Entry, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: kvPath(key), rawQuery: c.getQuery(opts)})
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Key: key, Value: resp.body}
	e.CreateIndex, _ = strconv.ParseUint(resp.header.Get("X-Kv-Create-Index"), 10, 64)
	e.ModIndex, _ = strconv.ParseUint(resp.header.Get("X-Kv-Mod-Index"), 10, 64)
	e.Index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
	return e, nil
}

// Put writes value under key and returns the write's index. It is retried safely (exactly once).
func (c *Client) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return c.put(ctx, key, value, nil)
}

// CAS writes value under key only if the key's modify index is expected (0: only if absent). A failed
// precondition is a *CASMismatchError.
func (c *Client) CAS(ctx context.Context, key string, expected uint64, value []byte) (uint64, error) {
	return c.put(ctx, key, value, url.Values{"cas": {strconv.FormatUint(expected, 10)}})
}

func (c *Client) put(ctx context.Context, key string, value []byte, q url.Values) (uint64, error) {
	if value == nil {
		value = []byte{}
	}
	resp, err := c.do(ctx, call{method: http.MethodPut, path: kvPath(key), query: q, body: value,
		write: true, idemKey: newIdempotencyKey()})
	if err != nil {
		return 0, casError(key, err)
	}
	index, ok := parseIndexAnswer(resp.body)
	if !ok {
		var out struct {
			Index uint64 `json:"index"`
		}
		if err := decodeJSON(resp, &out); err != nil {
			return 0, err
		}
		index = out.Index
	}
	c.observe(index)
	return index, nil
}

// parseIndexAnswer reads a put's answer, {"index":N} (and white space), without encoding/json: every
// write pays for it. ok is false for any other shape (then decoded in full).
func parseIndexAnswer(b []byte) (uint64, bool) {
	b = bytes.TrimSpace(b)
	rest, found := bytes.CutPrefix(b, []byte(`{"index":`))
	if !found {
		return 0, false
	}
	digits, found := bytes.CutSuffix(rest, []byte("}"))
	if !found || len(digits) == 0 || len(digits) > 19 { // 20 digits may overflow: left to encoding/json
		return 0, false
	}
	var v uint64
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, false
		}
		n := v*10 + uint64(d-'0')
		if n < v {
			return 0, false
		}
		v = n
	}
	return v, true
}

// Delete removes key; deleted reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (index uint64, deleted bool, err error) {
	return c.delete(ctx, key, nil)
}

// DeleteCAS removes key only if its modify index is expected.
func (c *Client) DeleteCAS(ctx context.Context, key string, expected uint64) (index uint64, deleted bool, err error) {
	return c.delete(ctx, key, url.Values{"cas": {strconv.FormatUint(expected, 10)}})
}

func (c *Client) delete(ctx context.Context, key string, q url.Values) (uint64, bool, error) {
	resp, err := c.do(ctx, call{method: http.MethodDelete, path: kvPath(key), query: q,
		write: true, idemKey: newIdempotencyKey()})
	if err != nil {
		return 0, false, casError(key, err)
	}
	var out struct {
		Index   uint64 `json:"index"`
		Deleted bool   `json:"deleted"`
	}
	if err := decodeJSON(resp, &out); err != nil {
		return 0, false, err
	}
	c.observe(out.Index)
	return out.Index, out.Deleted, nil
}

// ListOptions select one page of a listing.
type ListOptions struct {
	Prefix string
	After  string // continue after this key (a Page's Next)
	Limit  int    // 0: the server's default
	Stale  bool
}

// Page is one page of a listing.
type Page struct {
	Entries []Entry
	// Next is the key to pass as After for the next page; empty when this was the last page.
	Next string
	// Index is the write index the page reflects (X-Kv-Index).
	Index uint64
}

// List returns one page of keys with opts.Prefix after opts.After, in key order.
func (c *Client) List(ctx context.Context, opts ListOptions) (Page, error) {
	var ro []ReadOption
	if opts.Stale {
		ro = append(ro, Stale())
	}
	q := c.readQuery(ro)
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.After != "" {
		q.Set("after", opts.After)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	resp, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/kv", query: q})
	if err != nil {
		return Page{}, err
	}
	var raw []struct {
		Key         string `json:"key"`
		Value       string `json:"value"`
		CreateIndex uint64 `json:"create_index"`
		ModIndex    uint64 `json:"mod_index"`
	}
	if err := decodeJSON(resp, &raw); err != nil {
		return Page{}, err
	}
	p := Page{Entries: make([]Entry, 0, len(raw))}
	for _, r := range raw {
		v, err := base64.StdEncoding.DecodeString(r.Value)
		if err != nil {
			return Page{}, fmt.Errorf("client: %s: value of %q is not base64: %w", resp.node, r.Key, err)
		}
		p.Entries = append(p.Entries, Entry{Key: r.Key, Value: v, CreateIndex: r.CreateIndex, ModIndex: r.ModIndex})
	}
	p.Index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
	if strings.EqualFold(resp.header.Get("X-Kv-More"), "true") {
		next, err := url.QueryUnescape(resp.header.Get("X-Kv-Next-After"))
		if err != nil || next == "" {
			return Page{}, fmt.Errorf("client: %s: X-Kv-More with a bad X-Kv-Next-After", resp.node)
		}
		p.Next = next
	}
	return p, nil
}

// ListAll pages through every key with prefix.
func (c *Client) ListAll(ctx context.Context, prefix string, stale bool) ([]Entry, error) {
	var all []Entry
	opts := ListOptions{Prefix: prefix, Stale: stale}
	for {
		p, err := c.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Entries...)
		if p.Next == "" {
			return all, nil
		}
		opts.After = p.Next
	}
}
