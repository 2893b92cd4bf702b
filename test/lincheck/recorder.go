package lincheck

import (
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Recorder collects a history from concurrent clients. Timestamps are nanoseconds since the
// recorder was created, read from the monotonic clock.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewRecorder starts an empty history.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the current history timestamp.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Call is an operation that has been invoked and not yet recorded.
type Call struct {
	r        *Recorder
	client   int
	input    Input
	call     int64
	metadata string
}

// Begin timestamps an invocation. Take the timestamp immediately before sending the request.
func (r *Recorder) Begin(client int, in Input, metadata string) *Call {
	return &Call{r: r, client: client, input: in, call: r.Now(), metadata: metadata}
}

// Return records a definite answer, timestamped now.
func (c *Call) Return(out Output) { c.record(out, c.r.Now()) }

// Indeterminate records a write whose outcome is unknown: unknown output, infinite return time.
func (c *Call) Indeterminate() { c.record(Output{Status: Unknown}, Infinity) }

func (c *Call) record(out Output, ret int64) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.ops = append(c.r.ops, porcupine.Operation{
		ClientId: c.client, Input: c.input, Call: c.call, Output: out, Return: ret, Metadata: c.metadata,
	})
}

// History returns a copy of the operations recorded so far.
func (r *Recorder) History() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}
