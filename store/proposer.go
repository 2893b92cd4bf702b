package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/fsm"
)

const (
	// proposalsInFlight bounds the log entries of client writes this leader has handed to Raft and not
	// yet seen applied. Writes that arrive while every slot is busy wait and then share one entry: under
	// load the log grows by one large entry per commit round instead of one entry per write, and every
	// node encodes, stores, ships and applies far fewer of them. A write that arrives to a free slot goes
	// out at once, so a lone client pays no batching delay. One slot beat two and four at put c=16 and
	// c=128 (3 nodes on loopback, 2 cores): fewer, larger entries mean fewer BoltDB commits everywhere.
	proposalsInFlight = 1
	// maxBatchCommands and maxBatchBytes bound one entry: at most maxBatchBytes of small writes and as
	// much again of large ones (lanes.go); a single larger command still goes, as the entry's only large one.
	maxBatchCommands = 1024
	maxBatchBytes    = 1 << 20
)

// proposer is the leader's group commit: it turns the writes waiting for a slot into one batch entry
// (fsm.AppendBatch), which the FSM applies in order, each write with its own index.
type proposer struct {
	s *Store
	// format is the newest log format every server in the configuration advertises (0 until this term's
	// first reconcile has looked): a member that cannot apply batches must only ever see single commands,
	// and so on for every later format.
	format   atomic.Int64
	mu       sync.Mutex
	queue    []*proposal
	inFlight int
	// pending counts writes queued or in an entry in flight, for metrics.
	pending atomic.Int64
}

type proposal struct {
	cmd   []byte
	taken bool // in an entry handed to Raft: from then on it may be applied
	done  chan struct{}
	res   fsm.Result
	err   error
}

func newProposer(s *Store) *proposer { return &proposer{s: s} }

func newProposal(cmd []byte) *proposal { return &proposal{cmd: cmd, done: make(chan struct{})} }

// apply proposes the encoded command cmd and waits for its outcome. Its error says whether the write
// certainly had no effect (errNotLeader, ErrTimeout, ctx errors before it was proposed) or may have
// been applied (ErrIndeterminate).
func (p *proposer) apply(ctx context.Context, cmd []byte) (fsm.Result, error) {
	w := newProposal(cmd)
	p.submit(w)
	return p.wait(ctx, w)
}

// submit queues ws and, if a slot is free, commits the next batch on a goroutine of its own. Never on
// the caller's: committing waits for Raft, which may take as long as a majority's disks do, and every
// caller must be free to give up at its own deadline (wait), reporting the write indeterminate if it was
// handed to Raft. The committing goroutine ends when Raft answers, at the latest when it shuts down.
func (p *proposer) submit(ws ...*proposal) {
	ws = p.refuseUnsupported(ws)
	p.pending.Add(int64(len(ws)))
	p.mu.Lock()
	p.queue = append(p.queue, ws...)
	batch := p.takeLocked()
	p.mu.Unlock()
	if batch != nil {
		go p.run(batch)
	}
}

// errIdempotencyUnsupported: an idempotent write while some member cannot apply FormatIdempotent
// entries. Nothing was proposed.
var errIdempotencyUnsupported = fmt.Errorf("%w: idempotency keys need every member to apply log format %d",
	ErrIdempotencyUnsupported, fsm.FormatIdempotent)

// refuseUnsupported answers the idempotent writes in ws at once when the cluster format does not allow
// OpIdempotent yet, and returns the others. Applying them without the wrapper would silently break
// the exactly-once promise; a member that does not know the op (or the wrapped op) would skip the write.
func (p *proposer) refuseUnsupported(ws []*proposal) []*proposal {
	format := p.format.Load()
	if format >= fsm.FormatIdempotent {
		return ws
	}
	err := errIdempotencyUnsupported
	if format == 0 { // this term's first reconcile has not looked yet: retried within the request
		err = fmt.Errorf("%w: the log format of every member is not known yet", errLeaderNotReady)
	}
	kept := ws[:0:0]
	for _, w := range ws {
		if fsm.IsIdempotent(w.cmd) {
			w.err = err
			close(w.done)
			continue
		}
		kept = append(kept, w)
	}
	return kept
}

func (p *proposer) wait(ctx context.Context, w *proposal) (fsm.Result, error) {
	select {
	case <-w.done:
		return w.res, w.err
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.taken {
		for i, q := range p.queue {
			if q == w {
				p.queue = append(p.queue[:i], p.queue[i+1:]...)
				p.pending.Add(-1)
				break
			}
		}
		return fsm.Result{}, ctx.Err() // never proposed: nothing happened
	}
	return fsm.Result{}, fmt.Errorf("%w: not applied in time: %v", ErrIndeterminate, ctx.Err())
}

// run commits batches until the queue is empty, holding one slot.
func (p *proposer) run(batch []*proposal) {
	for batch != nil {
		p.commit(batch)
		batch = p.release()
	}
}

// release frees the caller's slot and, if writes are waiting, takes it again for the next batch.
func (p *proposer) release() []*proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	return p.takeLocked()
}

// takeLocked claims a slot and removes the next batch from the queue: the waiting small writes, then
// large ones, within the size bounds (pickBatch). It returns nil when no slot is free or nothing waits.
func (p *proposer) takeLocked() []*proposal {
	if p.inFlight >= proposalsInFlight || len(p.queue) == 0 {
		return nil
	}
	p.inFlight++
	limit := maxBatchCommands
	if p.format.Load() < fsm.FormatBatch {
		limit = 1
	}
	batch, rest := pickBatch(p.queue, func(w *proposal) int { return len(w.cmd) }, func(*proposal) bool { return true },
		limit, maxBatchBytes)
	for _, w := range batch {
		w.taken = true
	}
	clear(p.queue[len(rest):])
	p.queue = append(p.queue[:0], rest...)
	return batch
}

// commit hands batch to Raft as one entry and gives every write its outcome.
func (p *proposer) commit(batch []*proposal) {
	defer func() {
		// Not pending any more before anyone is told: a caller that reads the metric right after its
		// write returned must not still count it.
		p.pending.Add(-int64(len(batch)))
		for _, w := range batch {
			close(w.done)
		}
	}()
	sealed := p.format.Load() >= fsm.FormatSealed
	// Idempotent writes carry this leader's clock and dedup bounds, so that every node expires their
	// records at the same point of the log (fsm/idempotent.go).
	stamp := fsm.Stamp{
		Time:    time.Now().UnixMilli(),
		Window:  p.s.cfg.DedupWindow.Milliseconds(),
		MaxKeys: uint64(p.s.cfg.DedupMaxKeys),
	}
	for _, w := range batch {
		if !fsm.StampIdempotent(w.cmd, stamp) {
			// Session commands carry the clock too: it measures lock delays (fsm/session.go).
			fsm.StampSession(w.cmd, stamp.Time)
		}
	}
	data := batch[0].cmd
	if len(batch) > 1 {
		cmds := make([][]byte, len(batch))
		size := 0
		for i, w := range batch {
			cmds[i] = w.cmd
			size += len(w.cmd)
		}
		// Room for the checksum header in front, so that sealing does not copy the batch.
		buf := make([]byte, fsm.SealHeaderLen, fsm.SealHeaderLen+fsm.BatchLen(len(cmds), size))
		data = fsm.AppendBatch(buf, cmds)
		if sealed {
			data = fsm.SealInPlace(data)
		} else {
			data = data[fsm.SealHeaderLen:]
		}
	} else if sealed {
		data = fsm.Seal(data)
	}
	start := time.Now()
	f := p.s.raft.Apply(data, p.s.cfg.RequestTimeout)
	if err := f.Error(); err != nil {
		p.s.obs.EntryFailed(len(batch))
		err = classifyApplyError(err)
		for _, w := range batch {
			w.err = err
		}
		return
	}
	p.s.obs.EntryCommitted(len(batch), time.Since(start))
	switch res := f.Response().(type) {
	case []fsm.Result:
		if len(res) == len(batch) {
			for i, w := range batch {
				w.res = res[i]
			}
			return
		}
	case fsm.Result: // one command, or a batch whose framing the FSM refused (res.Err says why)
		if len(batch) == 1 || res.Err != nil {
			for _, w := range batch {
				w.res = res
			}
			return
		}
	}
	err := fmt.Errorf("%w: unexpected fsm response %T for %d writes", ErrIndeterminate, f.Response(), len(batch))
	for _, w := range batch {
		w.err = err
	}
}
