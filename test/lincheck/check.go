package lincheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is the outcome of checking one history.
type Result struct {
	// Linearizable is porcupine's verdict: Ok, Illegal, or Unknown (timed out).
	Linearizable porcupine.CheckResult
	Info         porcupine.LinearizationInfo
	// IndexProblems lists duplicate or out-of-order write indexes (empty when fine).
	IndexProblems []string
}

// Check runs porcupine on the history (timeout 0: no limit) and the cross-key index checks.
func Check(history []porcupine.Operation, timeout time.Duration) Result {
	res, info := porcupine.CheckOperationsVerbose(Model, history, timeout)
	return Result{Linearizable: res, Info: info, IndexProblems: CheckIndexes(history)}
}

// writeIndex returns the index of an acknowledged write, if the operation is one.
func writeIndex(op porcupine.Operation) (uint64, bool) {
	in, out := op.Input.(Input), op.Output.(Output)
	if in.Kind == Get || out.Status != OK {
		return 0, false
	}
	if in.Kind == Txn {
		// A transaction that can write is a log entry with its own index, whichever branch ran; one
		// that only reads answers the index of the view it read, which others share.
		return out.Index, in.Writes()
	}
	if in.Kind == Delete && !out.Deleted {
		return 0, false // deleting nothing: not promised a write index of its own
	}
	return out.Index, true
}

// CheckIndexes checks what per-key partitions cannot see: acknowledged writes have distinct
// indexes, and a write acknowledged before another write was sent has the smaller index
// (indexes increase in commit order, and Raft commits in real-time order).
func CheckIndexes(history []porcupine.Operation) []string {
	type write struct {
		call, ret int64
		index     uint64
		desc      string
	}
	var writes []write
	var problems []string
	seen := map[uint64]string{}
	for _, op := range history {
		idx, ok := writeIndex(op)
		if !ok {
			continue
		}
		desc := describeOperation(op.Input, op.Output)
		if idx == 0 {
			problems = append(problems, "write acknowledged with index 0: "+desc)
			continue
		}
		if prev, dup := seen[idx]; dup {
			problems = append(problems, fmt.Sprintf("index %d returned twice: %s and %s", idx, prev, desc))
		}
		seen[idx] = desc
		writes = append(writes, write{op.Call, op.Return, idx, desc})
	}
	// Sweep by call time, keeping the largest index among writes returned before the current call.
	byRet := append([]write(nil), writes...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].ret < byRet[j].ret })
	sort.Slice(writes, func(i, j int) bool { return writes[i].call < writes[j].call })
	var best *write
	r := 0
	for i := range writes {
		w := &writes[i]
		for r < len(byRet) && byRet[r].ret < w.call {
			if best == nil || byRet[r].index > best.index {
				best = &byRet[r]
			}
			r++
		}
		if best != nil && best.index >= w.index {
			problems = append(problems, fmt.Sprintf(
				"index order: %s (index %d) returned before %s (index %d) was sent", best.desc, best.index, w.desc, w.index))
		}
	}
	return problems
}

// Verify checks the history and fails t when it is not linearizable or its indexes are wrong.
// On an illegal history it writes porcupine's visualization to an artifact file and prints its
// path. When porcupine times out it says so and skips (unless t already failed): an unchecked
// history is not a pass.
func Verify(t testing.TB, history []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	res := Check(history, timeout)
	txns := 0
	for _, op := range history {
		if op.Input.(Input).Kind == Txn {
			txns++
		}
	}
	t.Logf("lincheck: %d operations (%d transactions), %d partitions, porcupine %s in %v", len(history), txns,
		len(partitionByKeys(history)), res.Linearizable, time.Since(start).Round(time.Millisecond))
	for i, p := range res.IndexProblems {
		if i == 20 {
			t.Errorf("lincheck: ... %d more index problems", len(res.IndexProblems)-i)
			break
		}
		t.Errorf("lincheck: %s", p)
	}
	switch res.Linearizable {
	case porcupine.Ok:
	case porcupine.Illegal:
		path, err := WriteVisualization(t, res.Info)
		if err != nil {
			t.Errorf("lincheck: history is NOT linearizable (visualization failed: %v)", err)
		} else {
			t.Errorf("lincheck: history is NOT linearizable; visualization: %s", path)
		}
	default:
		t.Logf("lincheck: porcupine gave up after %v: linearizability of this history is UNKNOWN", timeout)
		if !t.Failed() {
			t.Skip("linearizability check timed out (result unknown); not counting this run as a pass")
		}
	}
}

// WriteVisualization writes porcupine's HTML visualization for info under ArtifactDir and
// returns its path.
func WriteVisualization(t testing.TB, info porcupine.LinearizationInfo) (string, error) {
	dir, err := ArtifactDir()
	if err != nil {
		return "", err
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.html", name, time.Now().Format("20060102-150405.000")))
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return "", err
	}
	return path, nil
}

// ArtifactDir is $RAFTKV_TEST_ARTIFACTS, or test/artifacts in the module (git-ignored). It is created.
func ArtifactDir() (string, error) {
	dir := os.Getenv("RAFTKV_TEST_ARTIFACTS")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "test", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// ModuleRoot is the directory of the go.mod above the working directory (the repository root in tests).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
