package main

// bench.go: `raftkv bench`, a load generator against any raftkv cluster. The closed-loop runner, the
// histogram and the result rendering are bench/loadgen's (shared with the etcd comparison in bench/etcd);
// the requests are bench/httptarget's. This file is flags and output only.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/raftkv/raftkv/bench/httptarget"
	"github.com/raftkv/raftkv/bench/loadgen"
)

const benchDescription = `
Generate load against a raftkv cluster and report throughput, latency percentiles (p50 p90 p99 p99.9
max, from a log-linear histogram accurate to 1%) and errors by kind (HTTP status and code, or transport
failure). Each of --concurrency workers keeps one request in flight: it sends, waits for the answer,
sends the next. Nothing is retried. Reads (get, mixed) first write every key of the key space once.

With --spread (the default) every worker sends its requests to the --addr nodes in turn; with --pin
worker i sends all of its requests to node i mod N. Operations during --warmup run but are not counted.

While it runs, a line per second goes to stderr when stderr is a terminal. At the end the result goes to
stdout, followed by the same as one line of JSON; --json prints only that line.

Examples:
  raftkv bench --addr 127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020 --op put --concurrency 64
  raftkv bench --op get --consistency stale --concurrency 128 --duration 30s
  raftkv bench --op mixed --read-ratio 0.9 --pin --json
  raftkv bench --op put --sequential-keys --keys 1000000 --concurrency 128 --warmup 0 --duration 30m`

// benchFlags are `raftkv bench`'s flags.
type benchFlags struct {
	addr        string
	spread, pin bool
	op          string
	readRatio   float64
	consistency string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	valueSize   int
	keys        int
	keyPrefix   string
	sequential  bool
	timeout     time.Duration
	json        bool
	idemKeys    bool
}

func runBench(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", "bench [flags]", benchDescription)
	var f benchFlags
	def := os.Getenv("RAFTKV_ADDR")
	if def == "" {
		def = defaultAddr
	}
	fs.StringVar(&f.addr, "addr", def, "nodes to load, as `host:port[,host:port...]` (env RAFTKV_ADDR)")
	fs.BoolVar(&f.spread, "spread", true, "send each worker's requests to every node in turn")
	fs.BoolVar(&f.pin, "pin", false, "pin worker i to node i mod N instead of --spread")
	fs.StringVar(&f.op, "op", "put", "the `workload`: put, get or mixed")
	fs.Float64Var(&f.readRatio, "read-ratio", 0.9, "mixed: the `fraction` of operations that are gets")
	fs.StringVar(&f.consistency, "consistency", "linearizable", "reads' `mode`: linearizable or stale")
	fs.BoolVar(&f.idemKeys, "idempotency-keys", false, "give every put its own Idempotency-Key (exactly-once writes, as the Go client sends them)")
	fs.IntVar(&f.concurrency, "concurrency", 16, "workers, each with one request in flight (`N`)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "measured `time` (after the warmup)")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured `time` before the measurement")
	fs.IntVar(&f.valueSize, "value-size", loadgen.DefaultValueSize, "value size in `bytes`")
	fs.IntVar(&f.keys, "keys", loadgen.DefaultKeys, "key-space size (`N`): keys are <key-prefix><index>")
	fs.StringVar(&f.keyPrefix, "key-prefix", loadgen.DefaultKeyPrefix, "`prefix` of every key written or read")
	fs.BoolVar(&f.sequential, "sequential-keys", false,
		"put: write keys 0..N-1 once each, in order, then stop (or at --duration)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "longest wait for one answer before counting a timeout")
	fs.BoolVar(&f.json, "json", false, "print only the one-line JSON result on stdout")
	pos, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "bench takes no arguments")
	}
	cfg, err := f.config(fs)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	addrs := splitAddrs(f.addr)
	hc, err := httptarget.New(httptarget.Config{Addrs: addrs, Stale: f.consistency == "stale", IdempotencyKeys: f.idemKeys,
		Timeout: f.timeout})
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer hc.Close()
	placement := loadgen.Spread
	if f.pin {
		placement = loadgen.Pin
	}
	if cfg.NewTarget, err = hc.Factory(placement); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if isTerminal(stderr) {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "raftkv bench: %s for %s (+%s warmup), %d workers %s over %d nodes; Ctrl-C stops early\n",
			f.op, f.duration, f.warmup, f.concurrency, placement, len(addrs))
	}

	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return fail(stderr, fmt.Errorf("bench: %w", err))
	}
	res.Target, res.Nodes, res.Placement = "raftkv", len(addrs), placement
	if cfg.Op != loadgen.OpPut {
		res.Consistency = f.consistency
	}
	if !f.json {
		if err := res.WriteText(stdout); err != nil {
			return fail(stderr, err)
		}
	}
	if err := res.WriteJSON(stdout); err != nil {
		return fail(stderr, err)
	}
	if res.Ops == 0 {
		fmt.Fprintf(stderr, "raftkv: bench: no operation succeeded\n")
		return exitUnavailable
	}
	return exitOK
}

// config turns the flags into a loadgen.Config (without its target); its errors name the flags.
func (f *benchFlags) config(fs *flag.FlagSet) (loadgen.Config, error) {
	explicit := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { explicit[fl.Name] = true })
	op := loadgen.Op(f.op)
	var err error
	switch {
	case f.pin && explicit["spread"] && f.spread:
		err = errors.New("--spread and --pin exclude each other")
	case !f.pin && !f.spread:
		err = errors.New("--spread=false needs --pin")
	case op != loadgen.OpPut && op != loadgen.OpGet && op != loadgen.OpMixed:
		err = fmt.Errorf("--op %q: want put, get or mixed", f.op)
	case f.readRatio < 0 || f.readRatio > 1:
		err = fmt.Errorf("--read-ratio %g is not in [0, 1]", f.readRatio)
	case explicit["read-ratio"] && op != loadgen.OpMixed:
		err = errors.New("--read-ratio is for --op mixed")
	case f.consistency != "linearizable" && f.consistency != "stale":
		err = fmt.Errorf("--consistency %q: want linearizable or stale", f.consistency)
	case f.concurrency < 1:
		err = errors.New("--concurrency must be at least 1")
	case f.duration <= 0:
		err = errors.New("--duration must be positive")
	case f.warmup < 0:
		err = errors.New("--warmup must not be negative")
	case f.valueSize < 0:
		err = errors.New("--value-size must not be negative")
	case f.keys < 1:
		err = errors.New("--keys must be at least 1")
	case f.keyPrefix == "":
		err = errors.New("--key-prefix must not be empty")
	case f.sequential && op != loadgen.OpPut:
		err = errors.New("--sequential-keys is for --op put")
	case f.timeout <= 0:
		err = errors.New("--timeout must be positive")
	}
	if err == nil {
		_, err = f.addrsChecked()
	}
	if err != nil {
		return loadgen.Config{}, err
	}
	valueSize := f.valueSize
	if valueSize == 0 {
		valueSize = -1 // loadgen: 0 is "default", -1 is "empty"
	}
	return loadgen.Config{
		Op:             op,
		ReadRatio:      f.readRatio,
		Concurrency:    f.concurrency,
		Duration:       f.duration,
		Warmup:         f.warmup,
		Keys:           f.keys,
		KeyPrefix:      f.keyPrefix,
		ValueSize:      valueSize,
		SequentialKeys: f.sequential,
	}, nil
}

func (f *benchFlags) addrsChecked() ([]string, error) {
	addrs := splitAddrs(f.addr)
	if len(addrs) == 0 {
		return nil, errors.New("--addr is empty")
	}
	for _, a := range addrs {
		if _, err := normalizeAddr(a); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// isTerminal reports whether w is a character device (a terminal), without a dependency: good enough to
// decide whether progress lines would be seen by a person or pollute a log.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
