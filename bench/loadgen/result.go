package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Result is what a run measured. Run fills the measured fields and echoes the workload; the descriptive
// fields (Target, Consistency, Nodes, Placement) are the caller's to fill, since loadgen does not know them.
type Result struct {
	// Filled by the caller.
	Target      string    // e.g. "raftkv", "etcd", "ceiling"
	Consistency string    // e.g. "linearizable", "stale"; empty for writes-only runs
	Nodes       int       // how many nodes the workers spread over
	Placement   Placement // how they spread

	// The workload, as run.
	Op             Op
	ReadRatio      float64 // mixed only
	Concurrency    int
	Keys           int
	ValueSize      int
	SequentialKeys bool
	Warmup         time.Duration

	// Measured. Ops, Throughput and the latencies count successful operations only; failures are in
	// Errors, by kind.
	Elapsed     time.Duration // the measurement window
	Ops         uint64
	Throughput  float64 // Ops per second of Elapsed
	Latency     Latency
	GetLatency  *Latency // mixed only
	PutLatency  *Latency // mixed only
	Errors      uint64
	ErrorKinds  map[string]uint64
	Interrupted bool // the caller cancelled the run before its end
}

// Latency summarizes a histogram. Quantiles are within 1% of the true sample (see Histogram); Min,
// Max and Mean are exact.
type Latency struct {
	Count                    uint64
	Min, Mean                time.Duration
	P50, P90, P99, P999, Max time.Duration
}

func summarize(h *Histogram) Latency {
	return Latency{
		Count: h.Count(),
		Min:   h.Min(),
		Mean:  h.Mean(),
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		P999:  h.Quantile(0.999),
		Max:   h.Max(),
	}
}

// Workload describes the workload in a few words: "put", "get (stale)", "mixed 90% get (linearizable)".
func (r *Result) Workload() string {
	s := string(r.Op)
	if r.Op == OpMixed {
		s += fmt.Sprintf(" %g%% get", math.Round(r.ReadRatio*1000)/10)
	}
	if r.Consistency != "" && r.Op != OpPut {
		s += " (" + r.Consistency + ")"
	}
	return s
}

// WriteText writes the result for people: the workload, throughput, latency percentiles and errors.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	target := r.Target
	if target == "" {
		target = "target"
	}
	fmt.Fprintf(&b, "%s: %s, %d workers", target, r.Workload(), r.Concurrency)
	if r.Nodes > 0 {
		how := "spread over"
		if r.Placement == Pin {
			how = "pinned to"
		}
		fmt.Fprintf(&b, " %s %d nodes", how, r.Nodes)
	}
	keys := fmt.Sprintf("%d keys", r.Keys)
	if r.SequentialKeys {
		keys = fmt.Sprintf("%d sequential keys", r.Keys)
	}
	fmt.Fprintf(&b, ", %d B values, %s\n", r.ValueSize, keys)
	fmt.Fprintf(&b, "  measured    %.2fs after %s warmup", r.Elapsed.Seconds(), r.Warmup)
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  throughput  %.0f ops/s (%d ops)\n", r.Throughput, r.Ops)
	writeLatency(&b, "latency   ", r.Latency)
	if r.GetLatency != nil {
		writeLatency(&b, "  get     ", *r.GetLatency)
	}
	if r.PutLatency != nil {
		writeLatency(&b, "  put     ", *r.PutLatency)
	}
	fmt.Fprintf(&b, "  errors      %d", r.Errors)
	if r.Errors > 0 {
		b.WriteString(": ")
		for i, k := range r.errorKindsByCount() {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s ×%d", k, r.ErrorKinds[k])
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLatency(b *strings.Builder, label string, l Latency) {
	if l.Count == 0 {
		fmt.Fprintf(b, "  %s  no successful operations\n", label)
		return
	}
	fmt.Fprintf(b, "  %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n", label,
		FormatDuration(l.P50), FormatDuration(l.P90), FormatDuration(l.P99), FormatDuration(l.P999),
		FormatDuration(l.Max), FormatDuration(l.Mean))
}

// errorKindsByCount lists the error kinds, most frequent first.
func (r *Result) errorKindsByCount() []string {
	kinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if r.ErrorKinds[a] != r.ErrorKinds[b] {
			if r.ErrorKinds[a] > r.ErrorKinds[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return kinds
}

// FormatDuration prints d with three significant digits in a unit that suits it: 812µs, 1.21ms, 12.3ms, 1.05s.
func FormatDuration(d time.Duration) string {
	var v float64
	var unit string
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		v, unit = float64(d)/float64(time.Microsecond), "µs"
	case d < time.Second:
		v, unit = float64(d)/float64(time.Millisecond), "ms"
	default:
		v, unit = d.Seconds(), "s"
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f%s", v, unit)
	case v < 100:
		return fmt.Sprintf("%.1f%s", v, unit)
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

// JSONResult is a Result's machine form: one flat object, durations in microseconds.
type JSONResult struct {
	Target         string            `json:"target,omitempty"`
	Op             Op                `json:"op"`
	ReadRatio      float64           `json:"read_ratio,omitempty"`
	Consistency    string            `json:"consistency,omitempty"`
	Concurrency    int               `json:"concurrency"`
	Nodes          int               `json:"nodes,omitempty"`
	Placement      Placement         `json:"placement,omitempty"`
	Keys           int               `json:"keys"`
	SequentialKeys bool              `json:"sequential_keys,omitempty"`
	ValueSize      int               `json:"value_size"`
	WarmupSec      float64           `json:"warmup_s"`
	ElapsedSec     float64           `json:"elapsed_s"`
	Ops            uint64            `json:"ops"`
	OpsPerSec      float64           `json:"ops_per_sec"`
	Latency        JSONLatency       `json:"latency_us"`
	GetLatency     *JSONLatency      `json:"get_latency_us,omitempty"`
	PutLatency     *JSONLatency      `json:"put_latency_us,omitempty"`
	Errors         uint64            `json:"errors"`
	ErrorKinds     map[string]uint64 `json:"error_kinds"`
	Interrupted    bool              `json:"interrupted,omitempty"`
}

// JSONLatency is a Latency in microseconds.
type JSONLatency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func micros(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func (l Latency) jsonForm() JSONLatency {
	return JSONLatency{Count: l.Count, Min: micros(l.Min), Mean: micros(l.Mean), P50: micros(l.P50),
		P90: micros(l.P90), P99: micros(l.P99), P999: micros(l.P999), Max: micros(l.Max)}
}

// JSON returns r's machine form.
func (r *Result) JSON() JSONResult {
	j := JSONResult{
		Target: r.Target, Op: r.Op, ReadRatio: r.ReadRatio, Consistency: r.Consistency,
		Concurrency: r.Concurrency, Nodes: r.Nodes, Placement: r.Placement, Keys: r.Keys,
		SequentialKeys: r.SequentialKeys, ValueSize: r.ValueSize, WarmupSec: r.Warmup.Seconds(),
		ElapsedSec: math.Round(r.Elapsed.Seconds()*1000) / 1000, Ops: r.Ops,
		OpsPerSec: math.Round(r.Throughput*10) / 10, Latency: r.Latency.jsonForm(),
		Errors: r.Errors, ErrorKinds: r.ErrorKinds, Interrupted: r.Interrupted,
	}
	if j.ErrorKinds == nil {
		j.ErrorKinds = map[string]uint64{}
	}
	if r.GetLatency != nil {
		g := r.GetLatency.jsonForm()
		j.GetLatency = &g
	}
	if r.PutLatency != nil {
		p := r.PutLatency.jsonForm()
		j.PutLatency = &p
	}
	return j
}

// WriteJSON writes r as one line of JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r.JSON())
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
