package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// ErrSessionEnded: the session is over — expired, destroyed, or not renewed in time — and what it
// held (ephemeral keys, locks, leadership) must be taken as lost.
var ErrSessionEnded = errors.New("session ended")

const codeSessionNotFound = "session_not_found"

// SessionOptions configure a session. Zero fields take the server's defaults.
type SessionOptions struct {
	// TTL: the session ends once this long has passed without an acknowledged renew (server default
	// 15 s; from 2 s to 24 h).
	TTL time.Duration
	// DeleteKeys: the session's keys are deleted when it ends (ephemeral registrations). Otherwise
	// they stay and only lose their holder (locks).
	DeleteKeys bool
	// LockDelay: after the session ends without releasing, its locks cannot be taken for this long.
	LockDelay time.Duration
	Name      string // shown in GET /v1/sessions
}

// Session is a lease the Client keeps alive by renewing it every TTL/3. Done is closed when it ends,
// and at the latest at the last acknowledged renew's send time + TTL − a margin (TTL/10, at most 1 s)
// on this process's monotonic clock: the server never ends a session before TTL has passed since the
// client sent its last acknowledged renew, so until Done the session is certainly alive, whatever
// the network or the cluster's leader elections did meanwhile.
type Session struct {
	c    *Client
	id   string
	ttl  time.Duration
	stop context.CancelFunc
	done chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	err error // why it ended
}

// NewSession creates a session and starts keeping it alive. A create whose outcome was unknown is
// retried: an extra session it may leave behind holds nothing and expires after its TTL.
func (c *Client) NewSession(ctx context.Context, opts SessionOptions) (*Session, error) {
	req := map[string]string{"name": opts.Name}
	if opts.TTL > 0 {
		req["ttl"] = opts.TTL.String()
	}
	if opts.LockDelay > 0 {
		req["lock_delay"] = opts.LockDelay.String()
	}
	if opts.DeleteKeys {
		req["behavior"] = "delete"
	}
	body, _ := json.Marshal(req)
	sent := time.Now()
	resp, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/session", body: body, ctype: "application/json",
		write: true, idemKey: newIdempotencyKey(), retrySafe: true})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	var out struct {
		ID    string `json:"id"`
		TTLMs int64  `json:"ttl_ms"`
	}
	if err := decodeJSON(resp, &out); err != nil {
		return nil, err
	}
	if out.ID == "" || out.TTLMs <= 0 {
		return nil, fmt.Errorf("client: %s: a session answer without id or ttl", resp.node)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s := &Session{c: c, id: out.ID, ttl: time.Duration(out.TTLMs) * time.Millisecond, stop: stop, done: make(chan struct{})}
	s.wg.Add(1)
	go s.keepAlive(runCtx, sent)
	return s, nil
}

// ID is the session's id, as the API's ?session=, ?acquire= and ?release= take it.
func (s *Session) ID() string { return s.id }

// TTL is the session's time to live as the server granted it.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done is closed when the session has ended or may have (see Session).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why Done closed (it wraps ErrSessionEnded), or nil while it is open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

func (s *Session) margin() time.Duration { return min(s.ttl/10, time.Second) }

// keepAlive renews every TTL/3 and ends the session locally when no renew was acknowledged in time,
// when the server says it is gone, or when Close or Abandon stop it.
func (s *Session) keepAlive(ctx context.Context, lastSent time.Time) {
	defer s.wg.Done()
	deadline := time.NewTimer(time.Until(lastSent.Add(s.ttl - s.margin())))
	defer deadline.Stop()
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			s.end(fmt.Errorf("%w: no renew acknowledged within its TTL of %s", ErrSessionEnded, s.ttl))
			return
		case <-tick.C:
		}
		sent := time.Now()
		// A renew that cannot finish before the local deadline is of no use.
		rctx, cancel := context.WithDeadline(ctx, lastSent.Add(s.ttl-s.margin()))
		_, err := s.c.do(rctx, call{method: http.MethodPut, path: "/v1/session/" + url.PathEscape(s.id) + "/renew",
			write: true, idemKey: newIdempotencyKey(), retrySafe: true})
		cancel()
		switch {
		case err == nil:
			lastSent = sent
			deadline.Reset(time.Until(lastSent.Add(s.ttl - s.margin())))
		case isCode(err, codeSessionNotFound):
			s.end(fmt.Errorf("%w: the cluster ended it: %w", ErrSessionEnded, err))
			return
		}
		// Other failures: the next tick tries again; the deadline says when to give up.
	}
}

// Close destroys the session (its keys are deleted or released at once) and stops renewing it.
func (s *Session) Close(ctx context.Context) error {
	s.stop()
	s.wg.Wait()
	_, err := s.c.do(ctx, call{method: http.MethodDelete, path: "/v1/session/" + url.PathEscape(s.id), write: true,
		idemKey: newIdempotencyKey(), retrySafe: true})
	s.end(fmt.Errorf("%w: closed", ErrSessionEnded))
	if isCode(err, codeSessionNotFound) {
		return nil // already over (or our first attempt did it)
	}
	return err
}

// Abandon stops renewing without destroying: the cluster ends the session after its TTL, as if this
// process had died. For tests and for handing a session over.
func (s *Session) Abandon() {
	s.stop()
	s.wg.Wait()
	s.end(fmt.Errorf("%w: abandoned", ErrSessionEnded))
}

// Put writes value under key, owned by the session: with DeleteKeys it is deleted when the session
// ends (an ephemeral key). It is refused (an *APIError, 409 key_held) while another session holds key.
func (s *Session) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	out, err := s.sessionPut(ctx, "session", key, value)
	return out.Index, err
}

type lockAnswer struct {
	Index    uint64 `json:"index"`
	Acquired bool   `json:"acquired"`
	Released bool   `json:"released"`
}

// sessionPut is PUT /v1/kv/{key}?{mode}={session}. It carries an Idempotency-Key chosen for this call,
// so a retry after an attempt that applied gets that attempt's answer: the same index, the same
// acquired/released (a retried release that gave the lock back says released, not "nothing to
// release"), the same fencing token. Without a key (a cluster that cannot record it yet, see
// Config.RequireIdempotency) each is still retried: a session put writes the same value again, a
// holder re-acquiring keeps its lock and token, but a second release answers released=false.
func (s *Session) sessionPut(ctx context.Context, mode, key string, value []byte) (lockAnswer, error) {
	if value == nil {
		value = []byte{}
	}
	resp, err := s.c.do(ctx, call{method: http.MethodPut, path: kvPath(key), query: url.Values{mode: {s.id}},
		body: value, write: true, idemKey: newIdempotencyKey(), retrySafe: true})
	if err != nil {
		return lockAnswer{}, err
	}
	var out lockAnswer
	if err := decodeJSON(resp, &out); err != nil {
		return lockAnswer{}, err
	}
	s.c.observe(out.Index)
	return out, nil
}

// Mutex is a lock on one key held by a Session. Its fencing token (the index of the write that took
// it) only grows for the key: a resource that remembers the highest token it accepted refuses a
// holder that lost the lock without knowing (paused past its TTL) — compare it in a transaction.
type Mutex struct {
	s   *Session
	key string
}

// NewMutex returns a Mutex on key for s.
func NewMutex(s *Session, key string) *Mutex { return &Mutex{s: s, key: key} }

// TryLock takes the lock if it is free, writing value; acquired reports whether it did.
func (m *Mutex) TryLock(ctx context.Context, value []byte) (token uint64, acquired bool, err error) {
	out, err := m.s.sessionPut(ctx, "acquire", m.key, value)
	if err != nil {
		return 0, false, err
	}
	return out.Index, out.Acquired, nil
}

// Lock waits until the lock is taken (and returns its fencing token), ctx ends, or the session ends
// (ErrSessionEnded): it watches the key and asks again at each change, and at least every 2 s (a lock
// delay ends without a change).
func (m *Mutex) Lock(ctx context.Context, value []byte) (uint64, error) {
	ctx, cancel := m.s.bind(ctx)
	defer cancel()
	for {
		out, err := m.s.sessionPut(ctx, "acquire", m.key, value)
		if err != nil {
			return 0, m.s.why(ctx, err)
		}
		if out.Acquired {
			return out.Index, nil
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		w := m.s.c.Watch(WatchOptions{Key: m.key, Index: out.Index + 1})
		_, err = w.Next(wctx)
		w.Close()
		wcancel()
		if ctx.Err() != nil {
			return 0, m.s.why(ctx, ctx.Err())
		}
	}
}

// Unlock gives the lock back, writing value; released is false if the session did not hold it.
func (m *Mutex) Unlock(ctx context.Context, value []byte) (released bool, err error) {
	out, err := m.s.sessionPut(ctx, "release", m.key, value)
	return out.Released, err
}

// bind returns a context that also ends with the session.
func (s *Session) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// why reports the session's end rather than the cancellation it caused.
func (s *Session) why(ctx context.Context, err error) error {
	if serr := s.Err(); serr != nil && ctx.Err() != nil {
		return serr
	}
	return err
}

// Election is a leader election on one key among the sessions that campaign on it: the leader is
// the session holding the key, its value says who it is, and its lock index is its term's fencing
// token.
type Election struct {
	s   *Session
	key string
}

// NewElection returns an Election on key for s.
func NewElection(s *Session, key string) *Election { return &Election{s: s, key: key} }

// Campaign waits until s leads, and returns its fencing token. value describes the leader (an address).
func (e *Election) Campaign(ctx context.Context, value []byte) (uint64, error) {
	return NewMutex(e.s, e.key).Lock(ctx, value)
}

// Resign gives up leadership (the key stays, without a holder, so Observe sees a vacancy).
func (e *Election) Resign(ctx context.Context) error {
	_, err := NewMutex(e.s, e.key).Unlock(ctx, nil)
	return err
}

// Leadership is what an observer sees of an election: Session is empty while there is no leader.
type Leadership struct {
	Session string
	Value   []byte
	Token   uint64 // the leader's fencing token
	Index   uint64 // the write index this view reflects
}

// Leader returns the current leadership of the election on key (Session empty: vacant).
func (c *Client) Leader(ctx context.Context, key string) (Leadership, error) {
	return c.leadership(ctx, key, 0, 0)
}

// Observe sends the election on key's leadership every time it changes (vacancies included), starting
// with the current one, until ctx ends; then it closes the channel. It follows the key by long-poll,
// failing over like every call.
func (c *Client) Observe(ctx context.Context, key string) <-chan Leadership {
	ch := make(chan Leadership, 1)
	go func() {
		defer close(ch)
		var last Leadership
		first := true
		var index uint64
		for ctx.Err() == nil {
			wait := 30 * time.Second
			if first {
				wait = 0 // the current leadership at once, then its changes
			}
			l, err := c.leadership(ctx, key, index, wait)
			if err != nil {
				t := time.NewTimer(c.cfg.MinBackoff + time.Duration(c.cfg.MaxBackoff)/4)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			index = l.Index
			if first || l.Session != last.Session || l.Token != last.Token || string(l.Value) != string(last.Value) {
				first, last = false, l
				select {
				case ch <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

// leadership reads key, after a change above index when wait > 0 (a long-poll).
func (c *Client) leadership(ctx context.Context, key string, index uint64, wait time.Duration) (Leadership, error) {
	q := c.readQuery(nil)
	if wait > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", wait.String())
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+wait/16+c.cfg.Timeout)
		defer cancel()
	}
	resp, err := c.do(ctx, call{method: http.MethodGet, path: kvPath(key), query: q, longPoll: wait})
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == codeKeyNotFound {
		return Leadership{Index: ae.Index}, nil
	}
	if err != nil {
		return Leadership{}, err
	}
	l := Leadership{Session: resp.header.Get("X-Kv-Session"), Value: resp.body}
	l.Token, _ = strconv.ParseUint(resp.header.Get("X-Kv-Lock-Index"), 10, 64)
	l.Index, _ = strconv.ParseUint(resp.header.Get("X-Kv-Index"), 10, 64)
	if l.Session == "" {
		l.Value, l.Token = nil, 0
	}
	return l, nil
}
