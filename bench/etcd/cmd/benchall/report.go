package main

// report.go: the comparison table, for the terminal, as Markdown and as JSON.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/bench/loadgen"
	"go.etcd.io/etcd/api/v3/version"
)

// sysResult is one system's result for one row.
type sysResult struct {
	res                  *loadgen.Result
	serverCPU, clientCPU time.Duration // during the measurement window
	cpuKnown             bool
	loadAvg              float64 // the machine's 1-minute load average as the window closed; 0 if unknown
	Error                string  // the row could not run
}

// report is everything a run produced.
type report struct {
	Meta   meta    `json:"meta"`
	Floors *Floors `json:"floors"`
	Rows   []*row  `json:"rows"`
	// Scenarios: the large-value and watch fan-out measures (scenarios.go).
	Scenarios []*measure `json:"scenarios,omitempty"`
	// ClientPairs: issue 16's comparisons in interleaved slices (clientrows.go), every round's.
	ClientPairs []*clientPair `json:"client_pairs,omitempty"`
}

type meta struct {
	Date          string   `json:"date"`
	Host          string   `json:"host"`
	CPU           string   `json:"cpu"`
	Cores         int      `json:"cores"`
	Kernel        string   `json:"kernel"`
	Go            string   `json:"go"`
	Etcd          string   `json:"etcd"`
	RaftkvVersion string   `json:"raftkv,omitempty"`
	Nodes         int      `json:"nodes"`
	DurationSec   float64  `json:"duration_s"`
	WarmupSec     float64  `json:"warmup_s"`
	Quick         bool     `json:"quick"`
	Rounds        int      `json:"rounds"`
	Placement     string   `json:"placement"`
	Keys          int      `json:"keys"`
	ValueSize     int      `json:"value_size"`
	Note          string   `json:"note"`
	Interrupted   bool     `json:"interrupted,omitempty"`
	Failures      []string `json:"failures,omitempty"`
}

type row struct {
	Workload       string                    `json:"workload"`
	Op             loadgen.Op                `json:"op"`
	Concurrency    int                       `json:"concurrency"`
	Stale          bool                      `json:"stale,omitempty"`
	ReadRatio      float64                   `json:"read_ratio,omitempty"`
	Results        map[string]*jsonSysResult `json:"results"`
	RaftkvOverEtcd *float64                  `json:"raftkv_over_etcd,omitempty"`
	PctOfCeiling   *float64                  `json:"raftkv_pct_of_ceiling,omitempty"`

	runs map[string][]*sysResult // every run of each system, in round order
}

type jsonSysResult struct {
	*loadgen.JSONResult
	ServerCPUCores   *float64 `json:"server_cpu_cores,omitempty"`     // CPU seconds per second, all nodes together
	ServerCPUPerOpUs *float64 `json:"server_cpu_per_op_us,omitempty"` // all nodes together
	ClientCPUCores   *float64 `json:"client_cpu_cores,omitempty"`
	LoadAvg          *float64 `json:"loadavg_1m,omitempty"` // the whole machine's, as the window closed
	Error            string   `json:"error,omitempty"`
	// RoundsOpsPerSec is every round's throughput, in round order; the result above is their median.
	RoundsOpsPerSec []float64 `json:"rounds_ops_per_sec,omitempty"`
}

const sharedNote = "Measured on a shared machine (other work ran at the same time); compare rows within one run, " +
	"and expect a few tens of percent of noise between runs."

func newReport(f compareFlags, p loadgen.Placement) *report {
	host, _ := os.Hostname()
	r := &report{Meta: meta{
		Date: time.Now().UTC().Format(time.RFC3339), Host: host, CPU: cpuModel(), Cores: runtime.NumCPU(),
		Kernel: kernel(), Go: runtime.Version(), Etcd: "v" + version.Version, Nodes: nodes,
		DurationSec: f.duration.Seconds(), WarmupSec: f.warmup.Seconds(), Quick: f.quick, Rounds: max(f.rounds, 1), Placement: string(p),
		Keys: f.keys, ValueSize: f.valueSize, Note: sharedNote,
	}}
	for _, w := range workloads {
		r.Rows = append(r.Rows, &row{Workload: w.label, Op: w.op, Concurrency: w.concurrency, Stale: w.stale,
			ReadRatio: w.readRatio, runs: map[string][]*sysResult{}})
	}
	return r
}

// add records one run of row i.
func (r *report) add(i int, system string, s *sysResult) {
	r.Rows[i].runs[system] = append(r.Rows[i].runs[system], s)
}

// result is what the row reports for system: its median run, or nil if it never ran.
func (rw *row) result(system string) *sysResult {
	if len(rw.runs[system]) == 0 {
		return nil
	}
	return median(rw.runs[system])
}

// median is the run with the median throughput among those that produced a result (the lower one of
// the middle two for an even count), so its latencies and CPU come from one real run rather than a mix.
// With no result at all, it is the last failure.
func median(runs []*sysResult) *sysResult {
	var ok []*sysResult
	for _, s := range runs {
		if s.res != nil {
			ok = append(ok, s)
		}
	}
	if len(ok) == 0 {
		return runs[len(runs)-1]
	}
	slices.SortStableFunc(ok, func(a, b *sysResult) int { return cmp.Compare(a.res.Throughput, b.res.Throughput) })
	return ok[(len(ok)-1)/2]
}

func ptr(v float64) *float64 { return &v }

// finish fills the JSON-facing fields from the results.
func (r *report) finish() {
	r.finishScenarios()
	for _, rw := range r.Rows {
		rw.Results = map[string]*jsonSysResult{}
		for name := range rw.runs {
			s := rw.result(name)
			j := &jsonSysResult{Error: s.Error}
			if s.res != nil {
				jr := s.res.JSON()
				j.JSONResult = &jr
				if s.loadAvg > 0 {
					j.LoadAvg = ptr(s.loadAvg)
				}
				if s.cpuKnown && s.res.Elapsed > 0 {
					j.ServerCPUCores = ptr(round(s.serverCPU.Seconds()/s.res.Elapsed.Seconds(), 2))
					j.ClientCPUCores = ptr(round(s.clientCPU.Seconds()/s.res.Elapsed.Seconds(), 2))
					if s.res.Ops > 0 {
						j.ServerCPUPerOpUs = ptr(round(float64(s.serverCPU.Microseconds())/float64(s.res.Ops), 1))
					}
				}
			}
			if runs := rw.runs[name]; len(runs) > 1 {
				for _, run := range runs {
					v := 0.0
					if run.res != nil {
						v = round(run.res.Throughput, 1)
					}
					j.RoundsOpsPerSec = append(j.RoundsOpsPerSec, v)
				}
			}
			rw.Results[name] = j
		}
		rk, et, ce := rw.throughput("raftkv"), rw.throughput("etcd"), rw.throughput("ceiling")
		rw.RaftkvOverEtcd, rw.PctOfCeiling = nil, nil
		if rk > 0 && et > 0 {
			rw.RaftkvOverEtcd = ptr(round(rk/et, 3))
		}
		if rk > 0 && ce > 0 {
			rw.PctOfCeiling = ptr(round(100*rk/ce, 1))
		}
	}
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func (rw *row) throughput(system string) float64 {
	if s := rw.result(system); s != nil && s.res != nil && s.res.Ops > 0 {
		return s.res.Throughput
	}
	return 0
}

// label is the workload as the table shows it.
func (rw *row) label() string {
	if rw.Stale {
		return rw.Workload + " (etcd: serializable)"
	}
	return rw.Workload
}

// cells renders one system's ops/s, p50, p99.
func (rw *row) cells(system string) []string {
	s := rw.result(system)
	switch {
	case s == nil:
		return []string{"-", "-", "-"}
	case s.res == nil:
		return []string{"failed", "-", "-"}
	case s.res.Ops == 0:
		return []string{"0", "-", "-"}
	}
	ops := fmt.Sprintf("%.0f", s.res.Throughput)
	if s.res.Errors > 0 {
		ops += "*"
	}
	return []string{ops, loadgen.FormatDuration(s.res.Latency.P50), loadgen.FormatDuration(s.res.Latency.P99)}
}

func (rw *row) ratioCells() (ratio, pct string) {
	ratio, pct = "-", "-"
	if rw.RaftkvOverEtcd != nil {
		ratio = fmt.Sprintf("%.2f×", *rw.RaftkvOverEtcd)
	}
	if rw.PctOfCeiling != nil {
		pct = fmt.Sprintf("%.0f%%", *rw.PctOfCeiling)
	}
	return ratio, pct
}

var summaryHeader = []string{"workload", "conc", "raftkv ops/s", "p50", "p99", "etcd ops/s", "p50", "p99",
	"raftkv/etcd", "ceiling ops/s", "p50", "p99", "% of ceiling"}

func (rw *row) summaryCells() []string {
	ratio, pct := rw.ratioCells()
	c := []string{rw.label(), fmt.Sprint(rw.Concurrency)}
	c = append(c, rw.cells("raftkv")...)
	c = append(c, rw.cells("etcd")...)
	c = append(c, ratio)
	c = append(c, rw.cells("ceiling")...)
	return append(c, pct)
}

func (r *report) anyErrors() bool {
	for _, rw := range r.Rows {
		for name := range rw.runs {
			if s := rw.result(name); s.res != nil && s.res.Errors > 0 {
				return true
			}
		}
	}
	return false
}

// writeTable prints the summary for the terminal.
func (r *report) writeTable(w io.Writer) {
	r.finish()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(summaryHeader, "\t")+"\t")
	for _, rw := range r.Rows {
		fmt.Fprintln(tw, strings.Join(rw.summaryCells(), "\t")+"\t")
	}
	tw.Flush()
	if r.anyErrors() {
		fmt.Fprintln(w, "* the row had errors; see the report for their kinds")
	}
	r.writeClientComparisons(w, false)
	r.writeClientPairs(w, false)
	r.writeTLSComparisons(w, false)
	var b strings.Builder
	r.writeScenarios(&b)
	fmt.Fprint(w, b.String())
}

// markdown renders the full report.
func (r *report) markdown() string {
	r.finish()
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "# raftkv vs etcd, %s\n\n", m.Date)
	if m.Quick {
		b.WriteString("**Quick run (BENCH_QUICK): rows too short to quote.**\n\n")
	}
	if m.Interrupted {
		b.WriteString("**Interrupted: only the rows that ran are filled in.**\n\n")
	}
	fmt.Fprintf(&b, "- machine: %s, %d cores, %s, %s\n", m.CPU, m.Cores, m.Kernel, m.Go)
	if r.ran("raftkv") {
		fmt.Fprintf(&b, "- raftkv: %s, %d nodes (`raftkv serve`, default settings)\n", m.RaftkvVersion, m.Nodes)
	}
	if r.ran("etcd") {
		fmt.Fprintf(&b, "- etcd: %s (go.etcd.io/etcd/server/v3/embed, one process per member, default settings, fsync on), "+
			"client go.etcd.io/etcd/client/v3, one client per member\n", m.Etcd)
	}
	if r.ran("ceiling") {
		fmt.Fprintf(&b, "- ceiling: %d bare net/http servers answering from in-memory maps (no Raft, no disk)\n", m.Nodes)
	}
	fmt.Fprintf(&b, "- each row: %gs measured after %gs warmup, closed loop (each worker keeps one request in flight), "+
		"%d keys, %d B values, workers %s over the %d nodes; everything on loopback, one system at a time\n",
		m.DurationSec, m.WarmupSec, m.Keys, m.ValueSize, placementWords(m.Placement), m.Nodes)
	if m.Rounds > 1 {
		fmt.Fprintf(&b, "- %d rounds: the systems took turns (raftkv, etcd, ceiling, then again), each started fresh per round; "+
			"every number is the row's median run, and the detail tables list each round's ops/s\n", m.Rounds)
	}
	fmt.Fprintf(&b, "- %s\n", m.Note)
	for _, f := range m.Failures {
		fmt.Fprintf(&b, "- **failed**: %s\n", f)
	}
	if fl := r.Floors; fl != nil {
		b.WriteString("\n## This machine's floors\n\n")
		fmt.Fprintf(&b, "- fsync: 4 KiB append + fdatasync in the nodes' temp dir (%s), %d samples: p50 %s, p99 %s\n",
			fl.FsyncFS, fl.FsyncN, loadgen.FormatDuration(fl.fsyncP50), loadgen.FormatDuration(fl.fsyncP99))
		fmt.Fprintf(&b, "- loopback TCP round trip (1-byte ping-pong), %d samples: p50 %s, p99 %s\n",
			fl.RTTN, loadgen.FormatDuration(fl.rttP50), loadgen.FormatDuration(fl.rttP99))
		b.WriteString("- a replicated write needs at least one fsync on the leader and one on a follower (in parallel at best) " +
			"and a round trip; at concurrency 1 that bounds put latency from below\n")
	}
	b.WriteString("\n## Summary\n\n")
	b.WriteString("ops/s count successful operations; p50/p99 are their latencies. raftkv/etcd compares throughput; " +
		"% of ceiling is raftkv's throughput over the bare HTTP servers'. Stale reads are `?consistency=stale` on raftkv " +
		"and `WithSerializable()` on etcd.\n\n")
	writeMDTable(&b, summaryHeader, func(yield func([]string)) {
		for _, rw := range r.Rows {
			yield(rw.summaryCells())
		}
	})
	if r.anyErrors() {
		b.WriteString("\n\\* the row had errors (kinds below).\n")
	}
	for _, rw := range r.Rows {
		if rw.PctOfCeiling != nil && *rw.PctOfCeiling > 100 {
			fmt.Fprintf(&b, "\n%s c=%d: raftkv above the ceiling means the machine was busier while the ceiling ran "+
				"(see the load column below); the row's ceiling is not meaningful.\n", rw.Workload, rw.Concurrency)
		}
	}
	r.writeClientComparisons(&b, true)
	r.writeClientPairs(&b, true)
	r.writeTLSComparisons(&b, true)
	r.writeScenarios(&b)
	for _, spec := range systemSpecs {
		if !r.ran(spec.name) {
			continue
		}
		fmt.Fprintf(&b, "\n## %s in detail\n\n", spec.name)
		b.WriteString("CPU is user+system time of the system's processes (all nodes) during the measurement window: " +
			"cores = CPU seconds per second; per op = CPU time per successful operation. client = this load generator. " +
			"load = the machine's 1-minute load average at the end of the row: far above the core count, other work " +
			"was competing for the CPU.\n\n")
		header := []string{"workload", "conc", "ops/s", "p50", "p90", "p99", "p99.9", "max", "errors",
			"server CPU (cores)", "server CPU/op", "client CPU (cores)", "load"}
		if m.Rounds > 1 {
			header = append(header, "each round (ops/s)")
		}
		writeMDTable(&b, header, func(yield func([]string)) {
			for _, rw := range r.Rows {
				c := rw.detailCells(spec.name)
				if m.Rounds > 1 {
					c = append(c, rw.roundsCell(spec.name))
				}
				yield(c)
			}
		})
		for _, rw := range r.Rows {
			if s := rw.result(spec.name); s != nil && s.res != nil && s.res.Errors > 0 {
				fmt.Fprintf(&b, "\n%s c=%d errors: %s\n", rw.Workload, rw.Concurrency, errorKinds(s.res))
			} else if s != nil && s.Error != "" {
				fmt.Fprintf(&b, "\n%s c=%d failed: %s\n", rw.Workload, rw.Concurrency, s.Error)
			}
		}
	}
	return b.String()
}

func (r *report) ran(system string) bool {
	for _, rw := range r.Rows {
		if rw.result(system) != nil {
			return true
		}
	}
	return false
}

func (rw *row) detailCells(system string) []string {
	c := []string{rw.label(), fmt.Sprint(rw.Concurrency)}
	s := rw.result(system)
	if s == nil || s.res == nil {
		v := "-"
		if s != nil {
			v = "failed"
		}
		return append(c, v, "", "", "", "", "", "", "", "", "", "")
	}
	l := s.res.Latency
	d := loadgen.FormatDuration
	c = append(c, fmt.Sprintf("%.0f", s.res.Throughput), d(l.P50), d(l.P90), d(l.P99), d(l.P999), d(l.Max),
		fmt.Sprint(s.res.Errors))
	j := rw.Results[system]
	if j != nil && j.ServerCPUCores != nil {
		perOp := "-"
		if j.ServerCPUPerOpUs != nil {
			perOp = fmt.Sprintf("%.0fµs", *j.ServerCPUPerOpUs)
		}
		c = append(c, fmt.Sprintf("%.2f", *j.ServerCPUCores), perOp, fmt.Sprintf("%.2f", *j.ClientCPUCores))
	} else {
		c = append(c, "-", "-", "-")
	}
	if s.loadAvg > 0 {
		return append(c, fmt.Sprintf("%.1f", s.loadAvg))
	}
	return append(c, "-")
}

// roundsCell lists every round's throughput for system, "failed" for a round that produced none.
func (rw *row) roundsCell(system string) string {
	var parts []string
	for _, s := range rw.runs[system] {
		if s.res == nil {
			parts = append(parts, "failed")
		} else {
			parts = append(parts, fmt.Sprintf("%.0f", s.res.Throughput))
		}
	}
	return strings.Join(parts, " / ")
}

func errorKinds(res *loadgen.Result) string {
	var parts []string
	for k, n := range res.ErrorKinds {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, n))
	}
	return strings.Join(parts, ", ")
}

func placementWords(p string) string {
	if p == string(loadgen.Pin) {
		return "pinned (worker i to node i mod N)"
	}
	return "spread round-robin per request"
}

func writeMDTable(b *strings.Builder, header []string, rows func(yield func([]string))) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i < 2 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	rows(func(c []string) { b.WriteString("| " + strings.Join(c, " | ") + " |\n") })
}

// save writes the report as <out>/bench-<time>.md and .json, and copies them to latest.md/.json.
func (r *report) save(out string) (mdPath, jsonPath string, err error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", "", err
	}
	md := r.markdown()
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	mdPath = filepath.Join(out, "bench-"+stamp+".md")
	jsonPath = filepath.Join(out, "bench-"+stamp+".json")
	for path, data := range map[string][]byte{
		mdPath: []byte(md), jsonPath: append(js, '\n'),
		filepath.Join(out, "latest.md"): []byte(md), filepath.Join(out, "latest.json"): append(js, '\n'),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", "", err
		}
	}
	return mdPath, jsonPath, nil
}
