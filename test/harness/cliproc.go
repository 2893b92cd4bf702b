package harness

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CLIProcess is a client command that runs until stopped (raftkv elect, register, lock), started by
// StartCLI. Its stdout and stderr go to files the test reads while it runs.
type CLIProcess struct {
	t        testing.TB
	p        *process
	args     []string
	out, err string // file paths
}

// StartCLI starts the raftkv binary with args in the background. It is killed (SIGKILL) and reaped
// at the end of the test if it is still running, and its output is logged then.
func StartCLI(t testing.TB, args ...string) *CLIProcess {
	t.Helper()
	if binaryPath == "" {
		t.Fatal("no raftkv binary: the test package must call harness.Main from TestMain")
	}
	dir := t.TempDir()
	c := &CLIProcess{t: t, args: args, out: filepath.Join(dir, "stdout"), err: filepath.Join(dir, "stderr")}
	stdout, err := os.Create(c.out)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(c.err)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(binaryPath, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("raftkv %v: %v", args, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	register(p)
	go func() {
		p.err = cmd.Wait()
		unregister(p)
		close(p.done)
	}()
	c.p = p
	t.Cleanup(func() {
		_ = p.signal(syscall.SIGKILL)
		p.wait(ReapTimeout)
		t.Logf("raftkv %v:\n--- stdout\n%s--- stderr\n%s", args, c.Stdout(), readFile(c.err))
	})
	return c
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// PID is the process id.
func (c *CLIProcess) PID() int { return c.p.cmd.Process.Pid }

// Stdout is what it has printed so far.
func (c *CLIProcess) Stdout() string { return readFile(c.out) }

// Lines are the complete lines of Stdout so far.
func (c *CLIProcess) Lines() []string {
	s := c.Stdout()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// Kill9 kills it with SIGKILL and reaps it.
func (c *CLIProcess) Kill9() {
	c.t.Helper()
	_ = c.p.signal(syscall.SIGKILL)
	if !c.p.wait(ReapTimeout) {
		c.t.Fatalf("raftkv %v did not die after SIGKILL", c.args)
	}
}

// Interrupt sends SIGINT (Ctrl-C).
func (c *CLIProcess) Interrupt() { _ = c.p.signal(syscall.SIGINT) }

// Wait waits at most d for it to exit and returns its exit status; ok is false if it still runs.
func (c *CLIProcess) Wait(d time.Duration) (code int, ok bool) {
	if !c.p.wait(d) {
		return 0, false
	}
	var exit *exec.ExitError
	if errors.As(c.p.err, &exit) {
		return exit.ExitCode(), true
	}
	return 0, true
}
