package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// memTarget is a shared in-memory store; node tags which node a worker's target stands for.
type memTarget struct {
	s    *memStore
	node int
}

type memStore struct {
	mu      sync.Mutex
	kv      map[string][]byte
	puts    map[string]int // writes per key
	gets    atomic.Int64
	perNode [4]atomic.Int64
	delay   time.Duration
	failGet func(key string) error
}

func newMemStore() *memStore { return &memStore{kv: map[string][]byte{}, puts: map[string]int{}} }

func (t *memTarget) Put(ctx context.Context, key string, value []byte) error {
	t.s.perNode[t.node].Add(1)
	if t.s.delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t.s.delay):
		}
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.kv[key] = bytes.Clone(value)
	t.s.puts[key]++
	return nil
}

func (t *memTarget) Get(ctx context.Context, key string) error {
	t.s.perNode[t.node].Add(1)
	t.s.gets.Add(1)
	if t.s.failGet != nil {
		if err := t.s.failGet(key); err != nil {
			return err
		}
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if _, ok := t.s.kv[key]; !ok {
		return kindErr("404 key_not_found")
	}
	return nil
}

type kindErr string

func (k kindErr) Error() string { return string(k) }
func (k kindErr) Kind() string  { return string(k) }

func memFactory(s *memStore) TargetFactory {
	return func(int) (Target, error) { return &memTarget{s: s}, nil }
}

func TestRunPutCountsAndLatency(t *testing.T) {
	s := newMemStore()
	s.delay = time.Millisecond
	var window []time.Time
	res, err := Run(context.Background(), Config{Op: OpPut, Concurrency: 4, Duration: 300 * time.Millisecond,
		Warmup: 50 * time.Millisecond, Keys: 50, NewTarget: memFactory(s),
		OnMeasure: func(begin bool) { window = append(window, time.Now()) }})
	require.NoError(t, err)
	require.Len(t, window, 2)
	require.InDelta(t, res.Elapsed.Seconds(), window[1].Sub(window[0]).Seconds(), 0.01)
	require.False(t, res.Interrupted)
	// The window is the duration, give or take a late timer on a busy machine.
	require.GreaterOrEqual(t, res.Elapsed, 300*time.Millisecond)
	require.Less(t, res.Elapsed, 3*time.Second)
	require.Positive(t, res.Ops)
	require.Zero(t, res.Errors)
	require.Equal(t, res.Ops, res.Latency.Count)
	require.InDelta(t, float64(res.Ops)/res.Elapsed.Seconds(), res.Throughput, 1e-6)
	require.GreaterOrEqual(t, res.Latency.P50, time.Millisecond)
	require.LessOrEqual(t, res.Latency.P50, res.Latency.P99)
	require.LessOrEqual(t, res.Latency.P99, res.Latency.Max)
	require.Nil(t, res.GetLatency)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.kv {
		require.True(t, strings.HasPrefix(k, "bench/"), k)
		require.Len(t, k, len("bench/")+2) // 50 keys: indexes 00..49
		require.Len(t, v, DefaultValueSize)
	}
}

func TestRunGetPopulatesFirst(t *testing.T) {
	s := newMemStore()
	res, err := Run(context.Background(), Config{Op: OpGet, Concurrency: 8, Duration: 100 * time.Millisecond,
		Keys: 300, ValueSize: 7, NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.Zero(t, res.Errors, "every key was written before the reads: %v", res.ErrorKinds)
	require.Positive(t, res.Ops)
	s.mu.Lock()
	require.Len(t, s.kv, 300)
	for _, n := range s.puts {
		require.Equal(t, 1, n)
	}
	s.mu.Unlock()

	// Without populating, reads of missing keys are errors, by kind.
	s2 := newMemStore()
	res, err = Run(context.Background(), Config{Op: OpGet, Concurrency: 2, Duration: 50 * time.Millisecond,
		Keys: 10, SkipPopulate: true, NewTarget: memFactory(s2)})
	require.NoError(t, err)
	require.Zero(t, res.Ops)
	require.Positive(t, res.Errors)
	require.Equal(t, map[string]uint64{"404 key_not_found": res.Errors}, res.ErrorKinds)
}

func TestRunMixedRatio(t *testing.T) {
	s := newMemStore()
	res, err := Run(context.Background(), Config{Op: OpMixed, ReadRatio: 0.9, Concurrency: 4,
		Duration: 200 * time.Millisecond, Keys: 100, NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.NotNil(t, res.GetLatency)
	require.NotNil(t, res.PutLatency)
	require.Equal(t, res.Ops, res.GetLatency.Count+res.PutLatency.Count)
	require.Greater(t, res.Ops, uint64(300))
	ratio := float64(res.GetLatency.Count) / float64(res.Ops)
	require.InDelta(t, 0.9, ratio, 0.06, "gets %d of %d", res.GetLatency.Count, res.Ops) // > 3 sd at 300 ops
}

func TestRunSequentialKeysWritesEachKeyOnce(t *testing.T) {
	s := newMemStore()
	res, err := Run(context.Background(), Config{Op: OpPut, Concurrency: 16, Duration: time.Minute,
		Keys: 5000, SequentialKeys: true, NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.Less(t, res.Elapsed, 30*time.Second, "the run ends when every key is written")
	require.Equal(t, uint64(5000), res.Ops)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.puts, 5000)
	for k, n := range s.puts {
		require.Equal(t, 1, n, k)
	}
	require.Contains(t, s.puts, "bench/0000")
	require.Contains(t, s.puts, "bench/4999")
}

func TestRunErrorKinds(t *testing.T) {
	s := newMemStore()
	var n atomic.Int64
	s.failGet = func(string) error {
		switch n.Add(1) % 4 {
		case 0:
			return kindErr("HTTP 503 no_leader")
		case 1:
			return &wrapped{syscall.ECONNREFUSED}
		}
		return nil
	}
	res, err := Run(context.Background(), Config{Op: OpGet, Concurrency: 2, Duration: 150 * time.Millisecond,
		Keys: 10, NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.Positive(t, res.Errors)
	require.Positive(t, res.ErrorKinds["HTTP 503 no_leader"])
	require.Positive(t, res.ErrorKinds["transport: connection refused"])
	require.Len(t, res.ErrorKinds, 2)
	var text bytes.Buffer
	require.NoError(t, res.WriteText(&text))
	require.Contains(t, text.String(), "transport: connection refused ×")
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "dial tcp 127.0.0.1:1: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func TestRunInterrupted(t *testing.T) {
	s := newMemStore()
	s.delay = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, Config{Op: OpPut, Concurrency: 2, Duration: time.Hour, Warmup: 50 * time.Millisecond,
		NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.True(t, res.Interrupted)
	require.Greater(t, res.Elapsed, 100*time.Millisecond) // cancelled 200 ms in, 50 ms of it warmup
	require.Less(t, res.Elapsed, 3*time.Second)
	require.Positive(t, res.Ops)
	require.Zero(t, res.Errors, "operations cut off by the end are not errors: %v", res.ErrorKinds)

	// Interrupted during the warmup: nothing measured.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	res, err = Run(ctx, Config{Op: OpPut, Concurrency: 2, Duration: time.Hour, Warmup: time.Hour, NewTarget: memFactory(s)})
	require.NoError(t, err)
	require.True(t, res.Interrupted)
	require.Zero(t, res.Elapsed)
	require.Zero(t, res.Ops)
	require.Zero(t, res.Throughput)
}

func TestPlace(t *testing.T) {
	s := newMemStore()
	node := func(i int) (Target, error) { return &memTarget{s: s, node: i}, nil }

	pin, err := Place(Pin, 3, node)
	require.NoError(t, err)
	for w := range 6 {
		tg, err := pin(w)
		require.NoError(t, err)
		require.Equal(t, w%3, tg.(*memTarget).node)
	}

	spread, err := Place(Spread, 3, node)
	require.NoError(t, err)
	tg, err := spread(4) // starts at node 1
	require.NoError(t, err)
	for range 6 {
		require.NoError(t, tg.Put(context.Background(), "k", nil))
	}
	require.Equal(t, int64(2), s.perNode[0].Load())
	require.Equal(t, int64(2), s.perNode[1].Load())
	require.Equal(t, int64(2), s.perNode[2].Load())

	_, err = Place("sideways", 3, node)
	require.Error(t, err)
	_, err = Place(Spread, 0, node)
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	f := memFactory(newMemStore())
	ok := Config{Op: OpPut, Concurrency: 1, Duration: time.Second, NewTarget: f}
	require.NoError(t, ok.Validate())
	for name, mut := range map[string]func(c *Config){
		"no target":      func(c *Config) { c.NewTarget = nil },
		"bad op":         func(c *Config) { c.Op = "scan" },
		"ratio":          func(c *Config) { c.Op, c.ReadRatio = OpMixed, 1.5 },
		"concurrency":    func(c *Config) { c.Concurrency = 0 },
		"duration":       func(c *Config) { c.Duration = 0 },
		"warmup":         func(c *Config) { c.Warmup = -1 },
		"keys":           func(c *Config) { c.Keys = -3 },
		"value":          func(c *Config) { c.ValueSize = -2 },
		"sequential get": func(c *Config) { c.Op, c.SequentialKeys = OpGet, true },
	} {
		c := ok
		mut(&c)
		require.Error(t, c.Validate(), name)
		_, err := Run(context.Background(), c)
		require.Error(t, err, name)
	}
}

func TestProgressLines(t *testing.T) {
	s := newMemStore()
	s.delay = time.Millisecond
	var buf syncBuffer
	_, err := Run(context.Background(), Config{Op: OpGet, Concurrency: 2, Duration: 1200 * time.Millisecond,
		Warmup: 1500 * time.Millisecond, Keys: 10, NewTarget: memFactory(s), Progress: &buf})
	require.NoError(t, err)
	out := buf.String()
	require.Contains(t, out, "writing 10 keys first")
	require.Contains(t, out, "warmup")
	require.Contains(t, out, "measure")
	require.Contains(t, out, "ops/s")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestResultRendering(t *testing.T) {
	res := &Result{Target: "raftkv", Consistency: "stale", Nodes: 3, Placement: Spread, Op: OpMixed, ReadRatio: 0.9,
		Concurrency: 64, Keys: 1000, ValueSize: 100, Warmup: time.Second, Elapsed: 10 * time.Second, Ops: 12345,
		Throughput: 1234.5, Latency: Latency{Count: 12345, P50: 1210 * time.Microsecond, P90: 2 * time.Millisecond,
			P99: 5 * time.Millisecond, P999: 12 * time.Millisecond, Max: 40 * time.Millisecond, Mean: 1300 * time.Microsecond},
		GetLatency: &Latency{Count: 11000}, PutLatency: &Latency{Count: 1345},
		Errors: 3, ErrorKinds: map[string]uint64{"HTTP 503 no_leader": 2, "transport: timeout": 1}}
	var text bytes.Buffer
	require.NoError(t, res.WriteText(&text))
	out := text.String()
	require.Contains(t, out, "raftkv: mixed 90% get (stale), 64 workers spread over 3 nodes, 100 B values, 1000 keys")
	require.Contains(t, out, "1234 ops/s (12345 ops)") // %.0f rounds half to even
	require.Contains(t, out, "p50 1.21ms  p90 2.00ms  p99 5.00ms  p99.9 12.0ms  max 40.0ms")
	require.Contains(t, out, "errors      3: HTTP 503 no_leader ×2, transport: timeout ×1")

	var js bytes.Buffer
	require.NoError(t, res.WriteJSON(&js))
	require.Equal(t, 1, strings.Count(js.String(), "\n"))
	var back map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, "raftkv", back["target"])
	require.Equal(t, "mixed", back["op"])
	require.Equal(t, 0.9, back["read_ratio"])
	require.Equal(t, 1234.5, back["ops_per_sec"])
	require.Equal(t, 1210.0, back["latency_us"].(map[string]any)["p50"])
	require.Equal(t, 12000.0, back["latency_us"].(map[string]any)["p99_9"])
	require.Contains(t, back, "get_latency_us")
	require.Equal(t, 2.0, back["error_kinds"].(map[string]any)["HTTP 503 no_leader"])
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		512:                      "512ns",
		812 * time.Microsecond:   "812µs",
		1213 * time.Microsecond:  "1.21ms",
		12345 * time.Microsecond: "12.3ms",
		1050 * time.Millisecond:  "1.05s",
		5 * time.Microsecond:     "5.00µs",
	} {
		require.Equal(t, want, FormatDuration(d), "%d", d)
	}
}

func TestTransportKind(t *testing.T) {
	require.Equal(t, "canceled", TransportKind(context.Canceled))
	require.Equal(t, "transport: timeout", TransportKind(context.DeadlineExceeded))
	require.Equal(t, "transport: connection reset", TransportKind(&wrapped{syscall.ECONNRESET}))
	require.Equal(t, "error: *errors.errorString", TransportKind(errors.New("something at 127.0.0.1:1234")))
	require.Equal(t, "x", ErrorKind(&wrapped{kindErr("x")}))
}
