package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/bench/httptarget"
	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary be its own children, exactly as benchall is: `<test binary> member ...`
// and `<test binary> ceiling ...` run the member and ceiling modes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "member":
			os.Exit(runMember(os.Args[2:]))
		case "ceiling":
			os.Exit(runCeiling(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

func TestCeilingServesTheKVPaths(t *testing.T) {
	srv := httptest.NewServer(newCeiling())
	defer srv.Close()
	c, err := httptarget.New(httptarget.Config{Addrs: []string{srv.URL}})
	require.NoError(t, err)
	defer c.Close()
	tg := c.Node(0)
	ctx := context.Background()
	require.NoError(t, tg.Put(ctx, "a/b", []byte("v")))
	require.NoError(t, tg.Get(ctx, "a/b"))
	err = tg.Get(ctx, "missing")
	require.Equal(t, "HTTP 404 key_not_found", loadgen.ErrorKind(err))
	resp, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
}

func TestFloors(t *testing.T) {
	f, err := measureFloors(t.TempDir(), 5, 50)
	require.NoError(t, err)
	require.Positive(t, f.FsyncP50us)
	require.GreaterOrEqual(t, f.FsyncP99us, f.FsyncP50us)
	require.Positive(t, f.RTTP50us)
	require.NotEmpty(t, f.FsyncFS)
}

func TestProcReaders(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	m, err := procMemory(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, m.RSS)
	require.GreaterOrEqual(t, m.Peak, m.RSS)
	require.Positive(t, m.Anon)
	require.InDelta(t, float64(m.RSS), float64(m.Anon+m.File), float64(m.RSS)/5) // plus shared memory
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn a little CPU so the counter moves (its unit is 10 ms)
	}
	cpu, err := procCPU(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, cpu)
	require.Positive(t, selfCPU())
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(9, true)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		require.False(t, seen[p])
		seen[p] = true
	}
}

func TestReportRatiosAndRendering(t *testing.T) {
	rep := newReport(compareFlags{duration: time.Second, warmup: time.Second, keys: 1000, valueSize: 100}, loadgen.Spread)
	rep.Floors = &Floors{FsyncFS: "ext4", FsyncN: 10}
	mk := func(system string, ops float64, errs uint64) *sysResult {
		return &sysResult{res: &loadgen.Result{Target: system, Op: loadgen.OpPut, Elapsed: time.Second, Ops: uint64(ops),
			Throughput: ops, Errors: errs, ErrorKinds: map[string]uint64{"HTTP 503 no_leader": errs},
			Latency: loadgen.Latency{Count: uint64(ops), P50: time.Millisecond, P99: 3 * time.Millisecond}},
			serverCPU: 500 * time.Millisecond, clientCPU: 100 * time.Millisecond, cpuKnown: true}
	}
	rep.add(0, "raftkv", mk("raftkv", 800, 0))
	rep.add(0, "etcd", mk("etcd", 1000, 0))
	rep.add(0, "ceiling", mk("ceiling", 4000, 0))
	rep.add(1, "raftkv", mk("raftkv", 500, 2))
	// Row 2 ran three rounds: it reports the median run, whole, and lists every round.
	rep.Meta.Rounds = 3
	rep.add(2, "raftkv", mk("raftkv", 900, 0))
	rep.add(2, "raftkv", &sysResult{Error: "round 2 failed"})
	rep.add(2, "raftkv", mk("raftkv", 700, 0))
	rep.add(2, "etcd", mk("etcd", 600, 0))
	rep.add(2, "etcd", mk("etcd", 1000, 0))
	rep.add(2, "etcd", mk("etcd", 800, 0))
	rep.add(1, "etcd", &sysResult{Error: "boom"})

	var tbl strings.Builder
	rep.writeTable(&tbl)
	out := tbl.String()
	require.Contains(t, out, "0.80×")
	require.Contains(t, out, "20%")
	require.Contains(t, out, "500*")
	require.Contains(t, out, "failed")

	md := rep.markdown()
	require.Contains(t, md, "| put | 1 | 800 | 1.00ms | 3.00ms | 1000 | 1.00ms | 3.00ms | 0.80× | 4000 | 1.00ms | 3.00ms | 20% |")
	require.Contains(t, md, "## raftkv in detail")
	require.Contains(t, md, "put c=16 errors: HTTP 503 no_leader ×2")
	require.Contains(t, md, "put c=16 failed: boom")
	require.Contains(t, md, "| put | 1 | 800 | 1.00ms |")
	require.Contains(t, md, "| 0.50 | 625µs | 0.10 |") // 0.5 s of server CPU per second, over 800 ops
	require.Contains(t, md, "| put | 128 | 700 | 1.00ms | 3.00ms | 800 | 1.00ms | 3.00ms | 0.88× |")
	require.Contains(t, md, "| 900 / failed / 700 |")

	dir := t.TempDir()
	mdPath, jsPath, err := rep.save(dir)
	require.NoError(t, err)
	require.FileExists(t, mdPath)
	require.FileExists(t, filepath.Join(dir, "latest.md"))
	b, err := os.ReadFile(jsPath)
	require.NoError(t, err)
	var back struct {
		Rows []struct {
			RaftkvOverEtcd *float64 `json:"raftkv_over_etcd"`
			Pct            *float64 `json:"raftkv_pct_of_ceiling"`
			Results        map[string]struct {
				OpsPerSec float64 `json:"ops_per_sec"`
				Error     string  `json:"error"`
			} `json:"results"`
		} `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(b, &back))
	require.InDelta(t, 0.8, *back.Rows[0].RaftkvOverEtcd, 1e-9)
	require.InDelta(t, 20, *back.Rows[0].Pct, 1e-9)
	require.Equal(t, 800.0, back.Rows[0].Results["raftkv"].OpsPerSec)
	require.Equal(t, "boom", back.Rows[1].Results["etcd"].Error)
	require.Nil(t, back.Rows[1].RaftkvOverEtcd)
}

// TestCompareEndToEnd runs the whole comparison with very short rows: real child processes for every
// system (raftkv built from this checkout), the report files, and nothing left behind.
func TestCompareEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three clusters")
	}
	bin := filepath.Join(t.TempDir(), "raftkv")
	// Built in the main module (the repository root), with its own go.mod and go.sum.
	build := exec.Command("go", "build", "-o", bin, "./cmd/raftkv")
	build.Dir = filepath.Join("..", "..", "..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the run's temp dir goes here, so the test can see that it is removed
	results := t.TempDir()
	// Two rounds: the second must start every system afresh (a leftover data dir once kept etcd from forming).
	code := runCompare([]string{"--raftkv", bin, "--out", results, "--duration", "300ms", "--warmup", "100ms", "--rounds", "2",
		"--large-writers", "4", "--small-clients", "2", "--fill-keys", "4", "--watchers", "6", "--watch-rate", "50",
		"--scale-watchers", "6", "--scale-watch-rate", "50", "--scale-watch-every", "5", "--idle-watches", "20"})
	require.Equal(t, 0, code)

	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left, "the run's temp dir is removed")

	b, err := os.ReadFile(filepath.Join(results, "latest.json"))
	require.NoError(t, err)
	var rep report
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Len(t, rep.Rows, len(workloads))
	require.Empty(t, rep.Meta.Failures)
	for _, rw := range rep.Rows {
		for _, system := range []string{"raftkv", "etcd", "ceiling"} {
			r := rw.Results[system]
			if system == "ceiling" && rw.Workload == "txn compare + 2 puts" {
				require.Nil(t, r, "the ceiling has no transactions")
				continue
			}
			if system == "ceiling" && strings.Contains(rw.Workload, "/metrics scraped") {
				require.Nil(t, r, "the ceiling has no metrics")
				continue
			}
			if system == "ceiling" && strings.Contains(rw.Workload, "TLS") {
				require.Nil(t, r, "the ceiling has no TLS")
				continue
			}
			require.NotNil(t, r, "%s %s c=%d", system, rw.Workload, rw.Concurrency)
			require.Empty(t, r.Error)
			require.Positive(t, r.Ops, "%s %s c=%d", system, rw.Workload, rw.Concurrency)
			require.Zero(t, r.Errors, "%s %s c=%d: %v", system, rw.Workload, rw.Concurrency, r.ErrorKinds)
			require.Len(t, r.RoundsOpsPerSec, 2)
		}
		require.NotNil(t, rw.RaftkvOverEtcd)
	}
	require.NotEmpty(t, rep.Scenarios)
	// Measures that need a completed large put may be missing from rows this short; these never are.
	always := map[string]bool{"100 B get p50, beside the writers": true, "events delivered / expected": true, "largest RSS / bytes stored": true,
		"RSS per watch": true}
	seen := 0
	for _, m := range rep.Scenarios {
		if always[m.Name] {
			seen++
			require.Contains(t, m.Values, "raftkv", "%s: %s", m.Scenario, m.Name)
			require.Contains(t, m.Values, "etcd", "%s: %s", m.Scenario, m.Name)
		}
	}
	require.Equal(t, 6, seen, "two large-value rows, two watch fan-out rows, the memory row and the idle-watch row")
	md, err := os.ReadFile(filepath.Join(results, "latest.md"))
	require.NoError(t, err)
	require.Contains(t, string(md), "## etcd in detail")
}
