package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

const testWindow = 10_000 // ms

// idem applies write wrapped under idempotency key key, stamped at leader time at (ms).
func (a *applier) idem(key string, at int64, write Command) Result {
	return a.idemStamped(key, Stamp{Time: at, Window: testWindow, MaxKeys: 100}, write)
}

func (a *applier) idemStamped(key string, st Stamp, write Command) Result {
	b := Idempotent(key, write.Encode()).Encode()
	require.True(a.t, StampIdempotent(b, st))
	return a.raw(b)
}

func putCmd(key, value string) Command { return Command{Op: OpPut, Key: key, Value: []byte(value)} }

func TestIdempotentRetryReplaysTheFirstOutcome(t *testing.T) {
	a := newApplier(t)
	first := a.idem("req-1", 1000, putCmd("k", "v1"))
	require.Equal(t, Result{Index: 1}, first)
	a.put("k", "v2") // index 2: someone else wrote the key since

	retry := a.idem("req-1", 2000, putCmd("k", "v1"))
	require.Equal(t, Result{Index: 1, Replayed: true}, retry, "same index, same result, marked replayed")
	require.Equal(t, "v2", string(a.mustGet("k").Value), "the retry did not apply again")
	require.Equal(t, uint64(2), a.f.LastWriteIndex(), "a replay takes no write index")
	require.Equal(t, uint64(3), a.f.AppliedIndex())
}

func TestIdempotentKeyReusedForAnotherRequestChangesNothing(t *testing.T) {
	a := newApplier(t)
	a.idem("req-1", 1000, putCmd("k", "v1"))
	for _, other := range []Command{
		putCmd("k", "other value"),
		putCmd("other key", "v1"),
		{Op: OpDelete, Key: "k"},
		{Op: OpPut, Key: "k", Value: []byte("v1"), CAS: true, CASIndex: 1},
	} {
		require.Equal(t, Result{KeyReused: true}, a.idem("req-1", 1500, other), "%+v", other)
	}
	require.Equal(t, Entry{Key: "k", Value: []byte("v1"), CreateIndex: 1, ModIndex: 1}, a.mustGet("k"))
	_, ok := a.f.Get("other key")
	require.False(t, ok)
	require.Equal(t, uint64(1), a.f.LastWriteIndex())
}

func TestIdempotentCASAndDeleteOutcomesAreReplayed(t *testing.T) {
	a := newApplier(t)
	a.put("k", "v") // index 1
	cas := Command{Op: OpPut, Key: "k", Value: []byte("x"), CAS: true, CASIndex: 7}
	failed := a.idem("cas", 1000, cas)
	require.Equal(t, Result{Index: 2, CASFailed: true, Current: 1}, failed)
	a.put("k", "w") // index 3: a retry now would fail with Current 3 if it applied again

	require.Equal(t, Result{Index: 2, CASFailed: true, Current: 1, Replayed: true}, a.idem("cas", 1000, cas))

	del := Command{Op: OpDelete, Key: "k"}
	require.Equal(t, Result{Index: 5, Deleted: true}, a.idem("del", 1000, del)) // raft index 5
	require.Equal(t, Result{Index: 5, Deleted: true, Replayed: true}, a.idem("del", 1000, del),
		"the retry reports the deletion it made the first time, not 'not found'")
}

func TestIdempotentRecordsExpireByLogTimeAndTheClockNeverGoesBack(t *testing.T) {
	a := newApplier(t)
	require.Equal(t, uint64(1), a.idem("old", 1000, putCmd("k", "1")).Index)
	require.Equal(t, uint64(2), a.idem("young", 1000+testWindow, putCmd("j", "1")).Index)

	// The window has not passed for "old" (exactly testWindow old): still replayed.
	require.True(t, a.idem("old", 1000+testWindow, putCmd("k", "1")).Replayed)

	// A later leader stamps a time past old's window: old expires, young does not.
	require.True(t, a.idem("young", 1001+testWindow, putCmd("j", "1")).Replayed)
	require.Equal(t, 1, a.f.DedupLen())
	res := a.idem("old", 1001+testWindow, putCmd("k", "1"))
	require.False(t, res.Replayed, "expired: applies as a new write")
	require.Equal(t, uint64(5), res.Index, "the entry's raft index: 5")

	// A leader whose clock is behind cannot bring back what expired nor keep records longer: the
	// dedup clock is the largest stamp seen.
	a.idem("late", 5, putCmd("x", "1"))
	require.True(t, a.idem("late", 5, putCmd("x", "1")).Replayed, "recorded at the dedup clock, not at 5")
	require.Equal(t, 1001+int64(testWindow), a.f.dedup.clock)
}

func TestIdempotentTableKeepsAtMostMaxKeys(t *testing.T) {
	a := newApplier(t)
	st := Stamp{Time: 1, Window: testWindow, MaxKeys: 3}
	for _, k := range []string{"a", "b", "c", "d"} {
		a.idemStamped(k, st, putCmd(k, "v"))
	}
	require.Equal(t, 3, a.f.DedupLen())
	require.False(t, a.idemStamped("a", st, putCmd("a", "v")).Replayed, "the oldest went first")
	require.True(t, a.idemStamped("d", st, putCmd("d", "v")).Replayed)
}

func TestIdempotentRecordsSurviveSnapshotAndRestore(t *testing.T) {
	a := newApplier(t)
	a.idem("r1", 1000, putCmd("k", "v"))
	a.idem("r2", 2000, Command{Op: OpDelete, Key: "k"})
	a.idem("r3", 3000, Command{Op: OpPut, Key: "c", CAS: true, CASIndex: 9})
	snap := persist(t, a.f)

	b := &applier{t: t, f: restored(t, snap), index: a.index}
	require.Equal(t, Result{Index: 1, Replayed: true}, b.idem("r1", 3000, putCmd("k", "v")))
	require.Equal(t, Result{Index: 2, Deleted: true, Replayed: true}, b.idem("r2", 3000, Command{Op: OpDelete, Key: "k"}))
	require.Equal(t, Result{Index: 3, CASFailed: true, Replayed: true}, b.idem("r3", 3000, Command{Op: OpPut, Key: "c", CAS: true, CASIndex: 9}))
	require.Equal(t, Result{KeyReused: true}, b.idem("r1", 3000, putCmd("k", "other")))
	require.Equal(t, int64(3000), b.f.dedup.clock)

	// Same log, same bytes: the records are part of the deterministic state.
	require.Equal(t, snap, persist(t, restored(t, snap)))

	// The clock came back too: a record expires at the same point of the log as on the source.
	b.idem("late", 3000+testWindow+1, putCmd("z", "z"))
	require.Equal(t, 1, b.f.DedupLen(), "r1..r3 expired by the restored clock")
}

func TestIdempotentWrapperRejectsWhatItMustNotCarry(t *testing.T) {
	a := newApplier(t)
	for name, b := range map[string][]byte{
		"noop":        Idempotent("k", Command{Op: OpNoop}.Encode()).Encode(),
		"set-member":  Idempotent("k", Command{Op: OpSetMember, Key: "n1", Value: []byte("d")}.Encode()).Encode(),
		"nested":      Idempotent("k", Idempotent("k2", putCmd("a", "b").Encode()).Encode()).Encode(),
		"garbage":     Idempotent("k", []byte{9, 9, 9}).Encode(),
		"no stamp":    Command{Op: OpIdempotent, Key: "k", Value: []byte("short")}.Encode(),
		"empty key":   Idempotent("", putCmd("a", "b").Encode()).Encode(),
		"empty inner": Idempotent("k", nil).Encode(),
	} {
		res := a.raw(b)
		require.ErrorIs(t, res.Err, ErrInvalidCommand, name)
	}
	require.Zero(t, a.f.Len())
	require.Zero(t, a.f.DedupLen())
	require.Zero(t, a.f.LastWriteIndex())
}

func TestStampIdempotentWritesInPlaceAndOnlyIntoWrappers(t *testing.T) {
	inner := putCmd("k", "v").Encode()
	b := Idempotent("key", inner).Encode()
	st := Stamp{Time: 1_700_000_000_000, Window: 600_000, MaxKeys: 1 << 18}
	require.True(t, StampIdempotent(b, st))
	require.True(t, IsIdempotent(b))
	c, err := DecodeCommand(b)
	require.NoError(t, err)
	got, enc, gotSt, err := c.Unwrap()
	require.NoError(t, err)
	require.Equal(t, putCmd("k", "v"), got)
	require.Equal(t, inner, enc)
	require.Equal(t, st, gotSt)

	plain := putCmd("k", "v").Encode()
	before := bytes.Clone(plain)
	require.False(t, StampIdempotent(plain, st))
	require.False(t, IsIdempotent(plain))
	require.Equal(t, before, plain)
	require.False(t, StampIdempotent([]byte{1, byte(OpIdempotent)}, st), "too short to hold a stamp")
}

func TestIdempotentInABatchDedupsWithinTheBatch(t *testing.T) {
	a := newApplier(t)
	st := Stamp{Time: 1, Window: testWindow, MaxKeys: 10}
	w := Idempotent("r", putCmd("k", "v").Encode()).Encode()
	StampIdempotent(w, st)
	a.index++
	res := a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: AppendBatch(nil, [][]byte{w, w})}).([]Result)
	require.Equal(t, []Result{{Index: 1}, {Index: 1, Replayed: true}}, res,
		"a retry that raced its original into the same entry still applies once")
}

// A transaction under an idempotency key: a retry gets the first answer whole (branch, index, each
// op's result, what its reads saw then), even after the keys it guarded have moved on, and the records
// carry it through a snapshot.
func TestIdempotentTxnReplaysItsWholeResult(t *testing.T) {
	a := newApplier(t)
	ra := a.put("acct/a", "100") // index 1
	transfer := txnCommand(&Txn{
		Compare: []Compare{{Target: TargetModIndex, Op: CmpEqual, Key: "acct/a", Num: ra.Index}},
		Success: []TxnOp{
			{Kind: TxnPut, Key: "acct/a", Value: []byte("60")},
			{Kind: TxnPut, Key: "acct/b", Value: []byte("40")},
			{Kind: TxnList, Key: "acct/"},
		},
		Failure: []TxnOp{{Kind: TxnGet, Key: "acct/a"}},
	})
	first := a.idem("t1", 1000, transfer)
	require.NotNil(t, first.Txn)
	require.True(t, first.Txn.Succeeded)
	require.Equal(t, uint64(2), first.Index)
	require.Len(t, first.Txn.Results[2].Entries, 2)

	a.put("acct/a", "0") // index 3: applied again, the guard would fail and the failure branch run

	retry := a.idem("t1", 2000, transfer)
	require.True(t, retry.Replayed)
	require.Equal(t, first.Index, retry.Index)
	require.Equal(t, *first.Txn, *retry.Txn, "the same branch and results, including what the list saw")
	require.Equal(t, "0", string(a.mustGet("acct/a").Value), "the retry changed nothing")
	require.Equal(t, uint64(3), a.f.LastWriteIndex())

	other := txnCommand(&Txn{Success: []TxnOp{{Kind: TxnDelete, Key: "acct/a"}}})
	require.Equal(t, Result{KeyReused: true}, a.idem("t1", 2000, other))
	_, ok := a.f.Get("acct/a")
	require.True(t, ok)

	snap := persist(t, a.f)
	b := &applier{t: t, f: restored(t, snap), index: a.index}
	again := b.idem("t1", 3000, transfer)
	require.True(t, again.Replayed)
	require.Equal(t, first.Index, again.Index)
	require.Equal(t, *first.Txn, *again.Txn)
	require.Equal(t, snap, persist(t, restored(t, snap)), "records with results persist deterministically")
}

// A refused transaction (its session is gone) changed nothing and is not recorded: a retry under the
// same key is decided afresh, so it cannot come back from a snapshot as a success.
func TestIdempotentRefusedTxnIsNotRecorded(t *testing.T) {
	a := newApplier(t)
	tx := &Txn{Success: []TxnOp{{Kind: TxnPutSession, Key: "k", Value: []byte("v"), Session: "s"}}}
	cmd := Command{Op: OpTxn, Value: tx.Encode()}
	require.Equal(t, RefusedNoSession, a.idem("t", 1000, cmd).Refused)
	require.Zero(t, a.f.DedupLen())
	a.sess(SessionCmd{Kind: SessionCreate, ID: "s", TTL: 10 * time.Second, Behavior: BehaviorDelete}, 1000)
	res := a.idem("t", 1000, cmd)
	require.Zero(t, res.Refused)
	require.False(t, res.Replayed)
	require.Equal(t, "s", a.mustGet("k").Holder())
}

// A backup carries the idempotency records of the state it holds, and a restore keeps them: a retry
// of a write the restored state holds answers it (same index); a retry of one made after the backup,
// which the restore undid, applies again. A restore of a backup without records (older builds)
// leaves none, and every retry applies.
func TestRestoreKeepsTheBackupsIdempotencyRecords(t *testing.T) {
	a := newApplier(t)
	before := a.idem("before", 1000, putCmd("k", "1"))
	var backup memSink
	require.NoError(t, a.f.Backup().Write(&backup))
	a.idem("after", 2000, putCmd("j", "1"))

	var prepared memSink
	_, err := a.f.PrepareRestore(backup.reader(), &prepared, 1<<24)
	require.NoError(t, err)
	require.NoError(t, a.f.Restore(prepared.reader()))
	a.index = 1 << 24

	again := a.idem("before", 2500, putCmd("k", "1"))
	require.True(t, again.Replayed, "held by the restored state: answered, not applied twice")
	require.Equal(t, before.Index, again.Index)
	require.Equal(t, before.Index, a.mustGet("k").ModIndex)
	retry := a.idem("after", 2500, putCmd("j", "1"))
	require.False(t, retry.Replayed, "undone by the restore: applies now")
	require.Equal(t, retry.Index, a.mustGet("j").ModIndex)
	require.Equal(t, int64(2500), a.f.dedup.clock, "the clock did not go back to the backup's")
}

// Session and lock commands under an idempotency key: a retry gets the first outcome. Without one, a
// release retried after the first attempt applied answers "not released" (the lock is free by then),
// and a create retried makes a second session.
func TestIdempotentSessionAndLockOutcomesAreReplayed(t *testing.T) {
	a := newApplier(t)
	create := func(id string) Command {
		return (&SessionCmd{Kind: SessionCreate, ID: id, TTL: 10 * time.Second, Behavior: BehaviorRelease, LockDelay: time.Second}).Command()
	}
	// Each attempt of a create carries a fresh random id (the receiving node picks it); the retry is
	// the same request all the same, and gets the first id back.
	c1 := a.idem("create", 1000, create("first-id"))
	require.Equal(t, "first-id", c1.SessionID)
	c2 := a.idem("create", 1100, create("second-id"))
	require.Equal(t, Result{Index: c1.Index, SessionID: "first-id", Replayed: true}, c2)
	_, ok, _ := a.f.GetSession("second-id")
	require.False(t, ok, "the retry made no second session")
	require.Equal(t, 1, a.f.SessionCount())
	require.Equal(t, Result{KeyReused: true}, a.idem("create",
		1100, (&SessionCmd{Kind: SessionCreate, ID: "x", TTL: 20 * time.Second, Behavior: BehaviorRelease}).Command()),
		"another TTL is another request")

	lock := func(kind SessionKind, value string) Command {
		return (&SessionCmd{Kind: kind, ID: "first-id", Key: "lock", Value: []byte(value)}).Command()
	}
	acq := a.idem("acquire", 1200, lock(SessionAcquire, "me"))
	require.True(t, acq.OK)
	require.Equal(t, acq.Index, acq.Current, "the fencing token")
	require.Equal(t, Result{Index: acq.Index, Current: acq.Current, OK: true, Replayed: true},
		a.idem("acquire", 1300, lock(SessionAcquire, "me")))

	rel := a.idem("release", 1400, lock(SessionRelease, "free"))
	require.True(t, rel.OK)
	require.False(t, a.sess(SessionCmd{Kind: SessionRelease, ID: "first-id", Key: "lock", Value: []byte("free")}, 1400).OK,
		"unkeyed, a second release finds the lock free: released=false")
	require.Equal(t, Result{Index: rel.Index, OK: true, Replayed: true}, a.idem("release", 1500, lock(SessionRelease, "free")),
		"keyed, the retry answers what the first attempt did")
	require.Equal(t, Result{KeyReused: true}, a.idem("release", 1500, lock(SessionRelease, "other value")))

	renew := (&SessionCmd{Kind: SessionRenew, ID: "first-id"}).Command()
	rn := a.idem("renew", 1600, renew)
	require.Equal(t, uint64(10_000), rn.Current)
	require.Equal(t, Result{Index: rn.Index, Current: 10_000, Replayed: true}, a.idem("renew", 1700, renew))

	destroy := (&SessionCmd{Kind: SessionDestroy, ID: "first-id"}).Command()
	d := a.idem("destroy", 1800, destroy)
	require.True(t, d.Deleted)
	require.Equal(t, Result{Index: d.Index, Deleted: true, Replayed: true}, a.idem("destroy", 1900, destroy),
		"not 'session not found'")

	// The wrapper's stamp is the session clock (the inner command's own stamp stays zero); a replay
	// applies nothing, so it does not move it.
	require.Equal(t, int64(1800), a.f.sess.clock)

	// A refused session command (the session is gone) is not recorded: a retry is decided afresh.
	gone := (&SessionCmd{Kind: SessionRenew, ID: "gone"}).Command()
	require.Equal(t, RefusedNoSession, a.idem("renew-gone", 2000, gone).Refused)
	require.False(t, a.idem("renew-gone", 2000, gone).Replayed)

	// The records, OK and session id included, survive a snapshot, byte for byte.
	snap := persist(t, a.f)
	b := &applier{t: t, f: restored(t, snap), index: a.index}
	require.Equal(t, Result{Index: c1.Index, SessionID: "first-id", Replayed: true}, b.idem("create", 2100, create("third-id")))
	require.Equal(t, Result{Index: acq.Index, Current: acq.Current, OK: true, Replayed: true}, b.idem("acquire", 2100, lock(SessionAcquire, "me")))
	require.Equal(t, Result{Index: rel.Index, OK: true, Replayed: true}, b.idem("release", 2100, lock(SessionRelease, "free")))
	require.Equal(t, snap, persist(t, restored(t, snap)))
}

// The leader's own session commands never come from a client, wrapped or not.
func TestIdempotentWrapperRefusesLeaderSessionCommands(t *testing.T) {
	a := newApplier(t)
	for _, sc := range []*SessionCmd{
		{Kind: SessionExpire, Term: 1, Sessions: []SessionGen{{"a", 1}}},
		{Kind: SessionCheckpoint},
	} {
		res := a.raw(Idempotent("k", sc.Command().Encode()).Encode())
		require.ErrorIs(t, res.Err, ErrInvalidCommand, sc.Kind.String())
	}
	require.Zero(t, a.f.DedupLen())
}
