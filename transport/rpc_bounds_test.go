package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func frameHeader(id uint64, method string, size uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, id)
	b = append(b, byte(len(method)))
	b = append(b, method...)
	return binary.BigEndian.AppendUint32(b, size)
}

func TestFrameAnnouncing255MiBIsAllocatedBeforeItsBytesArrive(t *testing.T) {
	in := append(binary.BigEndian.AppendUint32(nil, 255<<20), "only a few bytes"...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readPayload(bufio.NewReader(bytes.NewReader(in)))
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "allocated for bytes that never arrived")

	got, err := readGrowing(bytes.NewReader(bytes.Repeat([]byte("x"), 3<<20)), 3<<20)
	require.NoError(t, err)
	require.Len(t, got, 3<<20)
}

// rawRPC dials the RPC protocol on m without a client, so a test can send what it likes.
func rawRPC(t *testing.T, m *Mux) net.Conn {
	t.Helper()
	conn, err := m.dialProto(m.Addr().String(), "", protoRPC, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var hello [1]byte
	_, err = io.ReadFull(conn, hello[:])
	require.NoError(t, err)
	require.Equal(t, rpcHello, hello[0])
	return conn
}

func TestStalledFrameHoldsItsConnectionForever(t *testing.T) {
	m := listen(t)
	srv := serveRPC(m, func(context.Context, string, []byte) ([]byte, error) { return nil, nil },
		slog.New(slog.DiscardHandler), 200*time.Millisecond)
	t.Cleanup(func() { srv.Close(context.Background()) })

	conn := rawRPC(t, m)
	_, err := conn.Write(frameHeader(1, "x", 1<<20)[:7]) // part of a frame, then nothing
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the server closes a connection whose frame stalls")

	// An idle connection between frames stays open.
	idle := rawRPC(t, m)
	idle.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = idle.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "an idle connection is not closed: %v", err)
}

func TestOneConnectionRunsUnboundedRequestsAtOnce(t *testing.T) {
	m := listen(t)
	var started atomic.Int64
	release := make(chan struct{})
	srv := ServeRPC(m, func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close(context.Background()) })
	defer close(release)

	conn := rawRPC(t, m)
	var frames []byte
	for i := range rpcConnFrames + 50 {
		frames = append(frames, frameHeader(uint64(i), "x", 0)...)
	}
	go conn.Write(frames)
	require.Eventually(t, func() bool { return started.Load() == rpcConnFrames }, 5*time.Second, time.Millisecond)
	require.Never(t, func() bool { return started.Load() > rpcConnFrames }, 200*time.Millisecond, 10*time.Millisecond,
		"requests beyond the bound wait until one is answered")
}
