package transport

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// records keeps every log record at warn or above.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func TestLogThrottleLetsABurstThroughPerSourceAndSummarisesTheRest(t *testing.T) {
	rec := &records{}
	th := NewLogThrottle(slog.New(rec))
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	passed := 0
	for range 100 {
		if th.Allow("10.0.0.1") {
			passed++
		}
	}
	require.Equal(t, throttleBurst, passed)
	require.True(t, th.Allow("10.0.0.2"), "another source has its own burst")
	require.Empty(t, rec.all())

	now = now.Add(throttleWindow)
	require.True(t, th.Allow("10.0.0.1"), "a new window")
	require.Equal(t, []string{"95 more from 10.0.0.1 suppressed in last 10s"}, rec.all())

	for range 10 {
		th.Allow("10.0.0.1")
	}
	th.Flush()
	require.Equal(t, "6 more from 10.0.0.1 suppressed in last 10s", rec.all()[1])
}

func TestEveryMalformedGossipPacketLogsItsOwnError(t *testing.T) {
	rec := &records{}
	g, err := StartGossip(GossipConfig{BindAddr: "127.0.0.1:0", Meta: Meta{ID: "n1"}, Logger: slog.New(rec)})
	require.NoError(t, err)
	t.Cleanup(func() { g.Shutdown() })
	conn, err := net.Dial("udp", g.LocalAddr())
	require.NoError(t, err)
	defer conn.Close()
	const packets = 300
	for range packets {
		_, err := conn.Write([]byte{200, 1, 2, 3})
		require.NoError(t, err)
	}
	// Wait until memberlist has seen (nearly) all of them: logged or counted as suppressed.
	require.Eventually(t, func() bool {
		g.throttle.mu.Lock()
		defer g.throttle.mu.Unlock()
		w := g.throttle.sources["127.0.0.1"]
		return w != nil && w.lines >= packets*9/10
	}, 10*time.Second, 10*time.Millisecond)
	var errs []string
	for _, m := range rec.all() {
		if strings.Contains(m, "not supported") || strings.Contains(m, "127.0.0.1") {
			errs = append(errs, m)
		}
	}
	require.LessOrEqual(t, len(errs), throttleBurst, "lines: %v", errs)
	g.Shutdown()
	require.Contains(t, strings.Join(rec.all(), "\n"), "more from 127.0.0.1 suppressed in last 10s")
}

func TestEveryMalformedNodePortConnectionLogsItsOwnWarning(t *testing.T) {
	rec := &records{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := newMux(ln, ln.Addr(), DefaultMaxInboundConns, nil, slog.New(rec))
	t.Cleanup(func() { m.Close() })
	const conns = 50
	for range conns {
		c, err := net.Dial("tcp", m.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte{'X'})
		require.NoError(t, err)
		c.Close()
	}
	require.Eventually(t, func() bool {
		m.throttle.mu.Lock()
		defer m.throttle.mu.Unlock()
		w := m.throttle.sources["127.0.0.1"]
		return w != nil && w.lines == conns
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, rec.all(), throttleBurst)
	m.Close()
	require.Contains(t, rec.all(), "45 more from 127.0.0.1 suppressed in last 10s")
}
