package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/acl"
	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

const (
	// maxForwardBatch and maxForwardBytes bound the writes that ride one RPC to the leader, by count
	// and by their encoded size (far below transport.MaxFrame); a single larger write still goes. An
	// RPC carries small writes or large ones (lanes.go), never both.
	maxForwardBatch = 256
	maxForwardBytes = 2 << 20
	// forwardRPCsInFlight lets the next batch go out while one is being applied, so a batch never waits
	// for a whole commit round before it is sent, yet concurrent writes still coalesce under load.
	forwardRPCsInFlight = 2
)

// forwarder batches the writes a follower forwards to the leader: every write that queues while the
// in-flight RPCs are busy rides the next one. Under load this turns N forwarded requests, each read,
// parsed and answered by the leader, into one; alone, a write goes out at once.
type forwarder struct {
	s     *Store
	mu    sync.Mutex
	queue []*forwardedWrite
	// largeInFlight: an RPC carrying large writes is out. There is at most one, so the other slots are
	// left to small writes (lanes.go): a leader answers an RPC when its last write commits, and large
	// writes wait behind every large write queued at the leader, which held a small write that shared
	// their RPC or waited for a slot for seconds.
	largeInFlight bool
	kick          chan struct{}
	slots         chan struct{}
}

type forwardedWrite struct {
	addr  string
	cmd   []byte
	taken bool // handed to an RPC: from then on the leader may apply it
	done  chan struct{}
	res   fsm.Result
	err   error
}

func newForwarder(s *Store) *forwarder {
	return &forwarder{s: s, kick: make(chan struct{}, 1), slots: make(chan struct{}, forwardRPCsInFlight)}
}

// apply forwards one encoded command to the leader at addr. Like applyLocal, its error says whether the
// write certainly had no effect (errNotLeader, transport.ErrUnreachable, ctx errors before sending) or
// may have been applied (ErrIndeterminate).
func (f *forwarder) apply(ctx context.Context, addr string, cmd []byte) (fsm.Result, error) {
	w := &forwardedWrite{addr: addr, cmd: cmd, done: make(chan struct{})}
	f.mu.Lock()
	f.queue = append(f.queue, w)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
	select {
	case <-w.done:
		return w.res, w.err
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !w.taken {
		for i, q := range f.queue {
			if q == w {
				f.queue = append(f.queue[:i], f.queue[i+1:]...)
				break
			}
		}
		return fsm.Result{}, ctx.Err() // never sent: nothing happened
	}
	return fsm.Result{}, fmt.Errorf("%w: no answer from leader %s in time: %v", ErrIndeterminate, addr, ctx.Err())
}

func (f *forwarder) run() {
	ctx := f.s.ctx
	for {
		select {
		case <-ctx.Done():
			f.failQueued(ErrShuttingDown)
			return
		case <-f.kick:
		}
		for {
			select {
			case f.slots <- struct{}{}:
			case <-ctx.Done():
				f.failQueued(ErrShuttingDown)
				return
			}
			batch, large := f.take()
			if len(batch) == 0 {
				<-f.slots
				break
			}
			go func() {
				defer func() { <-f.slots }()
				f.send(batch)
				if large {
					f.largeDone()
				}
			}()
		}
	}
}

// largeDone frees the large lane and looks at the queue again.
func (f *forwarder) largeDone() {
	f.mu.Lock()
	f.largeInFlight = false
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// take removes the next batch from the queue, for the leader address of the oldest write: its small
// writes if any wait, else, unless an RPC of large writes is out already, its large writes within the
// byte budget (large reports that). An RPC never mixes the two, so a small write is never answered
// only once large ones have committed.
func (f *forwarder) take() (batch []*forwardedWrite, large bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 {
		return nil, false
	}
	addr := f.queue[0].addr
	size := func(w *forwardedWrite) int { return len(w.cmd) }
	batch, rest := pickBatch(f.queue, size, func(w *forwardedWrite) bool { return w.addr == addr && len(w.cmd) < largeWrite },
		maxForwardBatch, maxForwardBytes)
	if len(batch) == 0 {
		if f.largeInFlight {
			return nil, false // largeDone kicks the loop
		}
		batch, rest = pickBatch(f.queue, size, func(w *forwardedWrite) bool { return w.addr == addr }, maxForwardBatch, maxForwardBytes)
		large, f.largeInFlight = true, true
	}
	for _, w := range batch {
		w.taken = true
	}
	clear(f.queue[len(rest):])
	f.queue = append(f.queue[:0], rest...)
	if len(f.queue) > 0 {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
	return batch, large
}

func (f *forwarder) failQueued(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.queue {
		w.err = err
		close(w.done)
	}
	f.queue = nil
}

func (f *forwarder) send(batch []*forwardedWrite) {
	addr := batch[0].addr
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.cfg.RequestTimeout)
	defer cancel()
	cmds := make([][]byte, len(batch))
	for i, w := range batch {
		cmds[i] = w.cmd
	}
	start := time.Now()
	resp, err := f.s.rpc.Call(ctx, addr, rpcApplyBatch, encodeFrames(cmds))
	f.s.obs.ForwardRPC(time.Since(start), err)
	var results [][]byte
	if err == nil {
		var payload []byte
		if payload, err = decodeResponse(addr, resp); err == nil {
			results, err = decodeFrames(payload)
			if err == nil && len(results) != len(batch) {
				err = fmt.Errorf("%w: leader %s answered %d of %d writes", errRemote, addr, len(results), len(batch))
			}
		}
	}
	for i, w := range batch {
		switch {
		case err != nil && retryWrite(err):
			w.err = err
		case errors.Is(err, transport.ErrTooLarge): // never sent: nothing can have happened
			w.err = fmt.Errorf("%w: %v", ErrInvalid, err)
		case err != nil:
			w.err = fmt.Errorf("%w: forwarding to leader %s: %v", ErrIndeterminate, addr, err)
		default:
			var payload []byte
			if payload, w.err = decodeResponse(addr, results[i]); w.err == nil {
				w.res, w.err = decodeResult(payload)
			}
		}
		close(w.done)
	}
}

// applyBatchLocal is the leader's side: every command joins the proposer's queue before any is waited
// for, so they share log entries and commit rounds.
func (s *Store) applyBatchLocal(ctx context.Context, req []byte) ([]byte, error) {
	cmds, err := decodeFrames(req)
	if err != nil {
		return nil, err
	}
	results := make([][]byte, len(cmds))
	proposals := make([]*proposal, len(cmds)) // nil where the command was refused
	valid := make([]*proposal, 0, len(cmds))
	for i, cmd := range cmds {
		if err := s.checkForwarded(cmd); err != nil {
			if !errors.Is(err, errLeaderNotReady) && !errors.Is(err, ErrNotReady) && !errors.Is(err, ErrIdempotencyUnsupported) {
				err = fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			results[i] = encodeResponse(err, nil)
			continue
		}
		proposals[i] = newProposal(cmd)
		valid = append(valid, proposals[i])
	}
	s.proposer.submit(valid...)
	for i, w := range proposals {
		if w == nil {
			continue
		}
		if res, err := s.proposer.wait(ctx, w); err != nil {
			results[i] = encodeResponse(err, nil)
		} else {
			results[i] = encodeResponse(nil, encodeResult(res))
		}
	}
	return encodeFrames(results), nil
}

// encodeFrames concatenates length-prefixed byte strings, preceded by their count.
func encodeFrames(frames [][]byte) []byte {
	size := binary.MaxVarintLen64
	for _, f := range frames {
		size += binary.MaxVarintLen64 + len(f)
	}
	b := binary.AppendUvarint(make([]byte, 0, size), uint64(len(frames)))
	for _, f := range frames {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// checkForwarded accepts only what a client may write through a follower: a put or delete of a valid
// key and value, or a transaction of them (checkClientCommand), possibly wrapped with a valid
// idempotency key. The node port is reachable by anything
// that can dial it; commands only this node's own code proposes (OpSetMember, OpNoop, …) must never
// enter the log from outside.
func (s *Store) checkForwarded(b []byte) error {
	cmd, err := fsm.DecodeCommand(b)
	if err != nil {
		return err
	}
	if cmd.Op == fsm.OpIdempotent {
		if problem := CheckIdempotencyKey(cmd.Key); problem != "" {
			return fmt.Errorf("idempotency key %s", problem)
		}
		if cmd, _, _, err = cmd.Unwrap(); err != nil {
			return err
		}
		if err := s.checkIdempotentWrap(cmd); err != nil {
			return err
		}
	}
	return s.checkClientCommand(cmd)
}

// checkClientCommand is the one place that says which commands a leader proposes for a client, local
// or forwarded. A transaction is proposed only once every member applies log format 3 (a member that
// does not would skip it as an invalid command and diverge); until this term's first reconcile has
// looked, the leader does not know, and says so with the retryable errLeaderNotReady.
func (s *Store) checkClientCommand(cmd fsm.Command) error {
	switch cmd.Op {
	case fsm.OpPut, fsm.OpDelete:
		return s.checkKeyValue(cmd.Key, cmd.Value)
	case fsm.OpSession:
		return s.checkSessionCommand(cmd.Session)
	case fsm.OpTxn:
		switch format := s.proposer.format.Load(); {
		case format == 0:
			return fmt.Errorf("%w: the log format of every member is not known yet", errLeaderNotReady)
		case format < fsm.FormatSealed:
			return fmt.Errorf("%w: transactions need every member on log format %d, the oldest is on %d",
				ErrNotReady, fsm.FormatSealed, format)
		}
		for _, c := range cmd.Txn.Compare {
			if err := s.checkPrefix(c.Key); err != nil {
				return err
			}
			if int64(len(c.Value)) > s.cfg.MaxValueSize {
				return fmt.Errorf("compare value of %d bytes over the limit of %d", len(c.Value), s.cfg.MaxValueSize)
			}
		}
		for _, ops := range [][]fsm.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for _, op := range ops {
				var err error
				switch op.Kind {
				case fsm.TxnDeletePrefix, fsm.TxnList:
					err = s.checkPrefix(op.Key)
				case fsm.TxnPutSession:
					if err = s.checkSessionFormat(); err == nil {
						if err = checkSessionID(op.Session); err == nil {
							err = s.checkKeyValue(op.Key, op.Value)
						}
					}
				default:
					err = s.checkKeyValue(op.Key, op.Value)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	case fsm.OpACL:
		// Proposed for a client whose token the receiving node checked (httpapi): the node port is
		// trusted to carry only what a member's code sends, which peer mTLS is what makes true.
		switch format := s.proposer.format.Load(); {
		case format == 0:
			return fmt.Errorf("%w: the log format of every member is not known yet", errLeaderNotReady)
		case format < fsm.FormatACL:
			return fmt.Errorf("%w: ACL changes need every member on log format %d, the oldest is on %d",
				ErrNotReady, fsm.FormatACL, format)
		}
		_, err := acl.DecodeCommand(cmd.Value)
		return err
	}
	return fmt.Errorf("%s is not a client write", cmd.Op)
}

func (s *Store) checkKeyValue(key string, value []byte) error {
	if problem := checkKey(key, s.cfg.MaxKeySize); problem != "" {
		return fmt.Errorf("key %s", problem)
	}
	if int64(len(value)) > s.cfg.MaxValueSize {
		return fmt.Errorf("value of %d bytes over the limit of %d", len(value), s.cfg.MaxValueSize)
	}
	return nil
}

// checkPrefix: a prefix may be empty (every key); otherwise it is key text.
func (s *Store) checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if problem := checkKey(p, s.cfg.MaxKeySize); problem != "" {
		return fmt.Errorf("prefix %s", problem)
	}
	return nil
}

// CheckIdempotencyKey says what is wrong with an idempotency key, or "" if nothing: 1 to
// MaxIdempotencyKeySize bytes of printable ASCII (it travels in a header and is kept in the FSM).
func CheckIdempotencyKey(k string) string {
	if k == "" {
		return "is empty"
	}
	if len(k) > MaxIdempotencyKeySize {
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(k), MaxIdempotencyKeySize)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "must be printable ASCII without spaces"
		}
	}
	return ""
}

// checkKey says what is wrong with a key, or "" if nothing: what the HTTP API accepts (non-empty, at
// most max bytes of valid UTF-8 without control characters).
func checkKey(k string, max int) string {
	switch {
	case k == "":
		return "is empty"
	case len(k) > max:
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(k), max)
	case !utf8.ValidString(k):
		return "is not valid UTF-8"
	case strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "contains a control character"
	}
	return ""
}

var errBadFrames = errors.New("malformed batch encoding")

// decodeFrames takes a batch apart. Its input comes off the network, so what it allocates is bounded
// by what is there, not by what the batch claims: at most maxForwardBatch frames of at least one byte.
func decodeFrames(b []byte) ([][]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxForwardBatch || n > uint64(len(b)-k)/2 {
		return nil, errBadFrames
	}
	b = b[k:]
	frames := make([][]byte, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > uint64(len(b)-k) {
			return nil, errBadFrames
		}
		frames = append(frames, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, errBadFrames
	}
	return frames, nil
}
