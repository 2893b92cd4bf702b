package client

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Cache keeps every key under a prefix in memory and current: it lists the prefix, then follows a
// watch from the list's index (the informer pattern of Kubernetes' client-go). A watch that can no
// longer resume (ErrCompacted: the history moved past it, e.g. after a restore or a long partition)
// lists again. Reads from a Cache cost nothing and never go back in time: every state it shows
// reflects the store at one write index (Index), and that index only grows, also across relists and
// failovers between nodes.
//
// Run does the work; readers call Get, List, Index and Updated from any goroutine.
type Cache struct {
	c      *Client
	prefix string

	mu      sync.RWMutex
	entries map[string]Entry
	index   uint64        // the write index the entries reflect; 0 until the first list
	updated chan struct{} // closed and replaced on every change of index
	synced  chan struct{} // closed once the first list is in
}

// NewCache returns a Cache of every key under prefix ("" for all keys). It is empty until Run has
// listed once (WaitSynced).
func (c *Client) NewCache(prefix string) *Cache {
	return &Cache{c: c, prefix: prefix, entries: map[string]Entry{}, updated: make(chan struct{}), synced: make(chan struct{})}
}

// Get returns key's entry as of Index.
func (ca *Cache) Get(key string) (Entry, bool) {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	e, ok := ca.entries[key]
	return e, ok
}

// List returns every entry in key order and the write index they reflect, one consistent view.
func (ca *Cache) List() ([]Entry, uint64) {
	ca.mu.RLock()
	out := make([]Entry, 0, len(ca.entries))
	for _, e := range ca.entries {
		out = append(out, e)
	}
	index := ca.index
	ca.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, index
}

// Index is the write index the Cache reflects: every change under the prefix up to it is in.
func (ca *Cache) Index() uint64 {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.index
}

// Updated returns a channel closed at the Cache's next change (of its entries or its index). Take it
// before reading, then wait on it, and no change is missed:
//
//	for { ch := cache.Updated(); entries, _ := cache.List(); use(entries); <-ch }
func (ca *Cache) Updated() <-chan struct{} {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.updated
}

// WaitSynced returns once the first list is in, or ctx's error.
func (ca *Cache) WaitSynced(ctx context.Context) error {
	select {
	case <-ca.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitIndex returns once the Cache reflects write index index (say, a write of yours), or ctx's error.
func (ca *Cache) WaitIndex(ctx context.Context, index uint64) error {
	for {
		ch := ca.Updated()
		if ca.Index() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run keeps the Cache current until ctx ends, and returns ctx's error. Failures are retried with the
// Client's backoff; meanwhile the Cache keeps serving the last state it had (check Index against what
// you need, or wait with WaitIndex).
func (ca *Cache) Run(ctx context.Context) error {
	backoff := ca.c.cfg.MinBackoff
	for {
		err := ca.sync(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrCompacted) {
			backoff = ca.c.cfg.MinBackoff // relist at once: the history is gone, not the cluster
			continue
		}
		delay := backoff/2 + mrand.N(backoff/2+1)
		backoff = min(2*backoff, ca.c.cfg.MaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sync lists the prefix, then follows it until the watch fails. The list is built aside and shown
// only once the watch has carried it past every page's index: pages are each one view, at their own
// index, so the union is consistent only from the last page's index on. Until then readers keep the
// previous state, which is older: the list asks for at least the Client's highest seen index, and so
// at least the index the Cache showed last.
func (ca *Cache) sync(ctx context.Context) error {
	next := map[string]Entry{}
	opts := ListOptions{Prefix: ca.prefix, Stale: true}
	var first, last uint64
	for {
		p, err := ca.c.List(ctx, opts)
		if err != nil {
			return err
		}
		if first == 0 {
			first = p.Index
		}
		last = max(last, p.Index)
		for _, e := range p.Entries {
			next[e.Key] = e
		}
		if p.Next == "" {
			break
		}
		opts.After = p.Next
	}
	at := first // next reflects every change up to at, and some beyond it (later pages)
	shown := false
	show := func() {
		ca.mu.Lock()
		if at >= ca.index { // never show an older state than one shown before
			ca.entries, ca.index = next, at
			close(ca.updated)
			ca.updated = make(chan struct{})
		}
		ca.mu.Unlock()
		if !shown {
			shown = true
			select {
			case <-ca.synced:
			default:
				close(ca.synced)
			}
		}
	}
	if at >= last {
		show()
	}
	w := ca.c.Watch(WatchOptions{Prefix: ca.prefix, Index: first + 1, Progress: true})
	defer w.Close()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err
		}
		if !shown {
			applyEvent(next, ev) // not shown yet: next is ours alone
			at = ev.Index
			if at >= last {
				show()
			}
			continue
		}
		ca.mu.Lock()
		if ev.Index > ca.index {
			applyEvent(ca.entries, ev)
			ca.index = ev.Index
			close(ca.updated)
			ca.updated = make(chan struct{})
		}
		ca.mu.Unlock()
	}
}

// applyEvent applies ev's changes to entries. A page listed after ev's index may already hold a
// newer version of a key (or have seen it deleted and re-created): a change never replaces an entry
// modified after it.
func applyEvent(entries map[string]Entry, ev Event) {
	for _, ch := range ev.Changes {
		cur, ok := entries[ch.Key]
		if ok && cur.ModIndex > ev.Index {
			continue
		}
		switch ch.Type {
		case "delete":
			delete(entries, ch.Key)
		default:
			v := ch.Value
			if v == nil {
				v = []byte{}
			}
			entries[ch.Key] = Entry{Key: ch.Key, Value: v, CreateIndex: ch.CreateIndex, ModIndex: ch.ModIndex}
		}
	}
}
