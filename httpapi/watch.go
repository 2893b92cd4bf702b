package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/watch"
)

// Defaults of the watch options.
const (
	DefaultWatchProgressInterval = 10 * time.Second
	DefaultMaxWatches            = 10000
	DefaultWatchBufferBytes      = 1 << 20
	DefaultWatchLagTimeout       = 30 * time.Second
	DefaultNoLeaderTimeout       = 5 * time.Second
	// MaxWait bounds a long-poll's wait=.
	MaxWait = 10 * time.Minute
	// watchPageEvents bounds the events one read of the history takes, so a stream far behind encodes
	// and queues in pieces and notices a full buffer early.
	watchPageEvents = 256
	// leaderCheckInterval: how often a stream checks that this node still follows a leader.
	leaderCheckInterval = time.Second
)

// watchParams are the query parameters of GET /v1/watch.
type watchParams struct {
	filter   watch.Filter
	index    uint64 // 0: from now
	hasIndex bool
	prev     bool
	minIndex uint64 // wait until this node has applied this write index before streaming
}

func (s *server) parseWatchParams(r *http.Request) (watchParams, error) {
	var p watchParams
	var seenKey, seenPrefix, seenIndex, seenPrev, seenTypes, seenMinIndex bool
	err := forEachParam(r.URL.RawQuery, func(name, value string) error {
		var err error
		switch name {
		case "key":
			if err = once(&seenKey, name); err == nil {
				p.filter.Key, err = s.checkKeyParam(name, value)
				if err == nil && value == "" {
					err = paramError("key must not be empty")
				}
			}
		case "prefix":
			if err = once(&seenPrefix, name); err == nil {
				p.filter.Prefix, err = s.checkKeyParam(name, value)
				p.filter.IsPrefix = true
			}
		case "index":
			if err = once(&seenIndex, name); err == nil {
				p.index, err = parseIndexParam(name, value)
				p.hasIndex = true
			}
		case "prev":
			if err = once(&seenPrev, name); err == nil {
				p.prev, err = parseBoolParam(name, value)
			}
		case "types":
			if err = once(&seenTypes, name); err == nil {
				err = parseTypes(value, &p.filter)
			}
		case "min_index":
			if err = once(&seenMinIndex, name); err == nil {
				p.minIndex, err = parseMinIndex(value)
			}
		default:
			err = unknownParam(name)
		}
		return err
	})
	if err != nil {
		return p, err
	}
	if seenKey == seenPrefix {
		return p, paramError("give exactly one of key= and prefix=")
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		// The browser's resume: every change up to the last id received has been delivered.
		last, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return p, paramError("Last-Event-ID must be an index, got " + strconv.Quote(id))
		}
		p.index, p.hasIndex = last+1, true
	}
	return p, nil
}

func parseIndexParam(name, value string) (uint64, error) {
	n, err := strconv.ParseUint(value, 10, 64)
	if err != nil {
		return 0, paramError(name + " must be an unsigned decimal index, got " + strconv.Quote(value))
	}
	return n, nil
}

func parseBoolParam(name, value string) (bool, error) {
	switch value {
	case "true", "1", "":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, paramError(name + " must be true or false, got " + strconv.Quote(value))
}

func parseTypes(value string, f *watch.Filter) error {
	f.NoPut, f.NoDelete = true, true
	for _, t := range strings.Split(value, ",") {
		switch t {
		case "put":
			f.NoPut = false
		case "delete":
			f.NoDelete = false
		default:
			return paramError(`types must be "put", "delete" or "put,delete", got ` + strconv.Quote(value))
		}
	}
	return nil
}

// handleWatch serves GET /v1/watch as Server-Sent Events: one message per write index with a matching
// change (id: the index), a progress event at least every WatchProgressInterval saying up to which
// index this stream is complete, and an error event before the stream ends for a reason the client
// should act on (compacted, lagging, no_leader, shutting_down).
func (s *server) handleWatch(w http.ResponseWriter, r *http.Request) {
	hub := s.opts.Watch
	if hub == nil {
		s.writeError(w, r, &apiError{http.StatusNotFound, codeNotFound, "watch is not enabled on this node"})
		return
	}
	p, err := s.parseWatchParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n := s.watches.Add(1); n > int64(s.opts.MaxWatches) {
		s.watches.Add(-1)
		s.writeError(w, r, &apiError{http.StatusServiceUnavailable, codeTooManyWatches,
			"this node serves its maximum of " + strconv.Itoa(s.opts.MaxWatches) + " watches; use another node"})
		return
	}
	defer s.watches.Add(-1)
	reason := "refused" // answered with an error before the stream began
	if wo, _ := s.opts.Observer.(WatchObserver); wo != nil {
		wo.ObserveWatchStart()
		defer func() { wo.ObserveWatchEnd(reason) }()
	}

	// A client resuming a watch sends the highest index it has seen: a node behind it would hold the
	// stream silent until it caught up, so it waits at most the request timeout and otherwise answers
	// 503 timeout, and the client moves to a node that is current.
	if err := s.waitIndex(r, p.minIndex); err != nil {
		s.writeError(w, r, err)
		return
	}
	start := p.index
	if !p.hasIndex {
		// "From now" must not start before a write the client saw acknowledged: start after a read
		// index a quorum confirmed, as a linearizable read would answer.
		now, err := s.store.ReadIndex(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		start = now + 1
	}
	start = max(start, 1)
	if _, _, err := hub.Read(start, &p.filter, 1); err != nil {
		s.writeError(w, r, err) // 410 compacted, before any of the stream is sent
		return
	}

	// A stream outlives the server's per-request deadlines by design; it bounds itself (see watchStream).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	h[headerIndex] = []string{strconv.FormatUint(start-1, 10)}
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := newWatchStream(w, rc, s.opts.WatchBufferBytes, s.opts.WatchLagTimeout, cancel)
	go st.writeLoop()
	defer st.finish()
	st.push(appendProgress(nil, start-1), true) // tells a "from now" client where it starts
	reason = s.streamWatch(ctx, hub, st, &p, start, start-1)
}

// WatchObserver counts watch streams (metrics.Node implements it): one start and one end per stream
// that began, the end with why ("client" when the client went away, else the error code the stream
// ended with: lagging, compacted, no_leader, shutting_down, permission_denied, ...; "refused" when it was
// answered with an error status before streaming), and the changes
// each stream sent.
type WatchObserver interface {
	ObserveWatchStart()
	ObserveWatchEnd(reason string)
	ObserveWatchEvents(n int)
}

// streamWatch reads the history from pos on and queues what matches, until the stream must end; it
// returns why it ended (see WatchObserver).
func (s *server) streamWatch(ctx context.Context, hub *watch.Hub, st *watchStream, p *watchParams, pos, progressed uint64) string {
	wo, _ := s.opts.Observer.(WatchObserver)
	progress := time.NewTicker(s.opts.WatchProgressInterval)
	defer progress.Stop()
	leaderCheck := time.NewTicker(leaderCheckInterval)
	defer leaderCheck.Stop()
	var leaderless time.Time // when this node was first seen without a leader; zero while it has one
	var buf []byte
	caughtUp := false
	// aclChanged fires when the ACL state changes (never while ACLs are off): the stream is decided
	// again, and ends with permission_denied (or unauthenticated) once its token may no longer see it.
	var aclChanged <-chan struct{}
	if now, err := s.recheck(ctx); err != nil { // changed since the request was decided
		_, code := classify(err)
		st.push(appendResumeError(nil, code, err.Error(), pos), true)
		return code
	} else if now != nil {
		aclChanged = now.Changed()
	}
	for {
		wake := hub.Wake()
		evs, through, err := hub.Read(pos, &p.filter, watchPageEvents)
		if err != nil { // a snapshot install or the history bound overtook this stream
			st.push(appendStreamError(nil, err, pos), true)
			if errors.Is(err, watch.ErrCompacted) {
				return codeCompacted
			}
			return codeInternal
		}
		if len(evs) > 0 {
			buf = buf[:0]
			for i := range evs {
				buf = appendEvent(buf, &evs[i], p.prev)
			}
			if !st.push(buf, false) {
				st.push(appendLagging(nil, pos), true)
				return codeLagging
			}
			buf = buf[:0]
			if wo != nil {
				wo.ObserveWatchEvents(len(evs))
			}
		}
		pos = through + 1
		if len(evs) == watchPageEvents {
			continue // more is waiting; progress is sent when caught up
		}
		if !caughtUp {
			// Say at once how far the stream is complete, not only at the next interval: a client that
			// reconnects often (or whose prefix is quiet) would otherwise never learn it.
			caughtUp = true
			if pos-1 > progressed {
				st.push(appendProgress(nil, pos-1), true)
				progressed = pos - 1
			}
		}
		select {
		case <-wake:
		case <-progress.C:
			st.push(appendProgress(nil, pos-1), true)
		case <-leaderCheck.C:
			if s.leaderGone(&leaderless) {
				st.push(appendResumeError(nil, codeNoLeader, "this node has had no leader for "+
					s.opts.NoLeaderTimeout.String()+"; resume on another node", pos), true)
				return codeNoLeader
			}
		case <-aclChanged:
			now, err := s.recheck(ctx)
			if err != nil {
				_, code := classify(err)
				st.push(appendResumeError(nil, code, err.Error(), pos), true)
				return code
			}
			aclChanged = now.Changed()
		case <-s.opts.Stop:
			st.push(appendResumeError(nil, codeShuttingDown, "this node is stopping; resume on another node", pos), true)
			return codeShuttingDown
		case <-ctx.Done():
			return "client"
		}
	}
}

// leaderGone reports whether this node has been without a leader (none known, or none heard from) for
// NoLeaderTimeout; *since remembers when it was first seen without one.
func (s *server) leaderGone(since *time.Time) bool {
	info := s.store.StaleInfo()
	if info.KnownLeader && (info.NoContact || info.LastContact < s.opts.NoLeaderTimeout) {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	return time.Since(*since) >= s.opts.NoLeaderTimeout || info.LastContact >= s.opts.NoLeaderTimeout
}

// watchStream is one stream's bounded buffer and the goroutine that writes it to the client. The
// reader of the history (streamWatch) only ever appends here, waiting for room when it is full, so a
// client that reads slowly holds at most the buffer and its own socket and slows only its own reader:
// never apply (which only appends to the shared history) or any other stream. A client that leaves
// the buffer full for the lag timeout is ended with lagging.
type watchStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	limit   int
	lag     time.Duration
	cancel  context.CancelFunc // ends the stream when the client cannot be written to
	mu      sync.Mutex
	pending []byte
	closed  bool
	kick    chan struct{}
	drained chan struct{} // signalled after each write to the client: room in the buffer
	done    chan struct{}
}

func newWatchStream(w http.ResponseWriter, rc *http.ResponseController, limit int, lag time.Duration, cancel context.CancelFunc) *watchStream {
	return &watchStream{w: w, rc: rc, limit: limit, lag: lag, cancel: cancel,
		kick: make(chan struct{}, 1), drained: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues b. When b does not fit the buffer it waits for the writer to make room, up to the lag
// timeout, and then refuses (false): the client is not keeping up. A forced push (progress, the final
// error) always fits: it is small and there is at most one queued at a time.
func (st *watchStream) push(b []byte, force bool) bool {
	var timer *time.Timer
	for {
		st.mu.Lock()
		if force || len(st.pending) == 0 || len(st.pending)+len(b) <= st.limit {
			st.pending = append(st.pending, b...)
			st.mu.Unlock()
			select {
			case st.kick <- struct{}{}:
			default:
			}
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		st.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(st.lag)
		}
		select {
		case <-st.drained:
		case <-st.done: // the writer gave up on the client
			timer.Stop()
			return false
		case <-timer.C:
			return false
		}
	}
}

// finish lets the writer send what is queued, then waits for it: at most the lag timeout.
func (st *watchStream) finish() {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	select {
	case st.kick <- struct{}{}:
	default:
	}
	<-st.done
}

func (st *watchStream) writeLoop() {
	defer close(st.done)
	var out []byte
	for range st.kick {
		for {
			st.mu.Lock()
			out, st.pending = st.pending, out[:0]
			closed := st.closed
			st.mu.Unlock()
			if len(out) == 0 {
				if closed {
					return
				}
				break
			}
			// A client that does not take a write within the lag timeout is gone or stuck: cut it.
			_ = st.rc.SetWriteDeadline(time.Now().Add(st.lag))
			if _, err := st.w.Write(out); err != nil {
				st.cancel()
				return
			}
			if err := st.rc.Flush(); err != nil {
				st.cancel()
				return
			}
			select {
			case st.drained <- struct{}{}:
			default:
			}
		}
	}
}

// appendEvent appends one SSE message: the changes of one index.
func appendEvent(b []byte, ev *watch.Event, prev bool) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, ev.Index, 10)
	b = append(b, "\ndata: "...)
	b = appendEventJSON(b, ev, prev)
	return append(b, "\n\n"...)
}

// appendEventJSON appends {"index":N,"changes":[...]}, the body of a watch message and of a long-poll.
func appendEventJSON(b []byte, ev *watch.Event, prev bool) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, ev.Index, 10)
	b = append(b, `,"changes":[`...)
	for i := range ev.Changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendChange(b, &ev.Changes[i], prev)
	}
	return append(b, "]}"...)
}

func appendChange(b []byte, c *fsm.Change, prev bool) []byte {
	if c.Delete {
		b = append(b, `{"type":"delete","key":`...)
	} else {
		b = append(b, `{"type":"put","key":`...)
	}
	b = appendJSONString(b, c.Key)
	if !c.Delete {
		b = append(b, `,"value":"`...)
		b = base64.StdEncoding.AppendEncode(b, c.Value)
		b = append(b, '"')
	}
	b = append(b, `,"create_index":`...)
	b = strconv.AppendUint(b, c.CreateIndex, 10)
	b = append(b, `,"mod_index":`...)
	b = strconv.AppendUint(b, c.ModIndex, 10)
	if prev && c.HadPrev {
		b = append(b, `,"prev_value":"`...)
		b = base64.StdEncoding.AppendEncode(b, c.Prev)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendProgress: the stream has delivered every matching change up to index. It carries the index as
// its id too, so a client resuming with Last-Event-ID does not re-read what it already knows is empty.
func appendProgress(b []byte, index uint64) []byte {
	b = append(b, "event: progress\nid: "...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, "\ndata: {\"index\":"...)
	b = strconv.AppendUint(b, index, 10)
	return append(b, "}\n\n"...)
}

func appendLagging(b []byte, resume uint64) []byte {
	return appendResumeError(b, codeLagging, "this stream fell behind: its client does not read fast enough", resume)
}

// appendResumeError ends a stream the client should resume, from resume_index, here or elsewhere.
func appendResumeError(b []byte, code, msg string, resume uint64) []byte {
	b = append(b, "event: error\ndata: {\"code\":"...)
	b = appendJSONString(b, code)
	b = append(b, `,"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"resume_index":`...)
	b = strconv.AppendUint(b, resume, 10)
	return append(b, "}\n\n"...)
}

func appendStreamError(b []byte, err error, resume uint64) []byte {
	var ce *watch.CompactedError
	if !errors.As(err, &ce) {
		return appendResumeError(b, codeInternal, err.Error(), resume)
	}
	b = append(b, "event: error\ndata: {\"code\":\"compacted\",\"error\":"...)
	b = appendJSONString(b, ce.Error())
	b = appendCompactedFields(b, ce)
	return append(b, "}\n\n"...)
}

func appendCompactedFields(b []byte, ce *watch.CompactedError) []byte {
	b = append(b, `,"compact_index":`...)
	b = strconv.AppendUint(b, ce.CompactIndex, 10)
	b = append(b, `,"current_index":`...)
	b = strconv.AppendUint(b, ce.CurrentIndex, 10)
	return b
}

// longPoll holds a read with index=N&wait=D until the history has a change matching f with an index
// above N, or D (plus up to 1/16 jitter, so that many clients polling together do not return
// together) has passed, or the node has had no leader for NoLeaderTimeout. A compacted N, or a node without history, answers at once: the read that
// follows reports the index it reflects and the client moves on from there.
func (s *server) longPoll(r *http.Request, f *watch.Filter, index uint64, wait time.Duration) {
	hub := s.opts.Watch
	if hub == nil || wait <= 0 {
		return
	}
	wait += rand.N(wait/16 + 1)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// A node cut off from its leader stops waiting: the read that follows then says no_leader (or, if
	// stale, how stale), and the client asks another node instead of hanging on this one.
	leaderCheck := time.NewTicker(leaderCheckInterval)
	defer leaderCheck.Stop()
	var leaderless time.Time
	for {
		wake := hub.Wake()
		evs, _, err := hub.Read(index+1, f, 1)
		if err != nil || len(evs) > 0 {
			return
		}
		select {
		case <-wake:
		case <-leaderCheck.C:
			if s.leaderGone(&leaderless) {
				return
			}
		case <-timer.C:
			return
		case <-s.opts.Stop:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// extendDeadlines lets a long-poll outlive the server's per-request deadlines by its wait.
func extendDeadlines(w http.ResponseWriter, wait time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(wait + wait/16 + 30*time.Second))
}

func parseWait(value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil || d < 0 || d > MaxWait {
		return 0, paramError("wait must be a duration between 0s and " + MaxWait.String() + ", got " + strconv.Quote(value))
	}
	return d, nil
}
