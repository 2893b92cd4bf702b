package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/test/harness"
)

// A real Prometheus (Debian's prometheus package: prometheus and promtool) against a real 3-node
// cluster: the shipped rules pass promtool, every metric the rules and the Grafana dashboard use is
// scraped from the nodes, and RaftkvNoLeader fires when a majority is stopped and clears when it is back.
// The test installs nothing: without the binaries it skips, or fails with RAFTKV_REQUIRE_PROMETHEUS=1
// (CI installs them in .ci/run).
func TestPrometheusScrapesTheClusterAndTheNoLeaderAlertFiresAndClears(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	prom, promtool := lookPrometheus(t)
	root := repoRoot(t)
	rulesPath := filepath.Join(root, "deploy", "prometheus", "alerts.yml")
	out, err := exec.Command(promtool, "check", "rules", rulesPath).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)

	rules, err := os.ReadFile(rulesPath)
	require.NoError(t, err)
	dashboard, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "raftkv.json"))
	require.NoError(t, err)
	used := usedMetrics(t, rules, dashboard)
	require.NotEmpty(t, used)
	t.Logf("the rules and the dashboard use %d metrics: %v", len(used), used)

	c := harness.StartCluster(t, 3, harness.Options{LogLevel: "info"})
	dir := t.TempDir()
	// The shipped rules, but with short `for:` so the test does not wait minutes.
	fast := regexp.MustCompile(`(?m)^(\s*for:\s*)\S+`).ReplaceAll(rules, []byte("${1}2s"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), fast, 0o644))
	var targets []string
	for i := 0; i < c.Size(); i++ {
		targets = append(targets, strconv.Quote(c.Node(i).HTTPAddr))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
  evaluation_interval: 500ms
rule_files: [rules.yml]
scrape_configs:
  - job_name: raftkv
    static_configs:
      - targets: [%s]
`, strings.Join(targets, ", "))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	api := startPrometheus(t, prom, dir)

	harness.WaitFor(t, 30*time.Second, "prometheus scrapes all three nodes", func() error {
		var resp struct {
			Data struct {
				ActiveTargets []struct{ Health, ScrapeURL, LastError string }
			}
		}
		if err := getJSON(api+"/api/v1/targets", &resp); err != nil {
			return err
		}
		up := 0
		for _, tg := range resp.Data.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("%d of 3 targets up: %+v", up, resp.Data.ActiveTargets)
		}
		return nil
	})
	harness.WaitFor(t, 30*time.Second, "every metric the rules and the dashboard use exists", func() error {
		var resp struct{ Data []string }
		if err := getJSON(api+"/api/v1/label/__name__/values", &resp); err != nil {
			return err
		}
		var missing []string
		for _, m := range used {
			if !slices.Contains(resp.Data, m) {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not scraped: %v", missing)
		}
		return nil
	})
	require.Empty(t, alertStates(t, api)["RaftkvNoLeader"], "a healthy cluster has no leader alert")

	leader := c.Leader(t)
	other := (leader + 1) % 3
	c.Stop(leader)
	c.Stop(other)
	harness.WaitFor(t, 60*time.Second, "RaftkvNoLeader fires with a majority stopped", func() error {
		if s := alertStates(t, api)["RaftkvNoLeader"]; s != "firing" {
			return fmt.Errorf("RaftkvNoLeader is %q", s)
		}
		return nil
	})
	c.Restart(leader)
	c.Restart(other)
	c.WaitAllReady(t)
	harness.WaitFor(t, 60*time.Second, "RaftkvNoLeader clears once the majority is back", func() error {
		if s := alertStates(t, api)["RaftkvNoLeader"]; s != "" {
			return fmt.Errorf("RaftkvNoLeader is still %q", s)
		}
		return nil
	})
}

func lookPrometheus(t *testing.T) (prom, promtool string) {
	t.Helper()
	prom, err1 := exec.LookPath("prometheus")
	promtool, err2 := exec.LookPath("promtool")
	if err1 != nil || err2 != nil {
		if os.Getenv("RAFTKV_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("prometheus and promtool are required (RAFTKV_REQUIRE_PROMETHEUS=1): %v %v", err1, err2)
		}
		t.Skip("prometheus/promtool not installed (apt-get install prometheus)")
	}
	return prom, promtool
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Dir(filepath.Dir(file))
}

// usedMetrics returns every metric name in the rules' and the dashboard's expressions: the names of our
// own metrics, the Go and process collectors', and Prometheus' up.
func usedMetrics(t *testing.T, rules, dashboard []byte) []string {
	t.Helper()
	var exprs []string
	for _, m := range regexp.MustCompile(`(?m)^\s*expr:\s*(.+)$`).FindAllSubmatch(rules, -1) {
		exprs = append(exprs, string(m[1]))
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(dashboard, &dash))
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	name := regexp.MustCompile(`\b(?:raftkv_|go_|process_)[a-zA-Z0-9_]+\b|\bup\b`)
	var used []string
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			if !slices.Contains(used, n) {
				used = append(used, n)
			}
		}
	}
	slices.Sort(used)
	return used
}

// startPrometheus runs prometheus with dir's prometheus.yml on a free loopback port until the test
// ends, and returns its base URL once it is ready.
func startPrometheus(t *testing.T, bin, dir string) string {
	t.Helper()
	port, err := harness.FreePort()
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	api := "http://" + addr
	harness.WaitFor(t, 30*time.Second, "prometheus is ready", func() error {
		select {
		case <-done:
			return harness.Permanent(fmt.Errorf("prometheus exited"))
		default:
		}
		resp, err := http.Get(api + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return api
}

func getJSON(url string, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// alertStates maps each active alert's name to its most advanced state ("firing" over "pending").
func alertStates(t *testing.T, api string) map[string]string {
	t.Helper()
	var resp struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	require.NoError(t, getJSON(api+"/api/v1/alerts", &resp))
	states := map[string]string{}
	for _, a := range resp.Data.Alerts {
		name := a.Labels["alertname"]
		if states[name] != "firing" {
			states[name] = a.State
		}
	}
	return states
}
