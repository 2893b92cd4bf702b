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
	for batch := f.take(); batch != nil; batch = f.take() {
		cmds := make([][]byte, len(batch))
		for i, w := range batch {
			cmds[i] = w.cmd
		}
		require.LessOrEqual(t, len(encodeFrames(cmds)), transport.MaxFrame)
		require.LessOrEqual(t, len(encodeFrames(cmds)), 2*maxForwardBytes+len(cmds)*binary.MaxVarintLen64+binary.MaxVarintLen64)
		sent += len(batch)
	}
	require.Equal(t, maxForwardBatch, sent, "every write is sent, in batches within the bound")
}

// Issue 11 item 9: a small write forwarded behind writes of 1 MiB rode an RPC only if the large writes
// ahead of it left room in the byte budget; when they filled it exactly, it waited for them to reach the
// leader and commit. It rides the next RPC, beside at most maxForwardBytes of large writes.
func TestForwardedSmallWriteDoesNotQueueBehindLargeOnes(t *testing.T) {
	f := newForwarder(&Store{})
	var large []*forwardedWrite
	for range 64 {
		w := &forwardedWrite{addr: "leader", cmd: bytes.Repeat([]byte("v"), 1<<20), done: make(chan struct{})}
		large = append(large, w)
		f.queue = append(f.queue, w)
	}
	small := &forwardedWrite{addr: "leader", cmd: fsm.Command{Op: fsm.OpPut, Key: "small", Value: []byte("v")}.Encode(), done: make(chan struct{})}
	other := &forwardedWrite{addr: "old-leader", cmd: fsm.Command{Op: fsm.OpPut, Key: "other", Value: []byte("v")}.Encode(), done: make(chan struct{})}
	f.queue = append(f.queue, other, small)

	batch := f.take()
	require.Contains(t, batch, small, "the small write rides the first RPC")
	require.NotContains(t, batch, other, "one RPC goes to one address")
	require.Equal(t, append(large[:maxForwardBytes>>20:maxForwardBytes>>20], small), batch, "large writes within their byte budget, in order")
	require.Equal(t, large[maxForwardBytes>>20], f.queue[0], "the large writes left keep their order")
	require.Len(t, f.queue, 64-maxForwardBytes>>20+1)
}
