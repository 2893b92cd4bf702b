// Package harness runs real raftkv processes for the process-level tests: it builds the binary
// once per test run, starts clusters on free ports with per-node data dirs and log files, injects
// faults (kill -9, SIGTERM, SIGSTOP/SIGCONT, wiped data dirs) and talks to nodes over HTTP.
//
// Every process it starts is killed and reaped in t.Cleanup, also when the test fails or panics;
// if the test binary is interrupted (SIGINT/SIGTERM) it kills them before exiting, and each child
// is started with a parent-death signal so it cannot outlive the test binary. Waiting is always
// polling for a state with a deadline, never sleeping for a guessed duration.
//
// It never imports the product packages: it knows raftkv only by its command line and HTTP API.
package harness

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/test/lincheck"
)

// binaryPath is the raftkv binary built by Main.
var binaryPath string

// Main builds the raftkv binary (with -race when RAFTKV_TEST_RACE=1), runs the tests and removes
// the binary. Use it as `func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }`.
// RAFTKV_BINARY names a prebuilt binary to use instead. Under -short nothing is built: the process
// tests skip themselves.
func Main(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	if bin := os.Getenv("RAFTKV_BINARY"); bin != "" {
		binaryPath = bin
	} else {
		dir, err := os.MkdirTemp("", "raftkv-test-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		start := time.Now()
		bin, err := build(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "harness: building raftkv failed:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "harness: built %s in %v\n", bin, time.Since(start).Round(time.Millisecond))
		binaryPath = bin
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "harness: %v: killing %d raftkv processes\n", sig, killAll())
			removeDirs()
			if os.Getenv("RAFTKV_BINARY") == "" {
				os.RemoveAll(filepath.Dir(binaryPath))
			}
			os.Exit(2)
		case <-done:
		}
	}()
	return m.Run()
}

func build(dir string) (string, error) {
	root, err := lincheck.ModuleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "raftkv")
	args := []string{"build", "-o", out}
	if os.Getenv("RAFTKV_TEST_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/raftkv")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, output)
	}
	return out, nil
}

// live is every process started and not yet reaped, for the interrupt handler.
var live struct {
	mu    sync.Mutex
	procs map[*process]bool
}

func register(p *process) {
	live.mu.Lock()
	defer live.mu.Unlock()
	if live.procs == nil {
		live.procs = map[*process]bool{}
	}
	live.procs[p] = true
}

func unregister(p *process) {
	live.mu.Lock()
	defer live.mu.Unlock()
	delete(live.procs, p)
}

// killAll kills every live process and waits (briefly) until they are reaped.
func killAll() int {
	live.mu.Lock()
	procs := make([]*process, 0, len(live.procs))
	for p := range live.procs {
		p.cmd.Process.Signal(syscall.SIGKILL)
		procs = append(procs, p)
	}
	live.mu.Unlock()
	for _, p := range procs {
		p.wait(ReapTimeout)
	}
	return len(procs)
}

// dirs are the clusters' temp dirs, removed by the interrupt handler (t.TempDir's cleanup does not
// run when the test binary exits on a signal).
var dirs struct {
	mu   sync.Mutex
	list []string
}

func registerDir(dir string) {
	dirs.mu.Lock()
	defer dirs.mu.Unlock()
	dirs.list = append(dirs.list, dir)
}

func removeDirs() {
	dirs.mu.Lock()
	defer dirs.mu.Unlock()
	for _, d := range dirs.list {
		os.RemoveAll(d)
		os.Remove(filepath.Dir(d)) // t.TempDir's per-test parent, if now empty
	}
}

// process is one running raftkv child.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when reaped
	err  error         // Wait's result, set before done is closed
	// expected: the harness asked it to exit (or saw why it did); any other exit is a crash.
	expected atomic.Bool
}

func startProcess(args []string, logFile *os.File) (*process, error) {
	if binaryPath == "" {
		return nil, fmt.Errorf("no raftkv binary: the test package must call harness.Main from TestMain")
	}
	cmd := exec.Command(binaryPath, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Pdeathsig: the child dies with us even if we are killed without running cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	register(p)
	go func() {
		p.err = cmd.Wait()
		unregister(p)
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// wait waits for the process to exit, at most d. It reports whether it did.
func (p *process) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}
