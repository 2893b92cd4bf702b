package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Target is one system under test, as one worker sees it. A worker calls its Target from one goroutine
// only, so an implementation may keep per-worker state (a reusable request, a buffer) without locks.
// Both methods return nil on success; any error counts as a failed operation, broken down by ErrorKind.
type Target interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) error
}

// TargetFactory returns the Target of worker w (0 <= w < concurrency). It is called once per worker
// before the run starts.
type TargetFactory func(worker int) (Target, error)

// Placement says how workers spread their requests over the nodes of a cluster.
type Placement string

const (
	// Spread: every worker sends its requests to each node in turn (round-robin per request), worker w
	// starting at node w%n, so at any moment the load is even over the nodes.
	Spread Placement = "spread"
	// Pin: worker w sends every request to node w%n.
	Pin Placement = "pin"
)

// Place builds a TargetFactory over n nodes: node(i) must return a new Target bound to node i (called
// once per worker and node for Spread, once per worker for Pin).
func Place(p Placement, n int, node func(i int) (Target, error)) (TargetFactory, error) {
	if n < 1 {
		return nil, errors.New("loadgen: no nodes to place workers on")
	}
	switch p {
	case Pin:
		return func(w int) (Target, error) { return node(w % n) }, nil
	case Spread:
		return func(w int) (Target, error) {
			ts := make([]Target, n)
			for i := range ts {
				t, err := node(i)
				if err != nil {
					return nil, err
				}
				ts[i] = t
			}
			return RoundRobin(ts, w%n), nil
		}, nil
	}
	return nil, fmt.Errorf("loadgen: unknown placement %q (want %q or %q)", p, Spread, Pin)
}

// RoundRobin returns a Target that sends each call to the next of targets in turn, beginning with
// targets[start%len]. Like every Target it is for one worker (one goroutine).
func RoundRobin(targets []Target, start int) Target {
	if len(targets) == 1 {
		return targets[0]
	}
	return &roundRobin{ts: targets, next: start % len(targets)}
}

type roundRobin struct {
	ts   []Target
	next int
}

func (r *roundRobin) pick() Target {
	t := r.ts[r.next]
	if r.next++; r.next == len(r.ts) {
		r.next = 0
	}
	return t
}

func (r *roundRobin) Put(ctx context.Context, key string, value []byte) error {
	return r.pick().Put(ctx, key, value)
}

func (r *roundRobin) Get(ctx context.Context, key string) error { return r.pick().Get(ctx, key) }

// KindError is an error that names its own kind for the error breakdown, e.g. "503 no_leader" or
// "grpc Unavailable". Kinds should be few: they are the keys of Result.ErrorKinds.
type KindError interface {
	error
	Kind() string
}

// ErrorKind names err for the error breakdown: the Kind of a KindError in its chain, else a transport
// class from TransportKind.
func ErrorKind(err error) string {
	var k KindError
	if errors.As(err, &k) {
		return k.Kind()
	}
	return TransportKind(err)
}

// TransportKind classifies an error that produced no answer: "transport: connection refused",
// "transport: timeout", and so on, falling back to the error's Go type (never its text, which tends to
// carry addresses and would make every error its own kind).
func TransportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "transport: timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "transport: connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "transport: connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "transport: broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "transport: no free local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "transport: connection closed (EOF)"
	case errors.As(err, &ne) && ne.Timeout():
		return "transport: timeout"
	}
	return fmt.Sprintf("error: %T", unwrapAll(err))
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
