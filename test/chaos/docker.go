package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Labels on everything the suite creates. LabelRun's value is the run id, "<pid>.<random>": a later run
// sweeps what an earlier run left behind only when that run's process is gone, so two runs on one
// machine (a developer and CI) never remove each other's clusters.
const (
	LabelRun     = "raftkv-chaos"
	LabelCluster = "raftkv-chaos.cluster"
)

// dockerTimeout bounds one docker CLI call. `docker stop` waits for the stop grace period first.
const dockerTimeout = 90 * time.Second

// stopping is set once the run is being torn down after a signal: from then on nothing new is created
// or started, so the sweep that follows cannot miss it.
var stopping atomic.Bool

// Docker runs the docker CLI and returns its trimmed stdout; the error carries stderr.
func Docker(ctx context.Context, args ...string) (string, error) {
	if stopping.Load() && len(args) > 0 && (args[0] == "run" || args[0] == "start" || args[0] == "create" ||
		len(args) > 1 && args[1] == "create") {
		return "", errors.New("the chaos run is being interrupted: not creating or starting anything")
	}
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	return runCmd(ctx, "docker", args...)
}

// runCmd runs a command and returns its trimmed stdout; the error carries the command line and stderr.
func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// runCombined runs a command and returns its stdout and stderr together.
func runCombined(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// DockerAvailable returns nil when the docker CLI is installed and its engine answers.
func DockerAvailable() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("the docker CLI is not installed: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := runCmd(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}")
	if err != nil {
		return fmt.Errorf("the docker engine does not answer: %w", err)
	}
	if v == "" {
		return errors.New("the docker engine does not answer (empty version)")
	}
	return nil
}

// NetFaultsAvailable returns nil when the suite can inject network faults: it runs iptables and tc
// inside containers' network namespaces with nsenter, which needs root.
func NetFaultsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("network faults need root (nsenter into the containers' network namespaces)")
	}
	for _, tool := range []string{"nsenter", "iptables", "tc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("network faults need %s: %w", tool, err)
		}
	}
	return nil
}

// Sweep removes every container, network, volume and image that carries label (a "key=value"
// filter), in that order, and returns what it could not remove.
func Sweep(label string) error {
	ctx := context.Background()
	var errs []error
	list := func(args ...string) []string {
		out, err := Docker(ctx, args...)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		return strings.Fields(out)
	}
	if ids := list("ps", "-aq", "--filter", "label="+label); len(ids) > 0 {
		if _, err := Docker(ctx, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids := list("network", "ls", "-q", "--filter", "label="+label); len(ids) > 0 {
		if _, err := Docker(ctx, append([]string{"network", "rm"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids := list("volume", "ls", "-q", "--filter", "label="+label); len(ids) > 0 {
		if _, err := Docker(ctx, append([]string{"volume", "rm", "-f"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids := list("images", "-q", "--filter", "label="+label); len(ids) > 0 {
		if _, err := Docker(ctx, append([]string{"rmi", "-f"}, dedupe(ids)...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SweepStale removes what earlier runs on this machine left behind: objects labelled with a run id
// whose process no longer exists. It returns the run ids it swept.
func SweepStale() ([]string, error) {
	ctx := context.Background()
	runs := map[string]bool{}
	var errs []error
	for _, args := range [][]string{
		{"ps", "-a", "--filter", "label=" + LabelRun, "--format", `{{.Label "` + LabelRun + `"}}`},
		{"network", "ls", "--filter", "label=" + LabelRun, "--format", `{{.Label "` + LabelRun + `"}}`},
		{"volume", "ls", "--filter", "label=" + LabelRun, "--format", `{{.Label "` + LabelRun + `"}}`},
	} {
		out, err := Docker(ctx, args...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range strings.Fields(out) {
			runs[id] = true
		}
	}
	// `docker images --format` has no .Label: read the label of each image.
	if out, err := Docker(ctx, "images", "-q", "--filter", "label="+LabelRun); err != nil {
		errs = append(errs, err)
	} else if ids := dedupe(strings.Fields(out)); len(ids) > 0 {
		labels, err := Docker(ctx, append([]string{"image", "inspect", "-f", `{{index .Config.Labels "` + LabelRun + `"}}`}, ids...)...)
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range strings.Fields(labels) {
			runs[id] = true
		}
	}
	var swept []string
	for id := range runs {
		if runAlive(id) {
			continue
		}
		if err := Sweep(LabelRun + "=" + id); err != nil {
			errs = append(errs, err)
		}
		swept = append(swept, id)
	}
	return swept, errors.Join(errs...)
}

// runAlive reports whether the process that owns run id ("<pid>.<random>") still exists.
func runAlive(id string) bool {
	pidStr, _, ok := strings.Cut(id, ".")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return false // not ours to judge; a malformed id cannot belong to a live run of this suite
	}
	if pid == os.Getpid() {
		return true
	}
	_, err = os.Stat("/proc/" + pidStr)
	return err == nil
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
