package harness

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// CLITimeout bounds one client command run by RunCLI.
const CLITimeout = 60 * time.Second

// RunCLI runs the raftkv binary with args (a client command such as "snapshot save") and returns its
// stdout, stderr and exit status.
func RunCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if binaryPath == "" {
		t.Fatal("no raftkv binary: the test package must call harness.Main from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("raftkv %v: %v", args, err)
	}
	t.Logf("raftkv %v → exit %d\n%s%s", args, code, out.String(), errb.String())
	return out.String(), errb.String(), code
}
