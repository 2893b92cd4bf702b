package store

// diskguard.go: Raft's stores seen from above. hashicorp/raft panics, on its own goroutines where
// nobody can recover, when it cannot save its term ("failed to save current term"), and it says
// nothing useful when a log write fails or hangs. The guard stands between Raft and BoltDB: it names
// each fault (storage.go), fails the node cleanly when Raft cannot go on, and tells readiness and the
// stall watchdog (stall.go) what the disk is doing.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// logFaultWindow: a failed log write keeps the node not ready until a write succeeds, or this long
	// after the last failure when no write comes (an idle follower has nothing to be behind on).
	logFaultWindow = 30 * time.Second
	// logFaultRepeat: how often a log write that keeps failing is logged again.
	logFaultRepeat = 30 * time.Second
)

// keyCurrentTerm is the stable-store key under which hashicorp/raft saves its term (raft.go); it
// panics when saving it fails.
var keyCurrentTerm = []byte("CurrentTerm")

// errRefusedAfterFailure: the node has failed; the guard writes nothing more for Raft.
var errRefusedAfterFailure = errors.New("the node has failed; raft's stores take no more writes")

type diskGuard struct {
	dir    string
	logger *slog.Logger
	fail   func(error)
	failed <-chan struct{} // closed when the node has failed
	closed <-chan struct{} // closed when the store is closing

	writeStart atomic.Int64 // UnixNano when the log write in flight began; 0 when none is

	mu        sync.Mutex
	fault     error     // the last log write error; nil after a write succeeds
	faultAt   time.Time // when it happened
	faultLogd time.Time // when it was last logged
}

// logFault is the log write error this node suffers from now, or nil.
func (g *diskGuard) logFault(now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fault == nil || now.Sub(g.faultAt) > logFaultWindow {
		return nil
	}
	return g.fault
}

// writeInFlight is how long the log write in flight has been running (0 when none is).
func (g *diskGuard) writeInFlight(now time.Time) time.Duration {
	start := g.writeStart.Load()
	if start == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, start))
}

func (g *diskGuard) isFailed() bool {
	select {
	case <-g.failed:
		return true
	default:
		return false
	}
}

// logWrite runs a write to the raft log: timed for the stall watchdog, its error named and kept.
func (g *diskGuard) logWrite(what string, write func() error) error {
	if g.isFailed() {
		return errRefusedAfterFailure
	}
	g.writeStart.Store(time.Now().UnixNano())
	err := write()
	g.writeStart.Store(0)

	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		if g.fault != nil {
			g.logger.Info("the raft log is writable again", "after", g.fault)
			g.fault = nil
		}
		return nil
	}
	err = storageError(what+" in "+filepath.Join(g.dir, raftDBFile), g.dir, err)
	first := g.fault == nil
	g.fault, g.faultAt = err, now
	if first || now.Sub(g.faultLogd) >= logFaultRepeat {
		g.faultLogd = now
		g.logger.Error("cannot write the raft log: this node falls behind until it can", "err", err)
	}
	return err
}

// stableFailed handles a failed write of Raft's term or vote: without it Raft cannot go on safely, so
// the node fails. Raft handles an error from saving its vote (it does not grant it), but panics on
// one from saving its term; that call is held here until the store closes and then reported done.
// That is safe because the node has failed first: it serves nothing, and every later write Raft asks
// for (a vote, a log entry) is refused, so the unsaved term is never acted on with anything durable.
func (g *diskGuard) stableFailed(key []byte, err error) error {
	err = storageError(fmt.Sprintf("save raft's %s in %s", key, filepath.Join(g.dir, raftDBFile)), g.dir, err)
	g.fail(fmt.Errorf("raft cannot save its state: %w", err))
	if bytes.Equal(key, keyCurrentTerm) {
		<-g.closed
		return nil
	}
	return err
}

// guardedStable is Raft's stable store (term and vote) behind the guard.
type guardedStable struct {
	raft.StableStore
	g *diskGuard
}

func (s guardedStable) Set(key, val []byte) error {
	if s.g.isFailed() {
		return s.g.stableFailed(key, errRefusedAfterFailure)
	}
	if err := s.StableStore.Set(key, val); err != nil {
		return s.g.stableFailed(key, err)
	}
	return nil
}

func (s guardedStable) SetUint64(key []byte, val uint64) error {
	if s.g.isFailed() {
		return s.g.stableFailed(key, errRefusedAfterFailure)
	}
	if err := s.StableStore.SetUint64(key, val); err != nil {
		return s.g.stableFailed(key, err)
	}
	return nil
}

// guardedLogs is Raft's log store behind the guard. It sits below Raft's LogCache, which flattens the
// errors it passes on to strings.
type guardedLogs struct {
	raft.LogStore
	g *diskGuard
}

func (l guardedLogs) StoreLog(log *raft.Log) error {
	return l.g.logWrite("append to the raft log", func() error { return l.LogStore.StoreLog(log) })
}

func (l guardedLogs) StoreLogs(logs []*raft.Log) error {
	return l.g.logWrite("append to the raft log", func() error { return l.LogStore.StoreLogs(logs) })
}

func (l guardedLogs) DeleteRange(min, max uint64) error {
	return l.g.logWrite("truncate the raft log", func() error { return l.LogStore.DeleteRange(min, max) })
}

func (l guardedLogs) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
