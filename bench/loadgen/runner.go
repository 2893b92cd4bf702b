package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Op is the kind of workload.
type Op string

const (
	OpPut   Op = "put"   // every operation writes a key
	OpGet   Op = "get"   // every operation reads a key (the keys are written first)
	OpMixed Op = "mixed" // reads with probability ReadRatio, writes otherwise (keys written first)
)

// Defaults of the Config fields left zero.
const (
	DefaultKeys      = 1000
	DefaultValueSize = 100
	DefaultKeyPrefix = "bench/"
	// errorPause is how long a worker waits after a failed operation, so that a node that refuses
	// connections at once does not turn the workers into a busy loop that starves the healthy nodes.
	errorPause = 10 * time.Millisecond
	// precomputeKeys bounds the key names made up front (so the hot loop does not format them);
	// larger key spaces format each name as it is used.
	precomputeKeys = 1 << 20
	populateTries  = 3
)

// Config is one run. NewTarget, Op, Concurrency and Duration are required; the rest have defaults.
type Config struct {
	Op          Op
	ReadRatio   float64 // OpMixed: the fraction of operations that are reads, in [0, 1]
	Concurrency int     // workers, each with one operation in flight
	Duration    time.Duration
	Warmup      time.Duration // before the measurement; operations run but are not counted

	Keys      int    // key-space size (default 1000); keys are KeyPrefix + a zero-padded index
	KeyPrefix string // default "bench/"
	ValueSize int    // bytes per value (default 100; -1 for empty values)
	// SequentialKeys makes writes go to keys 0, 1, 2 ... in order, each exactly once across all workers
	// (OpPut only); the run ends when every key is written or Duration has passed, whichever is first.
	SequentialKeys bool
	// SkipPopulate skips writing every key before a get or mixed run (when they exist already).
	SkipPopulate bool
	Seed         uint64 // seeds the key and op choices; runs with the same seed choose the same sequence

	NewTarget TargetFactory
	// Progress, when set, gets one line per second: phase, throughput and mean latency of the last second,
	// errors so far.
	Progress io.Writer
	// OnMeasure, when set, is called as the measurement window opens (begin true) and as it closes, from
	// the goroutine that times the run: for sampling what the window cost (CPU time of the servers, say).
	OnMeasure func(begin bool)
}

// Validate reports the first problem with c, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.NewTarget == nil:
		return errors.New("no target")
	case c.Op != OpPut && c.Op != OpGet && c.Op != OpMixed:
		return fmt.Errorf("unknown op %q (want put, get or mixed)", c.Op)
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return fmt.Errorf("read ratio %g is not in [0, 1]", c.ReadRatio)
	case c.Concurrency < 1:
		return errors.New("concurrency must be at least 1")
	case c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.Warmup < 0:
		return errors.New("warmup must not be negative")
	case c.Keys < 1:
		return errors.New("keys must be at least 1")
	case c.ValueSize < 0:
		return errors.New("value size must not be negative")
	case c.SequentialKeys && c.Op != OpPut:
		return errors.New("sequential keys are for put workloads only")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	switch c.ValueSize {
	case 0:
		c.ValueSize = DefaultValueSize
	case -1:
		c.ValueSize = 0
	}
	return c
}

// Run phases, in order. A completed operation is counted when the phase at its completion is measuring.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// worker is one closed-loop client. The counters are read by the progress printer while the worker runs;
// everything else belongs to the worker's goroutine until Run collects it.
type worker struct {
	ops, errs, latNanos atomic.Uint64 // progress counters, measured or not
	target              Target
	rng                 *rand.Rand
	value               []byte
	getHist, putHist    *Histogram
	errKinds            map[string]uint64
	keyBuf              []byte
	_                   [64]byte // keep neighbouring workers' counters off this cache line
}

// Run runs the workload and returns its result. Cancelling ctx ends the run early: the result then
// covers the measured time so far and has Interrupted set. An error means the run could not start
// (bad config, a target that could not be made, keys that could not be written first).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	cfg = cfg.withDefaults()
	r := &runner{cfg: cfg, width: len(strconv.Itoa(cfg.Keys - 1))}
	if cfg.Keys <= precomputeKeys {
		r.keys = make([]string, cfg.Keys)
		for i := range r.keys {
			r.keys[i] = string(r.appendKey(nil, i))
		}
	}
	r.workers = make([]*worker, cfg.Concurrency)
	for i := range r.workers {
		t, err := cfg.NewTarget(i)
		if err != nil {
			return nil, fmt.Errorf("loadgen: target of worker %d: %w", i, err)
		}
		value := make([]byte, cfg.ValueSize)
		for j := range value {
			value[j] = 'a' + byte((i+j)%26)
		}
		r.workers[i] = &worker{
			target:  t,
			rng:     rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			value:   value,
			getHist: NewHistogram(),
			putHist: NewHistogram(),
		}
	}
	if cfg.Op != OpPut && !cfg.SkipPopulate {
		if err := r.populate(ctx); err != nil {
			return nil, fmt.Errorf("loadgen: writing the %d keys before reading: %w", cfg.Keys, err)
		}
	}
	return r.run(ctx), nil
}

type runner struct {
	cfg     Config
	width   int      // digits of the key index
	keys    []string // precomputed key names, or nil
	workers []*worker
	phase   atomic.Int32
	nextKey atomic.Int64 // SequentialKeys and populate: the next key index to write
}

// appendKey appends the name of key i: prefix + index zero-padded to the width of the largest index.
func (r *runner) appendKey(b []byte, i int) []byte {
	b = append(b, r.cfg.KeyPrefix...)
	var num [20]byte
	digits := strconv.AppendInt(num[:0], int64(i), 10)
	for range r.width - len(digits) {
		b = append(b, '0')
	}
	return append(b, digits...)
}

func (r *runner) key(w *worker, i int) string {
	if r.keys != nil {
		return r.keys[i]
	}
	w.keyBuf = r.appendKey(w.keyBuf[:0], i)
	return string(w.keyBuf)
}

// populate writes every key once, with all workers, retrying each a few times.
func (r *runner) populate(ctx context.Context) error {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "writing %d keys first...\n", r.cfg.Keys)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	r.nextKey.Store(0)
	for _, w := range r.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(r.nextKey.Add(1) - 1)
				if i >= r.cfg.Keys {
					return
				}
				var err error
				for range populateTries {
					if err = w.target.Put(ctx, r.key(w, i), w.value); err == nil {
						break
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("key %s: %w (%s)", r.key(w, i), err, ErrorKind(err))
					}
					mu.Unlock()
					r.nextKey.Store(int64(r.cfg.Keys)) // stop everyone
					return
				}
			}
		})
	}
	wg.Wait()
	r.nextKey.Store(0)
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (r *runner) run(parent context.Context) *Result {
	// The workers' context is cancelled by the controller only, after it has ended the measurement: were it
	// the caller's, an interruption would fail the operations in flight before the window closed.
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	var start time.Time
	begin := func() {
		if r.cfg.OnMeasure != nil {
			r.cfg.OnMeasure(true)
		}
		start = time.Now()
		r.phase.Store(phaseMeasure)
	}
	if r.cfg.Warmup == 0 { // measure from the very first operation
		begin()
	}
	var wg sync.WaitGroup
	allDone := make(chan struct{})
	for _, w := range r.workers {
		wg.Go(func() { r.work(ctx, w) })
	}
	go func() {
		wg.Wait()
		close(allDone)
	}()
	stopProgress := r.startProgress()

	// The controller: warmup, then the measurement window, ended by the clock, by every worker having
	// finished (sequential keys all written), or by the caller.
	interrupted := false
	wait := func(d time.Duration) bool { // false when the run must end now
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-allDone:
			return false
		case <-parent.Done():
			interrupted = true
			return false
		}
	}
	if r.cfg.Warmup > 0 && wait(r.cfg.Warmup) {
		begin()
	}
	if !start.IsZero() {
		wait(r.cfg.Duration)
	}
	// Done before cancel: an operation that fails because of the cancel finds the phase done and is not
	// counted.
	r.phase.Store(phaseDone)
	end := time.Now()
	if !start.IsZero() && r.cfg.OnMeasure != nil {
		r.cfg.OnMeasure(false)
	}
	cancel()
	<-allDone
	stopProgress()

	res := r.result()
	if !start.IsZero() {
		res.Elapsed = end.Sub(start)
	}
	res.Interrupted = interrupted
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Ops) / res.Elapsed.Seconds()
	}
	return res
}

// work is one worker's closed loop.
func (r *runner) work(ctx context.Context, w *worker) {
	cfg := &r.cfg
	for ctx.Err() == nil {
		isGet := cfg.Op == OpGet || (cfg.Op == OpMixed && w.rng.Float64() < cfg.ReadRatio)
		var idx int
		if cfg.SequentialKeys {
			idx = int(r.nextKey.Add(1) - 1)
			if idx >= cfg.Keys {
				return
			}
		} else {
			idx = w.rng.IntN(cfg.Keys)
		}
		key := r.key(w, idx)

		start := time.Now()
		var err error
		if isGet {
			err = w.target.Get(ctx, key)
		} else {
			err = w.target.Put(ctx, key, w.value)
		}
		lat := time.Since(start)

		w.latNanos.Add(uint64(lat))
		if err != nil {
			w.errs.Add(1)
		} else {
			w.ops.Add(1)
		}
		if r.phase.Load() != phaseMeasure {
			if err != nil && ctx.Err() == nil {
				pause(ctx, errorPause)
			}
			continue
		}
		switch {
		case err != nil:
			if w.errKinds == nil {
				w.errKinds = map[string]uint64{}
			}
			w.errKinds[ErrorKind(err)]++
			pause(ctx, errorPause)
		case isGet:
			w.getHist.Record(lat)
		default:
			w.putHist.Record(lat)
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// result merges the workers' histograms and error counts. Call only after every worker has returned.
func (r *runner) result() *Result {
	gets, puts := NewHistogram(), NewHistogram()
	res := &Result{
		Op:             r.cfg.Op,
		ReadRatio:      r.cfg.ReadRatio,
		Concurrency:    r.cfg.Concurrency,
		Keys:           r.cfg.Keys,
		ValueSize:      r.cfg.ValueSize,
		SequentialKeys: r.cfg.SequentialKeys,
		Warmup:         r.cfg.Warmup,
		ErrorKinds:     map[string]uint64{},
	}
	if r.cfg.Op != OpMixed {
		res.ReadRatio = 0
	}
	for _, w := range r.workers {
		gets.Merge(w.getHist)
		puts.Merge(w.putHist)
		for k, n := range w.errKinds {
			res.ErrorKinds[k] += n
			res.Errors += n
		}
	}
	all := NewHistogram()
	all.Merge(gets)
	all.Merge(puts)
	res.Ops = all.Count()
	res.Latency = summarize(all)
	if r.cfg.Op == OpMixed {
		g, p := summarize(gets), summarize(puts)
		res.GetLatency, res.PutLatency = &g, &p
	}
	return res
}

// startProgress prints a line per second to cfg.Progress until the returned stop is called.
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		begin := time.Now()
		var lastOps, lastErrs, lastLat uint64
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				var ops, errs, lat uint64
				for _, w := range r.workers {
					ops += w.ops.Load()
					errs += w.errs.Load()
					lat += w.latNanos.Load()
				}
				dOps, dErrs, dLat := ops-lastOps, errs-lastErrs, lat-lastLat
				lastOps, lastErrs, lastLat = ops, errs, lat
				phase := "measure"
				switch r.phase.Load() {
				case phaseWarmup:
					phase = "warmup"
				case phaseDone:
					phase = "stopping"
				}
				mean := time.Duration(0)
				if dOps+dErrs > 0 {
					mean = time.Duration(dLat / (dOps + dErrs))
				}
				line := fmt.Sprintf("%5.0fs %-8s %9.0f ops/s  mean %-8s errors %d",
					now.Sub(begin).Seconds(), phase, float64(dOps), FormatDuration(mean), errs)
				if dErrs > 0 {
					line += fmt.Sprintf(" (+%d)", dErrs)
				}
				if r.cfg.SequentialKeys {
					line += fmt.Sprintf("  written %d/%d", min(int(r.nextKey.Load()), r.cfg.Keys), r.cfg.Keys)
				}
				fmt.Fprintln(r.cfg.Progress, line)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
