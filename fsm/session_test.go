package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// sess applies a session command at term 1, stamped at ms.
func (a *applier) sess(sc SessionCmd, ms int64) Result {
	sc.Time = ms
	return a.apply(sc.Command())
}

func (a *applier) applyAtTerm(term uint64, c Command) Result {
	a.index++
	res, ok := a.f.Apply(&raft.Log{Index: a.index, Term: term, Type: raft.LogCommand, Data: c.Encode()}).(Result)
	require.True(a.t, ok)
	return res
}

type recordingSessionSink struct {
	touched  map[string]time.Duration
	ended    []string
	restored []SessionCheckpointItem
}

func (r *recordingSessionSink) SessionTouched(id string, _ uint64, rem time.Duration) {
	if r.touched == nil {
		r.touched = map[string]time.Duration{}
	}
	r.touched[id] = rem
}
func (r *recordingSessionSink) SessionsEnded(ids []string) { r.ended = append(r.ended, ids...) }
func (r *recordingSessionSink) SessionsRestored(s []SessionCheckpointItem) {
	r.restored = s
}

func TestSessionCommandRoundTrip(t *testing.T) {
	for _, sc := range []SessionCmd{
		{Kind: SessionCreate, ID: "s1", Name: "n", TTL: 15 * time.Second, Behavior: BehaviorDelete, LockDelay: time.Second, Time: 7},
		{Kind: SessionRenew, ID: "s1", Time: 8},
		{Kind: SessionDestroy, ID: "s1"},
		{Kind: SessionAcquire, ID: "s1", Key: "k", Value: []byte("v"), Time: 9},
		{Kind: SessionExpire, Term: 3, Sessions: []SessionGen{{"a", 1}, {"b", 2}}},
		{Kind: SessionCheckpoint, Checkpoints: []SessionCheckpointItem{{"a", 1, 1500 * time.Millisecond}}},
	} {
		b := sc.Command().Encode()
		c, err := DecodeCommand(b)
		require.NoError(t, err)
		require.Equal(t, sc, *c.Session)
		require.Equal(t, b, c.Encode(), "one encoding per command")
		for i := range b {
			_, _ = DecodeCommand(b[:i]) // never panics
		}
	}
	_, err := DecodeSessionCmd(append([]byte{1, 99}, make([]byte, 8)...))
	require.ErrorIs(t, err, ErrInvalidCommand)
}

func TestStampSessionWritesTheTime(t *testing.T) {
	b := (&SessionCmd{Kind: SessionRenew, ID: "x"}).Command().Encode()
	require.True(t, StampSession(b, 12345))
	c, err := DecodeCommand(b)
	require.NoError(t, err)
	require.Equal(t, int64(12345), c.Session.Time)
	require.False(t, StampSession(Command{Op: OpPut, Key: "k", Value: make([]byte, 20)}.Encode(), 1))
}

func TestSessionKeysDeletedAtOneIndexWhenDestroyed(t *testing.T) {
	a := newApplier(t)
	ch := &recordingSink{}
	a.f.SetChangeSink(ch)
	require.Zero(t, a.sess(SessionCmd{Kind: SessionCreate, ID: "s", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1).Refused)
	require.True(t, a.sess(SessionCmd{Kind: SessionPut, ID: "s", Key: "svc/a", Value: []byte("1")}, 2).OK)
	require.True(t, a.sess(SessionCmd{Kind: SessionPut, ID: "s", Key: "svc/b", Value: []byte("2")}, 2).OK)
	a.put("svc/c", "plain")
	require.Equal(t, "s", a.mustGet("svc/a").Holder())
	res := a.sess(SessionCmd{Kind: SessionDestroy, ID: "s"}, 3)
	require.True(t, res.Deleted)
	require.Equal(t, res.Index, ch.indexes[len(ch.indexes)-1])
	last := ch.changes[len(ch.changes)-1]
	require.Len(t, last, 2, "both keys go in one write")
	require.True(t, last[0].Delete && last[1].Delete)
	_, ok := a.f.Get("svc/a")
	require.False(t, ok)
	require.Equal(t, "plain", string(a.mustGet("svc/c").Value))
	require.Equal(t, RefusedNoSession, a.sess(SessionCmd{Kind: SessionRenew, ID: "s"}, 4).Refused)
}

func TestLockAcquireReleaseFencingAndDelay(t *testing.T) {
	a := newApplier(t)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "a", TTL: 10 * time.Second, Behavior: BehaviorRelease, LockDelay: 5 * time.Second}, 1000)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "b", TTL: 10 * time.Second, Behavior: BehaviorRelease}, 1000)
	r1 := a.sess(SessionCmd{Kind: SessionAcquire, ID: "a", Key: "lock", Value: []byte("a")}, 1000)
	require.True(t, r1.OK)
	require.Equal(t, r1.Index, r1.Current, "the fencing token is the acquire's index")
	again := a.sess(SessionCmd{Kind: SessionAcquire, ID: "a", Key: "lock", Value: []byte("a2")}, 1000)
	require.True(t, again.OK)
	require.Equal(t, r1.Current, again.Current, "re-acquiring by the holder keeps the token")
	rb := a.sess(SessionCmd{Kind: SessionAcquire, ID: "b", Key: "lock", Value: []byte("b")}, 1000)
	require.False(t, rb.OK)
	require.Equal(t, RefusedHeld, a.sess(SessionCmd{Kind: SessionPut, ID: "b", Key: "lock"}, 1000).Refused)
	a.put("lock", "plain write keeps the holder")
	require.Equal(t, "a", a.mustGet("lock").Holder())

	// a expires (its generation is its create index, 1): the lock is released, its delay starts.
	gen, _, _ := a.f.GetSession("a")
	exp := a.sess(SessionCmd{Kind: SessionExpire, Term: 1, Sessions: []SessionGen{{"a", gen.RenewIndex}}}, 2000)
	require.True(t, exp.Deleted)
	e := a.mustGet("lock")
	require.Equal(t, "", e.Holder())
	require.Equal(t, r1.Current, e.LockIndex())
	require.Equal(t, exp.Index, e.ModIndex, "the release is a change watchers see")
	require.False(t, a.sess(SessionCmd{Kind: SessionAcquire, ID: "b", Key: "lock"}, 6999).OK, "in lock delay")
	r2 := a.sess(SessionCmd{Kind: SessionAcquire, ID: "b", Key: "lock", Value: []byte("b")}, 7000)
	require.True(t, r2.OK)
	require.Greater(t, r2.Current, r1.Current, "a new holder gets a larger token")
	rel := a.sess(SessionCmd{Kind: SessionRelease, ID: "b", Key: "lock", Value: []byte("free")}, 7000)
	require.True(t, rel.OK)
	require.Equal(t, "", a.mustGet("lock").Holder())
	require.False(t, a.sess(SessionCmd{Kind: SessionRelease, ID: "b", Key: "lock"}, 7000).OK)
	require.Equal(t, RefusedNoSession, a.sess(SessionCmd{Kind: SessionAcquire, ID: "gone", Key: "lock"}, 7000).Refused)
}

func TestExpireIsVoidAfterARenewOrInAnotherTerm(t *testing.T) {
	a := newApplier(t)
	sink := &recordingSessionSink{}
	a.f.SetSessionSink(sink)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "s", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1)
	s, _, _ := a.f.GetSession("s")
	a.sess(SessionCmd{Kind: SessionRenew, ID: "s"}, 2)
	require.False(t, a.sess(SessionCmd{Kind: SessionExpire, Term: 1, Sessions: []SessionGen{{"s", s.RenewIndex}}}, 3).Deleted,
		"a renew applied after the leader counted the session out wins")
	s, _, _ = a.f.GetSession("s")
	stale := (&SessionCmd{Kind: SessionExpire, Term: 1, Sessions: []SessionGen{{"s", s.RenewIndex}}}).Command()
	require.False(t, a.applyAtTerm(2, stale).Deleted, "decided in term 1, appended in term 2: void")
	require.Equal(t, 1, a.f.SessionCount())
	// A checkpoint at an old generation does not shorten a renewed session.
	a.sess(SessionCmd{Kind: SessionCheckpoint, Checkpoints: []SessionCheckpointItem{{"s", s.RenewIndex - 1, time.Second}}}, 4)
	s, _, _ = a.f.GetSession("s")
	require.Equal(t, 10*time.Second, s.Remaining)
	a.sess(SessionCmd{Kind: SessionCheckpoint, Checkpoints: []SessionCheckpointItem{{"s", s.RenewIndex, 4 * time.Second}}}, 4)
	s, _, _ = a.f.GetSession("s")
	require.Equal(t, 4*time.Second, s.Remaining)
	require.Equal(t, 4*time.Second, sink.touched["s"])
	require.True(t, a.applyAtTerm(2, (&SessionCmd{Kind: SessionExpire, Term: 2, Sessions: []SessionGen{{"s", s.RenewIndex}}}).Command()).Deleted)
	require.Equal(t, []string{"s"}, sink.ended)
}

func TestTxnSessionPut(t *testing.T) {
	a := newApplier(t)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "a", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "b", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1)
	txn := func(ops ...TxnOp) Result {
		tx := &Txn{Success: ops}
		return a.apply(Command{Op: OpTxn, Value: tx.Encode(), Txn: tx})
	}
	require.Equal(t, RefusedNoSession, txn(TxnOp{Kind: TxnPutSession, Key: "k", Session: "nope"}).Refused)
	res := txn(TxnOp{Kind: TxnPut, Key: "x", Value: []byte("1")}, TxnOp{Kind: TxnPutSession, Key: "k", Value: []byte("a"), Session: "a"})
	require.Zero(t, res.Refused)
	require.Equal(t, "a", a.mustGet("k").Holder())
	require.Equal(t, RefusedHeld, txn(TxnOp{Kind: TxnPut, Key: "y"}, TxnOp{Kind: TxnPutSession, Key: "k", Session: "b"}).Refused)
	_, ok := a.f.Get("y")
	require.False(t, ok, "a refused transaction changes nothing")
	require.Zero(t, txn(TxnOp{Kind: TxnDelete, Key: "k"}, TxnOp{Kind: TxnPutSession, Key: "k", Value: []byte("b"), Session: "b"}).Refused,
		"deleted earlier in the same transaction: free")
	require.Equal(t, "b", a.mustGet("k").Holder())
	a.sess(SessionCmd{Kind: SessionDestroy, ID: "b"}, 2)
	_, ok = a.f.Get("k")
	require.False(t, ok)
}

func TestSnapshotKeepsSessionsLocksAndDelays(t *testing.T) {
	a := newApplier(t)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "a", Name: "web", TTL: 10 * time.Second, Behavior: BehaviorRelease, LockDelay: time.Second}, 1)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "b", TTL: 20 * time.Second, Behavior: BehaviorDelete}, 1)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "c", TTL: 20 * time.Second, Behavior: BehaviorDelete, LockDelay: time.Minute}, 1)
	a.sess(SessionCmd{Kind: SessionAcquire, ID: "a", Key: "lock", Value: []byte("v")}, 1)
	a.sess(SessionCmd{Kind: SessionPut, ID: "b", Key: "eph", Value: []byte("v")}, 1)
	a.sess(SessionCmd{Kind: SessionPut, ID: "c", Key: "gone", Value: []byte("v")}, 1)
	a.sess(SessionCmd{Kind: SessionDestroy, ID: "c"}, 5)
	data := persist(t, a.f)
	sink := &recordingSessionSink{}
	g := New()
	g.SetSessionSink(sink)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(data))))
	sa, ok, _ := g.GetSession("a")
	require.True(t, ok)
	require.Equal(t, "web", sa.Name)
	require.Equal(t, []string{"lock"}, sa.HeldKeys)
	require.Len(t, sink.restored, 2)
	e, _ := g.Get("lock")
	require.Equal(t, "a", e.Holder())
	require.Equal(t, data, persist(t, g), "the same state writes the same bytes")
	// The lock delay of "gone" came along: "b" cannot take it at clock 5+60s-1.
	ga := &applier{t: t, f: g, index: a.index}
	require.Equal(t, RefusedHeld, ga.sess(SessionCmd{Kind: SessionPut, ID: "b", Key: "gone"}, 60_004).Refused)
	// Destroying b after the restore deletes its key: the restored session knows its keys.
	ga.sess(SessionCmd{Kind: SessionDestroy, ID: "b"}, 60_010)
	_, ok = g.Get("eph")
	require.False(t, ok)
}

func TestBackupLeavesSessionsOut(t *testing.T) {
	a := newApplier(t)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "a", TTL: 10 * time.Second, Behavior: BehaviorRelease}, 1)
	a.sess(SessionCmd{Kind: SessionCreate, ID: "b", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1)
	a.sess(SessionCmd{Kind: SessionAcquire, ID: "a", Key: "lock", Value: []byte("v")}, 1)
	a.sess(SessionCmd{Kind: SessionPut, ID: "b", Key: "eph", Value: []byte("v")}, 1)
	a.put("plain", "p")
	var buf memSink
	require.NoError(t, a.f.Backup().Write(&buf))
	g := New()
	require.NoError(t, g.Restore(buf.reader()))
	require.Zero(t, g.SessionCount())
	e, ok := g.Get("lock")
	require.True(t, ok)
	require.Equal(t, "", e.Holder(), "released")
	require.NotZero(t, e.LockIndex())
	_, ok = g.Get("eph")
	require.False(t, ok, "an ephemeral key does not outlive its session through a backup")
	_, ok = g.Get("plain")
	require.True(t, ok)
}
