package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/test/harness"
)

// Result is the outcome of one scenario.
type Result struct {
	Scenario string `json:"scenario"`
	Nodes    int    `json:"nodes"`
	Cycles   int    `json:"cycles"`
	Seed     uint64 `json:"seed"`
	// Seconds from the first fault to the end of the workload.
	DurationS float64 `json:"duration_s"`

	OpsOK            int64 `json:"ops_ok"`            // definite answers (cas mismatches and not-found included)
	OpsFailed        int64 `json:"ops_failed"`        // requests that certainly had no effect
	OpsIndeterminate int64 `json:"ops_indeterminate"` // writes of unknown outcome
	Reads            int64 `json:"reads"`
	Writes           int64 `json:"writes"`
	CASMismatches    int64 `json:"cas_mismatches"`

	// Linearizable: "yes", "no", "unknown" (porcupine timed out) or "" (not checked).
	Linearizable  string   `json:"linearizable"`
	HistoryOps    int      `json:"history_ops"`
	CheckS        float64  `json:"check_s"`
	IndexProblems []string `json:"index_problems,omitempty"`

	LedgerAcked         int      `json:"ledger_acked"`
	LedgerIndeterminate int      `json:"ledger_indeterminate"`
	LostAcked           int      `json:"lost_acked"`
	Phantoms            int      `json:"phantoms"`
	LostSamples         []string `json:"lost_samples,omitempty"`

	// RecoveryS: from the final heal to a healthy cluster; -1 when it did not recover within the bound.
	RecoveryS      float64 `json:"recovery_s"`
	RecoveryBoundS float64 `json:"recovery_bound_s"`
	// GossipS: from the final heal until every member is also alive in gossip; -1 when not within
	// GossipBoundS of the recovery.
	GossipS      float64 `json:"gossip_converged_s"`
	GossipBoundS float64 `json:"gossip_bound_s"`
	// MaxCycleRecoveryS: the slowest recovery between cycles (long mode).
	MaxCycleRecoveryS float64 `json:"max_cycle_recovery_s,omitempty"`

	// Elections: how many terms passed from the start of the workload to its end.
	Elections uint64 `json:"elections"`

	// Bank: the transactions workload's outcome, in the scenarios that run it.
	Bank *harness.BankResult `json:"bank,omitempty"`

	LatencyP50ms float64 `json:"latency_p50_ms"`
	LatencyP99ms float64 `json:"latency_p99_ms"`
	LatencyMaxms float64 `json:"latency_max_ms"`

	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
	Artifact string   `json:"artifacts,omitempty"`
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}
func millis(d time.Duration) float64 {
	return float64(d.Round(100*time.Microsecond)) / float64(time.Millisecond)
}

func (r *Result) verdict() string {
	if r.Pass {
		return "PASS"
	}
	return "FAIL"
}

func (r *Result) recovery() string {
	if r.RecoveryS < 0 {
		return fmt.Sprintf(">%gs!", r.RecoveryBoundS)
	}
	return fmt.Sprintf("%.1fs/%gs", r.RecoveryS, r.RecoveryBoundS)
}

func (r *Result) gossip() string {
	if r.GossipS < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", r.GossipS)
}

func (r *Result) lin() string {
	if r.Linearizable == "" {
		return "-"
	}
	return r.Linearizable
}

// Line is the one-line summary of a scenario.
func (r *Result) Line() string {
	return fmt.Sprintf("%-20s %s nodes=%d ops ok=%d failed=%d indeterminate=%d linearizable=%s lost=%d/%d acked recovery=%s gossip=%s terms=+%d p99=%.0fms",
		r.Scenario, r.verdict(), r.Nodes, r.OpsOK, r.OpsFailed, r.OpsIndeterminate, r.lin(), r.LostAcked, r.LedgerAcked,
		r.recovery(), r.gossip(), r.Elections, r.LatencyP99ms)
}

// Report collects the results of a run.
type Report struct {
	RunID   string    `json:"run_id"`
	Mode    string    `json:"mode"`
	Started time.Time `json:"started"`
	WallS   float64   `json:"wall_s"`

	mu      sync.Mutex
	Results []*Result `json:"results"`
}

// Add records a result.
func (rep *Report) Add(r *Result) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	rep.Results = append(rep.Results, r)
}

func (rep *Report) sorted() []*Result {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	out := append([]*Result(nil), rep.Results...)
	sort.Slice(out, func(i, j int) bool { return out[i].Scenario < out[j].Scenario })
	return out
}

// Table writes the results as a table.
func (rep *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tnodes\tcycles\tok\tfailed\tindet.\tlinearizable\tlost/acked\trecovery/bound\tgossip\tterms\tp99\tresult\t")
	for _, r := range rep.sorted() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d/%d\t%s\t%s\t+%d\t%.0fms\t%s\t\n", r.Scenario, r.Nodes, r.Cycles,
			r.OpsOK, r.OpsFailed, r.OpsIndeterminate, r.lin(), r.LostAcked, r.LedgerAcked, r.recovery(), r.gossip(), r.Elections,
			r.LatencyP99ms, r.verdict())
	}
	tw.Flush()
	var failed []string
	for _, r := range rep.sorted() {
		if !r.Pass {
			failed = append(failed, r.Scenario+": "+strings.Join(r.Problems, "; "))
		}
	}
	fmt.Fprintf(w, "run %s (%s): %d scenarios, %d failed, wall time %.0fs\n", rep.RunID, rep.Mode, len(rep.Results), len(failed), rep.WallS)
	for _, f := range failed {
		fmt.Fprintln(w, "  FAIL", f)
	}
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	rep.mu.Lock()
	b, err := json.MarshalIndent(rep, "", "  ")
	rep.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
