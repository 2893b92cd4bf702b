package chaos

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/test/lincheck"
)

// Environment:
//
//	RAFTKV_CHAOS=long           the long version: several minutes of repeated faults per scenario
//	RAFTKV_CHAOS_DURATION=5m    how long each scenario injects faults in long mode (default 3m)
//	RAFTKV_CHAOS_PARALLEL=N     scenarios run at once (default 3 short, 1 long)
//	RAFTKV_CHAOS_IMAGE=img:tag  use this image instead of building one from the checkout
//	RAFTKV_REQUIRE_DOCKER=1     no docker engine (or no root for network faults) is a failure, not a skip
//	RAFTKV_TEST_ARTIFACTS=dir   where reports and failure artifacts go (default test/artifacts)
var (
	env    *Env
	report *Report
	long   bool
	// unavailable says why no scenario can run here; netUnavailable why network faults cannot.
	unavailable, netUnavailable string
	// diskUnavailable says why disk faults cannot run here.
	diskUnavailable string
	artifacts       string // this run's directory for failure artifacts
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	long = os.Getenv("RAFTKV_CHAOS") == "long"
	if testing.Short() {
		return m.Run() // every scenario skips itself
	}
	if err := DockerAvailable(); err != nil {
		unavailable = err.Error()
		return m.Run()
	}
	if err := NetFaultsAvailable(); err != nil {
		netUnavailable = err.Error()
	}
	mode := "short"
	if long {
		mode = "long"
	}
	started := time.Now()
	runID := fmt.Sprintf("%d.%06x", os.Getpid(), rand.Uint32()&0xffffff)
	report = &Report{RunID: runID, Mode: mode, Started: started}

	if swept, err := SweepStale(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: sweeping leftovers of earlier runs: %v\n", err)
	} else if len(swept) > 0 {
		fmt.Fprintf(os.Stderr, "chaos: removed leftovers of earlier runs %v\n", swept)
	}
	if os.Geteuid() == 0 {
		if swept, err := SweepStaleDisks(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: releasing disks of earlier runs: %v\n", err)
		} else if len(swept) > 0 {
			fmt.Fprintf(os.Stderr, "chaos: released the disks of earlier runs %v\n", swept)
		}
	}
	if err := DiskFaultsAvailable(); err != nil {
		diskUnavailable = err.Error()
	}
	dir, err := lincheck.ArtifactDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	stamp := started.Format("20060102-150405")
	artifacts = filepath.Join(dir, "chaos-"+stamp)

	// Ctrl-C or a kill: remove everything of this run before exiting (t.Cleanup does not run then).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			stopping.Store(true)
			fmt.Fprintf(os.Stderr, "\nchaos: %v: removing the containers, networks, volumes and image of run %s\n", sig, runID)
			if err := Sweep(LabelRun + "=" + runID); err != nil {
				fmt.Fprintln(os.Stderr, "chaos:", err)
			}
			if err := ReleaseRunDisks(runID); err != nil {
				fmt.Fprintln(os.Stderr, "chaos:", err)
			}
			os.Exit(2)
		case <-done:
		}
	}()
	defer func() {
		if err := Sweep(LabelRun + "=" + runID); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: final cleanup:", err)
		}
		if err := ReleaseRunDisks(runID); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: final cleanup:", err)
		}
	}()

	image := os.Getenv("RAFTKV_CHAOS_IMAGE")
	if image == "" {
		start := time.Now()
		image = "raftkv-chaos:" + runID
		if err := buildImage(image, runID); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: building the image:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "chaos: built image %s in %v\n", image, time.Since(start).Round(time.Millisecond))
	}
	env = &Env{Image: image, RunID: runID, Artifacts: artifacts, NodeArgs: []string{
		// Small snapshot thresholds so that snapshots, log truncation and snapshot installs on lagging
		// or replaced nodes happen within a short scenario.
		"--snapshot-threshold", "1000", "--snapshot-interval", "5s", "--trailing-logs", "200",
	}}

	code := m.Run()

	report.WallS = seconds(time.Since(started))
	if len(report.Results) > 0 {
		fmt.Println()
		report.Table(os.Stdout)
		path := filepath.Join(dir, fmt.Sprintf("chaos-%s-%s.json", stamp, mode))
		if err := report.WriteJSON(path); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: writing the report:", err)
		} else {
			fmt.Println("chaos: report", path)
		}
	}
	return code
}

// buildImage builds the static binary from this checkout and the image from the repository's
// Dockerfile, in a build context of its own (so it never touches bin/ of the checkout).
func buildImage(tag, runID string) error {
	root, err := lincheck.ModuleRoot()
	if err != nil {
		return err
	}
	ctxDir, err := os.MkdirTemp("", "raftkv-chaos-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-s -w -X main.version=chaos-"+runID,
		"-o", filepath.Join(ctxDir, "bin", "raftkv"), "./cmd/raftkv")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	for _, p := range []string{"Dockerfile", ".dockerignore", "deploy/rootfs"} {
		if err := copyTree(filepath.Join(root, p), filepath.Join(ctxDir, p)); err != nil {
			return err
		}
	}
	_, err = Docker(ctx, "build", "-q", "--label", LabelRun+"="+runID, "-t", tag, ctxDir)
	return err
}

// copyTree copies a file or a directory tree.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// requireEnv skips (or, with RAFTKV_REQUIRE_DOCKER=1, fails) a scenario that cannot run here.
func requireEnv(t *testing.T, needNet bool) { requireEnvDisks(t, needNet, false) }

// requireEnvDisks is requireEnv for a scenario that may need disks of its own (disk.go).
func requireEnvDisks(t *testing.T, needNet, needDisks bool) {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos: skipped with -short (the suite starts containers and takes minutes)")
	}
	reason := unavailable
	if reason == "" && needNet {
		reason = netUnavailable
	}
	if reason == "" && needDisks {
		reason = diskUnavailable
	}
	if reason == "" {
		return
	}
	if os.Getenv("RAFTKV_REQUIRE_DOCKER") == "1" {
		t.Fatalf("chaos: RAFTKV_REQUIRE_DOCKER=1 but the suite cannot run: %s", reason)
	}
	t.Skipf("chaos: SKIPPED: %s (set RAFTKV_REQUIRE_DOCKER=1 to make this a failure)", strings.TrimSpace(reason))
}
