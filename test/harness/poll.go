package harness

import (
	"errors"
	"testing"
	"time"
)

// PollInterval is how often WaitFor re-checks a condition.
const PollInterval = 100 * time.Millisecond

// WaitFor polls cond until it returns nil, and fails t (fatally) with cond's last error when it
// has not within timeout. cond's error says what is still missing, so a timeout explains itself.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
	}
}

// Poll calls cond every PollInterval until it returns nil or timeout elapses; it returns the last
// error then. cond runs at least once. A Permanent error ends the polling at once.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(PollInterval)
	defer ticker.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) || time.Now().After(deadline) {
			return err
		}
		<-ticker.C
	}
}

// Permanent wraps err so that Poll stops: the awaited state can no longer be reached.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ error }

func (e *permanentError) Unwrap() error { return e.error }
