package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrCompacted: the watch's next index is older than the history any node keeps. List again and watch
// from the list's index + 1 (the informer pattern).
var ErrCompacted = errors.New("watch history compacted")

// WatchOptions select what a watch follows.
type WatchOptions struct {
	Prefix string // every key under Prefix ("" : every key), unless Key is set
	Key    string // exactly this key
	// Index is the first index to deliver (a list's Page.Index + 1). 0 starts "now", which is when the
	// first Next connects: to miss nothing, list first and watch from the list's index + 1.
	Index uint64
	Prev  bool // ask for each change's previous value
	// Progress makes Next also return the node's progress notes, as Events without Changes: every
	// matching change up to their Index has been delivered (a Cache uses them to know how current it
	// is while its prefix is quiet).
	Progress bool
	// OnResume, if set, is called each time a stream ends and the watch resumes (on the next node)
	// from next, the first index not yet delivered, with the reason: for a log line.
	OnResume func(err error, next uint64)
}

// Change is one key's change in an Event.
type Change struct {
	Type        string `json:"type"` // "put" or "delete"
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	PrevValue   []byte `json:"prev_value,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
}

// Event is every matching change of one index, in order.
type Event struct {
	Index   uint64   `json:"index"`
	Changes []Change `json:"changes"`
	// Raw is the event's JSON as the node sent it (nil for a progress note).
	Raw json.RawMessage `json:"-"`
}

// Watcher follows a watch across nodes: when a stream ends (a node dies, has no leader, or finds the
// reader lagging), it resumes from the next undelivered index on the next endpoint, so no change is
// lost or repeated. It is used by one goroutine at a time.
type Watcher struct {
	c    *Client
	opts WatchOptions
	next uint64 // first index not yet delivered; 0 until the first stream says where now is

	body io.ReadCloser
	r    *bufio.Reader
	node string
	base string
	// progressed: the current stream delivered an event or progress, so its end is not a failure
	progressed bool
}

// Watch returns a Watcher; it connects on the first Next.
func (c *Client) Watch(opts WatchOptions) *Watcher {
	return &Watcher{c: c, opts: opts, next: opts.Index}
}

// NextIndex is the first index the watcher has not delivered yet: where a new watch would resume.
func (w *Watcher) NextIndex() uint64 { return w.next }

// Close ends the current stream.
func (w *Watcher) Close() error {
	if w.body != nil {
		err := w.body.Close()
		w.body, w.r = nil, nil
		return err
	}
	return nil
}

// Next blocks until the next event, ctx ends (its error), the history no longer reaches the next
// index (ErrCompacted), or no node served the watch for Config.Timeout (ErrUnavailable).
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	backoff := w.c.cfg.MinBackoff
	var failingSince time.Time
	for {
		var err error
		if w.r == nil {
			if err = w.connect(ctx); err == nil {
				w.progressed = false
				continue
			}
		} else {
			var ev Event
			var ok bool
			if ev, ok, err = w.read(); err == nil {
				w.progressed = true
				failingSince, backoff = time.Time{}, w.c.cfg.MinBackoff
				if ok {
					return ev, nil
				}
				continue
			}
			w.Close()
			if w.progressed && !errors.Is(err, ErrCompacted) {
				w.c.rotate(w.base) // a stream that delivered ended: resume on another node at once
				w.resumed(err)
				continue
			}
		}
		if ctx.Err() != nil {
			return Event{}, ctx.Err()
		}
		if errors.Is(err, ErrCompacted) {
			return Event{}, err
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 {
			return Event{}, err // no node will accept it
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > w.c.cfg.Timeout {
			return Event{}, fmt.Errorf("%w: watch: %w", ErrUnavailable, err)
		}
		w.c.rotate(w.base)
		w.resumed(err)
		delay := backoff/2 + mrand.N(backoff/2+1)
		backoff = min(2*backoff, w.c.cfg.MaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return Event{}, ctx.Err()
		case <-t.C:
		}
	}
}

func (w *Watcher) resumed(err error) {
	if w.opts.OnResume != nil {
		w.opts.OnResume(err, w.next)
	}
}

func (w *Watcher) connect(ctx context.Context) error {
	w.base = w.c.first()
	w.node = nodeName(w.base)
	q := url.Values{}
	if w.opts.Key != "" {
		q.Set("key", w.opts.Key)
	} else {
		q.Set("prefix", w.opts.Prefix)
	}
	if w.opts.Prev {
		q.Set("prev", "true")
	}
	if w.next > 0 {
		q.Set("index", strconv.FormatUint(w.next, 10))
	}
	// A node behind what this Client has seen answers 503 timeout instead of holding a silent stream;
	// the watch then moves to another node.
	if seen := w.c.seen.Load(); seen > 0 {
		q.Set("min_index", strconv.FormatUint(seen, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	w.c.authorize(req)
	resp, err := w.c.hc.Do(req)
	if err != nil {
		return &transportError{node: w.node, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		ae := decodeAPIError(w.node, resp.StatusCode, b)
		if ae.Code == "compacted" {
			return fmt.Errorf("%w: %w", ErrCompacted, ae)
		}
		return ae
	}
	if w.next == 0 { // from now: the node says where now is
		start, _ := strconv.ParseUint(resp.Header.Get("X-Kv-Index"), 10, 64)
		w.next = start + 1
	}
	w.body, w.r = resp.Body, bufio.NewReader(resp.Body)
	return nil
}

// read reads one SSE message: an event (ok), a progress or a comment (not ok, nil), or the stream's
// end (an error; ErrCompacted when the node says the history no longer reaches us).
func (w *Watcher) read() (ev Event, ok bool, err error) {
	var event, id, data string
	for {
		line, err := w.r.ReadString('\n')
		if err != nil {
			return Event{}, false, &transportError{node: w.node, sent: true, err: fmt.Errorf("stream ended: %w", err)}
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
		if event == "" && id == "" && data == "" {
			continue // a blank line of its own
		}
		break
	}
	switch event {
	case "":
		idx, err := strconv.ParseUint(id, 10, 64)
		if err != nil || idx < w.next {
			return Event{}, false, fmt.Errorf("client: %s: out-of-order event id %q (expected at least %d)", w.node, id, w.next)
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return Event{}, false, fmt.Errorf("client: %s: bad event: %w", w.node, err)
		}
		ev.Raw = json.RawMessage(data)
		w.next = idx + 1
		w.c.observe(idx)
		return ev, true, nil
	case "progress":
		if idx, err := strconv.ParseUint(id, 10, 64); err == nil && idx+1 > w.next {
			w.next = idx + 1
			w.c.observe(idx)
			if w.opts.Progress {
				return Event{Index: idx}, true, nil
			}
		}
		return Event{}, false, nil
	case "error":
		var e struct {
			Code   string `json:"code"`
			Error  string `json:"error"`
			Resume uint64 `json:"resume_index"`
		}
		_ = json.Unmarshal([]byte(data), &e)
		if e.Code == "compacted" {
			return Event{}, false, fmt.Errorf("%w: %s: %s", ErrCompacted, w.node, e.Error)
		}
		if e.Resume > w.next {
			w.next = e.Resume
		}
		return Event{}, false, fmt.Errorf("client: %s ended the watch: %s (%s)", w.node, e.Error, e.Code)
	}
	return Event{}, false, nil
}
