package transport

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Anyone who can reach a node's gossip or node port can make it log: every malformed packet or
// connection used to write its own ERROR line (3,300 packets, 3,000 lines). A throttle lets the first
// few lines from each source through in every window and then counts the rest, and writes one summary
// per source and window: "N more from X suppressed in last 10s".
const (
	throttleWindow = 10 * time.Second
	throttleBurst  = 5
	// throttleSources bounds the sources tracked at once: a flood from many addresses evicts the
	// oldest, summarising it first.
	throttleSources = 1024
)

// LogThrottle rate-limits log lines by source (see above). Safe for concurrent use.
type LogThrottle struct {
	logger *slog.Logger
	window time.Duration
	burst  int
	now    func() time.Time

	mu        sync.Mutex
	sources   map[string]*sourceWindow
	lastSweep time.Time
}

type sourceWindow struct {
	start      time.Time
	lines      int
	suppressed int
}

// NewLogThrottle writes its summaries to logger.
func NewLogThrottle(logger *slog.Logger) *LogThrottle {
	return &LogThrottle{logger: logger, window: throttleWindow, burst: throttleBurst, now: time.Now, sources: map[string]*sourceWindow{}}
}

// Allow says whether a line from source may be written now. It also writes the summaries of windows
// that have ended.
func (t *LogThrottle) Allow(source string) bool {
	now := t.now()
	t.mu.Lock()
	var summaries []summary
	if now.Sub(t.lastSweep) >= time.Second {
		t.lastSweep = now
		for src, w := range t.sources {
			if now.Sub(w.start) >= t.window {
				summaries = appendSummary(summaries, src, w)
				delete(t.sources, src)
			}
		}
	}
	w := t.sources[source]
	if w != nil && now.Sub(w.start) >= t.window {
		summaries = appendSummary(summaries, source, w)
		w = nil
	}
	if w == nil {
		if len(t.sources) >= throttleSources {
			oldest := ""
			for src, o := range t.sources {
				if oldest == "" || o.start.Before(t.sources[oldest].start) {
					oldest = src
				}
			}
			summaries = appendSummary(summaries, oldest, t.sources[oldest])
			delete(t.sources, oldest)
		}
		w = &sourceWindow{start: now}
		t.sources[source] = w
	}
	w.lines++
	ok := w.lines <= t.burst
	if !ok {
		w.suppressed++
	}
	t.mu.Unlock()
	t.write(summaries)
	return ok
}

// Flush writes the summaries of every window, ended or not (the node is stopping).
func (t *LogThrottle) Flush() {
	t.mu.Lock()
	var summaries []summary
	for src, w := range t.sources {
		summaries = appendSummary(summaries, src, w)
	}
	clear(t.sources)
	t.mu.Unlock()
	t.write(summaries)
}

type summary struct {
	source     string
	suppressed int
}

func appendSummary(s []summary, source string, w *sourceWindow) []summary {
	if w.suppressed == 0 {
		return s
	}
	return append(s, summary{source, w.suppressed})
}

func (t *LogThrottle) write(summaries []summary) {
	for _, s := range summaries {
		t.logger.Warn(fmt.Sprintf("%d more from %s suppressed in last %s", s.suppressed, s.source, t.window),
			"source", s.source, "suppressed", s.suppressed)
	}
}

// hostOf is the host of addr (a flood from one machine uses many ports), or addr itself.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
