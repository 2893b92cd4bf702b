package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/transport"
)

func TestMalformedForwardedBatchAllocates24TimesItsSize(t *testing.T) {
	// A count of a million frames, then a million zero-length frames: a megabyte on the wire.
	const n = 1 << 20
	b := append(binary.AppendUvarint(nil, n), make([]byte, n)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeFrames(b)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, errBadFrames)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}

func TestForwardedBatchMayCarryInternalCommands(t *testing.T) {
	s := &Store{cfg: Config{MaxKeySize: 16, MaxValueSize: 8}}
	s.proposer = newProposer(s)
	cmds := [][]byte{
		fsm.Command{Op: fsm.OpSetMember, Key: "n1", Value: []byte("forged")}.Encode(),
		fsm.Command{Op: fsm.OpNoop}.Encode(),
		fsm.Command{Op: fsm.OpPut, Key: "", Value: []byte("v")}.Encode(),
		fsm.Command{Op: fsm.OpPut, Key: strings.Repeat("k", 17), Value: []byte("v")}.Encode(),
		fsm.Command{Op: fsm.OpPut, Key: "a\x00b", Value: []byte("v")}.Encode(),
		fsm.Command{Op: fsm.OpPut, Key: "\xff", Value: []byte("v")}.Encode(),
		fsm.Command{Op: fsm.OpPut, Key: "k", Value: bytes.Repeat([]byte("v"), 9)}.Encode(),
		fsm.Command{Op: fsm.OpDelete, Key: strings.Repeat("k", 17)}.Encode(),
		[]byte("garbage"),
	}
	resp, err := s.applyBatchLocal(context.Background(), encodeFrames(cmds))
	require.NoError(t, err)
	results, err := decodeFrames(resp)
	require.NoError(t, err)
	require.Len(t, results, len(cmds))
	for i, r := range results {
		_, err := decodeResponse("leader", r)
		require.ErrorIs(t, err, ErrInvalid, "command %d", i)
	}
}

func TestForwardBatchOfLargeWritesIsBoundedByCountNotBytes(t *testing.T) {
	f := newForwarder(&Store{})
	value := bytes.Repeat([]byte("v"), 64<<10) // 16 MiB in all
	for i := range maxForwardBatch {
		cmd := fsm.Command{Op: fsm.OpPut, Key: fmt.Sprint(i), Value: value}.Encode()
		f.queue = append(f.queue, &forwardedWrite{addr: "leader", cmd: cmd, done: make(chan struct{})})
	}
	sent := 0
	for batch, large := f.take(); batch != nil; batch, large = f.take() {
		require.True(t, large)
		f.largeInFlight = false // as if the RPC was answered
		cmds := make([][]byte, len(batch))
		for i, w := range batch {
			cmds[i] = w.cmd
		}
		require.LessOrEqual(t, len(encodeFrames(cmds)), transport.MaxFrame)
		require.LessOrEqual(t, len(encodeFrames(cmds)), maxForwardBytes+len(cmds)*binary.MaxVarintLen64+binary.MaxVarintLen64)
		sent += len(batch)
	}
	require.Equal(t, maxForwardBatch, sent, "every write is sent, in batches within the bound")
}

// Issue 11 item 9: a small write forwarded behind writes of 1 MiB rode an RPC only if the large writes
// ahead of it left room in the byte budget, and then was answered only once they had committed at the
// leader, behind every large write queued there. It goes in an RPC of small writes, whatever is queued
// or in flight, and large writes keep one RPC out at a time.
func TestForwardedSmallWriteDoesNotQueueBehindLargeOnes(t *testing.T) {
	f := newForwarder(&Store{})
	newWrite := func(addr string, cmd []byte) *forwardedWrite {
		w := &forwardedWrite{addr: addr, cmd: cmd, done: make(chan struct{})}
		f.queue = append(f.queue, w)
		return w
	}
	var large []*forwardedWrite
	for range 64 {
		large = append(large, newWrite("leader", bytes.Repeat([]byte("v"), 1<<20)))
	}
	other := newWrite("old-leader", fsm.Command{Op: fsm.OpPut, Key: "other", Value: []byte("v")}.Encode())
	small := newWrite("leader", fsm.Command{Op: fsm.OpPut, Key: "small", Value: []byte("v")}.Encode())

	batch, isLarge := f.take()
	require.Equal(t, []*forwardedWrite{small}, batch, "the small write goes first, alone, to the oldest write's address")
	require.False(t, isLarge)

	batch, isLarge = f.take()
	require.True(t, isLarge)
	perRPC := maxForwardBytes >> 20
	require.Equal(t, large[:perRPC], batch, "large writes within their byte budget, in order")

	batch, _ = f.take()
	require.Nil(t, batch, "one RPC of large writes at a time")
	late := newWrite("leader", fsm.Command{Op: fsm.OpPut, Key: "late", Value: []byte("v")}.Encode())
	batch, isLarge = f.take()
	require.Equal(t, []*forwardedWrite{late}, batch, "a small write still goes while large ones are out")
	require.False(t, isLarge)

	f.largeDone()
	batch, isLarge = f.take()
	require.True(t, isLarge)
	require.Equal(t, large[perRPC:2*perRPC], batch, "the next large writes once the RPC is answered")
	require.Equal(t, large[2*perRPC], f.queue[0])
	require.Contains(t, f.queue, other)
}
