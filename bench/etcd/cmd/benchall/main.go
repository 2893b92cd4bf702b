// Command benchall is what `make bench` runs: the same workloads, with the same load generator
// (bench/loadgen), against a fresh 3-node raftkv cluster, a fresh 3-member etcd cluster and three bare
// net/http "ceiling" servers, one system after the other on this machine's loopback, and a table of
// the results with the ratio raftkv/etcd and raftkv's share of the ceiling per row. It also measures the
// machine's floors (fsync and loopback round trip) first. `benchall memory` is `make bench-memory`:
// 1 M keys into a raftkv cluster, then each node's resident memory.
//
// It lives in the bench/etcd module, not the main one, so that raftkv never depends on etcd. It owns
// every process and temp dir it starts and removes them at the end and on Ctrl-C (a second Ctrl-C
// kills it at once; the kernel then kills the children, but the temp dir stays).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "member":
			os.Exit(runMember(os.Args[2:]))
		case "ceiling":
			os.Exit(runCeiling(os.Args[2:]))
		case "memory":
			os.Exit(runMemory(os.Args[2:]))
		}
	}
	os.Exit(runCompare(os.Args[1:]))
}

const usage = `Usage: benchall [flags]           compare raftkv, etcd and the ceiling (make bench)
       benchall memory [flags]    load 1 M keys into raftkv and report each node's RSS (make bench-memory)

BENCH_QUICK=1 (or --quick) runs each row for 2 s instead of 5 s: a smoke run.

The systems take turns: each round starts raftkv, runs every row, stops it, then etcd, then the
ceiling. With --rounds R > 1 each row's number is the median of its R runs, so a burst of other work
on a shared machine moves one run, not the ratio.
`

// workload is one row of the table.
type workload struct {
	label       string
	op          loadgen.Op
	concurrency int
	stale       bool    // reads: raftkv ?consistency=stale, etcd serializable
	readRatio   float64 // mixed
	// nethttp drives raftkv and the ceiling through Go's ordinary net/http client instead of
	// httptarget's lean one (etcd keeps clientv3, its ordinary client): a ratio must hold with it too.
	nethttp bool
	// txn: each put is a transaction comparing the key's mod_index, then putting two keys (raftkv
	// POST /v1/txn over net/http, etcd Txn); the ceiling has none and skips the row.
	txn bool
	// client: the row's client for raftkv and the ceiling (clientrows.go); etcd runs its ordinary one.
	client string
	// scrape: every node's /metrics is fetched once a second while the row runs (scrape.go); the
	// ceiling has no metrics and skips the row.
	scrape bool
	// tls: the row runs against each system's TLS cluster (tlsrows.go), not the plain one.
	tls bool
}

var workloads = []workload{
	{label: "put", op: loadgen.OpPut, concurrency: 1},
	{label: "put", op: loadgen.OpPut, concurrency: 16},
	{label: "put", op: loadgen.OpPut, concurrency: 128},
	{label: "get linearizable", op: loadgen.OpGet, concurrency: 16},
	{label: "get linearizable", op: loadgen.OpGet, concurrency: 128},
	{label: "get stale", op: loadgen.OpGet, concurrency: 128, stale: true},
	{label: "mixed 90% get", op: loadgen.OpMixed, concurrency: 64, readRatio: 0.9},
	{label: "put (net/http client)", op: loadgen.OpPut, concurrency: 128, nethttp: true},
	{label: "get linearizable (net/http client)", op: loadgen.OpGet, concurrency: 128, nethttp: true},
	{label: "txn compare + 2 puts", op: loadgen.OpPut, concurrency: 128, txn: true},
	{label: "put (/metrics scraped 1/s)", op: loadgen.OpPut, concurrency: 128, scrape: true},
	{label: "get linearizable (/metrics scraped 1/s)", op: loadgen.OpGet, concurrency: 128, scrape: true},
}

type compareFlags struct {
	raftkv      string
	out         string
	duration    time.Duration
	warmup      time.Duration
	quick       bool
	rounds      int
	only        string
	placement   string
	keys        int
	valueSize   int
	progress    bool
	scenario    scenarioFlags
	noScenarios bool
	rows        *regexp.Regexp
}

func runCompare(args []string) int {
	fs := flag.NewFlagSet("benchall", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage, "\nFlags:\n"); fs.PrintDefaults() }
	var f compareFlags
	quickEnv := os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0"
	fs.StringVar(&f.raftkv, "raftkv", "bin/raftkv", "the raftkv binary")
	fs.StringVar(&f.out, "out", "bench/results", "directory for the Markdown and JSON reports")
	fs.DurationVar(&f.duration, "duration", 0, "measured time per row (default 5s, 2s when quick)")
	fs.DurationVar(&f.warmup, "warmup", 0, "unmeasured warmup per row (default 1s, 500ms when quick)")
	fs.BoolVar(&f.quick, "quick", quickEnv, "a smoke run: short rows (env BENCH_QUICK=1)")
	fs.IntVar(&f.rounds, "rounds", 0, "times every system runs every row, taking turns; rows report the median (default 1)")
	fs.StringVar(&f.only, "only", "raftkv,etcd,ceiling", "the systems to run, comma-separated")
	fs.StringVar(&f.placement, "placement", string(loadgen.Spread), "spread (round-robin per request) or pin (worker i to node i mod 3)")
	fs.IntVar(&f.keys, "keys", loadgen.DefaultKeys, "key-space size")
	fs.IntVar(&f.valueSize, "value-size", loadgen.DefaultValueSize, "value size in bytes")
	fs.BoolVar(&f.progress, "progress", false, "a line per second while a row runs")
	fs.BoolVar(&f.noScenarios, "no-scenarios", false, "skip the large-value, memory and watch fan-out scenarios")
	rows := fs.String("rows", "", "run only the rows whose label (\"put\", \"get linearizable\", ...) matches this regexp; \"^$\" runs none")
	fs.IntVar(&f.scenario.largeWriters, "large-writers", 64, "large values: concurrent large puts (0 skips the large-value and memory rows)")
	fs.IntVar(&f.scenario.smallClients, "small-clients", 8, "large values: concurrent 100 B clients on the followers (half read, half write)")
	fs.IntVar(&f.scenario.fillKeys, "fill-keys", 192, "memory per stored byte: distinct 1 MiB values written before each node's RSS is read "+
		"(enough that the data, not the process's fixed cost, dominates)")
	fs.IntVar(&f.scenario.watchers, "watchers", 200, "watch fan-out: watchers on one prefix, spread over the nodes (0 skips the row)")
	fs.IntVar(&f.scenario.watchRate, "watch-rate", 200, "watch fan-out: puts per second under the watched prefix")
	fs.IntVar(&f.scenario.sessions, "sessions", 10000, "keepalives: sessions (etcd: leases) renewed at TTL/3 beside put c=64")
	fs.DurationVar(&f.scenario.sessionTTL, "session-ttl", 15*time.Second, "keepalives: the sessions' TTL (whole seconds, at least 3s)")
	fs.IntVar(&f.scenario.scaleWatchers, "scale-watchers", 1000, "watch fan-out at scale: watchers on one prefix (0 skips the row)")
	fs.IntVar(&f.scenario.scaleWatchRate, "scale-watch-rate", 1000, "watch fan-out at scale: puts per second in all")
	fs.IntVar(&f.scenario.scaleWatchEvery, "scale-watch-every", 50, "watch fan-out at scale: 1 in this many puts lands under the watched prefix, the others beside it")
	fs.IntVar(&f.scenario.idleWatches, "idle-watches", 10000, "memory of idle watches: watches held open on one node (0 skips the row)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.scenario.sessions < 1 || f.scenario.sessionTTL < 3*time.Second || f.scenario.sessionTTL%time.Second != 0 {
		fmt.Fprintln(os.Stderr, "benchall: --sessions must be at least 1, --session-ttl whole seconds and at least 3s")
		return 2
	}
	if *rows != "" {
		re, err := regexp.Compile(*rows)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchall: --rows: %v\n", err)
			return 2
		}
		f.rows = re
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchall: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return 2
	}
	if f.duration == 0 {
		f.duration = 5 * time.Second
		if f.quick {
			f.duration = 2 * time.Second
		}
	}
	if f.rounds == 0 {
		f.rounds = 1
	}
	sf := f.scenario
	if f.rounds < 0 || sf.largeWriters < 0 || sf.smallClients < 2 || sf.fillKeys < 1 || sf.watchers < 0 || sf.watchRate < 1 ||
		sf.scaleWatchers < 0 || sf.scaleWatchRate < 1 || sf.scaleWatchEvery < 1 || sf.idleWatches < 0 {
		fmt.Fprintln(os.Stderr, "benchall: --fill-keys, --watch-rate, --scale-watch-rate and --scale-watch-every must be at least 1, "+
			"--small-clients at least 2, --large-writers, --watchers, --scale-watchers and --idle-watches at least 0 (0 skips the row)")
		return 2
	}
	if f.rounds < 0 {
		fmt.Fprintf(os.Stderr, "benchall: --rounds %d: want at least 1\n", f.rounds)
		return 2
	}
	if f.warmup == 0 {
		f.warmup = time.Second
		if f.quick {
			f.warmup = 500 * time.Millisecond
		}
	}
	only := map[string]bool{}
	for _, s := range strings.Split(f.only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[s] = true
		}
	}
	for s := range only {
		if !slices.ContainsFunc(systemSpecs, func(sp systemSpec) bool { return sp.name == s }) {
			fmt.Fprintf(os.Stderr, "benchall: --only: unknown system %q (want raftkv, etcd, ceiling)\n", s)
			return 2
		}
	}
	placement := loadgen.Placement(f.placement)
	if placement != loadgen.Spread && placement != loadgen.Pin {
		fmt.Fprintf(os.Stderr, "benchall: --placement %q: want spread or pin\n", f.placement)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { // after the first signal a second one kills at once
		<-ctx.Done()
		stop()
	}()
	defer stop()

	env, cleanup, err := newRunEnv(f.raftkv, only["raftkv"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchall: %v\n", err)
		return 1
	}
	defer cleanup()

	rep := newReport(f, placement)
	if only["raftkv"] {
		rep.Meta.RaftkvVersion = raftkvVersion(f.raftkv)
	}
	fmt.Printf("benchall: %d workloads × %s, %s per row after %s warmup, %d round(s)%s; temp dir %s\n",
		len(workloads), strings.Join(onlyNames(only), ", "), f.duration, f.warmup, f.rounds, quickNote(f.quick), env.root)
	fmt.Println("benchall: this machine is shared: other work running at the same time moves the numbers.")

	fsyncN, rttN := 200, 5000
	if f.quick {
		fsyncN, rttN = 50, 1000
	}
	floors, err := measureFloors(env.root, fsyncN, rttN)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchall: %v\n", err)
		return 1
	}
	rep.Floors = floors
	fmt.Printf("floors: fsync (4 KiB append + fdatasync, %s) p50 %s p99 %s; loopback TCP round trip p50 %s p99 %s\n",
		floors.FsyncFS, loadgen.FormatDuration(floors.fsyncP50), loadgen.FormatDuration(floors.fsyncP99),
		loadgen.FormatDuration(floors.rttP50), loadgen.FormatDuration(floors.rttP99))

	failed := false
	for round := 1; round <= f.rounds && ctx.Err() == nil; round++ {
		if f.rounds > 1 {
			fmt.Printf("\n==== round %d of %d\n", round, f.rounds)
		}
		for _, spec := range systemSpecs {
			if !only[spec.name] || ctx.Err() != nil {
				continue
			}
			if err := runSystem(ctx, env, spec.name, spec.start, f, placement, rep); err != nil {
				fmt.Fprintf(os.Stderr, "benchall: %s: %v\n", spec.name, err)
				rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s (round %d): %v", spec.name, round, err))
				failed = true
			}
			if err := runTLSSystem(ctx, env, spec.name, f, placement, rep); err != nil {
				fmt.Fprintf(os.Stderr, "benchall: %s with TLS: %v\n", spec.name, err)
				rep.Meta.Failures = append(rep.Meta.Failures, fmt.Sprintf("%s with TLS (round %d): %v", spec.name, round, err))
				failed = true
			}
		}
	}
	rep.Meta.Interrupted = ctx.Err() != nil

	fmt.Println()
	rep.writeTable(os.Stdout)
	md, js, err := rep.save(f.out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchall: writing the report: %v\n", err)
		return 1
	}
	fmt.Printf("\nreport: %s\n        %s\n", md, js)
	switch {
	case rep.Meta.Interrupted:
		fmt.Println("benchall: interrupted; the report has the rows that ran")
		return 130
	case failed:
		return 1
	}
	return 0
}

func quickNote(q bool) string {
	if q {
		return " (quick: a smoke run, not numbers to quote)"
	}
	return ""
}

func onlyNames(only map[string]bool) []string {
	var out []string
	for _, s := range systemSpecs {
		if only[s.name] {
			out = append(out, s.name)
		}
	}
	return out
}

// newRunEnv makes the run's temp dir (the nodes' data dirs go under it, so the fsync floor is measured
// on their filesystem) and checks the binaries. cleanup removes the temp dir.
func newRunEnv(raftkvBin string, needRaftkv bool) (*runEnv, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	if needRaftkv {
		abs, err := filepath.Abs(raftkvBin)
		if err != nil {
			return nil, nil, err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, nil, fmt.Errorf("no raftkv binary at %s (run make build first, or pass --raftkv)", raftkvBin)
		}
		raftkvBin = abs
	}
	root, err := os.MkdirTemp("", "raftkv-bench-")
	if err != nil {
		return nil, nil, err
	}
	return &runEnv{self: self, raftkv: raftkvBin, root: root}, func() { _ = os.RemoveAll(root) }, nil
}

func raftkvVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// runSystem starts one system, runs every workload against it and stops it.
func runSystem(ctx context.Context, env *runEnv, name string, start func(context.Context, *runEnv) (system, error),
	f compareFlags, placement loadgen.Placement, rep *report) error {
	fmt.Printf("\n== %s: starting %d nodes\n", name, nodes)
	began := time.Now()
	sys, err := start(ctx, env)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer func() {
		fmt.Printf("== %s: stopping\n", name)
		sys.stop()
	}()
	fmt.Printf("== %s: ready in %s at %s\n", name, time.Since(began).Round(10*time.Millisecond), strings.Join(sys.addrs(), ", "))
	for i, w := range workloads {
		if ctx.Err() != nil {
			return nil
		}
		if w.tls || (f.rows != nil && !f.rows.MatchString(w.label)) {
			continue
		}
		for _, p := range sys.processes() {
			if p.exited() {
				return p.failure()
			}
		}
		row, err := runRow(ctx, sys, w, f, placement)
		if errors.Is(err, errSkip) {
			continue
		}
		if err == nil && row.res.Interrupted {
			fmt.Printf("   %-20s c=%-4d  interrupted (left out of the report)\n", w.label, w.concurrency)
			return nil
		}
		if err != nil {
			fmt.Printf("   %-20s c=%-4d  failed: %v\n", w.label, w.concurrency, err)
			rep.add(i, name, &sysResult{Error: err.Error()})
			continue
		}
		fmt.Printf("   %-20s c=%-4d %8.0f ops/s  p50 %-7s p99 %-7s errors %d\n", w.label, w.concurrency,
			row.res.Throughput, loadgen.FormatDuration(row.res.Latency.P50), loadgen.FormatDuration(row.res.Latency.P99), row.res.Errors)
		rep.add(i, name, row)
	}
	if ctx.Err() == nil {
		rep.ClientPairs = append(rep.ClientPairs, runClientPairs(ctx, sys, f, placement)...)
	}
	if !f.noScenarios && ctx.Err() == nil {
		runScenarios(ctx, sys, f, rep)
	}
	return nil
}

// runRow runs one workload against a running system, sampling the CPU time its processes and this one
// spend during the measurement window.
func runRow(ctx context.Context, sys system, w workload, f compareFlags, placement loadgen.Placement) (*sysResult, error) {
	if w.scrape && sys.name() == "ceiling" {
		return nil, errSkip
	}
	factory, done, err := sys.targets(w, placement)
	if err != nil {
		return nil, err
	}
	defer done()
	cfg := loadgen.Config{
		Op:          w.op,
		ReadRatio:   w.readRatio,
		Concurrency: w.concurrency,
		Duration:    f.duration,
		Warmup:      f.warmup,
		Keys:        f.keys,
		ValueSize:   f.valueSize,
		Seed:        1,
		NewTarget:   factory,
	}
	if f.progress {
		cfg.Progress = os.Stderr
	}
	if cfg.SkipPopulate, err = sys.prepare(ctx, w, cfg); err != nil {
		return nil, err
	}
	var serverCPU, clientCPU [2]time.Duration
	cpuOK := true
	var loadAvg float64
	cfg.OnMeasure = func(begin bool) {
		i := 1
		if begin {
			i = 0
		} else {
			loadAvg = loadAverage()
		}
		clientCPU[i] = selfCPU()
		for _, p := range sys.processes() {
			c, err := procCPU(p.pid())
			if err != nil {
				cpuOK = false
			}
			serverCPU[i] += c
		}
	}
	var stopScraping func() scrapeStats
	if w.scrape {
		stopScraping = startScraping(ctx, sys.addrs())
	}
	res, err := loadgen.Run(ctx, cfg)
	if stopScraping != nil {
		fmt.Printf("   (%s /metrics: %s)\n", sys.name(), stopScraping())
	}
	if err != nil {
		return nil, err
	}
	res.Target, res.Nodes, res.Placement = sys.name(), len(sys.addrs()), placement
	if w.op != loadgen.OpPut {
		res.Consistency = "linearizable"
		if w.stale {
			res.Consistency = "stale"
			if sys.name() == "etcd" {
				res.Consistency = "serializable"
			}
		}
	}
	row := &sysResult{res: res, loadAvg: loadAvg}
	if cpuOK && res.Elapsed > 0 {
		row.serverCPU = serverCPU[1] - serverCPU[0]
		row.clientCPU = clientCPU[1] - clientCPU[0]
		row.cpuKnown = true
	}
	return row, nil
}
